"""Soak test: a real `corral serve` at a fixed request rate for a long time, with audit and monitoring on.

Registers a model trained on the breast-cancer data in a temporary ``CORRAL_HOME`` (SQLite), deploys it,
starts ``corral serve`` (auth on: the admin token corral writes on first start is used) and sends
``--rate`` requests a second of ``--rows`` rows each for ``--minutes`` minutes from ``--clients`` concurrent
clients (httpx, HTTP/1.1 keep-alive). Every ``--sample`` seconds it records the server's resident memory
(summed over its process group), its open file descriptors, the requests acknowledged and the errors. At the
end it stops the server and checks the prediction log against what was acknowledged: every acknowledged
prediction id must be in the log exactly once, and the hash chain must verify.

Not part of ``make test``. Progress on stderr; a markdown summary on stdout; every sample in
``bench/results/soak.json``. Run from the repository root::

    .venv/bin/python bench/soak.py [--minutes 30] [--rate 50] [--rows 4] [--clients 8] [--sample 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from benchkit import corral_commit, log, machine
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression

from corral import auth_headers
from corral.app import build_services
from corral.audit_log import verify_log
from corral.settings import Settings

RESULTS = Path(__file__).parent / "results" / "soak.json"
CORRAL = Path(sys.executable).with_name("corral")
_LISTENING = re.compile(r"Uvicorn running on http://([^:\s]+):(\d+)")


def group_pids(pgid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = (Path("/proc") / entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid:
                found.append(int(entry))
    return found


def rss_mib(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            for line in (Path("/proc") / str(pid) / "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def open_fds(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            total += len(os.listdir(f"/proc/{pid}/fd"))
        except OSError:
            continue
    return total


def prepare(home: Path) -> dict[str, Any]:
    frame = load_breast_cancer(as_frame=True).frame
    model = LogisticRegression(max_iter=5000).fit(frame.drop(columns="target"), frame["target"])
    services = build_services(Settings(home=home, user="soak"))
    try:
        services.registry.log_model(model, name="cancer", training_data=frame, target="target")
        services.registry.promote("cancer", 1)
        services.deployments.create("cancer", model="cancer")
    finally:
        services.close()
    rows = frame.drop(columns="target").to_dict(orient="records")
    return {"rows": rows}


def start(home: Path, folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")}
    env.update(CORRAL_HOME=str(home), CORRAL_USER="soak")
    env.update({k[len("SOAK_") :]: v for k, v in os.environ.items() if k.startswith("SOAK_CORRAL_")})  # experiments
    err = (folder / "stderr.log").open("wb")
    process = subprocess.Popen(
        [str(CORRAL), "serve", "--host", "127.0.0.1", "--port", "0"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=err,
        start_new_session=True,
    )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        found = _LISTENING.search((folder / "stderr.log").read_text(errors="replace"))
        if found:
            base = f"http://127.0.0.1:{found.group(2)}"
            try:
                if httpx.get(f"{base}/v2/health/ready", timeout=2).status_code == 200:
                    return process, base
            except httpx.HTTPError:
                pass
        if process.poll() is not None:
            break
        time.sleep(0.2)
    raise SystemExit(f"corral serve did not start:\n{(folder / 'stderr.log').read_text()[-3000:]}")


async def load(base: str, headers: dict[str, str], rows: list[dict[str, Any]], args: argparse.Namespace, pgid: int):
    acknowledged: list[str] = []
    errors: dict[str, int] = {}
    samples: list[dict[str, Any]] = []
    interval = args.clients / args.rate
    stop_at = time.monotonic() + args.minutes * 60
    started = time.monotonic()

    async def client(k: int, http: httpx.AsyncClient) -> None:
        i = k
        next_at = time.monotonic() + k * interval / args.clients
        while next_at < stop_at:
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            next_at += interval
            body = {"instances": [rows[(i + j) % len(rows)] for j in range(args.rows)]}
            i += args.clients
            try:
                response = await http.post(f"{base}/v1/deployments/cancer/predict", json=body, headers=headers)
            except httpx.HTTPError as exc:
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                continue
            if response.status_code == 200:
                acknowledged.extend(response.json()["prediction_ids"])
            else:
                errors[str(response.status_code)] = errors.get(str(response.status_code), 0) + 1

    async def sampler() -> None:
        while time.monotonic() < stop_at:
            pids = group_pids(pgid)
            samples.append(
                {
                    "seconds": round(time.monotonic() - started, 1),
                    "rss_mib": round(rss_mib(pids), 1),
                    "fds": open_fds(pids),
                    "acknowledged": len(acknowledged),
                    "errors": sum(errors.values()),
                }
            )
            log(f"{samples[-1]}")
            await asyncio.sleep(args.sample)

    async with httpx.AsyncClient(timeout=30) as http:
        await asyncio.gather(sampler(), *(client(k, http) for k in range(args.clients)))
    return acknowledged, errors, samples


def check_log(home: Path, acknowledged: list[str]) -> dict[str, Any]:
    services = build_services(Settings(home=home, user="soak"))
    try:
        rows = services.database.audit.count()
        found = 0
        for start in range(0, len(acknowledged), 500):
            found += len(services.database.audit.get_many(acknowledged[start : start + 500]))
        report = verify_log(services)
        return {"audit_rows": rows, "acknowledged_found": found, "chain_ok": report.ok}
    finally:
        services.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--rate", type=float, default=50.0, help="requests per second, all clients together")
    parser.add_argument("--rows", type=int, default=4, help="rows per request")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--sample", type=float, default=10.0, help="seconds between samples")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="corral-soak-") as tmp:
        home, folder = Path(tmp) / "home", Path(tmp)
        data = prepare(home)
        process, base = start(home, folder)
        log(f"serving at {base}; {args.rate:g} requests/s of {args.rows} rows for {args.minutes:g} min")
        try:
            acknowledged, errors, samples = asyncio.run(
                load(base, auth_headers(Settings(home=home)), data["rows"], args, process.pid)
            )
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            code = process.wait(timeout=60)
        checked = check_log(home, acknowledged)
    first, last = samples[1] if len(samples) > 1 else samples[0], samples[-1]
    result = {
        "machine": machine(),
        "commit": corral_commit(),
        "args": vars(args),
        "exit_code": code,
        "requests_acknowledged_rows": len(acknowledged),
        "unique_ids": len(set(acknowledged)),
        "errors": errors,
        "log": checked,
        "rss_growth_mib": round(last["rss_mib"] - first["rss_mib"], 1),
        "fd_growth": last["fds"] - first["fds"],
        "samples": samples,
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))
    print(f"Soak: {args.minutes:g} min at {args.rate:g} req/s x {args.rows} rows, server exit code {code}\n")
    print("| measure | value |\n|---|---:|")
    print(f"| rows acknowledged (prediction ids) | {len(acknowledged):,} |")
    print(f"| of them in the audit log | {checked['acknowledged_found']:,} |")
    print(f"| audit rows in all | {checked['audit_rows']:,} |")
    print(f"| hash chain verifies | {checked['chain_ok']} |")
    print(f"| errors | {sum(errors.values())} {errors or ''} |")
    print(f"| RSS first sample -> last (MiB) | {first['rss_mib']} -> {last['rss_mib']} |")
    print(f"| open fds first -> last | {first['fds']} -> {last['fds']} |")
    ok = checked["acknowledged_found"] == len(set(acknowledged)) == len(acknowledged) and checked["chain_ok"]
    return 0 if ok and code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
