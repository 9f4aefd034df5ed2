"""corral: take machine-learning models into production and keep them trustworthy there.

The notebook-facing SDK::

    import corral
    v = corral.log_model(model, name="fraud", training_data=df, target="label")
    corral.promote("fraud", v.version)             # fraud@champion
    model = corral.load_model("fraud@champion")    # hash-verified
    model.predict(new_rows)

These functions use the stores named by ``CORRAL_*`` settings (by default
SQLite and a folder under ``./.corral``). :func:`connect` gives the services
for other settings. Start reading at :mod:`corral.registry.service`.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from corral.core.fingerprint import DataFingerprint, fingerprint_frame
from corral.core.profile import Profile
from corral.core.refs import ModelRef
from corral.core.schema import FeatureKind, FeatureSpec, OutputSpec, Signature, Task
from corral.errors import CorralError
from corral.registry.entities import AliasEvent, Lineage, ModelVersion, RegisteredModel, VersionStatus
from corral.registry.loaded import LoadedModel
from corral.registry.service import Registry
from corral.runtimes.base import Prediction
from corral.settings import Settings

if TYPE_CHECKING:  # the services pull in every room: imported when first used, so `import corral` stays light
    from corral.app import Services

__version__ = "0.1.0"

_lock = threading.Lock()
_services: Services | None = None


def connect(settings: Settings | None = None, **overrides: Any) -> Services:
    """Open corral with ``settings`` (or ``Settings(**overrides)``) and make it the default.

    Example: ``corral.connect(database_url="postgresql+psycopg://ml@db/corral")``.
    """
    global _services
    with _lock:
        from corral.app import build_services

        previous, _services = _services, build_services(settings or Settings(**overrides))
        if previous is not None:
            previous.close()
        return _services


def _default() -> Services:
    global _services
    with _lock:
        if _services is None:
            from corral.app import build_services

            _services = build_services(Settings())
        return _services


def log_model(model: Any, *, name: str, isolated: bool = False, **kwargs: Any) -> ModelVersion:
    """Register a fitted model; see :meth:`corral.Registry.log_model` for every argument.

    ``isolated=True`` (with ``requirements={"scikit-learn": "1.2.2", ...}`` and ``model`` a file) saves and
    checks the model in an environment holding exactly those releases, never in this process.
    """
    services = _default()
    if isolated:
        from corral.isolation.host import IsolatedHost

        requirements = kwargs.get("requirements")
        if not requirements:
            raise CorralError("log_model(isolated=True) needs requirements={name: version} to build the environment")
        kwargs["host"] = IsolatedHost(services.environments, requirements)
    return services.registry.log_model(model, name=name, **kwargs)


def load_model(ref: str | ModelRef, *, trusted: bool = False) -> LoadedModel:
    """Load ``name@alias``, ``name/3`` or ``name@latest``, verifying the artifact's hash."""
    return _default().registry.load(ref, trusted=trusted)


def promote(name: str, version: int, *, alias: str = "champion", reason: str = "") -> AliasEvent:
    """Point ``alias`` (``champion`` by default) at ``version``."""
    return _default().registry.promote(name, version, alias=alias, reason=reason)


def rollback(name: str, alias: str = "champion", *, reason: str = "") -> AliasEvent:
    """Move ``alias`` back to its previous version."""
    return _default().registry.rollback(name, alias, reason=reason)


def auth_headers(settings: Settings | None = None) -> dict[str, str]:
    """The ``Authorization`` header for calling a corral server from this machine.

    The token is ``CORRAL_TOKEN`` if set, else the admin token corral wrote to ``<CORRAL_HOME>/admin-token``
    on first start (refused if group or others can read the file); ``{}`` when there is neither. Example:
    ``httpx.get("http://127.0.0.1:8000/v1/models", headers=corral.auth_headers())``.
    """
    from corral.security.bootstrap import local_token

    token = local_token((settings or Settings()).resolved_token_file())
    return {"Authorization": f"Bearer {token}"} if token else {}


__all__ = [
    "AliasEvent",
    "CorralError",
    "DataFingerprint",
    "FeatureKind",
    "FeatureSpec",
    "Lineage",
    "LoadedModel",
    "ModelRef",
    "ModelVersion",
    "OutputSpec",
    "Prediction",
    "Profile",
    "RegisteredModel",
    "Registry",
    "Services",
    "Settings",
    "Signature",
    "Task",
    "VersionStatus",
    "__version__",
    "auth_headers",
    "connect",
    "fingerprint_frame",
    "load_model",
    "log_model",
    "promote",
    "rollback",
]


def __getattr__(name: str) -> Any:
    if name == "Services":
        from corral.app import Services

        return Services
    raise AttributeError(f"module 'corral' has no attribute {name!r}")
