"""PyTorch runtime benchmark: a served MLP's batched throughput and latency, on the CPU or a GPU.

One MLP (``--features`` inputs, ``--layers`` hidden layers of ``--hidden`` units, two logits) is trained for a
few steps on synthetic ``make_classification`` rows (seeded), exported with ``torch.export`` and a dynamic
batch dimension (``--format torchscript`` scripts it instead), registered in a temporary ``CORRAL_HOME``
with ``options={"device": --device}``, deployed, and served in this process by ``ModelServer`` with
adaptive batching on and no prediction sinks (no audit log, no monitoring: this measures the model path).
For each ``--batch`` size B, after a warm-up:

* **model**: the loaded runtime's ``predict`` on B rows, call after call for ``--seconds``: rows/s and the
  p50 of one call (frame to float32 tensor on the device, the network, probabilities back on the CPU);
* **served**: ``--clients`` concurrent clients each send B-row requests to ``server.predict`` back to back for
  ``--seconds`` (batching ``max_batch_size`` = B x clients, so queued requests coalesce): rows/s, p50 and
  p99 of a request, and the median rows per model call.

The loaded model's probabilities are checked against the network run directly before anything is timed.
A markdown table goes to stdout, progress to stderr, every number to ``bench/results/torch_device.json``.
Run from the repository root (``make install-dev`` installs torch; a CUDA build of torch 2.13.0 is needed
for ``--device cuda``)::

    .venv/bin/python bench/torch_device.py [--device cpu|cuda] [--batch 1,8,64,256,1024] [--seconds 3]
        [--clients 4] [--features 64] [--hidden 1024] [--layers 3] [--format export|torchscript]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from benchkit import corral_commit, log, machine
from scipy.special import softmax
from sklearn.datasets import make_classification
from torch import nn

from corral.app import build_services
from corral.serving.entities import BatchingPolicy
from corral.serving.server import ModelServer
from corral.settings import Settings

RESULTS = Path(__file__).parent / "results" / "torch_device.json"


def build_model(args: argparse.Namespace) -> tuple[nn.Module, pd.DataFrame]:
    """The MLP, trained briefly (seeded), and its training frame (features plus ``target``)."""
    x, y = make_classification(
        n_samples=4096, n_features=args.features, n_informative=min(16, args.features), random_state=0
    )
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(args.features)]).assign(target=y)
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    width = args.features
    for _ in range(args.layers):
        layers += [nn.Linear(width, args.hidden), nn.ReLU()]
        width = args.hidden
    net = nn.Sequential(*layers, nn.Linear(width, 2))
    inputs, labels = torch.tensor(x, dtype=torch.float32), torch.tensor(y)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    for _ in range(20):
        optimizer.zero_grad()
        nn.functional.cross_entropy(net(inputs), labels).backward()
        optimizer.step()
    return net.eval(), frame


def as_program(net: nn.Module, frame: pd.DataFrame, fmt: str) -> Any:
    if fmt == "torchscript":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript is deprecated in torch 2.13
            return torch.jit.script(net)
    example = torch.tensor(frame.drop(columns="target").head(8).to_numpy(), dtype=torch.float32)
    return torch.export.export(net, (example,), dynamic_shapes=({0: torch.export.Dim("batch")},))


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def time_model(runtime: Any, rows: pd.DataFrame, seconds: float) -> dict[str, float]:
    for _ in range(5):
        runtime.predict(rows)
    calls: list[float] = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end or len(calls) < 3:
        start = time.perf_counter()
        runtime.predict(rows)
        calls.append(time.perf_counter() - start)
    return {"rows_per_s": len(rows) * len(calls) / sum(calls), "p50_ms": percentile(calls, 50) * 1e3}


async def time_served(server: ModelServer, rows: pd.DataFrame, clients: int, seconds: float) -> dict[str, float]:
    latencies: list[float] = []
    batch_rows: list[int] = []

    async def client() -> None:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            start = time.perf_counter()
            result = await server.predict("bench", rows)
            latencies.append(time.perf_counter() - start)
            batch_rows.append(result.batch_size)

    await asyncio.gather(*(server.predict("bench", rows) for _ in range(clients * 2)))  # warm-up
    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    elapsed = time.perf_counter() - started
    return {
        "rows_per_s": len(rows) * len(latencies) / elapsed,
        "p50_ms": percentile(latencies, 50) * 1e3,
        "p99_ms": percentile(latencies, 99) * 1e3,
        "rows_per_call": float(statistics.median(batch_rows)),
        "requests": len(latencies),
    }


async def serve_and_measure(services: Any, frame: pd.DataFrame, args: argparse.Namespace) -> list[dict[str, Any]]:
    features = frame.drop(columns="target")
    results = []
    for size in args.batch:
        policy = BatchingPolicy(enabled=True, max_batch_size=size * args.clients, max_wait_ms=1.0)
        services.deployments.create("bench", model="mlp", batching=policy)
        server = ModelServer(services.deployments.store, services.registry, refresh_seconds=3600)
        await server.start()
        try:
            rows = features.sample(size, replace=size > len(features), random_state=size)
            runtime = services.registry.load("mlp@champion").runtime
            log(f"batch {size}: model")
            model = await asyncio.to_thread(time_model, runtime, rows, args.seconds)
            log(f"batch {size}: served, {args.clients} clients")
            served = await time_served(server, rows, args.clients, args.seconds)
        finally:
            await server.stop()
            services.deployments.delete("bench")
        results.append({"batch": size, "model": model, "served": served})
    return results


def check(services: Any, net: nn.Module, frame: pd.DataFrame, device: str) -> None:
    features = frame.drop(columns="target").head(256)
    loaded = services.registry.load("mlp@champion")
    with torch.inference_mode():
        expected = softmax(net(torch.tensor(features.to_numpy(), dtype=torch.float32)).double().numpy(), axis=1)
    got = loaded.predict_proba(features)
    tolerance = 1e-6 if device == "cpu" else 1e-3  # GPU kernels (TF32 matmuls) round differently
    if not np.allclose(got, expected, rtol=0, atol=tolerance):
        raise AssertionError(f"served probabilities differ from the network's by {np.abs(got - expected).max():.2e}")


def table(results: list[dict[str, Any]], args: argparse.Namespace, device_name: str) -> str:
    lines = [
        f"PyTorch runtime, {args.format} MLP {args.features}x{args.hidden}x{args.layers} on **{device_name}** "
        f"(torch {torch.__version__}, {torch.get_num_threads()} CPU threads), {args.clients} clients, "
        f"{args.seconds:g} s per measurement",
        "",
        "| batch | model rows/s | model p50 ms | served rows/s | served p50 ms | served p99 ms | rows per call |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        m, s = r["model"], r["served"]
        lines.append(
            f"| {r['batch']} | {m['rows_per_s']:,.0f} | {m['p50_ms']:.2f} | {s['rows_per_s']:,.0f} "
            f"| {s['p50_ms']:.2f} | {s['p99_ms']:.2f} | {s['rows_per_call']:.0f} |"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--batch", type=lambda s: [int(v) for v in s.split(",")], default=[1, 8, 64, 256, 1024])
    parser.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients of the served measurement")
    parser.add_argument("--features", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--format", choices=["export", "torchscript"], default="export")
    parser.add_argument("--output", type=Path, default=RESULTS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        log(f"--device cuda: no GPU is visible to this torch ({torch.__version__}, CUDA {torch.version.cuda})")
        return 2
    device_name = torch.cuda.get_device_name(0) if args.device == "cuda" else f"CPU ({machine()['cpu']})"
    with tempfile.TemporaryDirectory(prefix="corral-torch-bench-") as tmp:
        home = Path(tmp)
        os.environ["CORRAL_HOME"] = str(home)
        settings = Settings(
            home=home,
            database_url=f"sqlite:///{home / 'corral.db'}",
            artifacts_url=str(home / "artifacts"),
            user="bench",
        )
        services = build_services(settings)
        log("training and registering the MLP")
        net, frame = build_model(args)
        services.registry.log_model(
            as_program(net, frame, args.format),
            name="mlp",
            training_data=frame,
            target="target",
            options={"device": args.device},
        )
        services.registry.promote("mlp", 1)
        check(services, net, frame, args.device)
        results = asyncio.run(serve_and_measure(services, frame, args))
    print(table(results, args, device_name))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "machine": machine(),
        "commit": corral_commit(),
        "device": device_name,
        "torch": torch.__version__,
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "results": results,
    }
    args.output.write_text(json.dumps(record, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
