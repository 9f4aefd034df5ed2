"""Pure vocabulary shared by every room; imports nothing else from corral.

``refs`` (model names and ``name/3`` / ``name@alias`` references), ``schema``
(signatures and input validation), ``fingerprint`` (training-data hashes),
``profile`` (reference profiles that monitoring compares traffic against).
"""
