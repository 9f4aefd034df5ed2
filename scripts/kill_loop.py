"""SIGKILL a real ``corral serve`` in the middle of bursts of predictions, many times, and check the prediction log.

The longer form of the fault suite's kill loop (``tests/integration/test_faults.py`` runs 20 rounds in
``make test``). Each round: 8 clients post 1-, 7- and 40-row predictions back to back; at a random moment in
the burst the server's whole process group is SIGKILLed; a new server starts on the same store. At the end,
every prediction id any client received in a 200 response must be in the log exactly once, with the version
that answered, and the hash chain must verify (against the signed checkpoints too). Exits 1 if not.

    .venv/bin/python scripts/kill_loop.py --iterations 200 --database sqlite
    .venv/bin/python scripts/kill_loop.py --iterations 100 --database postgres \\
        --postgres-url postgresql+psycopg://postgres@127.0.0.1:5432/test

With ``--database postgres`` a fresh database is created on that server (the user needs CREATEDB) and dropped
at the end. ``--seed`` repeats the kill moments of an earlier run; ``--keep`` keeps the home folder (its
SQLite database, checkpoints and logs) for a look afterwards.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "integration"))

from fault_tools import Round, cancer_frame, check_log, fit, install, kill_loop  # noqa: E402
from server_process import corral_env  # noqa: E402

from corral.testing.postgres import fresh_database  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=100, help="how many SIGKILLs (default 100)")
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument(
        "--postgres-url",
        default="postgresql+psycopg://postgres@127.0.0.1:5432/test",
        help="an existing database on the server where a fresh one is created (--database postgres)",
    )
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients in each burst (default 8)")
    parser.add_argument("--kill-within", type=float, default=1.0, help="latest kill, seconds into the burst")
    parser.add_argument("--ahead", type=int, default=2, help="next servers started during a burst (default 2)")
    parser.add_argument("--cold-every", type=int, default=5, help="every Nth restart is cold (default 5; 1: all)")
    parser.add_argument("--seed", type=int, default=None, help="random seed for the kill moments")
    parser.add_argument("--home", type=Path, default=None, help="CORRAL_HOME to use (default a temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep the home folder (a PostgreSQL database is dropped)")
    args = parser.parse_args(argv)

    seed = args.seed if args.seed is not None else random.randrange(2**32)
    with ExitStack() as stack:
        if args.home is not None:
            home = args.home
        elif args.keep:
            home = Path(tempfile.mkdtemp(prefix="corral-kill-loop-")) / "home"
        else:
            home = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="corral-kill-loop-"))) / "home"
        settings: dict[str, str] = {}
        if args.database == "postgres":
            settings["CORRAL_DATABASE_URL"] = stack.enter_context(
                fresh_database(args.postgres_url, prefix="corral_kill_loop_")
            )
        env = corral_env(home, **settings)
        cancer = cancer_frame()
        install(env, fit(cancer), cancer)
        rows = cancer.drop(columns="target").to_dict(orient="records")
        print(f"kill loop: {args.iterations} rounds on {args.database}, home {home}, seed {seed}", flush=True)

        def report(done: Round) -> None:
            print(
                f"round {done.number:4d}: killed {done.delay:.2f}s into the burst, {done.acknowledged:5d} ids in "
                f"{done.answered:4d} answers, {done.cut_off:2d} cut off, {len(done.refused)} refused, "
                f"{'cold' if done.cold else 'warm'} restart {done.restart:.1f}s",
                flush=True,
            )

        loop = kill_loop(
            env,
            rows,
            iterations=args.iterations,
            rng=random.Random(seed),
            clients=args.clients,
            kill_within=args.kill_within,
            ahead=args.ahead,
            cold_every=args.cold_every,
            report=report,
        )
        began = time.monotonic()
        check = check_log(env, loop.acknowledged)
        refused = [r for done in loop.rounds for r in done.refused]
        print(loop.summary())
        print(
            f"log: {check.records} answered rows recorded (head {check.head}; "
            f"{check.records - len(loop.acknowledged)} recorded but never answered, the kill came between commit "
            f"and response), checked in {time.monotonic() - began:.1f}s; chain: {check.verify_report}"
        )
        if refused:
            print(f"{len(refused)} requests refused during the bursts: {refused[:5]}")
        if not check.ok or refused:
            print(f"FAILED: {check.problems()}")
            return 1
        print("OK: every acknowledged prediction is in the log exactly once and the chain verifies")
        return 0


if __name__ == "__main__":
    sys.exit(main())
