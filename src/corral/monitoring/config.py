"""A deployment's monitoring configuration: which drift detectors judge which kind of feature, with which
thresholds, and the data-quality limits.

Stored per deployment (``MonitoringStore.get_config`` / ``set_config``) as the plain dictionary
:meth:`MonitoringConfig.to_dict` gives; a deployment without one uses the defaults: ``psi`` (threshold
0.2) for every kind and :class:`~corral.monitoring.quality.QualityThresholds`' defaults.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from corral.core.schema import FeatureKind
from corral.errors import MonitoringError, SchemaError
from corral.monitoring.detectors import BINNED_DEFAULTS, DriftDetector, get_detector
from corral.monitoring.quality import QualityThresholds

KINDS = tuple(str(k) for k in FeatureKind)


@dataclass(frozen=True, slots=True)
class MonitoringConfig:
    """Detectors per feature kind (names), thresholds per detector name, and quality thresholds."""

    detectors: Mapping[str, tuple[str, ...]] = field(
        default_factory=lambda: {str(k): tuple(v) for k, v in BINNED_DEFAULTS.items()}
    )
    thresholds: Mapping[str, float] = field(default_factory=dict)
    quality: QualityThresholds = field(default_factory=QualityThresholds)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.detectors) - set(KINDS))
        if unknown:
            raise MonitoringError(f"unknown feature kinds {unknown}; kinds are {list(KINDS)}")
        for name, value in self.thresholds.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise MonitoringError(f"threshold for {name!r} must be a finite number, got {value!r}")
            get_detector(name, value)  # an unknown detector or a threshold it cannot use fails here
        self.choice()  # builds every detector once: unknown names and unusable thresholds fail here

    def choice(self) -> dict[FeatureKind, list[DriftDetector]]:
        """The detectors to run per kind, built with their thresholds.

        Raises:
            UnknownDetectorError: a detector name nobody registered.
            ConfigurationError: a threshold the detector cannot use.
        """
        return {
            FeatureKind(kind): [get_detector(name, self.thresholds.get(name)) for name in names]
            for kind, names in self.detectors.items()
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "detectors": {kind: list(names) for kind, names in self.detectors.items()},
            "thresholds": dict(self.thresholds),
            "quality": self.quality.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> MonitoringConfig:
        """A configuration from :meth:`to_dict` output or a user's partial one (missing parts keep defaults).

        Raises:
            MonitoringError / SchemaError: unknown keys, kinds, detectors or bad thresholds, named.
        """
        if not data:
            return cls()
        unknown = sorted(set(data) - {"detectors", "thresholds", "quality"})
        if unknown:
            raise SchemaError(f"unknown monitoring settings {unknown}; known: detectors, thresholds, quality")
        parts = {key: data.get(key) or {} for key in ("detectors", "thresholds", "quality")}
        for key, part in parts.items():
            if not isinstance(part, Mapping):
                raise MonitoringError(f"{key} must be an object, got {type(part).__name__}")
        defaults = cls()
        detectors = dict(defaults.detectors)
        for kind, names in parts["detectors"].items():
            listed = (names,) if isinstance(names, str) else tuple(names) if isinstance(names, list | tuple) else None
            if listed is None or not all(isinstance(n, str) for n in listed):
                raise MonitoringError(f"detectors of kind {kind!r} must be a name or a list of names, got {names!r}")
            if not listed:
                raise MonitoringError(f"kind {kind!r} needs at least one detector")
            detectors[str(kind)] = listed
        return cls(
            detectors=detectors,
            thresholds=dict(parts["thresholds"]),
            quality=QualityThresholds.from_dict(parts["quality"]),
        )
