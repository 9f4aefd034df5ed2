"""Process entry points for ``test_concurrency.py``; spawned children import only this module.

Each worker waits on a barrier so all start their work at the same moment,
then reports ``(worker, result, traceback or None)`` on a queue.
"""

from __future__ import annotations

import traceback
from typing import Any


def register_versions(
    worker: int, database_url: str, artifacts_url: str, name: str, count: int, barrier: Any, results: Any
) -> None:
    """Register ``count`` versions of ``name`` through the real Registry; report their numbers."""
    try:
        import numpy as np
        import pandas as pd
        from sklearn.linear_model import LogisticRegression

        from corral.app import build_services
        from corral.settings import Settings

        rng = np.random.default_rng(worker)
        frame = pd.DataFrame(rng.normal(size=(50, 3)), columns=["a", "b", "c"])
        frame["y"] = (frame["a"] + rng.normal(scale=0.5, size=50) > 0).astype("int64")
        services = build_services(
            Settings(database_url=database_url, artifacts_url=artifacts_url, user=f"worker-{worker}")
        )
        barrier.wait(timeout=120)
        numbers = []
        for k in range(count):
            model = LogisticRegression(C=1.0 + k + 10 * worker).fit(frame[["a", "b", "c"]], frame["y"])
            version = services.registry.log_model(
                model,
                name=name,
                training_data=frame,
                target="y",
                code_commit="0" * 40,
                params={"C": 1.0 + k + 10 * worker},
                tags={"worker": str(worker), "k": str(k)},
            )
            numbers.append(version.version)
        _dispose(services.registry.store)
        results.put((worker, numbers, None))
    except BaseException:
        results.put((worker, None, traceback.format_exc()))


def open_store(worker: int, database_url: str, barrier: Any, results: Any) -> None:
    """Open (and so migrate) the registry store at the same moment as the other workers."""
    try:
        from corral.storage import open_registry_store
        from corral.storage.sql.engine import current_revision

        barrier.wait(timeout=120)
        store = open_registry_store(database_url)
        revision = current_revision(store.engine)  # type: ignore[attr-defined]
        _dispose(store)
        results.put((worker, revision, None))
    except BaseException:
        results.put((worker, None, traceback.format_exc()))


def _dispose(store: object) -> None:
    engine = getattr(store, "engine", None)
    if engine is not None:
        engine.dispose()
