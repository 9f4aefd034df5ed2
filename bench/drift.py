"""Drift benchmark: corral's offline drift path against Evidently's ``DataDriftPreset`` and the scipy floor.

One synthetic data set per size: 20 numerical + 5 categorical columns, a reference and a current frame of
``n`` rows each (seeded numpy), the current one shifted in a few columns. Both frames are written to Parquet
once, and every measurement loads those same files in a **fresh subprocess**, so time and peak memory are
per run:

* ``corral``: the offline path ``corral drift`` runs, ``corral.cli.drift.compare_files(reference_path,
  current_path)``: both Parquet files read one column at a time, ``Signature`` inferred per column, and
  ``compare_columns`` with the defaults (``ks`` for numerical, ``chi2`` for categorical columns), in
  corral's ``.venv``; reading is part of its timed work, there is no separate load step;
* ``corral_frames``: the in-memory API, ``compare_frames(reference, current, Signature.infer(reference))``
  on two frames loaded with ``pd.read_parquet`` (what ``corral drift`` did before it read column by column);
* ``evidently``: ``Report([DataDriftPreset()]).run(current, reference).dict()`` (the result dict only,
  no HTML), with an explicit ``DataDefinition``, in ``bench/.venv-evidently`` (made by
  ``bench/setup-evidently.sh``: Evidently 0.7 needs pandas < 3);
* ``floor``: per column ``scipy.stats.ks_2samp`` (numerical) and ``scipy.stats.chi2_contingency`` on the
  two value counts (categorical), in corral's ``.venv``.

Each worker imports its libraries, loads both frames (all but ``corral``), then times the comparison; it
reports the load and comparison times and the peak RSS (``VmHWM``) after imports, after loading and at the
end. Time ratios and goals use load + compare for every tool, so ``corral``'s reading is counted. Tools
alternate who goes first. The script also times corral's streaming path: ``Aggregator.update`` with batches
of 1, 16 and 64 rows of 20 numerical features, in µs per row.

Markdown on stdout, progress on stderr, everything in ``bench/results/drift.json``. Run from the repository root::

    .venv/bin/python bench/drift.py [--sizes 100000,1000000] [--quick] [--skip-evidently]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from benchkit import log, machine

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "drift.json"
EVIDENTLY_VENV = HERE / ".venv-evidently"
SEED = 20261127
NUMERICAL = [f"n{i:02d}" for i in range(20)]
CATEGORICAL = [f"c{i}" for i in range(5)]
CATEGORY_COUNTS = [3, 5, 8, 12, 20]
# column -> how the current frame differs; "large" shifts every tool should flag, "small" only a test can see
SHIFTS = {
    "n00": ("large", "mean + 0.5 sd"),
    "n05": ("large", "scale x 1.5"),
    "n10": ("large", "mean + 0.25 sd"),
    "n15": ("large", "values x 1.3 (log-normal)"),
    "n19": ("small", "mean + 0.05 sd"),
    "c1": ("large", "category probabilities reversed"),
    "c3": ("small", "5% of rows moved to the first category"),
}
TOOLS = ("corral", "corral_frames", "floor", "evidently")
STREAM_FEATURES = 20
STREAM_BATCHES = (1, 16, 64)


# -- the data ----------------------------------------------------------------------------------------------


def _numerical(rng: np.random.Generator, i: int, n: int, shifted: bool) -> np.ndarray:
    kind = i % 5
    if kind == 0:
        mean, sd = 0.0, 1.0
        values = rng.normal(mean, sd, n)
    elif kind == 1:
        values = rng.lognormal(0.0, 0.5, n)
        sd = float(np.sqrt((np.exp(0.25) - 1) * np.exp(0.25)))
    elif kind == 2:
        values = rng.uniform(0.0, 1.0, n)
        sd = float(np.sqrt(1 / 12))
    elif kind == 3:
        values = rng.exponential(1.0, n)
        sd = 1.0
    else:
        sd = 3.0
        values = rng.normal(10.0, sd, n)
    if not shifted:
        return values
    name = f"n{i:02d}"
    if name == "n00":
        return values + 0.5 * sd
    if name == "n05":
        return values.mean() + (values - values.mean()) * 1.5
    if name == "n10":
        return values + 0.25 * sd
    if name == "n15":
        return values * 1.3
    if name == "n19":
        return values + 0.05 * sd
    return values


def _categorical(rng: np.random.Generator, j: int, n: int, shifted: bool) -> np.ndarray:
    k = CATEGORY_COUNTS[j]
    labels = np.array([f"v{v:02d}" for v in range(k)], dtype=object)
    weights = 0.7 ** np.arange(k)
    p = weights / weights.sum()
    if shifted and j == 1:
        p = p[::-1]
    codes = rng.choice(k, size=n, p=p)
    if shifted and j == 3:
        codes[rng.random(n) < 0.05] = 0
    return labels[codes]


def make_frame(n: int, *, shifted: bool, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    data: dict[str, Any] = {name: _numerical(rng, i, n, shifted) for i, name in enumerate(NUMERICAL)}
    data |= {name: _categorical(rng, j, n, shifted) for j, name in enumerate(CATEGORICAL)}
    return pd.DataFrame(data)


def write_data(folder: Path, n: int) -> tuple[Path, Path]:
    reference, current = folder / f"reference-{n}.parquet", folder / f"current-{n}.parquet"
    make_frame(n, shifted=False, seed=SEED + n).to_parquet(reference, index=False)
    make_frame(n, shifted=True, seed=SEED + n + 1).to_parquet(current, index=False)
    return reference, current


# -- the workers (each in a fresh process) ----------------------------------------------------------------


def _vm_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _load(reference: str, current: str) -> tuple[pd.DataFrame, pd.DataFrame, float]:
    start = time.perf_counter()
    ref, cur = pd.read_parquet(reference), pd.read_parquet(current)
    return ref, cur, time.perf_counter() - start


def _corral(reference: str, current: str) -> dict[str, dict[str, Any]]:
    from corral.cli.drift import compare_files

    results, _ = compare_files(Path(reference), Path(current))
    return _corral_columns(results)


def _corral_frames(ref: pd.DataFrame, cur: pd.DataFrame) -> dict[str, dict[str, Any]]:
    from corral.core.schema import Signature
    from corral.monitoring.detectors import compare_frames

    return _corral_columns(compare_frames(ref, cur, Signature.infer(ref)))


def _corral_columns(results: list[Any]) -> dict[str, dict[str, Any]]:
    return {
        r.feature: {"method": r.detector, "statistic": r.statistic, "p_value": r.p_value, "drifted": r.drifted}
        for r in results
        if r.feature is not None
    }


def _floor(ref: pd.DataFrame, cur: pd.DataFrame) -> dict[str, dict[str, Any]]:
    from scipy import stats

    out: dict[str, dict[str, Any]] = {}
    for name in NUMERICAL:
        res = stats.ks_2samp(ref[name].to_numpy(), cur[name].to_numpy())
        out[name] = {"method": "ks_2samp", "statistic": float(res.statistic), "p_value": float(res.pvalue)}
    for name in CATEGORICAL:
        table = pd.concat([ref[name].value_counts(), cur[name].value_counts()], axis=1).fillna(0)
        res = stats.chi2_contingency(table.to_numpy().T, correction=False)
        out[name] = {"method": "chi2_contingency", "statistic": float(res.statistic), "p_value": float(res.pvalue)}
    for value in out.values():
        value["drifted"] = value["p_value"] < 0.05
    return out


def _evidently_columns(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per column drift from a 0.7 snapshot dict: ``ValueDrift`` metrics carry the score, method and threshold."""
    out: dict[str, dict[str, Any]] = {}
    for metric in result.get("metrics", []):
        config = metric.get("config", {})
        column = config.get("column")
        if not str(config.get("type", "")).endswith("ValueDrift") or column is None:
            continue
        method = str(config.get("method", ""))
        threshold = config.get("threshold")
        score = float(metric["value"])
        # p-value methods drift below the threshold, distances above it (Evidently's own rule)
        is_p_value = "p_value" in method.lower() or "test" in method.lower()
        drifted = None if threshold is None else (score < threshold if is_p_value else score >= threshold)
        out[column] = {"method": method, "statistic": score, "threshold": threshold, "drifted": drifted}
    return out


