"""The Moody model of the isolation tests (``tests/unit/isolation/worker_models.py``: answers 2x, exits the
process on x=13, sleeps a minute on x=7, raises on x=5), shared by the isolated-serving and fault suites."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

from corral.core.schema import FeatureKind, FeatureSpec, OutputSpec, Signature, Task

MODELS = Path(__file__).parents[1] / "unit" / "isolation" / "worker_models.py"
"""The file that travels inside the artifact (``options={"code_paths": [str(MODELS)]}``)."""

SIGNATURE = Signature(
    (FeatureSpec("x", "float64", FeatureKind.NUMERICAL, min=0.0, max=100.0),), OutputSpec(Task.REGRESSION, "float64")
)


def moody() -> Any:
    """A Moody model, its class imported from :data:`MODELS` (as ``worker_models``, the name the worker finds)."""
    spec = importlib.util.spec_from_file_location("worker_models", MODELS)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["worker_models"] = module
    spec.loader.exec_module(module)
    return module.Moody()
