"""Audit-log benchmark: lookup by id and search as the SQLite log grows, and durable write throughput.

Two measurements, reported apart:

1. **Lookups at scale.** A bulk loader of this script's own fills a SQLite
   database (created by corral's migrations through ``open_database``) with
   synthetic, well-formed, correctly chained prediction records, growing one
   log through ``--sizes`` (default 100k, 1M). It writes rows the way
   ``SqlAuditStore`` stores them (same columns, same JSON and time encodings)
   and computes each hash as ``SHA-256(prev_hash || canonical JSON)`` exactly
   as :mod:`corral.audit.records` does; after each size it checks that with
   corral's own code: ``verify_chain`` over the first records, random windows
   and the tail, read back through ``SqlAuditStore``, after one real
   ``SqlAuditStore.append`` chained on the loaded head. **The loader alone**
   runs with ``PRAGMA synchronous=OFF`` and ``journal_mode=MEMORY`` (big
   ``executemany`` transactions); it puts WAL back when done. Nothing else
   here relaxes durability.

   At each size, in a fresh process through corral's ``SqlAuditStore``:
   ``get(id)`` for ``--lookups`` random ids **cold** (the database file
   evicted from the OS page cache with ``posix_fadvise(DONTNEED)`` first, and
   a new connection), the same ids again (**warm**), then new random ids in the
   same process (**steady**: the upper index levels cached, the leaves not);
   and ``search(deployment=..., since=..., until=..., limit=100)`` pages over
   one-hour windows spread across the log, first page and the next
   (``after_seq``), with SQLite's query plan for it.

2. **Durable write throughput.** The real writer, ``AuditSink`` (sync mode:
   a submitter's await returns once its rows are committed) on
   ``SqlAuditStore`` with ``synchronous=FULL``, on a fresh database: for each
   ``--concurrency`` C, C asyncio tasks each submit one-row events back to back
   for ``--write-seconds``. Reported: records/s, commits/s, rows per commit,
   p50/p99 of a submitter's wait (submit to durable).

A markdown table goes to stdout, every number to ``bench/results/audit.json``,
progress to stderr. Run from the repository root::

    .venv/bin/python bench/audit.py [--sizes 100k,1M,10M] [--lookups 1000] [--concurrency 1,16,64]
        [--write-seconds 4] [--workdir DIR] [--skip-lookups] [--skip-writes]

The log needs about 0.7 kB of disk per record (printed after the first size);
a size that would leave under ``--disk-headroom-gb`` free is skipped and said so.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from importlib import metadata
from itertools import islice
from pathlib import Path
from typing import Any

from benchkit import corral_commit, log, machine

from corral.audit.records import GENESIS, PredictionRecord, verify_chain
from corral.audit.sink import AuditSink
from corral.core.events import PredictionEvent
from corral.core.ids import new_id
from corral.storage import open_database

RESULTS = Path(__file__).resolve().parent / "results" / "audit.json"
START = datetime(2025, 1, 1, tzinfo=UTC)
STEP_US = 250_000  # one record every 0.25 s: 10M records span about 29 days
DEPLOYMENTS = ("churn-api", "fraud-api", "pricing-api", "ranking-api")
FEATURES = tuple(f"f{i}" for i in range(8))
BATCH = 100_000  # rows per loader transaction
SEARCH_WINDOW = timedelta(hours=1)
SEARCHES = 20


def parse_size(text: str) -> int:
    text = text.strip().lower().replace("_", "")
    scale = {"k": 1_000, "m": 1_000_000}.get(text[-1:], 1)
    return int(float(text[:-1] if scale > 1 else text) * scale)


def hashes(deployment: int, version: int) -> tuple[str, str]:
    seed = f"{DEPLOYMENTS[deployment]}/{version}"
    return hashlib.sha256(b"artifact:" + seed.encode()).hexdigest(), hashlib.sha256(
        b"data:" + seed.encode()
    ).hexdigest()


# -- the bulk loader ---------------------------------------------------------------------------------------------


def synthetic_id(rng: random.Random, micros: int, counter: int) -> str:
    """A UUIDv7 for ``micros`` (since the epoch), laid out as corral.core.ids makes them: ids sort by time."""
    value = (micros // 1000 << 80) | (0x7 << 76) | ((counter & 0xFFF) << 64) | (0b10 << 62) | rng.getrandbits(62)
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def load(path: Path, count: int, seed: int) -> float:  # noqa: PLR0915 (one hot loop, kept inline for speed)
    """Append ``count`` records after the log's head; returns records per second."""
    epoch_us = int(START.timestamp() * 1_000_000)
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode=MEMORY")  # loader only: WAL is put back below
    connection.execute("PRAGMA synchronous=OFF")  # loader only: corral itself always commits with FULL
    connection.execute("PRAGMA cache_size=-1000000")
    seq, prev = connection.execute("SELECT seq, hash FROM audit_head").fetchone()
    rng = random.Random(seed + seq)
    columns = (
        "seq, prediction_id, timestamp, deployment, model, version, role, artifact_sha256, data_sha256, inputs, "
        "output, probabilities, latency_ms, request_id, caller, anomaly_score, anomaly_flagged, out_of_range, "
        "prev_hash, hash"
    )
    insert = f"INSERT INTO predictions ({columns}) VALUES ({', '.join('?' * 20)})"
    # a faster equivalent of json.dumps(content, sort_keys=True, separators=(",", ":")): the canonical bytes
    # with the keys in sorted order and floats as repr (what json writes); verify_sample checks it with corral's code
    template = (
        '{{"anomaly_flagged":false,"anomaly_score":null,"artifact_sha256":"{artifact}","caller":null,'
        '"data_sha256":"{data}","deployment":"{deployment}","format":1,"inputs":{inputs},"latency_ms":{latency!r},'
        '"model":"{model}","out_of_range":[],"output":{output},"prediction_id":"{pid}","prev_hash":"{prev}",'
        '"probabilities":[{q!r},{p!r}],"request_id":null,"role":"primary","seq":{seq},"timestamp":"{when}",'
        '"version":{version}}}'
    ).format
    canonical_json = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode
    pool = []  # input rows to draw from: (canonical JSON, stored JSON)
    for _ in range(4096):
        inputs = {f: round(rng.gauss(0.0, 1.0), 4) for f in FEATURES}
        pool.append((canonical_json(inputs), json.dumps(inputs)))  # json.dumps: what SQLAlchemy's JSON type stores
    known = {(d, v): hashes(d, v) for d in range(len(DEPLOYMENTS)) for v in (1, 2, 3)}
    sha256, getrandbits = hashlib.sha256, rng.getrandbits
    started = time.perf_counter()
    done = 0
    while done < count:
        rows = []
        for _ in range(min(BATCH, count - done)):
            seq += 1
            micros = epoch_us + seq * STEP_US
            when = START + timedelta(microseconds=seq * STEP_US)
            d = seq % len(DEPLOYMENTS)
            deployment = DEPLOYMENTS[d]
            model = deployment.removesuffix("-api")
            version = 1 + (seq // 1_000_000) % 3
            artifact, data = known[(d, version)]
            canonical_inputs, stored_inputs = pool[getrandbits(12)]
            p = getrandbits(20) / 1_048_576
            q = 1.0 - p
            latency = (getrandbits(14) + 500) / 1000
            output = int(p >= 0.5)
            pid = synthetic_id(rng, micros, seq)
            iso = when.isoformat()
            content = template(
                artifact=artifact,
                data=data,
                deployment=deployment,
                inputs=canonical_inputs,
                latency=latency,
                model=model,
                output=output,
                pid=pid,
                prev=prev,
                q=q,
                p=p,
                seq=seq,
                when=iso,
                version=version,
            )
            digest = sha256(prev.encode("ascii"))
            digest.update(content.encode())
            hash_ = digest.hexdigest()
            rows.append(
                (
                    seq, pid, when.strftime("%Y-%m-%d %H:%M:%S.%f"),  # SQLAlchemy's SQLite DATETIME format
                    deployment, model, version, "primary", artifact, data, stored_inputs, str(output),
                    f"[{q!r}, {p!r}]", latency, None, None, None, 0, "[]", prev, hash_,
                )
            )  # fmt: skip
            prev = hash_
        connection.execute("BEGIN")
        connection.executemany(insert, rows)
        connection.execute("UPDATE audit_head SET seq = ?, hash = ?", (seq, prev))
        connection.execute("COMMIT")
        done += len(rows)
        elapsed = time.perf_counter() - started
        if done % 1_000_000 == 0 or done == count:
            log(f"  loaded {done:,}/{count:,} ({done / elapsed:,.0f} records/s)")
    connection.execute("PRAGMA journal_mode=WAL")
    connection.close()
    return count / (time.perf_counter() - started)


def verify_sample(url: str, seed: int) -> dict[str, Any]:
    """corral's own code agrees with the loader: chain windows verify, and a real append chains on the head."""
    database = open_database(url, migrate=False)
    try:
        store = database.audit
        head_seq, _ = store.head()
        rng = random.Random(seed)
        starts = [0, *(rng.randrange(1, max(2, head_seq - 2000)) for _ in range(3))]
        checked = 0
        for start in starts:
            after_hash = GENESIS if start == 0 else store.search(after_seq=start - 1, limit=1)[0].hash
            check = verify_chain(
                islice(store.scan(after_seq=start, chunk=2000), 2000), after_seq=start, after_hash=after_hash
            )
            assert check.ok, check
            checked += check.checked
        now = datetime.now(UTC)
        real = PredictionRecord(
            prediction_id=new_id(),
            timestamp=now,
            deployment=DEPLOYMENTS[0],
            model="churn",
            version=1,
            inputs=dict.fromkeys(FEATURES, 0.5),
            output=1,
            probabilities=(0.25, 0.75),
            artifact_sha256=hashes(0, 1)[0],
            data_sha256=hashes(0, 1)[1],
            latency_ms=1.0,
        )
        store.append([real])
        tail = max(0, head_seq - 2000)
        after_hash = store.search(after_seq=tail - 1, limit=1)[0].hash if tail else GENESIS
        check = verify_chain(store.scan(after_seq=tail), after_seq=tail, after_hash=after_hash)
        assert check.ok, check
        assert check.head_seq == head_seq + 1
        assert store.head() == (check.head_seq, check.head_hash)
        checked += check.checked
    finally:
        database.close()
    return {"verified_records": checked, "windows": len(starts) + 1}


# -- lookups, in a fresh process ------------------------------------------------------------------------------------


def evict(path: Path) -> None:
    """Drop ``path`` (and its WAL) from the OS page cache, so the next reads go to the disk."""
    for name in (path, path.with_name(path.name + "-wal")):
        if name.exists():
            fd = os.open(name, os.O_RDONLY)
            try:
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def pick_ids(path: Path, count: int, rng: random.Random) -> list[str]:
    connection = sqlite3.connect(path)
    try:
        (top,) = connection.execute("SELECT max(seq) FROM predictions").fetchone()
        seqs = rng.sample(range(1, top + 1), count)
        found: dict[int, str] = {}
        for i in range(0, count, 500):
            chunk = seqs[i : i + 500]
            query = f"SELECT seq, prediction_id FROM predictions WHERE seq IN ({','.join('?' * len(chunk))})"
            found.update(connection.execute(query, chunk).fetchall())
    finally:
        connection.close()
    return [found[s] for s in seqs]


def quantiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "median_ms": statistics.median(ordered) * 1000,
        "p99_ms": ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))] * 1000,
        "max_ms": ordered[-1] * 1000,
        "n": len(ordered),
    }