def _evidently(ref: pd.DataFrame, cur: pd.DataFrame) -> dict[str, dict[str, Any]]:
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    definition = DataDefinition(numerical_columns=NUMERICAL, categorical_columns=CATEGORICAL)
    reference = Dataset.from_pandas(ref, data_definition=definition)
    current = Dataset.from_pandas(cur, data_definition=definition)
    snapshot = Report([DataDriftPreset()]).run(current, reference)
    return _evidently_columns(snapshot.dict())


def _import(tool: str) -> None:
    if tool == "corral":
        import corral.cli.drift
    elif tool == "corral_frames":
        import corral.monitoring.detectors  # noqa: F401
    elif tool == "floor":
        import scipy.stats  # noqa: F401
    else:
        import evidently.presets  # noqa: F401


def worker(tool: str, reference: str, current: str) -> None:
    """One measurement: import, load both frames, compare once; one JSON line on stdout."""
    _import(tool)
    imported_kib = _vm_kib("VmHWM")
    if tool == "corral":  # reads the files itself, one column at a time
        load_s, loaded_kib = 0.0, imported_kib
        start = time.perf_counter()
        columns = _corral(reference, current)
    else:
        ref, cur, load_s = _load(reference, current)
        loaded_kib = _vm_kib("VmHWM")
        compare = {"corral_frames": _corral_frames, "floor": _floor, "evidently": _evidently}[tool]
        start = time.perf_counter()
        columns = compare(ref, cur)
    seconds = time.perf_counter() - start
    peak_kib = _vm_kib("VmHWM")
    print(
        json.dumps(
            {
                "tool": tool,
                "seconds": seconds,
                "load_s": load_s,
                "imported_kib": imported_kib,
                "loaded_kib": loaded_kib,
                "peak_kib": peak_kib,
                "columns": columns,
            }
        )
    )


