"""A champion, a shadow and a split on one deployment, served by a real ``corral serve --workers 2``.

Two server processes share one SQLite home. Requests go out one per fresh connection, so the kernel hands
them to either process: a routing key must land on the same version whichever process answers (the buckets
are SHA-256 of the key, not per-process state); every answered prediction must have exactly one answering
record and one shadow record in the audit log; and ``corral deployments remove`` must take the split off the
traffic in both processes within seconds.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from server_process import auth_headers, corral_env, open_services, run_cli, server_process
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from corral.serving.entities import SHADOW, SPLIT, Member
from corral.serving.routing import bucket
from corral.storage import open_database

pytestmark = pytest.mark.slow

MODEL = "cancer"
DEPLOYMENT = "cancer-api"
CHAMPION, SHADOW_VERSION, SPLIT_VERSION = 1, 2, 3
SPLIT_PERCENT = 30.0
KEYS = [f"user-{i}" for i in range(30)]  # 10 of these 30 land in the split's buckets [0, 30)
SENDS_PER_KEY = 6
SHADOW_WAIT = 10.0  # seconds for the shadows' records to reach the log (they are scored off the response path)
REMOVE_BOUND = 5.0  # seconds from `corral deployments remove` returning to the split being gone everywhere


def post(base_url: str, key: str, row: dict[str, Any]) -> dict[str, Any]:
    """One prediction on a fresh connection (a new client each time: either worker process may take it)."""
    response = httpx.post(
        f"{base_url}/v1/deployments/{DEPLOYMENT}/predict",
        json={"instances": [row], "routing_key": key},
        headers=auth_headers(base_url),
        timeout=30,
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_champion_shadow_and_split_across_two_processes(cancer: pd.DataFrame, tmp_path: Path) -> None:
    features, target = cancer.drop(columns="target"), cancer["target"]
    models = {
        CHAMPION: make_pipeline(StandardScaler(), LogisticRegression(C=1.0)).fit(features, target),
        SHADOW_VERSION: make_pipeline(StandardScaler(), LogisticRegression(C=0.1)).fit(features, target),
        SPLIT_VERSION: make_pipeline(StandardScaler(), LogisticRegression(C=0.01)).fit(features, 1 - target),
    }
    expected = {v: m.predict_proba(features) for v, m in models.items()}
    env = corral_env(tmp_path / "home", CORRAL_SERVING__REFRESH_SECONDS="0.2")
    services = open_services(env)
    try:
        for version in sorted(models):
            services.registry.log_model(
                models[version],
                name=MODEL,
                training_data=features.assign(target=target),
                target="target",
                code_commit="0" * 40,
            )
        services.registry.promote(MODEL, CHAMPION)
        services.deployments.create(DEPLOYMENT, model=MODEL)
        services.deployments.set_members(
            DEPLOYMENT, [Member(MODEL, SHADOW_VERSION, SHADOW), Member(MODEL, SPLIT_VERSION, SPLIT, SPLIT_PERCENT)]
        )
    finally:
        services.close()
    to_split = {k for k in KEYS if bucket(k) < SPLIT_PERCENT}

    with server_process(env, workers=2) as server:
        # (a) sticky routing across processes
        answers: list[tuple[str, int, dict[str, Any]]] = []  # (key, row, body)
        for round_ in range(SENDS_PER_KEY):
            for i, key in enumerate(KEYS):
                row = (i * SENDS_PER_KEY + round_) % len(features)
                answers.append((key, row, post(server.base_url, key, features.iloc[row].to_dict())))
        versions: dict[str, set[int]] = {}
        for key, row, body in answers:
            version = body["model"]["version"]
            versions.setdefault(key, set()).add(version)
            np.testing.assert_allclose(body["probabilities"], expected[version][row : row + 1], rtol=1e-9)
            assert body.get("role", "primary") == ("split" if version == SPLIT_VERSION else "primary"), body
        assert all(len(v) == 1 for v in versions.values()), {k: v for k, v in versions.items() if len(v) > 1}
        assert {k for k, v in versions.items() if v == {SPLIT_VERSION}} == to_split  # the bucket decides
        assert {k for k, v in versions.items() if v == {CHAMPION}} == set(KEYS) - to_split
        share = sum(body["model"]["version"] == SPLIT_VERSION for _, _, body in answers) / len(answers)
        assert 0.10 <= share <= 0.50, share

        # (b) one answering record and one shadow record per answered prediction id
        answered = {body["prediction_ids"][0]: body["model"]["version"] for _, _, body in answers}
        assert len(answered) == len(answers)  # ids are unique across the two processes
        database = open_database(f"sqlite:///{(tmp_path / 'home' / 'corral.db').resolve()}", migrate=False)
        try:
            deadline = time.monotonic() + SHADOW_WAIT
            while True:
                records = {pid: database.audit.records_for(pid) for pid in answered}
                complete = all(len(r) == 2 for r in records.values())
                if complete or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
        finally:
            database.close()
        for pid, version in answered.items():
            found = sorted((r.role, r.model, r.version) for r in records[pid])
            role = "split" if version == SPLIT_VERSION else "primary"
            assert found == sorted([(role, MODEL, version), (SHADOW, MODEL, SHADOW_VERSION)]), (pid, found)

        # (c) removing the split reaches both processes within seconds
        run_cli(env, "deployments", "remove", DEPLOYMENT, str(SPLIT_VERSION))
        removed = time.monotonic()
        seen: Counter[int] = Counter()
        while True:
            # each split key twice, on fresh connections: both processes must have dropped the split
            got = [
                post(server.base_url, k, features.iloc[0].to_dict())["model"]["version"] for k in sorted(to_split) * 2
            ]
            seen.update(got)
            if set(got) == {CHAMPION}:
                break
            assert time.monotonic() - removed < REMOVE_BOUND, f"the split still answers after {REMOVE_BOUND}s: {seen}"
        took = time.monotonic() - removed
        errors = server.errors()
    assert not errors, errors
    print(
        f"\n{len(answers)} requests, split share {share:.0%} ({len(to_split)} of {len(KEYS)} keys); "
        f"split gone from both processes {took:.2f}s after `corral deployments remove` returned ({dict(seen)})"
    )
