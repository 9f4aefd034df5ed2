"""Serving benchmark: corral's model server against MLServer, side by side in one run.

One model, trained once: ``HistGradientBoostingClassifier`` on ``make_classification`` (10,000 rows x 20
features). It is saved for MLServer's scikit-learn runtime (joblib + ``model-settings.json``) and registered,
promoted and deployed in corral. Every server is started, then all of them are loaded with **wrk** in turn
(same generator, same machine, same run, the order rotated from round to round) on:

* a single-row request at concurrency 1 (p50/p99 latency);
* single-row requests at concurrency 8 and 32 (throughput, p50/p99);
* a 100-row request at concurrency 1 (p50/p99);

and the in-process floor is timed first: ``predict_proba`` on 1, 100 and 1,000 rows (ndarray and DataFrame).

Servers (``--only`` picks one side):

* ``mlserver-default``: MLServer 1.7 (``bench/.venv-mlserver``, made by ``bench/setup-mlserver.sh`` when
  missing) with its defaults: one inference worker process (``parallel_workers=1``), no adaptive batching;
* ``mlserver-batching``: the same with adaptive batching (``max_batch_size`` / ``max_batch_time``);
* ``corral``: ``corral serve`` with a deployment of ``hgb@champion`` (V2 endpoint, the same request body), its
  batching set to MLServer's figures, and the prediction (audit) log on in ``sync`` mode, corral's default
  (``CORRAL_AUDIT__ENABLED=true``, ``CORRAL_AUDIT__MODE=sync``, set explicitly): every answered row is committed
  to the hash-chained log (SQLite, ``synchronous=FULL``, group commit) before its response goes out;
  ``corral-v1`` is the same server on its plain JSON endpoint, ``corral-nobatch`` a second deployment without
  batching, and ``corral-2w`` a second ``corral serve --workers 2`` (``--workers-variant``), audit as ``corral``;
* the audit variants (``--audit-variants``, on by default): ``corral-audit-async``, a separate ``corral serve``
  with ``CORRAL_AUDIT__MODE=async`` (rows committed in the background, after the response), and
  ``corral-no-audit``, one with ``CORRAL_AUDIT__ENABLED=false``; the same home, deployment and request as
  ``corral``, so sync vs async vs off is the cost of the audit log. Before the load, one request to each is
  followed by ``GET /v1/predictions/{id}``: the sync server's row must be in the log at once, the async one's
  within a few seconds, and the unaudited one's never;
* ``corral-2shadows`` (``--shadow-variant``, on by default): the same server as ``corral``, a second deployment
  ``hgb-2shadows`` of the same champion (same batching) with two shadow members, registered in the setup:
  ``hgb`` version 2 (the same ``HistGradientBoostingClassifier`` retrained with seed 1 on a bootstrap resample
  of the training rows) and ``hgb-lr`` version 1 (``StandardScaler`` + ``LogisticRegression``). Each shadow
  gets a copy of every answered request off the response path (a bounded queue per shadow; full queues drop
  copies) and records its output in the audit log. After each wrk run on it the script waits until the
  shadows' records stop arriving (so their backlog does not run into the next measurement) and counts, from
  the audit log, how many of the run's answered requests each shadow scored (its coverage). Versus ``corral``
  this is the cost of two shadows (the issue's goal: p50 at c=1 and req/s at c=32 within 10 %).

All corral variants run at c=1 and c=32 only; the audit variants also take the 100-row request at c=1 (a
request's rows are each one record in the log).

Requests use the Open Inference Protocol V2 tabular convention (one FP64 input per feature column); MLServer
is told so by ``"content_type": "pd"`` in its model settings and answers ``predict_proba``. Every response
must be HTTP 200 (counted by ``bench/wrk/post.lua``; a sync audit commit that fails answers 503, so it would
count here); one request per server is checked against the
in-process probabilities before the load starts. Each server gets ``OMP_NUM_THREADS=--omp-threads`` (1).

Medians over ``--rounds`` (5; ``--quick``: 1) of ``--duration`` seconds (3) per measurement
are printed as a markdown table with the corral/MLServer ratios, and written with every sample to
``bench/results/serving.json``. Progress goes to stderr. Run from the repository root::

    .venv/bin/python bench/serving.py [--quick] [--only mlserver|corral] [--rounds N] [--duration S]
                                      [--no-audit-variants] [--workers-variant N] [--no-v1]
                                      [--no-shadow-variant]
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import hashlib
import json
import math
import os
import platform
import resource
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
from benchkit import corral_commit, log, machine
from sklearn.datasets import make_classification
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_info, threadpool_limits

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results" / "serving.json"
WRK_SCRIPT = BENCH / "wrk" / "post.lua"
MLSERVER_VENV = BENCH / ".venv-mlserver"
MLSERVER_SETUP = BENCH / "setup-mlserver.sh"
CORRAL_BIN = ROOT / ".venv" / "bin" / "corral"
MODEL = "hgb"
FEATURES = [f"f{i}" for i in range(20)]
BATCH_ROWS = 100
# adaptive batching, the same for MLServer and (where offered) corral
MAX_BATCH_SIZE = 64
MAX_BATCH_MS = 1.0
READY_TIMEOUT_S = 120.0
# the shadow variant: a second deployment of the champion with two shadows (hgb version 2 and SHADOW_LR version 1)
SHADOW_DEPLOYMENT = f"{MODEL}-2shadows"
SHADOW_LR = f"{MODEL}-lr"
SHADOW_SETTLE_S = 15.0  # longest wait, after a wrk run, for the shadows' queued copies to be scored and recorded
# the prediction (audit) log of each corral server: corral's default (sync) and the two variants
AUDIT_SYNC = {"CORRAL_AUDIT__ENABLED": "true", "CORRAL_AUDIT__MODE": "sync"}
AUDIT_VARIANTS = {
    "corral-audit-async": ("corral, audit async", {"CORRAL_AUDIT__ENABLED": "true", "CORRAL_AUDIT__MODE": "async"}),
    "corral-no-audit": ("corral, audit off", {"CORRAL_AUDIT__ENABLED": "false"}),
}


# -- the model and the request bodies -----------------------------------------------


@dataclass
class Data:
    model: HistGradientBoostingClassifier
    train: pd.DataFrame  # features and the target column "y"
    test: pd.DataFrame  # features only


def build_model(rows: int) -> Data:
    x, y = make_classification(n_samples=rows, n_features=len(FEATURES), n_informative=10, random_state=0)
    frame = pd.DataFrame(x, columns=FEATURES)
    x_train, x_test, y_train, _ = train_test_split(frame, y, test_size=0.2, random_state=0, stratify=y)
    model = HistGradientBoostingClassifier(random_state=0).fit(x_train, y_train)
    train = x_train.assign(y=y_train).reset_index(drop=True)
    return Data(model, train, x_test.reset_index(drop=True))


def shadow_models(data: Data) -> list[tuple[str, Any]]:
    """The two shadows: the champion's estimator retrained with seed 1 (on a bootstrap resample of the training
    rows, so it differs: without early stopping the seed alone changes nothing) and a logistic regression."""
    x, y = data.train[FEATURES], data.train["y"]
    resample = np.random.default_rng(1).integers(0, len(x), len(x))
    hgb = HistGradientBoostingClassifier(random_state=1).fit(x.iloc[resample], y.iloc[resample])
    lr = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(x, y)
    return [(MODEL, hgb), (SHADOW_LR, lr)]


def v2_body(rows: pd.DataFrame) -> dict[str, Any]:
    """Open Inference Protocol V2, tabular convention: one FP64 input per feature column."""
    return {
        "inputs": [
            {"name": column, "shape": [len(rows)], "datatype": "FP64", "data": rows[column].tolist()}
            for column in rows.columns
        ]
    }


def v1_body(rows: pd.DataFrame) -> dict[str, Any]:
    return {"instances": rows.to_dict(orient="records")}


# -- the in-process floor -------------------------------------------------------------


def floor(data: Data, calls: dict[int, int], threads: int) -> dict[str, Any]:
    """Median wall time of ``predict_proba`` on n rows, each call timed on its own, as a DataFrame with the
    training column names (what a server that checks names hands the model) and as a bare float64 ndarray
    (the least a server can do; scikit-learn then skips the column-name check and warns, silenced here)."""
    found: dict[str, Any] = {}
    with threadpool_limits(limits=threads), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        found["threadpools"] = {f"{p['internal_api']}:{p['prefix']}": p["num_threads"] for p in threadpool_info()}
        for rows, n in calls.items():
            frame = data.test.iloc[:rows] if rows <= len(data.test) else data.train[FEATURES].iloc[:rows]
            entry: dict[str, float] = {"calls": n}
            for kind, sample in (("frame", frame), ("ndarray", frame.to_numpy(dtype=np.float64))):
                for _ in range(max(n // 10, 5)):  # warm-up
                    data.model.predict_proba(sample)
                times = []
                for _ in range(n):
                    start = time.perf_counter()
                    data.model.predict_proba(sample)
                    times.append(time.perf_counter() - start)
                times.sort()
                entry[f"{kind}_median_ms"] = statistics.median(times) * 1000
                entry[f"{kind}_p99_ms"] = times[min(len(times) - 1, int(len(times) * 0.99))] * 1000
            found[str(rows)] = entry
            log(
                f"  floor {rows:>5} rows: ndarray {entry['ndarray_median_ms']:.3f} ms, "
                f"DataFrame {entry['frame_median_ms']:.3f} ms (medians of {n})"
            )
    return found


# -- servers ----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def http(
    method: str, url: str, body: bytes | None = None, timeout: float = 10.0, headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    sent = {"Content-Type": "application/json", **(headers or {})}
    request = urllib.request.Request(url, data=body, method=method, headers=sent)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def thread_env(threads: int) -> dict[str, str]:
    value = str(threads)
    return {
        "OMP_NUM_THREADS": value,
        "OPENBLAS_NUM_THREADS": value,
        "MKL_NUM_THREADS": value,
        "NUMEXPR_NUM_THREADS": value,
    }


def _proc_stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()  # fields from "state" on (field 3)


def group_pids(pgid: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _proc_stat(int(entry.name))
            if fields is not None and int(fields[2]) == pgid:  # field 5: pgrp
                pids.append(int(entry.name))
    return pids


TICKS = os.sysconf("SC_CLK_TCK")


def group_cpu_s(pgid: int) -> float:
    """User + system CPU seconds of the live processes of a process group (and their reaped children)."""
    total = 0
    for pid in group_pids(pgid):
        fields = _proc_stat(pid)
        if fields is not None:
            total += sum(int(v) for v in fields[11:15])  # utime stime cutime cstime (fields 14-17)
    return total / TICKS


def group_rss_mib(pgid: int) -> float:
    total_kib = 0
    for pid in group_pids(pgid):
        with contextlib.suppress(OSError, ValueError, IndexError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kib += int(line.split()[1])
    return total_kib / 1024


@dataclass
class Server:
    """One server process (and its process group), started and stopped by this script."""

    key: str
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    port: int
    ready_path: str
    log_path: Path
    extra_ports: list[int] = field(default_factory=list)
    prewarm: list[str] = field(default_factory=list)  # run once, untimed, so startup is not a cold disk cache
    token_file: Path | None = None  # corral: where the server writes its admin token on first start
    process: subprocess.Popen[bytes] | None = None
    startup_s: float | None = None

    @property
    def headers(self) -> dict[str, str]:
        """``Authorization`` for corral (authentication is on): ``CORRAL_TOKEN`` if set, else the admin token the
        server wrote to its home on first start; nothing for the peers."""
        if self.token_file is None:
            return {}
        token = os.environ.get("CORRAL_TOKEN") or self.token_file.read_text().strip()
        return {"Authorization": f"Bearer {token}"}

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        for port in [self.port, *self.extra_ports]:
            if port_open(port):
                raise RuntimeError(f"{self.key}: port {port} is already in use")
        if self.prewarm:
            subprocess.run(self.prewarm, env=self.env, capture_output=True, timeout=300, check=False)
        log(f"starting {self.key}: {' '.join(self.argv)} (log: {self.log_path})")
        started = time.perf_counter()
        with self.log_path.open("wb") as out:
            self.process = subprocess.Popen(
                self.argv,
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stop() kills workers too
            )
        deadline = started + READY_TIMEOUT_S
        while time.perf_counter() < deadline:
            if self.process.poll() is not None:
                code = self.process.returncode
                raise RuntimeError(f"{self.key} exited with {code} before it was ready:\n{self.tail()}")
            with contextlib.suppress(OSError):  # not listening yet, or (corral) its token file not written yet
                status, _ = http("GET", self.base + self.ready_path, timeout=2, headers=self.headers)
                if status == 200:
                    self.startup_s = time.perf_counter() - started
                    log(f"  {self.key} ready in {self.startup_s:.1f} s")
                    return
            time.sleep(0.1)
        raise RuntimeError(f"{self.key} not ready after {READY_TIMEOUT_S:.0f} s:\n{self.tail()}")

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def pgid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def cpu_s(self) -> float:
        return group_cpu_s(self.pgid) if self.alive() else float("nan")

    def rss_mib(self) -> float:
        return group_rss_mib(self.pgid) if self.alive() else float("nan")

    def tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self) -> None:
        if self.process is None:
            return
        process, self.process = self.process, None
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                log(f"  {self.key} ignored SIGTERM for 15 s: SIGKILL")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # whatever is left of the group (workers)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=5)
        for port in [self.port, *self.extra_ports]:
            for _ in range(50):
                if not port_open(port):
                    break
                time.sleep(0.1)


SERVERS: list[Server] = []


def stop_all() -> None:
    for server in reversed(SERVERS):
        with contextlib.suppress(Exception):
            server.stop()


def _on_signal(signum: int, _frame: Any) -> None:
    stop_all()
    raise SystemExit(128 + signum)


# -- targets: a server, an endpoint and its bodies ------------------------------------


@dataclass
class Target:
    key: str
    label: str
    side: str  # "mlserver" or "corral"
    server: Server
    path: str
    bodies: dict[str, Path]  # "single" and "batch" request bodies
    probabilities: Callable[[Any, int], np.ndarray | None]  # the class probabilities in a response, or None
    scenarios: tuple[str, ...] | None = None  # the scenario keys to run (None: all)
    records: AuditCounts | None = None  # counted around each run (the shadow variant): who recorded what

    @property
    def url(self) -> str:
        return self.server.base + self.path


@dataclass(frozen=True)
class AuditCounts:
    """A deployment's records in a corral home's audit log (SQLite), by version and role."""

    database: Path
    deployment: str

    def counts(self) -> dict[str, int]:
        """``{"hgb/1 primary": n, "hgb/2 shadow": m, ...}``"""
        query = (
            "SELECT model, version, role, count(*) FROM predictions WHERE deployment = ? GROUP BY model, version, role"
        )
        with contextlib.closing(sqlite3.connect(f"file:{self.database}?mode=ro", uri=True, timeout=30)) as db:
            rows = db.execute(query, (self.deployment,)).fetchall()
        return {f"{model}/{version} {role}": int(n) for model, version, role, n in rows}

    def settle(self) -> dict[str, int]:
        """The counts once records stop arriving (unchanged for half a second; at most ``SHADOW_SETTLE_S``):
        the shadows have scored what was queued, and their backlog will not run into the next measurement."""
        deadline = time.perf_counter() + SHADOW_SETTLE_S
        last = self.counts()
        while time.perf_counter() < deadline:
            time.sleep(0.5)
            now = self.counts()
            if now == last:
                return now
            last = now
        log(f"  {self.deployment}: records still arriving after {SHADOW_SETTLE_S:g} s")
        return last


def coverage(records: dict[str, int]) -> dict[str, float]:
    """Each shadow's records over the answered (primary) ones: the share of requests it scored."""
    answered = sum(n for key, n in records.items() if key.endswith(" primary"))
    return {
        key.removesuffix(" shadow"): n / answered for key, n in records.items() if key.endswith(" shadow") and answered
    }