def run_worker(tool: str, reference: Path, current: Path) -> dict[str, Any]:
    python = EVIDENTLY_VENV / "bin" / "python" if tool == "evidently" else Path(sys.executable)
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    proc = subprocess.run(
        [str(python), str(Path(__file__).resolve()), "--worker", tool, str(reference), str(current)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        cwd=HERE,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{tool} worker failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- streaming ----------------------------------------------------------------------------------------------


def streaming(rows: int = 100_000, repeats: int = 5) -> list[dict[str, Any]]:
    """µs per served row of ``Aggregator.update`` at 20 numerical features, per batch size."""
    from corral.core.profile import Profile, profile_frame
    from corral.core.schema import Signature
    from corral.monitoring.aggregator import Aggregator

    reference = make_frame(rows, shifted=False, seed=SEED)[NUMERICAL[:STREAM_FEATURES]]
    served = make_frame(20_000, shifted=True, seed=SEED + 1)[NUMERICAL[:STREAM_FEATURES]]
    signature = Signature.infer(reference)
    profile = Profile(rows=len(reference), features=profile_frame(reference, signature))
    out = []
    for size in STREAM_BATCHES:
        calls = max(200, 4_000 // size)
        batches = [served.iloc[(i * size) % (len(served) - size) :][:size] for i in range(calls)]
        samples = []
        for _ in range(repeats):
            aggregator = Aggregator()
            aggregator.track("bench", "model", 1, profile)
            aggregator.update("bench", "model", 1, batches[0])  # opens the windows
            start = time.perf_counter()
            for batch in batches:
                aggregator.update("bench", "model", 1, batch)
            samples.append((time.perf_counter() - start) / calls)
            assert aggregator.pending == len(aggregator.lengths)
        per_call = statistics.median(samples)
        out.append(
            {
                "batch_rows": size,
                "features": STREAM_FEATURES,
                "calls": calls,
                "repeats": repeats,
                "us_per_call": per_call * 1e6,
                "us_per_row": per_call * 1e6 / size,
                "samples_us_per_call": [s * 1e6 for s in samples],
            }
        )
        log(f"  streaming: {size:>3} rows/batch: {per_call * 1e6:,.1f} µs per call, {per_call * 1e6 / size:.2f} µs/row")
    return out


# -- reporting ----------------------------------------------------------------------------------------------


def summarize(samples: dict[int, dict[str, list[dict[str, Any]]]]) -> list[dict[str, Any]]:
    rows = []
    for n, per_tool in samples.items():
        for tool, runs in per_tool.items():
            if not runs:
                continue
            rows.append(
                {
                    "n": n,
                    "tool": tool,
                    "runs": len(runs),
                    "seconds": statistics.median(r["seconds"] for r in runs),
                    "seconds_all": [r["seconds"] for r in runs],
                    "load_s": statistics.median(r["load_s"] for r in runs),
                    "total_s": statistics.median(r["load_s"] + r["seconds"] for r in runs),
                    "total_s_all": [r["load_s"] + r["seconds"] for r in runs],
                    "imported_mib": statistics.median(r["imported_kib"] for r in runs) / 1024,
                    "loaded_mib": statistics.median(r["loaded_kib"] for r in runs) / 1024,
                    "peak_mib": statistics.median(r["peak_kib"] for r in runs) / 1024,
                    "compute_mib": statistics.median(r["peak_kib"] - r["loaded_kib"] for r in runs) / 1024,
                }
            )
    return rows


def ratios(rows: list[dict[str, Any]]) -> dict[int, dict[str, float]]:
    out: dict[int, dict[str, float]] = {}
    for n in sorted({r["n"] for r in rows}):
        by = {r["tool"]: r for r in rows if r["n"] == n}
        c = by.get("corral")
        if c is None:
            continue
        found: dict[str, float] = {}
        for peer in ("evidently", "floor", "corral_frames"):
            p = by.get(peer)
            if p is None:
                continue
            found[f"time_vs_{peer}"] = c["total_s"] / p["total_s"]
            found[f"peak_vs_{peer}"] = c["peak_mib"] / p["peak_mib"]
            if p["compute_mib"] > 0:
                found[f"compute_vs_{peer}"] = c["compute_mib"] / p["compute_mib"]
        out[n] = found
    return out


def goals(found: dict[int, dict[str, float]]) -> dict[str, Any]:
    verdict: dict[str, Any] = {}
    for n, r in found.items():
        verdict[str(n)] = {
            "10x_faster_than_evidently": r["time_vs_evidently"] <= 0.1 if "time_vs_evidently" in r else None,
            "third_of_evidently_peak_rss": r["peak_vs_evidently"] <= 1 / 3 if "peak_vs_evidently" in r else None,
            "within_2x_of_floor": r["time_vs_floor"] <= 2 if "time_vs_floor" in r else None,
        }
    return verdict


def agreement(columns: dict[int, dict[str, dict[str, Any]]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    large = {c for c, (size, _) in SHIFTS.items() if size == "large"}
    for n, per_tool in columns.items():
        flagged = {tool: sorted(c for c, v in cols.items() if v.get("drifted")) for tool, cols in per_tool.items()}
        entry: dict[str, Any] = {"flagged": flagged, "shifted": sorted(SHIFTS), "large_shifts": sorted(large)}
        if "corral" in flagged and "evidently" in flagged:
            a, b = set(flagged["corral"]), set(flagged["evidently"])
            entry["both"] = sorted(a & b)
            entry["corral_only"] = sorted(a - b)
            entry["evidently_only"] = sorted(b - a)
        if "corral" in flagged and "floor" in flagged:
            entry["corral_equals_floor"] = flagged["corral"] == flagged["floor"]
        if "corral" in per_tool and "corral_frames" in per_tool:  # every statistic and p-value, exactly
            entry["column_wise_equals_in_memory"] = per_tool["corral"] == per_tool["corral_frames"]
        entry["all_large_shifts_flagged"] = {t: large <= set(f) for t, f in flagged.items()}
        out[str(n)] = entry
    return out


def fmt_s(value: float) -> str:
    return f"{value * 1000:,.0f} ms" if value < 1 else f"{value:,.2f} s"


def markdown(rows: list[dict[str, Any]], found: dict[int, dict[str, float]]) -> str:
    label = {
        "corral": "corral `compare_files` (column by column)",
        "corral_frames": "corral `compare_frames` (in memory)",
        "floor": "scipy floor",
        "evidently": "Evidently `DataDriftPreset`",
    }
    lines = [
        "| n | tool | load + compare (median) | compare | runs | peak RSS | RSS after imports | after imports + load |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in sorted(rows, key=lambda r: (r["n"], TOOLS.index(r["tool"]))):
        compare = "(in the total)" if r["tool"] == "corral" else fmt_s(r["seconds"])
        loaded = "-" if r["tool"] == "corral" else f"{r['loaded_mib']:,.0f} MiB"
        lines.append(
            f"| {r['n']:,} | {label[r['tool']]} | {fmt_s(r['total_s'])} | {compare} | {r['runs']} "
            f"| {r['peak_mib']:,.0f} MiB | {r['imported_mib']:,.0f} MiB | {loaded} |"
        )
    lines += [
        "",
        "| n | corral/Evidently time | corral/Evidently peak RSS | corral/floor time | corral/floor peak RSS "
        "| column-wise/in-memory time | column-wise/in-memory peak RSS |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n, r in found.items():

        def x(key: str, r: dict[str, float] = r) -> str:
            return f"{r[key]:.3f}x" if key in r else "–"

        lines.append(
            f"| {n:,} | {x('time_vs_evidently')} | {x('peak_vs_evidently')} | {x('time_vs_floor')} "
            f"| {x('peak_vs_floor')} | {x('time_vs_corral_frames')} | {x('peak_vs_corral_frames')} |"
        )
    return "\n".join(lines)


def versions(with_evidently: bool) -> dict[str, Any]:
    found: dict[str, Any] = {"python": platform.python_version()}
    for dist in ("corral", "numpy", "scipy", "pandas", "pyarrow"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[dist] = metadata.version(dist)
    if with_evidently:
        code = (
            "import json, platform; from importlib import metadata as m; "
            "print(json.dumps({d: m.version(d) for d in ('evidently', 'pandas', 'numpy', 'scipy', 'pyarrow')} "
            "| {'python': platform.python_version()}))"
        )
        proc = subprocess.run(
            [str(EVIDENTLY_VENV / "bin" / "python"), "-c", code], capture_output=True, text=True, check=True
        )
        found["evidently_venv"] = json.loads(proc.stdout)
    return found


def ensure_evidently() -> None:
    if (EVIDENTLY_VENV / "bin" / "python").exists():
        probe = subprocess.run(
            [str(EVIDENTLY_VENV / "bin" / "python"), "-c", "import evidently.presets, pyarrow"],
            capture_output=True,
            check=False,
        )
        if probe.returncode == 0:
            return
    log("creating bench/.venv-evidently with bench/setup-evidently.sh (about a minute) ...")
    subprocess.run(["bash", str(HERE / "setup-evidently.sh")], check=True, stdout=sys.stderr)


def print_report(report: dict[str, Any], rows: list[dict[str, Any]], found: dict[int, dict[str, float]]) -> None:
    print(markdown(rows, found))
    print()
    for n, verdict in report["goals"].items():
        print(f"goals at n={int(n):,}: " + ", ".join(f"{k}={v}" for k, v in verdict.items()))
    print()
    for n, entry in report["agreement"].items():
        shifted, large = ", ".join(entry["shifted"]), ", ".join(entry["large_shifts"])
        print(f"n={int(n):,}: shifted columns {shifted} (large: {large})")
        for tool, flagged in entry["flagged"].items():
            print(f"  {tool} flags: {', '.join(flagged) or 'none'}")
        for key in ("both", "corral_only", "evidently_only"):
            if key in entry:
                print(f"  {key}: {', '.join(entry[key]) or 'none'}")
        if "corral_equals_floor" in entry:
            print(f"  corral flags the same columns as the floor: {entry['corral_equals_floor']}")
        if "column_wise_equals_in_memory" in entry:
            print(f"  column-wise results identical to compare_frames: {entry['column_wise_equals_in_memory']}")
    if report["streaming"]:
        print()
        print("| Aggregator.update, 20 numerical features | µs per call | µs per row |")
        print("|---:|---:|---:|")
        for s in report["streaming"]:
            print(f"| {s['batch_rows']} rows per batch | {s['us_per_call']:,.1f} | {s['us_per_row']:,.2f} |")


def repeats_for(n: int, tool: str, args: argparse.Namespace) -> int:
    if n <= 100_000:
        return args.repeats
    return args.evidently_large_repeats if tool == "evidently" else args.large_repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100000,1000000", help="rows per frame, comma separated")
    parser.add_argument("--quick", action="store_true", help="100,000 rows only")
    parser.add_argument("--repeats", type=int, default=3, help="runs per tool at n <= 100,000 (default 3)")
    parser.add_argument("--large-repeats", type=int, default=2, help="runs of corral and the floor above 100,000")
    parser.add_argument("--evidently-large-repeats", type=int, default=1, help="runs of Evidently above 100,000")
    parser.add_argument("--skip-evidently", action="store_true", help="corral and the floor only")
    parser.add_argument("--no-streaming", action="store_true", help="skip the Aggregator.update measurement")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--worker", nargs=3, metavar=("TOOL", "REFERENCE", "CURRENT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(*args.worker)
        return

    sizes = [100_000] if args.quick else [int(s) for s in args.sizes.split(",")]
    tools = [t for t in TOOLS if not (args.skip_evidently and t == "evidently")]
    if "evidently" in tools:
        ensure_evidently()
    started = time.perf_counter()
    samples: dict[int, dict[str, list[dict[str, Any]]]] = {}
    columns: dict[int, dict[str, dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-drift-") as tmp:
        for n in sizes:
            log(f"n={n:,}: writing reference and current frames to Parquet ...")
            reference, current = write_data(Path(tmp), n)
            samples[n] = {t: [] for t in tools}
            rounds = max(repeats_for(n, t, args) for t in tools)
            for i in range(rounds):
                order = tools[i % len(tools) :] + tools[: i % len(tools)]  # rotate who goes first
                for tool in order:
                    if len(samples[n][tool]) >= repeats_for(n, tool, args):
                        continue
                    result = run_worker(tool, reference, current)
                    samples[n][tool].append(result)
                    columns.setdefault(n, {})[tool] = result["columns"]
                    log(
                        f"  n={n:,} {tool:<9} {fmt_s(result['seconds']):>10}  peak {result['peak_kib'] / 1024:,.0f} MiB"
                        f" (after load {result['loaded_kib'] / 1024:,.0f} MiB)"
                    )
    stream = [] if args.no_streaming else streaming()
    rows = summarize(samples)
    found = ratios(rows)
    report = {
        "benchmark": "drift",
        "machine": machine(),
        "versions": versions("evidently" in tools),
        "sizes": sizes,
        "shifts": {c: {"size": s, "what": w} for c, (s, w) in SHIFTS.items()},
        "results": rows,
        "ratios": {str(n): r for n, r in found.items()},
        "goals": goals(found),
        "agreement": agreement(columns),
        "columns": {str(n): c for n, c in columns.items()},
        "streaming": stream,
        "streaming_goal_met_under_20us_per_row": {str(s["batch_rows"]): s["us_per_row"] < 20 for s in stream},
        "wall_s": time.perf_counter() - started,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2))

    print_report(report, rows, found)
    log(f"wrote {args.output} ({report['wall_s']:.0f} s)")


if __name__ == "__main__":
    main()
