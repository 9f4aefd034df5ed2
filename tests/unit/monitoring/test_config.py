"""A deployment's monitoring configuration: detectors per kind, thresholds, quality limits; bad ones named."""

from __future__ import annotations

import pytest

from corral.core.schema import FeatureKind
from corral.errors import ConfigurationError, CorralError, MonitoringError, SchemaError, UnknownDetectorError
from corral.monitoring.config import MonitoringConfig
from corral.monitoring.quality import QualityThresholds


def test_the_defaults_are_psi_everywhere_and_the_default_quality_limits() -> None:
    config = MonitoringConfig.from_dict(None)
    choice = config.choice()
    assert {kind: [d.name for d in ds] for kind, ds in choice.items()} == {key: ["psi"] for key in FeatureKind}
    assert choice[FeatureKind.NUMERICAL][0].threshold == 0.2
    assert config.quality == QualityThresholds()


def test_a_partial_configuration_keeps_the_rest_and_round_trips() -> None:
    config = MonitoringConfig.from_dict(
        {"detectors": {"numerical": ["ks", "wasserstein"]}, "thresholds": {"ks": 0.01}, "quality": {"min_rows": 50}}
    )
    choice = config.choice()
    assert [(d.name, d.threshold) for d in choice[FeatureKind.NUMERICAL]] == [("ks", 0.01), ("wasserstein", 0.1)]
    assert [d.name for d in choice[FeatureKind.CATEGORICAL]] == ["psi"]
    assert config.quality.min_rows == 50
    assert MonitoringConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize(
    ("data", "error", "message"),
    [
        ({"detectors": {"numerical": ["nope"]}}, UnknownDetectorError, "no drift detector named 'nope'"),
        ({"detectors": {"textual": ["psi"]}}, MonitoringError, r"unknown feature kinds \['textual'\]"),
        ({"detectors": {"numerical": []}}, MonitoringError, "needs at least one detector"),
        ({"thresholds": {"ks": 2.0}}, ConfigurationError, "ks: threshold 2.0 is not usable"),
        ({"thresholds": {"psi": "high"}}, MonitoringError, "must be a finite number"),
        ({"quality": {"min_rows": -1}}, SchemaError, "min_rows"),
        ({"colour": "red"}, SchemaError, r"unknown monitoring settings \['colour'\]"),
        # shapes found by the fuzzing test (they were 500s): every part an object, detectors names
        ({"detectors": {"numerical": None}}, MonitoringError, "must be a name or a list of names, got None"),
        ({"detectors": {"numerical": [1]}}, MonitoringError, "must be a name or a list of names"),
        ({"detectors": ["ks"]}, MonitoringError, "detectors must be an object, got list"),
        ({"thresholds": [["ks", 0.1]]}, MonitoringError, "thresholds must be an object, got list"),
        ({"quality": "strict"}, MonitoringError, "quality must be an object, got str"),
    ],
)
def test_bad_configurations_are_refused_by_name(data: dict, error: type[CorralError], message: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(error, match=message):
        MonitoringConfig.from_dict(data)
