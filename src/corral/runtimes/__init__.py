"""Framework runtimes: one module per flavor behind the ``ModelRuntime`` protocol.

``base`` defines the protocol and the common output shape, ``loader`` maps
flavor names to runtime classes (imported lazily) and detects the flavor of a
model object.
"""
