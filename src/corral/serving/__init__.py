"""Serving: deployments and the in-memory model server.

Start at ``server.ModelServer.predict`` (the request path) and
``server.ModelServer.refresh`` (zero-downtime swaps). ``batching`` coalesces
concurrent requests; ``deployments`` is the service that edits deployments;
``entities`` and ``ports`` are what is stored and the store it needs.
"""
