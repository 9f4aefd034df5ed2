"""Isolated model execution: a version in its own virtual environment and worker process.

``environments`` builds and caches virtual environments from a version's recorded requirements (with ``uv``
when present, else ``venv`` and ``pip``), shared by requirement hash. ``codec`` is the wire format between
the server and a worker (numpy buffers, not JSON per row). ``worker`` is the child's main program: it loads
one version with corral's own runtimes and answers predictions over a Unix socket. ``host`` is the server
side: a :class:`~corral.isolation.host.WorkerRuntime` that predicts through a supervised worker
(:class:`~corral.runtimes.process.ChildProcess`), the ``auto`` rule that decides which versions need
isolation, and the registration hook that saves and checks a model inside its own environment.

A worker imports only ``corral.core``, ``corral.errors``, ``corral.runtimes`` and this package, so an
environment needs nothing but the model's own libraries (numpy, pandas and its framework).
"""
