"""Run a pipeline's training function in a child process.

The function (``module:function``) runs in a fresh interpreter started with multiprocessing's ``spawn``
context, so a function that hangs, leaks memory, crashes the interpreter or calls ``sys.exit`` cannot take
the worker down with it: a hung one is killed at the timeout (with any processes it started, which share
its process group), a crashed one becomes an error with its log.

The child receives the frame and a :class:`TrainingContext`, and hands back the fitted model pickled
through a file in a private temporary folder (this is our own child running the pipeline owner's code,
so its pickle is trusted as much as that code is). Everything it writes to stdout and stderr, and the
records of ``context.logger``, go to one log file that the parent reads back, in order.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import multiprocessing
import os
import pickle
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from corral.errors import ConfigurationError, LimitExceededError, RegistrationError

LOGGER_NAME = "corral.training"
"""The name of the logger handed to training functions (in the child)."""
MAX_LOG_CHARS = 1_000_000
"""A longer log keeps its last this many characters."""
TRACEBACK_LINES = 12
"""How many of the last traceback lines a failing function's error carries."""

_LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"  # the worker stamps each line with its time


@dataclass(frozen=True, slots=True)
class TrainingContext:
    """What a training function gets besides the data.

    Attributes:
        params: the pipeline's parameters.
        previous: facts about the model being replaced (e.g. its version and metrics), or ``None``.
        logger: log here; the records end up in the run's log.
    """

    params: Mapping[str, Any] = field(default_factory=dict)
    previous: dict[str, Any] | None = None
    logger: logging.Logger = field(default_factory=lambda: logging.getLogger(LOGGER_NAME))


@dataclass(frozen=True, slots=True)
class TrainingResult:
    """A fitted model, the child's log (stdout, stderr and logger records, in order), and the seconds it took."""

    model: Any
    log: str
    seconds: float


def parse_function_ref(function_ref: str) -> tuple[str, str]:
    """``("module.path", "function")`` from ``"module.path:function"``.

    Raises:
        ConfigurationError: text that is not ``module:function``.
    """
    module, sep, name = function_ref.partition(":")
    if not sep or not module.strip() or not name.strip():
        raise ConfigurationError(f"a training function is named module:function, got {function_ref!r}")
    return module.strip(), name.strip()


def train_in_subprocess(
    function_ref: str,
    frame: pd.DataFrame,
    context: Mapping[str, Any],
    *,
    timeout_seconds: float,
    on_log: Callable[[str], None] | None = None,
    log_every_seconds: float = 10.0,
) -> TrainingResult:
    """Call ``function_ref`` with ``(frame, TrainingContext)`` in a spawned child and return its model.

    ``context`` gives ``params`` (a mapping) and ``previous`` (a dict or ``None``); other keys are ignored.
    ``on_log``, when given, is called about every ``log_every_seconds`` with the log so far (a worker
    renews its lease there).

    Raises:
        ConfigurationError: ``function_ref`` is not ``module:function``, or does not import in the child.
        RegistrationError: the function raised (the message has the exception and the traceback's last
            lines), returned something that is not a model (no ``fit`` and ``predict``; the message names
            its type), returned a model that cannot be pickled, or the child died without an answer.
        LimitExceededError: the function ran longer than ``timeout_seconds``; the child was killed.
    """
    parse_function_ref(function_ref)
    if timeout_seconds <= 0:
        raise ConfigurationError(f"timeout_seconds must be positive, got {timeout_seconds}")
    params = dict(context.get("params") or {})
    previous = context.get("previous")
    if previous is not None:
        previous = dict(previous)
    spawn = multiprocessing.get_context("spawn")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="corral-train-") as folder:
        log_path = Path(folder) / "log.txt"
        result_path = Path(folder) / "result.pickle"
        log_path.touch()
        process = spawn.Process(
            target=_child_main,
            args=(function_ref, frame),
            kwargs={"params": params, "previous": previous, "log_path": str(log_path), "result_path": str(result_path)},
            name=f"corral-train {function_ref}",
        )
        process.start()
        try:
            deadline = started + timeout_seconds
            next_report = time.monotonic() + log_every_seconds
            while process.is_alive():
                now = time.monotonic()
                if now >= deadline:
                    break
                wait = deadline - now
                if on_log is not None:
                    if now >= next_report:
                        on_log(_read_log(log_path))
                        next_report = now + log_every_seconds
                    wait = min(wait, max(next_report - now, 0.01))
                process.join(min(wait, 0.5))
            if process.is_alive():
                _kill(process)
                log = _read_log(log_path)
                raise LimitExceededError(
                    f"training {function_ref} ran longer than its timeout of {timeout_seconds:g} s and was "
                    f"stopped after {time.monotonic() - started:.1f} s{_log_tail(log)}"
                )
        finally:
            if process.is_alive():  # an error in on_log, or an interrupt: never leave the child behind
                _kill(process)
            process.join()
        seconds = time.monotonic() - started
        log = _read_log(log_path)
        if not result_path.exists():
            code = process.exitcode
            how = f"was killed by signal {-code}" if code is not None and code < 0 else f"exited with code {code}"
            raise RegistrationError(f"the training process for {function_ref} {how} without a result{_log_tail(log)}")
        outcome = pickle.loads(result_path.read_bytes())  # written by our own child just now
    return _interpret(function_ref, outcome, log, seconds)