def v2_probabilities(response: Any, rows: int) -> np.ndarray | None:
    """The ``predict_proba`` output of a V2 inference response (MLServer and corral both name it so)."""
    for output in response.get("outputs", []):
        if output.get("name") == "predict_proba":
            return np.asarray(output["data"], dtype=float).reshape(rows, -1)
    return None


def v1_probabilities(response: Any, rows: int) -> np.ndarray | None:
    """The ``probabilities`` of corral's JSON API response (one list per row)."""
    found = response.get("probabilities") if isinstance(response, dict) else None
    return np.asarray(found, dtype=float).reshape(rows, -1) if found is not None else None


def ensure_mlserver() -> Path:
    mlserver = MLSERVER_VENV / "bin" / "mlserver"
    if not mlserver.exists():
        log(f"{MLSERVER_VENV} missing: running {MLSERVER_SETUP} (about a minute)")
        subprocess.run(["bash", str(MLSERVER_SETUP)], check=True, stdout=sys.stderr)
    return mlserver


def mlserver_servers(data: Data, work: Path, threads: int) -> list[tuple[Server, str]]:
    """Two MLServer folders (default; adaptive batching), each with settings.json and the model's folder."""
    mlserver = ensure_mlserver()
    servers = []
    for key, batching in (("mlserver-default", False), ("mlserver-batching", True)):
        folder = work / key
        model_dir = folder / MODEL
        model_dir.mkdir(parents=True)
        joblib.dump(data.model, model_dir / "model.joblib")
        http_port, grpc_port, metrics_port = free_port(), free_port(), free_port()
        # only the ports differ from MLServer's defaults
        settings = {"http_port": http_port, "grpc_port": grpc_port, "metrics_port": metrics_port}
        (folder / "settings.json").write_text(json.dumps(settings, indent=2))
        model_settings: dict[str, Any] = {
            "name": MODEL,
            "implementation": "mlserver_sklearn.SKLearnModel",
            "parameters": {
                "uri": "./model.joblib",
                "content_type": "pd",  # one input per column -> a DataFrame with the training column names
                "extra": {"predict_fn": "predict_proba"},
            },
        }
        if batching:
            model_settings["max_batch_size"] = MAX_BATCH_SIZE
            model_settings["max_batch_time"] = MAX_BATCH_MS / 1000  # seconds
        (model_dir / "model-settings.json").write_text(json.dumps(model_settings, indent=2))
        env = clean_env(threads)
        env["PATH"] = f"{MLSERVER_VENV / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        server = Server(
            key=key,
            argv=[str(mlserver), "start", str(folder)],
            env=env,
            cwd=folder,
            port=http_port,
            ready_path=f"/v2/models/{MODEL}/ready",
            log_path=work / f"{key}.log",
            extra_ports=[grpc_port, metrics_port],
            prewarm=[str(MLSERVER_VENV / "bin" / "python"), "-c", "import mlserver.cli.main, mlserver_sklearn"],
        )
        label = "MLServer, adaptive batching" if batching else "MLServer, default"
        servers.append((server, label))
    return servers


