"""Helpers for the runtime tests: register, load back, and clean up."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd
import pytest

from corral.registry.entities import ModelVersion
from corral.registry.loaded import LoadedModel
from corral.registry.service import Registry


@dataclass
class RoundTrip:
    """A version registered from a live model and loaded back from the registry."""

    version: ModelVersion
    loaded: LoadedModel
    features: pd.DataFrame


@pytest.fixture
def load_version(registry: Registry) -> Callable[..., LoadedModel]:
    """``registry.load``, by reference."""

    def load(ref: str, *, trusted: bool = False) -> LoadedModel:
        loaded = registry.load(ref, trusted=trusted)
        assert str(loaded.version.ref) == ref
        return loaded

    return load


@pytest.fixture
def round_trip(registry: Registry, load_version: Callable[..., LoadedModel]) -> Callable[..., RoundTrip]:
    """Register ``model`` as version 1 of ``name`` with ``frame`` (target column ``target``) and load it back."""

    def run(model: Any, frame: pd.DataFrame, *, name: str, trusted: bool = False, **log_kwargs: Any) -> RoundTrip:
        version = registry.log_model(
            model, name=name, training_data=frame, target="target", trusted=trusted, **log_kwargs
        )
        assert version.version == 1
        loaded = load_version(f"{name}/1", trusted=trusted)
        assert loaded.version.flavor == version.flavor
        return RoundTrip(version, loaded, frame.drop(columns="target"))

    return run
