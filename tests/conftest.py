"""Fixtures shared by every test: bundled datasets, registries, databases."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

from corral.isolation.environments import Environments
from corral.registry.service import Registry
from corral.storage.artifacts import FsspecArtifactStore
from corral.storage.memory import MemoryRegistryStore


@pytest.fixture(scope="session")
def cancer() -> pd.DataFrame:
    """scikit-learn's breast-cancer data: 30 numerical features, binary ``target``."""
    from sklearn.datasets import load_breast_cancer

    return load_breast_cancer(as_frame=True).frame


@pytest.fixture(scope="session")
def wine() -> pd.DataFrame:
    """scikit-learn's wine data: 13 numerical features, 3-class ``target``."""
    from sklearn.datasets import load_wine

    return load_wine(as_frame=True).frame


@pytest.fixture(scope="session")
def diabetes() -> pd.DataFrame:
    """scikit-learn's diabetes data: 10 numerical features, continuous ``target``."""
    from sklearn.datasets import load_diabetes

    return load_diabetes(as_frame=True).frame


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    """A registry on the in-memory store and a local artifact folder."""
    return Registry(MemoryRegistryStore(), FsspecArtifactStore(str(tmp_path / "artifacts")), actor="tester")


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'corral.db'}"


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session.

    From ``CORRAL_TEST_POSTGRES_URL`` when set, else a private throwaway server
    started from the installed PostgreSQL binaries. Without either, the tests
    skip loudly, except under ``CI=true`` where they fail.
    """
    from corral.testing.postgres import session_database

    with session_database() as url:
        yield url


@pytest.fixture(scope="session")
def environments() -> Environments:
    """The isolated-model environment cache shared by every test run on this machine (built once, with uv).

    ``CORRAL_TEST_ENVIRONMENTS`` moves it; by default ``~/.cache/corral-tests/environments``.
    """
    root = os.environ.get("CORRAL_TEST_ENVIRONMENTS") or str(Path.home() / ".cache" / "corral-tests" / "environments")
    return Environments(Path(root))