def clean_env(threads: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CORRAL_", "MLSERVER_", "VIRTUAL_ENV"))}
    env.update({k: v for k, v in os.environ.items() if k.startswith("CORRAL_MONITORING__")})  # to compare
    env.update(thread_env(threads))
    env["PYTHONUNBUFFERED"] = "1"
    return env


def corral_available() -> str | None:
    """None when ``corral serve`` and ``corral deployments create`` exist, else why not."""
    if not CORRAL_BIN.exists():
        return f"{CORRAL_BIN} missing (make install)"
    for argv in (["serve", "--help"], ["deployments", "create", "--help"]):
        done = subprocess.run([str(CORRAL_BIN), *argv], capture_output=True, text=True, timeout=60, check=False)
        if done.returncode != 0:
            why = (done.stderr or done.stdout).strip()[-300:]
            return f"`corral {' '.join(argv)}` failed ({done.returncode}): {why}"
    return None


def corral_help(*argv: str) -> str:
    done = subprocess.run([str(CORRAL_BIN), *argv, "--help"], capture_output=True, text=True, timeout=60, check=False)
    return done.stdout + done.stderr


def corral_server(
    data: Data, work: Path, threads: int, workers: int | None, shadows: bool = False
) -> tuple[Server, dict[str, list[str]]]:
    """Register and promote the model in a fresh corral home, create its deployments, return the server.

    With ``shadows``, two more versions are registered and a deployment ``SHADOW_DEPLOYMENT`` of the same
    champion gets them as shadow members."""
    home = work / "corral-home"
    env = clean_env(threads)
    env["CORRAL_HOME"] = str(home)
    env.update(AUDIT_SYNC)  # corral's default, spelled out: the variants differ from it only here
    log("registering the model in corral")
    import corral

    services = corral.connect(home=home)
    version = services.registry.log_model(data.model, name=MODEL, training_data=data.train, target="y")
    services.registry.promote(MODEL, version.version)
    members = []
    if shadows:
        for name, model in shadow_models(data):
            shadow = services.registry.log_model(model, name=name, training_data=data.train, target="y")
            members.append((shadow.name, shadow.version))
    services.close()
    # the main deployment with corral's batching set to MLServer's figures (today corral's defaults: batching on,
    # 64 rows, 1 ms); a second one without batching, where the CLI offers --no-batching
    create = [str(CORRAL_BIN), "deployments", "create"]
    flags = corral_help("deployments", "create")
    batching = ["--max-batch-size", str(MAX_BATCH_SIZE)] if "--max-batch-size" in flags else []
    if "--max-wait-ms" in flags:
        batching += ["--max-wait-ms", f"{MAX_BATCH_MS:g}"]
    deployments = {MODEL: batching}
    if "--no-batching" in flags:
        deployments[f"{MODEL}-nobatch"] = ["--no-batching"]
    if shadows:
        deployments[SHADOW_DEPLOYMENT] = batching
    for name, extra in deployments.items():
        argv = [*create, name, "--model", MODEL, "--alias", "champion", *extra]
        log("  " + " ".join(argv[1:]))
        subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL)
    if members:
        from corral.app import set_members
        from corral.serving.entities import SHADOW, Member

        services = corral.connect(home=home)
        try:
            set_members(services, SHADOW_DEPLOYMENT, [Member(name, number, SHADOW) for name, number in members])
        finally:
            services.close()
        log(f"  {SHADOW_DEPLOYMENT}: shadows " + ", ".join(f"{name}:{number}" for name, number in members))
    return corral_serve("corral", env, work, workers), deployments


