"""The HTTP API (FastAPI), thin over the services.

Start at ``app.create_app``. ``v2`` is the Open Inference Protocol, ``v1`` the
plain JSON API and operator endpoints, ``errors`` maps CorralError to HTTP,
``metrics`` and ``middleware`` are operations (Prometheus, access log, limits).
"""