def lookup_worker(job_file: Path) -> None:
    """The fresh process: time ``SqlAuditStore.get`` and ``search``; print JSON."""
    job = json.loads(job_file.read_text())
    database = open_database(job["url"], migrate=False)
    store = database.audit
    out: dict[str, Any] = {}
    try:
        started = time.perf_counter()
        store.head()  # opens the pooled connection: connecting is not a lookup
        out["first_query_s"] = time.perf_counter() - started

        def timed(ids: list[str]) -> list[float]:
            times = []
            for prediction_id in ids:
                t = time.perf_counter()
                record = store.get(prediction_id)
                times.append(time.perf_counter() - t)
                assert record.prediction_id == prediction_id
            return times

        out["cold"] = quantiles(timed(job["ids"]))
        out["warm"] = quantiles(timed(job["ids"]))
        out["steady"] = quantiles(timed(job["more_ids"]))
        first, second = [], []
        rng = random.Random(job["seed"])
        span = job["last_us"] - job["first_us"] - int(SEARCH_WINDOW.total_seconds() * 1e6)
        for k in range(SEARCHES):
            since = START + timedelta(microseconds=job["first_us"] + rng.randrange(max(1, span)))
            deployment = DEPLOYMENTS[k % len(DEPLOYMENTS)]
            t = time.perf_counter()
            page = store.search(deployment=deployment, since=since, until=since + SEARCH_WINDOW, limit=100)
            first.append(time.perf_counter() - t)
            assert len(page) == 100, len(page)
            t = time.perf_counter()
            more = store.search(
                deployment=deployment, since=since, until=since + SEARCH_WINDOW, after_seq=page[-1].seq, limit=100
            )
            second.append(time.perf_counter() - t)
            assert more
            assert more[0].seq > page[-1].seq
        out["search_first_page"] = quantiles(first)
        out["search_next_page"] = quantiles(second)
    finally:
        database.close()
    print(json.dumps(out))