def corral_serve(key: str, env: dict[str, str], work: Path, workers: int | None) -> Server:
    port = free_port()
    argv = [str(CORRAL_BIN), "serve", "--host", "127.0.0.1", "--port", str(port)]
    if workers is not None:
        argv += ["--workers", str(workers)]
    return Server(
        key=key,
        argv=argv,
        env=env,
        cwd=work,
        port=port,
        ready_path=f"/v2/models/{MODEL}/ready",
        log_path=work / f"{key}.log",
        prewarm=[str(CORRAL_BIN), "serve", "--help"],
        token_file=Path(env["CORRAL_HOME"]) / "admin-token",
    )


# -- load generation ----------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    key: str
    label: str
    connections: int
    body: str  # "single" or "batch"


SCENARIOS = [
    Scenario("c1", "1 row, c=1", 1, "single"),
    Scenario("c8", "1 row, c=8", 8, "single"),
    Scenario("c32", "1 row, c=32", 32, "single"),
    Scenario("batch_c1", f"{BATCH_ROWS} rows, c=1", 1, "batch"),
]


def wrk(target: Target, connections: int, body: Path, seconds: float) -> dict[str, Any]:
    """One wrk run (one thread: the generator shares the cores with the servers) and the server's CPU time."""
    argv = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "-s",
        str(WRK_SCRIPT),
        target.url,
    ]
    cpu_before = target.server.cpu_s()
    wrk_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    auth = target.server.headers.get("Authorization", "")  # post.lua sends it; the peers need none
    wrk_env = {**os.environ, "BODY": str(body), "AUTHORIZATION": auth}
    done = subprocess.run(argv, env=wrk_env, capture_output=True, text=True, check=False)
    wrk_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_after = target.server.cpu_s()
    line = next((x for x in done.stdout.splitlines() if x.startswith("BENCH_JSON ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}) on {target.key}:\n{done.stdout}\n{done.stderr}")
    result: dict[str, Any] = json.loads(line.removeprefix("BENCH_JSON "))
    seconds_run = result["duration_us"] / 1e6
    requests = result["requests"]
    result["rps"] = requests / seconds_run if seconds_run else 0.0
    result["p50_ms"] = result["latency_us"]["p50"] / 1000
    result["p99_ms"] = result["latency_us"]["p99"] / 1000
    socket_errors = sum(v for k, v in result["errors"].items() if k != "status")
    result["bad"] = result["not_200"] + socket_errors
    result["server_cpu_ms_per_request"] = (cpu_after - cpu_before) * 1000 / requests if requests else None
    wrk_cpu = (wrk_after.ru_utime - wrk_before.ru_utime) + (wrk_after.ru_stime - wrk_before.ru_stime)
    result["wrk_cpu_share"] = wrk_cpu / seconds_run if seconds_run else None
    result["load_average_1min"] = os.getloadavg()[0]
    if not target.server.alive():
        raise RuntimeError(f"{target.server.key} died during the run:\n{target.server.tail()}")
    return result


def check_response(target: Target, data: Data, body: Path, rows: int) -> dict[str, Any]:
    """One request outside wrk: HTTP 200 and the in-process probabilities, before any load."""
    status, raw = http("POST", target.url, body.read_bytes(), headers=target.server.headers)
    if status != 200:
        raise RuntimeError(f"{target.key}: POST {target.path} answered {status}: {raw[:500]!r}")
    expected = data.model.predict_proba(data.test.iloc[:rows])
    got = target.probabilities(json.loads(raw), rows)
    if got is None:
        raise RuntimeError(f"{target.key}: no class probabilities in the response: {raw[:300]!r}")
    if not np.allclose(got, expected, atol=1e-9):
        raise RuntimeError(f"{target.key}: probabilities differ from predict_proba: {got[:3]} vs {expected[:3]}")
    return {"status": status, "probabilities": "match predict_proba", "response_bytes": len(raw)}


def measure(
    targets: list[Target], scenarios: list[Scenario], rounds: int, seconds: float, warmup_s: float
) -> dict[str, dict[str, list[dict[str, Any]]]]:
    samples: dict[str, dict[str, list[dict[str, Any]]]] = {t.key: {s.key: [] for s in scenarios} for t in targets}
    for target in targets:
        log(f"warm-up: {target.key} ({warmup_s:g} s at c=8)")
        warm = wrk(target, 8, target.bodies["single"], warmup_s)
        if warm["bad"]:
            log(f"  warm-up of {target.key}: {warm['bad']} bad responses")
    started = time.perf_counter()
    for round_ in range(rounds):
        for index, scenario in enumerate(scenarios):
            these = [t for t in targets if t.scenarios is None or scenario.key in t.scenarios]
            shift = (round_ + index) % len(these)  # rotate who goes first
            for target in these[shift:] + these[:shift]:
                before = target.records.settle() if target.records is not None else {}
                result = wrk(target, scenario.connections, target.bodies[scenario.body], seconds)
                if target.records is not None:
                    after = target.records.settle()
                    result["records"] = {k: n - before.get(k, 0) for k, n in after.items()}
                    result["shadow_coverage"] = coverage(result["records"])
                samples[target.key][scenario.key].append(result)
                log(
                    f"  round {round_ + 1}/{rounds} {scenario.label:<14} {target.key:<18} "
                    f"{result['rps']:8.0f} req/s  p50 {result['p50_ms']:7.2f} ms  p99 {result['p99_ms']:7.2f} ms"
                    + (f"  BAD {result['bad']}" if result["bad"] else "")
                    + "".join(f"  {k} {v:.0%}" for k, v in result.get("shadow_coverage", {}).items())
                    + f"  ({time.perf_counter() - started:.0f} s)"
                )
    return samples


# -- reporting ------------------------------------------------------------------------


def med(values: list[float | None]) -> float | None:
    clean = [v for v in values if v is not None and not math.isnan(v)]
    return statistics.median(clean) if clean else None


def summarize(samples: dict[str, dict[str, list[dict[str, Any]]]], servers_info: dict[str, Any]) -> dict[str, Any]:
    medians: dict[str, dict[str, Any]] = {}
    for target, per_scenario in samples.items():
        out: dict[str, Any] = {}
        bad = 0
        for scenario, runs in per_scenario.items():
            if not runs:
                continue
            out[scenario] = {
                "rps": med([r["rps"] for r in runs]),
                "rps_range": [min(r["rps"] for r in runs), max(r["rps"] for r in runs)],
                "p50_ms_range": [min(r["p50_ms"] for r in runs), max(r["p50_ms"] for r in runs)],
                "p50_ms": med([r["p50_ms"] for r in runs]),
                "p99_ms": med([r["p99_ms"] for r in runs]),
                "server_cpu_ms_per_request": med([r["server_cpu_ms_per_request"] for r in runs]),
                "wrk_cpu_share": med([r["wrk_cpu_share"] for r in runs]),
                "requests": sum(r["requests"] for r in runs),
                "bad": sum(r["bad"] for r in runs),
            }
            shadows = sorted({k for r in runs for k in r.get("shadow_coverage", {})})
            if shadows:
                out[scenario]["shadow_coverage"] = {
                    k: med([r["shadow_coverage"].get(k, 0.0) for r in runs]) for k in shadows
                }
                out[scenario]["shadow_coverage_range"] = {
                    k: [
                        min(r["shadow_coverage"].get(k, 0.0) for r in runs),
                        max(r["shadow_coverage"].get(k, 0.0) for r in runs),
                    ]
                    for k in shadows
                }
            bad += out[scenario]["bad"]
        out["bad_total"] = bad
        out.update(servers_info.get(target, {}))
        medians[target] = out
    return medians


ROWS: list[tuple[str, str, str, str | None]] = [
    # (label, scenario, field, floor rows)
    ("p50, 1 row, c=1", "c1", "p50_ms", "1"),
    ("p99, 1 row, c=1", "c1", "p99_ms", None),
    ("req/s, 1 row, c=8", "c8", "rps", None),
    ("p50, 1 row, c=8", "c8", "p50_ms", None),
    ("p99, 1 row, c=8", "c8", "p99_ms", None),
    ("req/s, 1 row, c=32", "c32", "rps", None),
    ("p50, 1 row, c=32", "c32", "p50_ms", None),
    ("p99, 1 row, c=32", "c32", "p99_ms", None),
    (f"p50, {BATCH_ROWS} rows, c=1", "batch_c1", "p50_ms", str(BATCH_ROWS)),
    (f"p99, {BATCH_ROWS} rows, c=1", "batch_c1", "p99_ms", None),
    ("server CPU per request, 1 row, c=32", "c32", "server_cpu_ms_per_request", None),
    ("RSS after the run", "", "rss_mib", None),
    ("start to ready", "", "startup_s", None),
    ("non-200 or failed responses", "", "bad_total", None),
]


def fmt(value: float | None, field_name: str) -> str:
    if value is None or math.isnan(value):
        return "–"
    if field_name == "rps":
        return f"{value:,.0f}"
    if field_name == "rss_mib":
        return f"{value:,.0f} MiB"
    if field_name == "startup_s":
        return f"{value:.1f} s"
    if field_name == "bad_total":
        return f"{value:,.0f}"
    return f"{value:.2f} ms"


def lookup(medians: dict[str, Any], target: str, scenario: str, field_name: str) -> float | None:
    entry = medians.get(target, {})
    value = entry.get(scenario, {}).get(field_name) if scenario else entry.get(field_name)
    return float(value) if value is not None else None


def markdown(result: dict[str, Any]) -> str:
    medians = result["medians"]
    labels = result["targets"]
    keys = list(labels)
    corral = "corral" if "corral" in keys else None
    peers = [k for k in ("mlserver-default", "mlserver-batching") if k in keys] if corral else []
    header = ["metric", "in-process floor (ndarray / DataFrame)", *(labels[k] for k in keys)]
    header += [f"corral / {labels[p]}" for p in peers]
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    for label, scenario, field_name, floor_rows in ROWS:
        values = [lookup(medians, k, scenario, field_name) for k in keys]
        if all(v is None for v in values):
            continue
        floor_cell = "–"
        if floor_rows is not None and floor_rows in result["floor"]:
            entry = result["floor"][floor_rows]
            floor_cell = f"{fmt(entry['ndarray_median_ms'], 'ms')} / {fmt(entry['frame_median_ms'], 'ms')}"
        cells = [label, floor_cell, *(fmt(v, field_name) for v in values)]
        for peer in peers:
            c, p = lookup(medians, "corral", scenario, field_name), lookup(medians, peer, scenario, field_name)
            cells.append(f"{c / p:.2f}x" if c is not None and p and field_name != "bad_total" else "–")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def goals(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's goals: at c=32 >= 3x MLServer default's throughput and ahead of MLServer with batching;
    p50 at c=1 within 1 ms of the in-process floor (1 row)."""
    medians = result["medians"]
    if "corral" not in medians:
        return []
    out = []
    c32 = lookup(medians, "corral", "c32", "rps")
    for peer, factor in (("mlserver-default", 3.0), ("mlserver-batching", 1.0)):
        p32 = lookup(medians, peer, "c32", "rps")
        if c32 is not None and p32:
            out.append(
                {
                    "goal": f"req/s at c=32 {'>= 3x' if factor > 1 else 'above'} {peer}",
                    "value": f"{c32 / p32:.2f}x ({c32:,.0f} vs {p32:,.0f} req/s)",
                    "met": c32 / p32 >= factor if factor > 1 else c32 > p32,
                }
            )
    p50 = lookup(medians, "corral", "c1", "p50_ms")
    for kind, name in (("ndarray", "ndarray"), ("frame", "DataFrame")):
        floor_1 = result["floor"].get("1", {}).get(f"{kind}_median_ms")
        if p50 is not None and floor_1 is not None:
            out.append(
                {
                    "goal": f"p50 at c=1 within 1 ms of the in-process floor (1 row, {name})",
                    "value": f"+{p50 - floor_1:.2f} ms ({p50:.2f} vs {floor_1:.2f} ms)",
                    "met": p50 - floor_1 <= 1.0,
                }
            )
    return out


def audit_cost(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The prediction log's cost: c=1 p50 (1 and 100 rows) and c=32 req/s of corral with the audit sync (its
    default), async and off, each against off."""
    medians = result["medians"]
    keys = [k for k in ("corral", "corral-audit-async", "corral-no-audit") if k in medians]
    if "corral-no-audit" not in keys:
        return []
    off_p50 = lookup(medians, "corral-no-audit", "c1", "p50_ms")
    off_rps = lookup(medians, "corral-no-audit", "c32", "rps")
    out = []
    for key in keys:
        p50, rps = lookup(medians, key, "c1", "p50_ms"), lookup(medians, key, "c32", "rps")
        out.append(
            {
                "target": key,
                "audit": AUDIT_EXPECTED[key],
                "p50_c1_ms": p50,
                "p50_c1_vs_off_ms": p50 - off_p50 if p50 is not None and off_p50 is not None else None,
                "p50_batch_c1_ms": lookup(medians, key, "batch_c1", "p50_ms"),
                "rps_c32": rps,
                "rps_c32_vs_off": rps / off_rps if rps is not None and off_rps else None,
                "server_cpu_ms_per_request_c32": lookup(medians, key, "c32", "server_cpu_ms_per_request"),
            }
        )
    return out


def shadow_cost(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The cost of two shadows: c=1 p50 and c=32 req/s of the deployment with them against the plain one (the
    same server, champion, batching and request), and the share of requests each shadow scored."""
    medians = result["medians"]
    if "corral-2shadows" not in medians or "corral" not in medians:
        return []
    out = []
    for scenario, field_name, better in (("c1", "p50_ms", "lower"), ("c32", "rps", "higher")):
        plain = lookup(medians, "corral", scenario, field_name)
        shadows = lookup(medians, "corral-2shadows", scenario, field_name)
        ratio = shadows / plain if shadows is not None and plain else None
        out.append(
            {
                "scenario": scenario,
                "field": field_name,
                "none": plain,
                "two_shadows": shadows,
                "ratio": ratio,
                "within_10_percent": ratio is not None and (ratio <= 1.1 if better == "lower" else ratio >= 0.9),
                "shadow_coverage": medians["corral-2shadows"].get(scenario, {}).get("shadow_coverage"),
            }
        )
    return out


DISTS = ("corral", "mlserver", "mlserver-sklearn", "scikit-learn", "numpy", "pandas", "fastapi", "starlette")
DISTS += ("uvicorn", "uvloop", "pydantic", "orjson", "joblib")


def source_state() -> dict[str, str]:
    """The commit checked out and a digest of corral's source: taken before the servers start (what they run)
    and again at the end, since the server is under active development and the tree may change meanwhile."""
    found = {}
    commit = corral_commit()
    if commit is not None:
        found["corral_commit"] = commit
    digest = hashlib.sha256()
    for path in sorted((ROOT / "src" / "corral").rglob("*.py")):
        digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    found["corral_src_sha256"] = digest.hexdigest()[:12]
    return found


def versions_here(source: dict[str, str]) -> dict[str, str]:
    found = {"python": platform.python_version(), **source}
    for dist in DISTS:
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[dist] = metadata.version(dist)
    return found


def versions_mlserver() -> dict[str, str]:
    python = MLSERVER_VENV / "bin" / "python"
    code = (
        "import json, platform\nfrom importlib import metadata\nfound = {'python': platform.python_version()}\n"
        f"for d in {DISTS!r}:\n"
        "    try: found[d] = metadata.version(d)\n"
        "    except metadata.PackageNotFoundError: pass\n"
        "print(json.dumps(found))\n"
    )
    done = subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=60, check=False)
    return json.loads(done.stdout) if done.returncode == 0 else {"error": done.stderr.strip()[-300:]}


def wrk_version() -> str:
    done = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
    text = (done.stdout + done.stderr).strip()
    return text.splitlines()[0].split(" Copyright")[0] if text else "?"


def report(result: dict[str, Any]) -> None:
    m = result["machine"]
    print(
        f"Serving: corral vs MLServer — medians of {result['rounds']} round(s) of {result['duration_s']:g} s per "
        f"measurement, wrk -t1; {result['elapsed_s']:.0f} s in all"
    )
    before, after = result["load_average_before_after"]
    print(
        f"machine: {m['nproc']} CPUs ({m['cpu']}), {m['ram_gib']} GiB RAM; 1-min load average {before[0]:.1f} before, "
        f"{after[0]:.1f} after; OMP_NUM_THREADS={result['omp_threads']} for every server and the floor"
    )
    for env, found in result["versions"].items():
        print(f"versions ({env}): " + ", ".join(f"{k} {v}" for k, v in found.items()))
    print()
    print(markdown(result))
    print()
    floor_line = "; ".join(
        f"{rows} rows {e['ndarray_median_ms']:.2f} / {e['frame_median_ms']:.2f} ms"
        for rows, e in result["floor"].items()
        if rows != "threadpools"
    )
    print(f"- in-process floor, predict_proba median (ndarray / DataFrame): {floor_line}")
    for key, label in result["targets"].items():
        print(f"- {label} (`{key}`): {result['target_notes'].get(key, '')}")
    print()
    print(f"Spread over the {result['rounds']} rounds (min–max):")
    for key, label in result["targets"].items():
        entry = result["medians"][key]
        parts = []
        if "c1" in entry:
            low, high = entry["c1"]["p50_ms_range"]
            parts.append(f"p50 c=1 {low:.2f}–{high:.2f} ms")
        for scenario in ("c8", "c32"):
            if scenario in entry:
                low, high = entry[scenario]["rps_range"]
                parts.append(f"req/s {scenario.replace('c', 'c=')} {low:,.0f}–{high:,.0f}")
        print(f"- {label}: " + "; ".join(parts))
    if result.get("audit_cost"):
        print()
        print("The audit log (corral, the same deployment; each against audit off):")
        print(
            f"| audit | p50, 1 row, c=1 | vs off | req/s, c=32 | vs off | server CPU per request, c=32 "
            f"| p50, {BATCH_ROWS} rows, c=1 |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|")
        for row in result["audit_cost"]:
            delta, ratio = row["p50_c1_vs_off_ms"], row["rps_c32_vs_off"]
            print(
                f"| {row['audit']} | {fmt(row['p50_c1_ms'], 'p50_ms')} | "
                + (f"{delta:+.2f} ms" if delta is not None else "–")
                + f" | {fmt(row['rps_c32'], 'rps')} | "
                + (f"{ratio:.2f}x" if ratio is not None else "–")
                + f" | {fmt(row['server_cpu_ms_per_request_c32'], 'ms')} | {fmt(row['p50_batch_c1_ms'], 'ms')} |"
            )
    if result.get("shadow_cost"):
        print()
        print("Two shadows (corral, the same server and champion; deployment with two shadows against one without):")
        print("| metric | no shadows | 2 shadows | 2 shadows / none | within 10 % | requests each shadow scored |")
        print("|---|---:|---:|---:|---|---|")
        for row in result["shadow_cost"]:
            name = "p50, 1 row, c=1" if row["scenario"] == "c1" else "req/s, 1 row, c=32"
            covered = ", ".join(f"{k} {v:.0%}" for k, v in (row["shadow_coverage"] or {}).items()) or "–"
            ratio = f"{row['ratio']:.2f}x" if row["ratio"] is not None else "–"
            print(
                f"| {name} | {fmt(row['none'], row['field'])} | {fmt(row['two_shadows'], row['field'])} | {ratio} "
                f"| {'yes' if row['within_10_percent'] else 'no'} | {covered} |"
            )
    if result["goals"]:
        print()
        for goal in result["goals"]:
            print(f"- goal: {goal['goal']}: {goal['value']} — {'met' if goal['met'] else 'NOT met'}")
    if result.get("source_at_end_if_changed"):
        print()
        changed = ", ".join(result["source_at_end_if_changed"].values())
        print(f"corral's source changed during the run (at the end: {changed}); the servers imported the start's.")
    if result.get("corral_unavailable"):
        print()
        print(f"corral not measured: {result['corral_unavailable']}")


# -- main -------------------------------------------------------------------------


@contextlib.contextmanager
def workdir(keep: bool) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    try:
        yield path
    finally:
        if keep:
            log(f"kept {path}")
        else:
            shutil.rmtree(path, ignore_errors=True)


def write_bodies(data: Data, work: Path) -> tuple[dict[str, Path], dict[str, Path]]:
    """The V2 and plain JSON bodies, one row and ``BATCH_ROWS`` rows of the test set."""
    v2, v1 = {}, {}
    for name, rows in (("single", 1), ("batch", BATCH_ROWS)):
        sample = data.test.iloc[:rows]
        v2[name] = work / f"v2-{name}.json"
        v2[name].write_text(json.dumps(v2_body(sample)))
        v1[name] = work / f"v1-{name}.json"
        v1[name].write_text(json.dumps(v1_body(sample)))
    return v2, v1


def build_targets(args: argparse.Namespace, data: Data, work: Path, with_corral: bool) -> tuple[list[Target], dict]:
    """Prepare every server (not started yet) and the endpoints to load; ``SERVERS`` gets the servers."""
    v2, v1 = write_bodies(data, work)
    infer = f"/v2/models/{MODEL}/infer"
    targets: list[Target] = []
    notes: dict[str, str] = {}
    if args.only != "corral":
        for server, label in mlserver_servers(data, work, args.omp_threads):
            SERVERS.append(server)
            targets.append(Target(server.key, label, "mlserver", server, infer, v2, v2_probabilities))
        notes["mlserver-default"] = (
            "MLServer defaults (parallel_workers=1: inference in one worker process; debug access log on); "
            "model-settings: content_type pd, predict_fn predict_proba"
        )
        notes["mlserver-batching"] = (
            f"as default, plus max_batch_size={MAX_BATCH_SIZE}, max_batch_time={MAX_BATCH_MS / 1000:g} s"
        )
    if with_corral:
        server, deployments = corral_server(data, work, args.omp_threads, args.corral_workers, args.shadow_variant)
        SERVERS.append(server)
        targets.append(Target("corral", "corral", "corral", server, infer, v2, v2_probabilities))
        notes["corral"] = f"corral serve, deployment {MODEL} ({' '.join(deployments[MODEL]) or 'defaults'}), V2"
        secondary = ("c1", "c32")  # the variants run only at c=1 and c=32, to keep the run short
        if not args.no_v1:
            path = f"/v1/deployments/{MODEL}/predict"
            targets.append(
                Target("corral-v1", "corral, JSON API", "corral", server, path, v1, v1_probabilities, secondary)
            )
            notes["corral-v1"] = f"the same server and deployment, POST {path} with instances (c=1 and c=32 only)"
        if args.shadow_variant:
            path = f"/v2/models/{SHADOW_DEPLOYMENT}/infer"
            database = Path(server.env["CORRAL_HOME"]) / "corral.db"
            counts = AuditCounts(database, SHADOW_DEPLOYMENT)
            key, label = "corral-2shadows", "corral, 2 shadows"
            targets.append(Target(key, label, "corral", server, path, v2, v2_probabilities, secondary, counts))
            notes[key] = (
                f"the same server, deployment {SHADOW_DEPLOYMENT} of the same champion "
                f"({' '.join(deployments[SHADOW_DEPLOYMENT]) or 'defaults'}) with two shadows: {MODEL}:2 "
                f"(HistGradientBoosting, seed 1, bootstrap resample) and {SHADOW_LR}:1 (LogisticRegression), V2 "
                "(c=1 and c=32 only)"
            )
        for name, extra in deployments.items():
            if name not in (MODEL, SHADOW_DEPLOYMENT):
                path = f"/v2/models/{name}/infer"
                key, label = "corral-nobatch", "corral, no batching"
                targets.append(Target(key, label, "corral", server, path, v2, v2_probabilities, secondary))
                notes[key] = f"the same server, deployment {name} ({' '.join(extra)}), V2 (c=1 and c=32 only)"
        if args.workers_variant:
            n = args.workers_variant
            other = corral_serve(f"corral-{n}w", server.env, work, n)
            SERVERS.append(other)
            label = f"corral, {n} workers"
            targets.append(Target(other.key, label, "corral", other, infer, v2, v2_probabilities, secondary))
            notes[other.key] = f"a second corral serve --workers {n} on the same home and deployment, V2 (c=1, c=32)"
        if args.audit_variants:
            for key, (label, audit) in AUDIT_VARIANTS.items():
                other = corral_serve(key, {**server.env, **audit}, work, args.corral_workers)
                SERVERS.append(other)
                scenarios = (*secondary, "batch_c1")
                targets.append(Target(key, label, "corral", other, infer, v2, v2_probabilities, scenarios))
                setting = " ".join(f"{k}={v}" for k, v in audit.items())
                notes[key] = (
                    f"a separate corral serve with {setting}, the same home and deployment, V2 "
                    f"(c=1, c=32, {BATCH_ROWS} rows at c=1)"
                )
    return targets, notes


AUDIT_EXPECTED = {"corral": "sync", "corral-audit-async": "async", "corral-no-audit": "off"}


def check_audit(target: Target, wait_s: float = 5.0) -> dict[str, Any]:
    """One request, then ``GET /v1/predictions/{id}``: is its row in the prediction log, and how soon?

    ``sync`` must have it when the response is out; ``async`` within ``wait_s``; ``off`` must not have it
    after ``wait_s``."""
    expected = AUDIT_EXPECTED[target.key]
    status, raw = http("POST", target.url, target.bodies["single"].read_bytes(), headers=target.server.headers)
    if status != 200:
        raise RuntimeError(f"{target.key}: POST {target.path} answered {status}: {raw[:300]!r}")
    ids = next((o["data"] for o in json.loads(raw).get("outputs", []) if o.get("name") == "prediction_id"), None)
    if not ids:
        raise RuntimeError(f"{target.key}: no prediction_id in the response: {raw[:300]!r}")
    url = f"{target.server.base}/v1/predictions/{ids[0]}"
    started = time.perf_counter()
    found, found_after = http("GET", url, headers=target.server.headers)[0], 0.0
    while found != 200 and expected != "sync" and time.perf_counter() - started < wait_s:
        time.sleep(0.05)
        found, found_after = http("GET", url, headers=target.server.headers)[0], time.perf_counter() - started
    recorded = found == 200
    if recorded != (expected != "off"):
        when = "at once" if expected == "sync" else f"within {wait_s:g} s"
        want = "not in the log" if expected == "off" else f"in the log {when}"
        raise RuntimeError(f"{target.key} (audit {expected}): prediction {ids[0]} should be {want}; GET gave {found}")
    log(
        f"  audit {expected:<5} {target.key}: "
        + (f"recorded after {found_after:.2f} s" if recorded else "not recorded")
    )
    return {"audit": expected, "recorded": recorded, "recorded_after_s": found_after if recorded else None}


def run_servers(targets: list[Target], data: Data, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Start every server, check one response of each target, load them all, stop them."""
    for server in SERVERS:
        server.start()
    checks = {}
    for target in targets:
        checks[target.key] = {
            "single": check_response(target, data, target.bodies["single"], 1),
            "batch": check_response(target, data, target.bodies["batch"], BATCH_ROWS),
        }
    audit = {t.key: check_audit(t) for t in targets if t.key in AUDIT_EXPECTED}
    samples = measure(targets, SCENARIOS, args.rounds, args.duration, args.warmup)
    info = {t.key: {"rss_mib": t.server.rss_mib(), "startup_s": t.server.startup_s} for t in targets}
    for target in targets:
        if target.key != target.server.key:  # a second endpoint of a server already counted
            info[target.key] = {"rss_mib": None, "startup_s": None}
    config_files = {str(p.relative_to(work)): json.loads(p.read_text()) for p in sorted(work.rglob("*settings.json"))}
    commands = {
        s.key: " ".join([*(f"{k}={v}" for k, v in s.env.items() if k.startswith("CORRAL_AUDIT__")), *s.argv])
        for s in SERVERS
    }
    stop_all()
    return {
        "samples": samples,
        "servers_info": info,
        "response_checks": checks,
        "audit_checks": audit,
        "server_commands": commands,
        "config_files": config_files,
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 round per measurement (default: 5)")
    parser.add_argument("--rounds", type=int, default=None, help="rounds per measurement (default 5)")
    parser.add_argument("--duration", type=float, default=None, help="seconds per wrk run (default 3)")
    parser.add_argument("--warmup", type=float, default=None, help="seconds of warm-up per endpoint (default 3)")
    parser.add_argument("--only", choices=["mlserver", "corral"], help="one side only (ratios are left out)")
    parser.add_argument("--rows", type=int, default=10_000, help="rows of the synthetic dataset (default 10,000)")
    parser.add_argument(
        "--omp-threads", type=int, default=1, help="OMP_NUM_THREADS for every server and the floor (default 1)"
    )
    parser.add_argument("--corral-workers", type=int, default=None, help="corral serve --workers (default: its own)")
    parser.add_argument("--no-v1", action="store_true", help="skip corral's plain JSON endpoint")
    parser.add_argument(
        "--workers-variant",
        type=int,
        default=2,
        help="also run a second corral server with --workers N at c=1 and c=32 (default 2; 0: skip)",
    )
    parser.add_argument(
        "--audit-variants",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also run corral servers with the audit log async and off (c=1, c=32, 100 rows; default: on)",
    )
    parser.add_argument(
        "--shadow-variant",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also run a second deployment of the champion with two shadow members in the corral server "
        "(c=1, c=32; default: on)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the working folder (server logs, model files)")
    parser.add_argument("--output", type=Path, default=RESULTS, help=f"JSON results (default {RESULTS})")
    args = parser.parse_args(argv)
    args.rounds = args.rounds or (1 if args.quick else 5)
    args.duration = args.duration or 3.0
    args.warmup = args.warmup or (2.0 if args.quick else 3.0)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install -y wrk")
    atexit.register(stop_all)
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    load_before = os.getloadavg()
    started = time.perf_counter()

    corral_unavailable = None
    if args.only != "mlserver":
        corral_unavailable = corral_available()
        if corral_unavailable:
            if args.only == "corral":
                sys.exit(f"corral's server is not available: {corral_unavailable}")
            log(f"corral's server is not available, measuring MLServer only: {corral_unavailable}")

    log(f"fitting the model ({args.rows:,} synthetic rows)...")
    data = build_model(args.rows)
    log("in-process floor (predict_proba)")
    calls = {1: 300, 100: 100, 1000: 30} if args.quick else {1: 2000, 100: 500, 1000: 100}
    floor_ms = floor(data, calls, args.omp_threads)

    source = source_state()  # what the servers are about to import
    log(f"corral source: {', '.join(source.values())}")
    with workdir(args.keep) as work:
        targets, notes = build_targets(args, data, work, with_corral=args.only != "mlserver" and not corral_unavailable)
        if not targets:
            sys.exit("nothing to measure")
        measured = run_servers(targets, data, work, args)

    versions = {"corral .venv": versions_here(source)}
    source_after = source_state()
    source_changed = source_after if source_after != source else None
    if source_changed:
        log(f"corral's source changed during the run: {source} at the start, {source_after} at the end")
    if args.only != "corral":
        versions["bench/.venv-mlserver"] = versions_mlserver()
    result: dict[str, Any] = {
        "benchmark": "serving",
        "command": " ".join([sys.executable, *sys.argv]),
        "rounds": args.rounds,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "omp_threads": args.omp_threads,
        "load_generator": f"{wrk_version()}, -t1, --timeout 10s, {WRK_SCRIPT.relative_to(ROOT)}",
        "load_average_before_after": [list(load_before), list(os.getloadavg())],
        "elapsed_s": time.perf_counter() - started,
        "machine": machine(),
        "versions": versions,
        "model": f"HistGradientBoostingClassifier(random_state=0), make_classification {args.rows:,} x 20, 80% train",
        "floor": floor_ms,
        "targets": {t.key: t.label for t in targets},
        "target_notes": notes,
        "corral_unavailable": corral_unavailable,
        "source_at_end_if_changed": source_changed,
        "medians": summarize(measured["samples"], measured["servers_info"]),
        **{k: v for k, v in measured.items() if k != "servers_info"},
    }
    result["goals"] = goals(result)
    result["audit_cost"] = audit_cost(result)
    result["shadow_cost"] = shadow_cost(result)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    report(result)
    log(f"results: {args.output}")
    bad = sum(m.get("bad_total", 0) for m in result["medians"].values())
    if bad:
        log(f"{bad} requests were not answered with HTTP 200: see the table and {args.output}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
