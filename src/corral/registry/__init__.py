"""The model registry: versions, lineage, aliases, reference profiles.

Start at :class:`corral.registry.service.Registry` (``log_model`` tells the
whole registration story). ``entities`` holds what is stored, ``ports`` the
storage protocols it needs, ``loaded`` what ``load`` returns.
"""
