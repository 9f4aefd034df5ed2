"""The dashboard tests build their installation with the API tests' helpers (``test_api.rows``,
``test_pipelines_api.pipeline``) and run a pipeline whose training function lives in ``tests/unit/pipelines``
(``pipeline_models``, imported by the spawned training child, which inherits ``sys.path``): both folders go on
``sys.path`` here, as pytest puts them there itself when it collects their tests."""

from __future__ import annotations

import sys
from pathlib import Path

UNIT = Path(__file__).parents[1]
for folder in (UNIT / "api", UNIT / "pipelines"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
