"""Isolation benchmark: what a worker process costs per request, against the same model in process.

One scikit-learn model (a random forest, or ``--model logistic``) is trained on the breast-cancer data,
registered in a temporary ``CORRAL_HOME`` and deployed twice in one ``ModelServer``: ``local``
(``isolation=in_process``) and ``iso`` (``isolation=isolated``: its own environment, built from the
version's recorded requirements with uv and cached, and a worker process answering over a Unix socket
with numpy buffers). No prediction sinks: this measures the model path, request to answer.

Scenarios, each timed for ``--seconds`` after a warm-up, repeated ``--repeats`` times (medians reported):

* **c=1, R rows**: one client, requests back to back (``--rows``, default 1 and 64): p50 and p99 latency;
* **c=8, 1 row**: eight concurrent clients with batching on: throughput and p50.

The answers of both deployments are checked equal before anything is timed. A markdown table goes to stdout,
every number to ``bench/results/isolation.json``. Run from the repository root::

    .venv/bin/python bench/isolation.py [--seconds 3] [--repeats 3] [--rows 1,64] [--model forest|logistic]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from benchkit import corral_commit, log, machine
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression

from corral.app import build_server, build_services
from corral.serving.entities import ExecutionPolicy
from corral.settings import Settings

RESULTS = Path(__file__).parent / "results" / "isolation.json"


async def timed(server: Any, name: str, frames: list[pd.DataFrame], seconds: float, clients: int) -> dict[str, Any]:
    latencies: list[float] = []
    rows = 0
    deadline = time.perf_counter() + seconds

    async def client(k: int) -> None:
        nonlocal rows
        i = k
        while time.perf_counter() < deadline:
            frame = frames[i % len(frames)]
            started = time.perf_counter()
            await server.predict(name, frame)
            latencies.append(time.perf_counter() - started)
            rows += len(frame)
            i += clients

    began = time.perf_counter()
    await asyncio.gather(*(client(k) for k in range(clients)))
    elapsed = time.perf_counter() - began
    ordered = sorted(latencies)
    return {
        "requests_per_s": len(latencies) / elapsed,
        "rows_per_s": rows / elapsed,
        "p50_ms": 1000 * ordered[len(ordered) // 2],
        "p99_ms": 1000 * ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
    }


async def bench(args: argparse.Namespace, home: Path) -> dict[str, Any]:
    frame = load_breast_cancer(as_frame=True).frame
    features = frame.drop(columns="target")
    model: Any = (
        RandomForestClassifier(n_estimators=100, max_depth=8, random_state=0)
        if args.model == "forest"
        else LogisticRegression(max_iter=5000)
    )
    model.fit(features, frame["target"])
    settings = Settings(home=home, user="bench")
    services = build_services(settings)
    services.registry.log_model(model, name="cancer", training_data=frame, target="target")
    services.registry.promote("cancer", 1)
    services.deployments.create("local", model="cancer", execution=ExecutionPolicy(isolation="in_process"))
    services.deployments.create("iso", model="cancer", execution=ExecutionPolicy(isolation="isolated"))
    started = time.perf_counter()
    server = build_server(services)
    await server.start()
    log(f"both deployments loaded in {time.perf_counter() - started:.1f} s (the environment is cached after once)")
    try:
        probe = features.iloc[:64]
        local = await server.predict("local", probe)
        iso = await server.predict("iso", probe)
        assert np.array_equal(local.prediction.values, iso.prediction.values)
        assert np.allclose(local.prediction.probabilities, iso.prediction.probabilities)  # type: ignore[arg-type]
        scenarios: list[tuple[str, int, int]] = [(f"c=1, {r} rows", r, 1) for r in args.rows]
        scenarios.append(("c=8, 1 row", 1, 8))
        samples: dict[str, dict[str, list[dict[str, Any]]]] = {}
        for label, rows, clients in scenarios:
            frames = [features.iloc[i : i + rows].reset_index(drop=True) for i in range(0, 400, 7)]
            for name in ("local", "iso"):
                await timed(server, name, frames, min(1.0, args.seconds), clients)  # warm-up
            for _ in range(args.repeats):
                for name in ("local", "iso"):  # interleaved, so machine noise hits both alike
                    result = await timed(server, name, frames, args.seconds, clients)
                    samples.setdefault(label, {}).setdefault(name, []).append(result)
                    log(f"{label:>14} {name:>5}: {result}")
        return samples
    finally:
        await server.stop()
        services.close()


def medians(samples: dict[str, dict[str, list[dict[str, Any]]]]) -> dict[str, dict[str, dict[str, float]]]:
    return {
        label: {name: {k: statistics.median(r[k] for r in runs) for k in runs[0]} for name, runs in by_name.items()}
        for label, by_name in samples.items()
    }


def markdown(table: dict[str, dict[str, dict[str, float]]]) -> str:
    lines = [
        "| scenario | in process p50 ms | isolated p50 ms | added p50 ms | in process p99 ms | isolated p99 ms "
        "| in process req/s | isolated req/s | isolated/in process req/s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, by_name in table.items():
        local, iso = by_name["local"], by_name["iso"]
        lines.append(
            f"| {label} | {local['p50_ms']:.2f} | {iso['p50_ms']:.2f} | {iso['p50_ms'] - local['p50_ms']:+.2f} "
            f"| {local['p99_ms']:.2f} | {iso['p99_ms']:.2f} | {local['requests_per_s']:,.0f} "
            f"| {iso['requests_per_s']:,.0f} | {iso['requests_per_s'] / local['requests_per_s']:.2f} |"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="length of one timed run")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per scenario and deployment")
    parser.add_argument("--rows", default="1,64", help="rows per request for the one-client scenarios")
    parser.add_argument("--model", choices=["forest", "logistic"], default="forest")
    args = parser.parse_args(argv)
    args.rows = [int(r) for r in str(args.rows).split(",") if r]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="corral-bench-isolation-") as tmp:
        samples = asyncio.run(bench(args, Path(tmp)))
    table = medians(samples)
    result = {
        "machine": machine(),
        "commit": corral_commit(),
        "args": vars(args),
        "medians": table,
        "samples": samples,
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))
    print(f"Isolated worker against in process, {args.model}, medians of {args.repeats} x {args.seconds:g} s\n")
    print(markdown(table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
