"""The alert loop: evaluates every deployment on the window lengths its rules use, survives failures."""

from __future__ import annotations

import asyncio
import logging

import pytest

from corral.alerts.channels import LogChannel
from corral.alerts.entities import Rule
from corral.alerts.loop import AlertLoop
from corral.alerts.service import Alerts
from corral.core.readings import Reading
from corral.storage.memory import MemoryAlertStore


def read(name: str, window: int) -> dict[str, Reading]:
    if name == "broken":
        raise RuntimeError("store unreachable")
    return {"drifted_share": Reading(0.9, 1000), "rows": Reading(float(window), 1000)}


def test_evaluate_all_covers_every_deployment_and_window_and_skips_failures(caplog: pytest.LogCaptureFixture) -> None:
    alerts = Alerts(MemoryAlertStore(), {"log": LogChannel()})
    alerts.set_rule(Rule("b", "daily", "rows", ">", 80000, window=86400, min_samples=1))
    alerts.set_rule(Rule("b", "weekly", "rows", ">", 0, window=604800, min_samples=1))  # no such window kept
    loop = AlertLoop(alerts, lambda: ["a", "broken", "b"], read, windows=(3600, 86400))
    with caplog.at_level(logging.ERROR, logger="corral.alerts"):
        changes = loop.evaluate_all()
    assert sorted((c.rule, c.action) for c in changes) == [
        ("daily", "opened"),
        ("dataset-drift", "opened"),
        ("dataset-drift", "opened"),
    ]
    assert "evaluating broken over 3600 s failed" in caplog.text
    assert {a.deployment for a in alerts.list_alerts(state="firing")} == {"a", "b"}


def test_the_loop_evaluates_and_delivers_in_the_background(caplog: pytest.LogCaptureFixture) -> None:
    alerts = Alerts(MemoryAlertStore(), {"log": LogChannel()})
    loop = AlertLoop(alerts, lambda: ["a"], read, windows=(3600,), evaluate_seconds=0.05, dispatch_seconds=0.05)

    async def scenario() -> None:
        await loop.start()
        for _ in range(100):
            await asyncio.sleep(0.05)
            if alerts.store.list_deliveries() and alerts.store.list_deliveries()[0].status == "delivered":
                break
        await loop.stop()

    with caplog.at_level(logging.INFO, logger="corral.alerts"):
        asyncio.run(asyncio.wait_for(scenario(), 30))
    [delivery] = alerts.store.list_deliveries()
    assert delivery.status == "delivered" and delivery.channel == "log"
    assert "alert firing" in caplog.text
