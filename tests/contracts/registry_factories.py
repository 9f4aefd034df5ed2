"""Builders of complete registry entities for the contract suites (no model training needed)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

from corral.core.fingerprint import DataFingerprint
from corral.core.profile import FeatureProfile, Profile
from corral.core.schema import FeatureKind, FeatureSpec, OutputSpec, Signature, Task
from corral.registry.entities import Lineage, ModelVersion
from corral.runtimes.base import RuntimeSpec

T0 = datetime(2026, 3, 1, 12, 30, 15, 123456, tzinfo=UTC)
"""A fixed registration time with microseconds, in UTC."""

CEST = timezone(timedelta(hours=2), "CEST")

SHA_A = "a" * 64
SHA_B = "b" * 64


def make_signature() -> Signature:
    return Signature(
        inputs=(
            FeatureSpec("age", "float64", FeatureKind.NUMERICAL, nullable=True, min=18.0, max=99.5),
            FeatureSpec("income", "int64", FeatureKind.NUMERICAL, min=0.0, max=250_000.0),
            FeatureSpec("city", "string", FeatureKind.CATEGORICAL, categories=("Köln", "Zürich", "東京")),
            FeatureSpec("member", "bool", FeatureKind.BOOLEAN),
        ),
        outputs=OutputSpec(Task.CLASSIFICATION, "int64", classes=(0, 1), probabilities=True),
    )


def make_lineage(*, data_sha: str = "d" * 64) -> Lineage:
    return Lineage(
        data=DataFingerprint(data_sha, rows=569, columns=31, source="s3://bucket/train.parquet"),
        code_commit="0123456789abcdef0123456789abcdef01234567",
        code_dirty=True,
        params={"C": 0.5, "max_iter": 200, "penalty": "l2", "layers": [64, 32], "nested": {"a": None, "b": True}},
        metrics={"auc": 0.987654321, "loss": 0.1 + 0.2, "tiny": 1e-12},
        requirements={"scikit-learn": "1.5.2", "numpy": "2.1.0"},
        python="3.11.9",
    )


def make_draft(
    name: str = "fraud",
    *,
    artifact_sha256: str = SHA_A,
    created_at: datetime = T0,
    description: str = "détecte la fraude — 不正検出 🐄",
    tags: dict[str, str] | None = None,
    lineage: Lineage | None = None,
    created_by: str = "ada",
) -> ModelVersion:
    """A complete version draft (``version`` is ignored by the store)."""
    return ModelVersion(
        name=name,
        version=0,
        flavor="sklearn",
        artifact_sha256=artifact_sha256,
        artifact_size=12_345,
        signature=make_signature(),
        runtime=RuntimeSpec("sklearn", Task.CLASSIFICATION, classes=(0, 1), options={"serialization": "skops"}),
        lineage=lineage if lineage is not None else make_lineage(),
        created_by=created_by,
        created_at=created_at,
        description=description,
        tags={"team": "risk", "stage": "ünïcode ✓"} if tags is None else tags,
    )


def make_profile() -> Profile:
    age = FeatureProfile(
        "age",
        FeatureKind.NUMERICAL,
        count=500,
        missing=3,
        min=18.0,
        max=99.5,
        mean=41.25,
        std=12.5,
        quantiles={"0": 18.0, "0.5": 40.0, "1": 99.5},
        bin_edges=(18.0, 40.0, 99.5),
        bin_counts=(250, 250),
    )
    city = FeatureProfile(
        "city", FeatureKind.CATEGORICAL, count=503, missing=0, categories={"Köln": 300, "東京": 3}, other=200
    )
    prediction = FeatureProfile("prediction", FeatureKind.CATEGORICAL, count=503, missing=0, categories={"0": 400})
    return Profile(rows=503, features={"age": age, "city": city}, outputs={"prediction": prediction})


DraftFactory = Callable[..., ModelVersion]