def plan(path: Path) -> list[str]:
    """SQLite's plan for the search query ``SqlAuditStore.search`` sends (deployment + time range, by seq)."""
    connection = sqlite3.connect(path)
    try:
        rows = connection.execute(
            "EXPLAIN QUERY PLAN SELECT * FROM predictions WHERE seq > ? AND deployment = ? "
            "AND timestamp >= ? AND timestamp < ? ORDER BY seq LIMIT 100",
            (0, DEPLOYMENTS[0], "2025-01-02 00:00:00.000000", "2025-01-02 01:00:00.000000"),
        ).fetchall()
    finally:
        connection.close()
    return [row[-1] for row in rows]


def measure_lookups(path: Path, size: int, lookups: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed * 7919 + size)
    ids = pick_ids(path, lookups * 2, rng)
    job = {
        "url": f"sqlite:///{path}",
        "ids": ids[:lookups],
        "more_ids": ids[lookups:],
        "seed": seed,
        "first_us": STEP_US,
        "last_us": size * STEP_US,
    }
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(job, handle)
    try:
        evict(path)
        done = subprocess.run(
            [sys.executable, __file__, "--lookup-worker", handle.name], capture_output=True, text=True, check=False
        )
    finally:
        os.unlink(handle.name)
    if done.returncode != 0:
        raise RuntimeError(f"lookup worker failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout)


def run_lookups(args: argparse.Namespace, workdir: Path, results: list[dict[str, Any]], save: Any) -> None:
    path = workdir / "audit-lookups.db"
    for leftover in workdir.glob("audit-lookups.db*"):
        leftover.unlink()
    url = f"sqlite:///{path}"
    open_database(url).close()  # corral's migrations create the schema
    loaded, per_record = 0, None
    for size in sorted(args.sizes):
        if per_record is not None:
            need = (size - loaded) * per_record * 1.1
            free = shutil.disk_usage(workdir).free
            if free - need < args.disk_headroom_gb * 1024**3:
                message = (
                    f"size {size:,} skipped: needs about {need / 1024**3:.1f} GiB more, "
                    f"{free / 1024**3:.1f} GiB free, headroom {args.disk_headroom_gb} GiB"
                )
                log(message)
                results.append({"size": size, "skipped": message})
                save()
                continue
        log(f"loading to {size:,} records...")
        rate = load(path, size - loaded, args.seed)
        loaded = size
        verified = verify_sample(url, args.seed + size)
        loaded += 1  # the real append verify_sample made
        file_bytes = sum(p.stat().st_size for p in workdir.glob("audit-lookups.db*"))
        per_record = file_bytes / loaded
        log(f"  {file_bytes / 1024**3:.2f} GiB on disk, {per_record:.0f} bytes per record; measuring lookups...")
        timings = measure_lookups(path, loaded, args.lookups, args.seed)
        results.append(
            {
                "size": loaded,
                "load_records_per_s": rate,
                "bytes_on_disk": file_bytes,
                "bytes_per_record": per_record,
                "verified": verified,
                "query_plan": plan(path),
                **timings,
            }
        )
        save()
        log(
            f"  get cold median {timings['cold']['median_ms']:.3f} ms p99 {timings['cold']['p99_ms']:.3f} ms; "
            f"warm median {timings['warm']['median_ms']:.3f} ms; "
            f"search {timings['search_first_page']['median_ms']:.1f} ms"
        )
    if not args.keep:
        for leftover in workdir.glob("audit-lookups.db*"):
            leftover.unlink()


# -- durable write throughput ----------------------------------------------------------------------------------------


def event(number: int) -> PredictionEvent:
    return PredictionEvent(
        prediction_id=new_id(),
        timestamp=datetime.now(UTC),
        deployment=DEPLOYMENTS[0],
        model="churn",
        version=1,
        inputs={f: round(number * 0.001 + i, 4) for i, f in enumerate(FEATURES)},
        output=number % 2,
        probabilities=(0.4, 0.6),
        latency_ms=1.5,
    )


async def write_burst(sink: AuditSink, concurrency: int, seconds: float) -> dict[str, Any]:
    waits: list[float] = []
    stop = time.perf_counter() + seconds
    commits0, committed0 = sink.commits, sink.committed

    async def submitter(k: int) -> None:
        n = k
        while time.perf_counter() < stop:
            n += concurrency
            t = time.perf_counter()
            pending = sink.submit([event(n)])
            assert pending is not None
            await pending
            waits.append(time.perf_counter() - t)

    started = time.perf_counter()
    await asyncio.gather(*(submitter(k) for k in range(concurrency)))
    elapsed = time.perf_counter() - started
    commits, committed = sink.commits - commits0, sink.committed - committed0
    return {
        "concurrency": concurrency,
        "seconds": elapsed,
        "records": committed,
        "records_per_s": committed / elapsed,
        "commits_per_s": commits / elapsed,
        "rows_per_commit": committed / max(1, commits),
        "wait_p50_ms": statistics.median(waits) * 1000,
        "wait_p99_ms": sorted(waits)[int(0.99 * (len(waits) - 1))] * 1000,
    }


def run_writes(args: argparse.Namespace, workdir: Path) -> list[dict[str, Any]]:
    results = []
    for concurrency in args.concurrency:
        path = workdir / f"audit-writes-{concurrency}.db"
        for leftover in workdir.glob(f"{path.name}*"):
            leftover.unlink()
        database = open_database(f"sqlite:///{path}")
        try:
            sink = AuditSink(database.audit, lambda _m, _v: hashes(0, 1), mode="sync")

            async def main(sink: AuditSink = sink, concurrency: int = concurrency) -> dict[str, Any]:
                await write_burst(sink, concurrency, 0.5)  # warm-up: first connection, imports
                found = await write_burst(sink, concurrency, args.write_seconds)
                await sink.stop()
                return found

            found = asyncio.run(main())
            check = verify_chain(database.audit.scan())
            assert check.ok, check
            found["chain_verified"] = check.checked
        finally:
            database.close()
        for leftover in workdir.glob(f"{path.name}*"):
            leftover.unlink()
        log(
            f"  C={concurrency}: {found['records_per_s']:,.0f} records/s, {found['commits_per_s']:,.0f} commits/s, "
            f"{found['rows_per_commit']:.1f} rows/commit, wait p50 {found['wait_p50_ms']:.2f} ms "
            f"p99 {found['wait_p99_ms']:.2f} ms"
        )
        results.append(found)
    return results


# -- report ------------------------------------------------------------------------------------------------------


def versions() -> dict[str, str]:
    found = {"python": sys.version.split()[0], "sqlite": sqlite3.sqlite_version}
    commit = corral_commit()
    if commit is not None:
        found["corral_commit"] = commit
    for dist in ("corral", "sqlalchemy"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[dist] = metadata.version(dist)
    return found


def report(result: dict[str, Any]) -> None:
    m = result["machine"]
    print(f"Audit log (SQLite): {result['elapsed_s']:.0f} s in all")
    print(f"machine: {m['nproc']} CPUs ({m['cpu']}), {m['ram_gib']} GiB RAM; disk: {result['disk']}")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in result["versions"].items()))
    lookups = result["lookups"]
    if lookups:
        print()
        print(
            "| records | on disk | get(id) cold median / p99 | warm median / p99 | steady median / p99 "
            "| search page 1 median / max | page 2 median | load rate |"
        )
        print("|---:|---:|---:|---:|---:|---:|---:|---:|")
        for row in lookups:
            if "skipped" in row:
                print(f"| {row['size']:,} | {row['skipped']} | | | | | | |")
                continue
            c, w, s = row["cold"], row["warm"], row["steady"]
            f, n = row["search_first_page"], row["search_next_page"]
            print(
                f"| {row['size']:,} | {row['bytes_on_disk'] / 1024**3:.2f} GiB ({row['bytes_per_record']:.0f} B/rec) "
                f"| {c['median_ms']:.2f} / {c['p99_ms']:.2f} ms | {w['median_ms']:.2f} / {w['p99_ms']:.2f} ms "
                f"| {s['median_ms']:.2f} / {s['p99_ms']:.2f} ms | {f['median_ms']:.1f} / {f['max_ms']:.1f} ms "
                f"| {n['median_ms']:.1f} ms | {row['load_records_per_s']:,.0f} rec/s |"
            )
        print()
        print(f"search query plan: {'; '.join(lookups[-1].get('query_plan', []))}")
    writes = result["writes"]
    if writes:
        print()
        print("| concurrent submitters | records/s | commits/s | rows per commit | wait p50 | wait p99 |")
        print("|---:|---:|---:|---:|---:|---:|")
        for row in writes:
            print(
                f"| {row['concurrency']} | {row['records_per_s']:,.0f} | {row['commits_per_s']:,.0f} "
                f"| {row['rows_per_commit']:.1f} | {row['wait_p50_ms']:.2f} ms | {row['wait_p99_ms']:.2f} ms |"
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--sizes", default="100k,1M", help="log sizes to measure, grown in order (default 100k,1M)")
    parser.add_argument("--lookups", type=int, default=1000, help="random ids per lookup measurement (default 1000)")
    parser.add_argument("--concurrency", default="1,16,64", help="concurrent submitters for writes (default 1,16,64)")
    parser.add_argument("--write-seconds", type=float, default=4.0, help="seconds per write measurement (default 4)")
    parser.add_argument("--workdir", type=Path, default=None, help="where the databases go (default: a temp folder)")
    parser.add_argument("--disk-headroom-gb", type=float, default=10.0, help="free disk to leave (default 10 GiB)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--keep", action="store_true", help="keep the lookup database")
    parser.add_argument("--skip-lookups", action="store_true")
    parser.add_argument("--skip-writes", action="store_true")
    parser.add_argument("--output", type=Path, default=RESULTS, help=f"JSON results (default {RESULTS})")
    parser.add_argument("--lookup-worker", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.lookup_worker is not None:
        lookup_worker(args.lookup_worker)
        return 0
    args.sizes = [parse_size(s) for s in args.sizes.split(",")]
    args.concurrency = [int(c) for c in args.concurrency.split(",")]

    started = time.perf_counter()
    result: dict[str, Any] = {
        "benchmark": "audit",
        "command": " ".join([sys.executable, *sys.argv]),
        "complete": False,
        "elapsed_s": 0.0,
        "machine": machine(),
        "disk": "",
        "versions": versions(),
        "notes": {
            "loader": "bulk loader of bench/audit.py: executemany in 100k-row transactions with PRAGMA "
            "synchronous=OFF and journal_mode=MEMORY (loader only); hashes as corral.audit.records computes them, "
            "checked with verify_chain through SqlAuditStore",
            "cold": "fresh process, database file evicted from the OS page cache (posix_fadvise DONTNEED)",
            "warm": "the same ids again in that process",
            "steady": "new random ids in that process, after the cold and warm passes",
            "search": f"{SEARCHES} one-hour windows, one deployment of {len(DEPLOYMENTS)}, limit 100",
            "writes": "AuditSink(mode='sync') + SqlAuditStore, SQLite WAL synchronous=FULL, fresh database, "
            "one-row events",
        },
        "writes": [],
        "lookups": [],
    }

    def save() -> None:  # after every measurement, so a long run that is stopped keeps what it measured
        result["elapsed_s"] = time.perf_counter() - started
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(result, indent=2) + "\n")

    with workspace(args.workdir) as workdir:
        disk = shutil.disk_usage(workdir)
        result["disk"] = f"{disk.free / 1024**3:.0f} GiB free of {disk.total / 1024**3:.0f} GiB at the start"
        if not args.skip_writes:
            result["writes"] = run_writes(args, workdir)
            save()
        if not args.skip_lookups:
            run_lookups(args, workdir, result["lookups"], save)
    result["complete"] = True
    save()
    report(result)
    log(f"results: {args.output}")
    return 0


@contextlib.contextmanager
def workspace(workdir: Path | None) -> Iterator[Path]:
    if workdir is not None:
        workdir.mkdir(parents=True, exist_ok=True)
        yield workdir.resolve()
        return
    with tempfile.TemporaryDirectory(prefix="corral-bench-audit-") as tmp:
        yield Path(tmp)


if __name__ == "__main__":
    raise SystemExit(main())
