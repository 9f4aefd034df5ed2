"""The ``corral`` command line (Typer). ``main`` wires the groups; one module per group."""