def _interpret(function_ref: str, outcome: tuple[Any, ...], log: str, seconds: float) -> TrainingResult:
    kind = outcome[0]
    if kind == "ok":
        try:
            model = pickle.loads(outcome[1])  # the model our own child just fitted
        except Exception as exc:
            raise RegistrationError(
                f"the model {function_ref} returned could not be unpickled in the worker: {type(exc).__name__}: {exc}"
            ) from exc
        return TrainingResult(model=model, log=log, seconds=seconds)
    if kind == "import":
        raise ConfigurationError(f"the training function {function_ref} does not import: {outcome[1]}")
    if kind == "raised":
        raise RegistrationError(f"the training function {function_ref} raised {outcome[1]}\n{outcome[2]}")
    if kind == "not_model":
        raise RegistrationError(
            f"the training function {function_ref} returned a {outcome[1]}, not a model (it needs fit and predict)"
        )
    if kind == "unpicklable":
        raise RegistrationError(f"the model {function_ref} returned cannot be pickled: {outcome[1]}")
    raise RegistrationError(f"the training process for {function_ref} answered {kind!r}")  # pragma: no cover


def _kill(process: Any) -> None:
    """Kill the child and everything in its process group (it made itself a group leader), then reap it."""
    pid = process.pid
    if pid is not None and hasattr(os, "killpg"):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
    process.kill()
    process.join(10)


def _read_log(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return ""
    if len(text) > MAX_LOG_CHARS:
        text = f"[... {len(text) - MAX_LOG_CHARS} earlier characters left out ...]\n" + text[-MAX_LOG_CHARS:]
    return text


def _log_tail(log: str, lines: int = 10) -> str:
    tail = log.strip().splitlines()[-lines:]
    return ("; the log ends:\n" + "\n".join(tail)) if tail else ""


# --- the child ------------------------------------------------------------------------------------------


def _child_main(
    function_ref: str,
    frame: pd.DataFrame,
    *,
    params: dict[str, Any],
    previous: dict[str, Any] | None,
    log_path: str,
    result_path: str,
) -> None:
    """Runs in the spawned child: redirect output to the log, import, train, write the outcome."""
    if hasattr(os, "setsid"):
        with contextlib.suppress(OSError):
            os.setsid()  # its own process group, so a timeout kills whatever it starts too
    log_fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.close(log_fd)
    sys.stdout = open(1, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)  # noqa: SIM115
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(_LOG_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logger = logging.getLogger(LOGGER_NAME)
    logger.setLevel(logging.DEBUG)
    try:
        outcome = _train(function_ref, frame, params, previous, logger)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    tmp = result_path + ".tmp"
    with open(tmp, "wb") as out:
        pickle.dump(outcome, out, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(tmp, result_path)


def _train(
    function_ref: str,
    frame: pd.DataFrame,
    params: dict[str, Any],
    previous: dict[str, Any] | None,
    logger: logging.Logger,
) -> tuple[Any, ...]:
    module_name, name = parse_function_ref(function_ref)
    try:
        target: Any = importlib.import_module(module_name)
        for part in name.split("."):
            target = getattr(target, part)
        if not callable(target):
            raise TypeError(f"{name} is a {type(target).__name__}, not a function")
    except BaseException as exc:  # anything the import does is the user's module failing
        return ("import", f"{type(exc).__name__}: {exc}")
    try:
        model = target(frame, TrainingContext(params=params, previous=previous, logger=logger))
    except BaseException as exc:  # SystemExit too: the function failed
        text = traceback.format_exc()
        print(text, file=sys.stderr, end="")
        tail = "\n".join(text.rstrip().splitlines()[-TRACEBACK_LINES:])
        return ("raised", f"{type(exc).__name__}: {exc}", tail)
    if not (callable(getattr(model, "fit", None)) and callable(getattr(model, "predict", None))):
        kind = type(model)
        qualified = kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
        return ("not_model", qualified)
    try:
        blob = pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:
        return ("unpicklable", f"{type(exc).__name__}: {exc}")
    return ("ok", blob)


__all__ = [
    "LOGGER_NAME",
    "TrainingContext",
    "TrainingResult",
    "parse_function_ref",
    "train_in_subprocess",
]
