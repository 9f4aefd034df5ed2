from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

import corral
from corral.alerts.entities import Rule
from corral.app import Services, build_audit, build_monitoring, build_server, build_services, deployment_readings
from corral.cli import main as cli_main
from corral.cli.main import main
from corral.cli.report import report as report_command
from corral.errors import AliasNotFoundError, ModelNotFoundError, VersionNotFoundError
from corral.model_report import bars, build_report, equal_width, render_html, render_markdown, sparkline
from corral.settings import Settings
from corral.testing.auth import admin_headers

COLUMNS = ["mean radius", "mean texture"]
DESCRIPTION = "Screens <script>alert('x')</script> biopsies & flags | pipes\nsecond line"
NOW = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)


def serve(services: Services, frame: pd.DataFrame, chunk: int = 50) -> None:
    """Answer ``frame`` through the real model server, with the audit log and monitoring windows behind it."""
    audit, monitoring = build_audit(services), build_monitoring(services)
    assert audit is not None and monitoring is not None
    server = build_server(services, sinks=[audit, monitoring])

    async def scenario() -> None:
        await monitoring.start()
        await server.start()
        try:
            for start in range(0, len(frame), chunk):
                await server.predict("api", frame.iloc[start : start + chunk])
        finally:
            await server.stop()
            await monitoring.stop()
            await audit.stop()

    asyncio.run(asyncio.wait_for(scenario(), 60))


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, cancer: pd.DataFrame) -> Path:
    """Two registered versions (1 champion again after a rollback), a deployment that served 200 shifted rows
    of version 1, a second deployment following another alias, and a firing alert."""
    path = tmp_path_factory.mktemp("report") / "home"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CORRAL_HOME", str(path))
        services = build_services(Settings())
        try:
            data = cancer[[*COLUMNS, "target"]]
            model = LogisticRegression(max_iter=1000).fit(data[COLUMNS], data["target"])
            services.registry.log_model(
                model,
                name="cancer",
                training_data=data,
                target="target",
                metrics={"accuracy": 0.9, "f1": 0.91},
                params={"max_iter": 1000},
                tags={"team": "risk"},
                description=DESCRIPTION,
                source="file:///data/cancer.csv",
            )
            services.registry.promote("cancer", 1, reason="first <b>cut</b>", actor="ana")
            other = LogisticRegression(max_iter=1000, C=0.1).fit(data[COLUMNS], data["target"])
            services.registry.log_model(other, name="cancer", training_data=data, target="target")
            services.registry.promote("cancer", 2, reason="try v2", actor="bo")
            services.registry.rollback("cancer", reason="v2 worse", actor="cy")
            services.deployments.create("api", model="cancer")
            services.deployments.create("shadow", model="cancer", alias="challenger")
            shifted = data[COLUMNS].head(200).assign(**{"mean texture": data["mean texture"].head(200) + 8})
            serve(services, shifted)
            services.alerts.set_rule(
                Rule(deployment="api", name="busy", metric="rows", op=">", threshold=0, window=86400, min_samples=1)
            )
            services.alerts.evaluate("api", deployment_readings(services, "api", 86400), window=86400)
        finally:
            services.close()
    return path


@pytest.fixture
def services(home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Services]:
    monkeypatch.setenv("CORRAL_HOME", str(home))
    built = build_services(Settings())
    yield built
    built.close()


@pytest.fixture
def facts(services: Services) -> dict[str, Any]:
    return build_report(services, "cancer", "champion", now=NOW)


