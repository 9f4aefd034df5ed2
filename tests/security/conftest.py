"""The attack suite's fixture: one :class:`attack_world.World` for the session (see that module)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pandas as pd
import pytest
from attack_world import COLUMNS, SECRET, TestClient, World, settings_for
from sklearn.linear_model import LogisticRegression

from corral.api.app import create_app
from corral.app import build_services
from corral.testing.auth import admin_headers


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory, cancer: pd.DataFrame) -> Iterator[World]:
    home = tmp_path_factory.mktemp("attacks") / "home"
    services = build_services(settings_for(home))
    data = cancer[[*COLUMNS, "target"]]
    model = LogisticRegression(max_iter=2000).fit(data[COLUMNS], data["target"])
    services.registry.log_model(model, name="cancer", training_data=data, target="target")
    services.registry.promote("cancer", 1)
    services.deployments.create("api", model="cancer")
    sentinel = home / "sentinel.txt"  # next to the database and the artifacts
    sentinel.write_text(SECRET)
    app = create_app(services, close_services=True)
    with TestClient(app, base_url="http://127.0.0.1", raise_server_exceptions=False) as client:
        world = World(services, client, home, sentinel, admin_headers(services))
        deadline = time.monotonic() + 30
        while client.get("/v2/models/api/ready", headers=world.admin).status_code != 200:
            assert time.monotonic() < deadline, "the deployment did not load"
            time.sleep(0.05)
        yield world
