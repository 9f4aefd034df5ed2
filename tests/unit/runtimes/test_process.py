"""ChildProcess: frames over a socket or stdio, and what happens when the child crashes, hangs or never starts."""

from __future__ import annotations

import os
import signal
import sys
import textwrap
import time
from pathlib import Path

import pytest

from corral.errors import ModelLoadError, ModelTimeoutError, WorkerCrashedError
from corral.runtimes.process import ChildProcess

CHILD = textwrap.dedent(
    """
    import os, struct, sys, time
    fd = int(os.environ.get("CORRAL_CHANNEL_FD", "-1"))
    r, w = (fd, fd) if fd >= 0 else (sys.stdin.fileno(), sys.stdout.fileno())
    def send(b):
        os.write(w, struct.pack(">I", len(b)) + b)
    def recv():
        head = b""
        while len(head) < 4:
            chunk = os.read(r, 4 - len(head))
            if not chunk:
                sys.exit(0)
            head += chunk
        (n,) = struct.unpack(">I", head)
        data = b""
        while len(data) < n:
            data += os.read(r, n - len(data))
        return data
    mode = sys.argv[1] if len(sys.argv) > 1 else ""
    if mode == "silent":
        time.sleep(60)
    if mode == "exit":
        sys.stderr.write("cannot find model.rds\\n"); sys.stderr.flush(); sys.exit(4)
    if mode == "chatty":
        print("hello from the model")
        sys.stdout.flush()
    sys.stderr.write("loading\\n"); sys.stderr.flush()
    send(b"ready " + str(os.getpid()).encode())
    while True:
        m = recv()
        if m == b"die":
            os._exit(3)
        if m == b"hang":
            time.sleep(60)
        if m.startswith(b"big"):
            send(b"x" * int(m[3:]))
            continue
        send(m.upper())
    """
)


@pytest.fixture
def script(tmp_path: Path) -> Path:
    path = tmp_path / "child.py"
    path.write_text(CHILD)
    return path


def child(script: Path, *args: str, transport: str = "socket", **kwargs: object) -> ChildProcess:
    return ChildProcess([sys.executable, str(script), *args], name="model m/1", transport=transport, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("transport", ["socket", "stdio"])
def test_handshake_then_calls_in_order(script: Path, transport: str) -> None:
    with child(script, transport=transport) as process:
        assert process.handshake is not None and process.handshake.startswith(b"ready")
        assert process.call(b"abc") == b"ABC"
        assert process.call([b"de", memoryview(b"f")]) == b"DEF"  # parts are sent as one frame
        assert process.call(b"big300000") == b"x" * 300_000


def test_a_crash_fails_the_call_then_the_child_restarts_after_a_backoff(script: Path) -> None:
    with child(script) as process:
        first = process.pid
        with pytest.raises(WorkerCrashedError, match=r"model m/1: its worker exited with code 3 while answering"):
            process.call(b"die")
        with pytest.raises(WorkerCrashedError, match="restarts in"):
            process.call(b"too soon")  # refused at once during the backoff, never hangs
        time.sleep(ChildProcess.BACKOFF_FIRST + 0.1)
        assert process.call(b"back") == b"BACK"
        assert process.pid != first and process.restarts == 1


def test_a_child_killed_from_outside_is_noticed(script: Path) -> None:
    with child(script) as process:
        assert process.pid is not None
        os.kill(process.pid, signal.SIGKILL)
        with pytest.raises(WorkerCrashedError, match="killed by SIGKILL"):
            process.call(b"x")


def test_a_hang_is_killed_at_the_timeout(script: Path) -> None:
    with child(script, timeout=0.5) as process:
        pid = process.pid
        started = time.monotonic()
        with pytest.raises(ModelTimeoutError, match=r"model m/1 did not answer within 0.5 s"):
            process.call(b"hang")
        assert time.monotonic() - started < 5
        assert pid is not None
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)  # not left running the request
        time.sleep(ChildProcess.BACKOFF_FIRST + 0.1)
        assert process.call(b"ok", timeout=5) == b"OK"


def test_a_child_that_exits_before_its_handshake_names_its_last_words(script: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"exited with code 4 before it was ready: cannot find model.rds"):
        child(script, "exit").start()


def test_a_silent_child_fails_to_start_within_its_start_timeout(script: Path) -> None:
    process = child(script, "silent", start_timeout=0.5)
    with pytest.raises(ModelLoadError, match=r"did not get ready within 0.5 s"):
        process.start()
    assert not process.alive


def test_text_printed_on_a_stdio_channel_is_named(script: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"carries text .*printed on it"):
        child(script, "chatty", transport="stdio").start()


def test_a_missing_program_is_a_load_error(tmp_path: Path) -> None:
    process = ChildProcess([str(tmp_path / "nope")], name="ghost")
    with pytest.raises(ModelLoadError, match="ghost: cannot start"):
        process.start()


def test_close_stops_the_child_and_refuses_later_calls(script: Path) -> None:
    process = child(script)
    process.start()
    pid = process.pid
    process.close()
    assert pid is not None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    with pytest.raises(WorkerCrashedError, match="was stopped"):
        process.call(b"x")


def test_an_unknown_transport_is_refused(script: Path) -> None:
    with pytest.raises(ValueError, match="transport"):
        child(script, transport="carrier-pigeon")