class StrictParser(HTMLParser):
    """Records tags that close out of order or never close (void elements aside), and external references."""

    VOID = frozenset({"meta", "br", "hr", "img", "input", "link", "col", "area", "base", "source", "wbr"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.problems: list[str] = []
        self.tags: set[str] = set()
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        for name, value in attrs:
            if name in ("src", "href") or (value and "://" in value):
                self.problems.append(f"<{tag} {name}={value!r}>")
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.problems.append(f"</{tag}> while open: {self.stack[-3:]}")
            return
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(page: str) -> StrictParser:
    parser = StrictParser()
    parser.feed(page)
    parser.close()
    return parser


def test_report_gathers_every_section_from_the_services(services: Services, facts: dict[str, Any]) -> None:
    record = services.registry.get_version("cancer", 1)
    assert facts["generated_at"] == NOW.isoformat() and facts["corral_version"] == corral.__version__
    assert facts["requested"] == "champion"
    identity = facts["identity"]
    assert (identity["model"], identity["version"], identity["flavor"]) == ("cancer", 1, "sklearn")
    assert identity["artifact"] == {"sha256": record.artifact_sha256, "size": record.artifact_size}
    assert identity["description"] == DESCRIPTION and identity["tags"] == {"team": "risk"}
    assert identity["aliases"] == ["champion"] and identity["status"] == "ready"

    lineage = facts["lineage"]
    assert lineage["metrics"] == {"accuracy": 0.9, "f1": 0.91} and lineage["params"] == {"max_iter": 1000}
    assert lineage["data"]["rows"] == 569 and lineage["data"]["columns"] == 3
    assert lineage["data"]["sha256"] == record.lineage.data.sha256  # type: ignore[union-attr]
    assert lineage["data"]["source"] == "file:///data/cancer.csv"
    assert "scikit-learn" in lineage["requirements"] and lineage["python"]

    inputs = {s["name"]: s for s in facts["signature"]["inputs"]}
    assert set(inputs) == set(COLUMNS) and inputs["mean radius"]["kind"] == "numerical"
    assert facts["signature"]["outputs"]["task"] == "classification"
    assert facts["signature"]["outputs"]["classes"] == [0, 1]

    profile = services.registry.get_profile("cancer", 1)
    assert profile is not None and facts["profile"]["rows"] == profile.rows
    for feature in facts["profile"]["features"]:
        expected = profile.features[feature["name"]]
        assert feature["count"] == expected.count and feature["missing_rate"] == expected.missing_rate
        assert (feature["min"], feature["max"], feature["mean"], feature["std"]) == (
            expected.min,
            expected.max,
            expected.mean,
            expected.std,
        )
        assert feature["bin_counts"] == list(expected.bin_counts)
    assert facts["profile"]["outputs"]  # the model's labels on the training data

    moves = [(e["action"], e["from_version"], e["to_version"], e["actor"], e["reason"]) for e in facts["alias_history"]]
    assert moves == [
        ("set", None, 1, "ana", "first <b>cut</b>"),
        ("set", 1, 2, "bo", "try v2"),
        ("rollback", 2, 1, "cy", "v2 worse"),
    ]

    serving = facts["serving"]
    assert serving["window_seconds"] == 86400
    assert serving["predictions"] == {"version": 200, "model": 200}
    deployments = {d["name"]: d for d in serving["deployments"]}
    assert deployments["api"]["serves_this_version"] and deployments["api"]["rows"] == 200
    assert deployments["api"]["days"] == [{"date": datetime.now(UTC).date().isoformat(), "rows": 200}]
    assert not deployments["shadow"]["serves_this_version"] and deployments["shadow"]["rows"] == 0

    [live] = facts["live"]
    assert live["deployment"] == "api" and live["window"]["rows"] == 200
    assert "mean texture" in live["drifted_features"] and "mean radius" not in live["drifted_features"]
    assert {f["name"] for f in live["features"]} == set(COLUMNS)
    assert live["performance"]["rows"] == 200 and "accuracy" in live["performance"]["estimated"]
    assert live["performance"]["registered"]["accuracy"] == 0.9
    firing = services.alerts.list_alerts(deployment="api", state="firing")
    assert [a["rule"] for a in live["alerts"]] == [a.rule for a in firing] and "busy" in [a.rule for a in firing]
    json.dumps(facts)  # JSON-able as is


def test_report_by_number_and_of_a_version_nobody_serves(services: Services) -> None:
    facts = build_report(services, "cancer", "v2")
    assert facts["identity"]["version"] == 2 and facts["identity"]["aliases"] == []
    assert facts["identity"]["description"] == "" and facts["lineage"]["metrics"] == {}
    assert [e["to_version"] for e in facts["alias_history"]] == [2, 1]
    assert facts["live"] == [] and facts["serving"]["predictions"] == {"version": 0, "model": 200}
    assert build_report(services, "cancer", 1)["identity"]["version"] == 1
    assert build_report(services, "cancer", "@latest")["identity"]["version"] == 2
    page = render_html(facts)
    assert "no deployment serves this version now" in page and not parse(page).problems
    assert "no deployment serves this version now" in render_markdown(facts)


def test_unknown_models_versions_and_aliases_are_refused(services: Services) -> None:
    with pytest.raises(VersionNotFoundError, match="model 'cancer' has no version 9"):
        build_report(services, "cancer", "9")
    with pytest.raises(ModelNotFoundError, match="no model named 'ghost'"):
        build_report(services, "ghost", "1")
    with pytest.raises(AliasNotFoundError, match="no alias 'staging'"):
        build_report(services, "cancer", "staging")


def test_html_is_self_contained_well_formed_and_escaped(facts: dict[str, Any]) -> None:
    page = render_html(facts)
    assert page.startswith("<!DOCTYPE html>")
    parser = parse(page)
    assert parser.problems == [] and parser.stack == []
    assert "script" not in parser.tags and "link" not in parser.tags and "img" not in parser.tags
    assert "<script" not in page and "https://" not in page and "http://" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page  # the description, as text
    assert "first &lt;b&gt;cut&lt;/b&gt;" in page and "<b>cut</b>" not in page
    text = "".join(parser.text)
    assert DESCRIPTION.splitlines()[0] in text  # a browser shows what the user wrote
    for section in ("identity", "lineage", "signature", "profile", "aliases", "serving", "live"):
        assert f'<section id="{section}">' in page
    for heading in ("Identity", "Lineage", "Signature", "Training data profile", "Alias history"):
        assert f"<h2>{heading}</h2>" in page
    assert "<h2>Serving history</h2>" in page and "<h2>Live metrics and drift</h2>" in page
    identity, feature = facts["identity"], facts["profile"]["features"][0]
    assert identity["artifact"]["sha256"] in page and facts["lineage"]["data"]["sha256"] in page
    assert f"{feature['mean']:.4g}" in page and f"{feature['std']:.4g}" in page
    assert page.count("<svg") == len(facts["profile"]["features"]) + len(facts["profile"]["outputs"])
    assert f"Firing alerts ({len(facts['live'][0]['alerts'])})" in page and "busy" in page and "mean texture" in page
    assert "Predictions in the audit log: <b>200</b>" in page


def test_markdown_has_every_heading_and_escapes(facts: dict[str, Any]) -> None:
    text = render_markdown(facts)
    for heading in (
        "# Model report: cancer/1",
        "## Identity",
        "## Lineage",
        "### Metrics at registration",
        "## Signature",
        "## Training data profile",
        "## Alias history",
        "## Serving history",
        "## Live metrics and drift",
        "### Deployment api",
    ):
        assert f"\n{heading}\n" in f"\n{text}"
    assert "<script>" not in text and "&lt;script&gt;" in text
    assert "flags \\| pipes" in text and "> second line" in text
    assert "| accuracy | 0.9 |" in text and f"**Firing alerts ({len(facts['live'][0]['alerts'])})**" in text
    assert "| cy | v2 worse |" in text
    rows = [line for line in text.splitlines() if line.startswith("| mean radius |")]
    assert rows and all(line.count(" | ") == rows[0].count(" | ") for line in rows[:1])


def test_histograms_rebin_quantile_bins_onto_equal_widths() -> None:
    lo, hi, cells = equal_width([0.0, 1.0, 2.0, 10.0], [10, 10, 10], cells=5)
    assert (lo, hi) == (0.0, 10.0) and cells.sum() == pytest.approx(30)
    assert cells.tolist() == pytest.approx([20, 2.5, 2.5, 2.5, 2.5])
    assert equal_width([3.0, 3.0], [7])[2].tolist() == [7]
    numbers = {"kind": "numerical", "bin_edges": [0.0, 1.0, 2.0], "bin_counts": [3, 1]}
    labels, counts = bars(numbers)
    assert len(labels) == len(counts) == 20 and counts.sum() == pytest.approx(4)
    categories = {"kind": "categorical", "categories": {f"c{i}": 20 - i for i in range(12)}, "other": 5}
    labels, counts = bars(categories)
    assert labels[0] == "c0" and labels[-1] == "(other)" and counts[-1] == 10 + 9 + 5
    assert sparkline(np.asarray([0.0, 1.0, 2.0])) == "▁▅█" and sparkline(np.zeros(0)) == ""


def test_cli_writes_each_format_and_refuses_unknown_versions(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CORRAL_HOME", str(home))
    if not any(c.name == "report" for c in cli_main.app.registered_commands):  # until main.py registers it
        monkeypatch.setattr(cli_main.app, "registered_commands", list(cli_main.app.registered_commands))
        cli_main.app.command("report")(report_command)
    monkeypatch.chdir(tmp_path)

    assert main(["report", "cancer", "champion"]) == 0
    written = Path(capsys.readouterr().out.strip())
    assert written == Path("cancer-1.html") and not parse(written.read_text(encoding="utf-8")).problems

    assert main(["report", "cancer", "2", "--format", "md", "--out", str(tmp_path / "out")]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "out")
    assert (tmp_path / "out").read_text(encoding="utf-8").startswith("# Model report: cancer/2")

    (tmp_path / "reports").mkdir()
    assert main(["report", "cancer", "1", "-f", "json", "-o", str(tmp_path / "reports")]) == 0
    path = tmp_path / "reports" / "cancer-1.json"
    assert capsys.readouterr().out.strip() == str(path)
    assert json.loads(path.read_text(encoding="utf-8"))["serving"]["predictions"]["version"] == 200

    assert main(["report", "cancer", "9"]) == 1
    assert "model 'cancer' has no version 9" in capsys.readouterr().err
    assert main(["report", "ghost", "1"]) == 1
    assert "no model named 'ghost'" in capsys.readouterr().err
    assert main(["report", "cancer", "1", "--format", "pdf"]) == 2
    assert main(["report", "cancer", "1", "-o", str(tmp_path / "missing" / "x.html")]) == 1
    assert "cannot write it" in capsys.readouterr().err
    assert not (tmp_path / "cancer-9.html").exists()


def test_the_report_over_http(services: Services) -> None:
    import asyncio

    import httpx

    from corral.api.app import create_app

    app = create_app(services)

    async def main() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://localhost", headers=admin_headers(services)) as c,
        ):
            return [
                await c.get("/v1/models/cancer/versions/1/report"),
                await c.get("/v1/models/cancer/versions/champion/report?format=html"),
                await c.get("/v1/models/cancer/versions/1/report?format=md"),
                await c.get("/v1/models/cancer/versions/9/report"),
                await c.get("/v1/models/cancer/versions/1/report?format=pdf"),
            ]

    facts, page, markdown, missing, bad = asyncio.run(asyncio.wait_for(main(), 60))
    assert facts.status_code == 200 and facts.json()["identity"]["version"] == 1
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html") and "<html" in page.text
    assert markdown.status_code == 200 and markdown.text.startswith("#")
    assert missing.status_code == 404 and bad.status_code == 400
