"""A model in a child process: start it, talk to it in frames, and survive it.

:class:`ChildProcess` runs one command (a corral worker in a model's own environment, or an executable in
any language) and exchanges length-prefixed frames with it: a 4-byte big-endian length, then that many
bytes. The channel is the child's stdin/stdout (``transport="stdio"``, for executables in other
languages) or a Unix socket pair whose child end's file descriptor is in the child's ``CORRAL_CHANNEL_FD``
environment variable (``transport="socket"``, for corral workers: a model that prints to stdout cannot
corrupt the channel).

The child proves it is ready by sending a first frame (its handshake), which :meth:`ChildProcess.start`
returns. After that every :meth:`ChildProcess.call` sends one frame and waits for one answer, one call at a
time. What can go wrong is turned into corral errors, and never into a hang:

- the child exits or closes the channel while answering: :class:`~corral.errors.WorkerCrashedError`
  (HTTP 503), and the next call restarts it, waiting out an exponential backoff first (0.5 s, doubling,
  at most 30 s; a call during the backoff is refused at once with the seconds left);
- the child does not answer within ``timeout``: it is killed (its whole process group) and the call
  raises :class:`~corral.errors.ModelTimeoutError` (HTTP 504), so it is not left running the request;
- the child does not start: :class:`~corral.errors.ModelLoadError` with the last lines it wrote to stderr.

The child's stderr (and stdout, with the socket transport) goes to the ``corral.worker`` logger, one record
per line; the last lines are kept for error messages. ``max_memory_mb`` caps the child's address space
(``RLIMIT_AS``): a model that needs more fails inside the child instead of taking the machine.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import resource
import select
import signal
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Literal

from corral.errors import ModelLoadError, ModelTimeoutError, WorkerCrashedError

log = logging.getLogger("corral.worker")

HEADER = struct.Struct(">I")
MAX_FRAME = 1 << 28  # 256 MiB; larger is a broken channel (text written on a stdio channel reads as >= 512 MiB)
CHANNEL_FD_VARIABLE = "CORRAL_CHANNEL_FD"  # names the child's end of the socket pair, with transport="socket"


class ChannelClosed(Exception):
    """The other side closed the channel (or died)."""


class Channel:
    """Length-prefixed frames over a pair of file descriptors, with deadlines.

    Used on both sides: the server holds one for each child, a corral worker holds one for the server.
    """

    def __init__(self, read_fd: int, write_fd: int) -> None:
        self.read_fd = read_fd
        self.write_fd = write_fd

    def send(self, payload: bytes | Sequence[bytes | memoryview]) -> None:
        parts = [payload] if isinstance(payload, bytes | memoryview) else list(payload)
        size = sum(memoryview(p).nbytes for p in parts)
        # one write: a frame split over several would wake the reader once per part
        frame = b"".join([HEADER.pack(size), *(memoryview(p).cast("B") for p in parts)])
        try:
            self._write_all(frame)
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise ChannelClosed(str(exc)) from None

    def receive(self, deadline: float | None = None) -> bytes:
        (size,) = HEADER.unpack(self._read_exactly(HEADER.size, deadline))
        if size >= MAX_FRAME:
            head = HEADER.pack(size)
            if head.isascii():
                raise ChannelClosed(f"the channel carries text ({head.decode()!r}...), not frames: printed on it?")
            raise ChannelClosed(f"a frame header announces {size} bytes")
        return self._read_exactly(size, deadline)

    def _write_all(self, data: bytes | memoryview) -> None:
        view = memoryview(data).cast("B")
        while view:
            written = os.write(self.write_fd, view)
            view = view[written:]

    def _read_exactly(self, size: int, deadline: float | None) -> bytes:
        chunks = bytearray()
        while len(chunks) < size:
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([self.read_fd], [], [], left)[0]:
                    raise TimeoutError
            try:
                chunk = os.read(self.read_fd, min(size - len(chunks), 1 << 20))
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                raise ChannelClosed("end of stream")
            chunks += chunk
        return bytes(chunks)


class ChildProcess:
    """One supervised child process speaking length-prefixed frames.

    Args:
        command: the program and its arguments.
        name: what the child serves, for messages and logs (``"fraud (fraud/3)"``).
        cwd: its working folder.
        env: its whole environment (default: this process's).
        transport: ``"socket"`` (fd 3 of the child) or ``"stdio"`` (its stdin and stdout).
        timeout: seconds one call may take before the child is killed (``None``: no limit).
        max_memory_mb: the child's address-space limit (``None``: no limit).
        start_timeout: seconds the child has to send its handshake.
        on_line: also told every line the child logs (tests and diagnostics).
    """

    BACKOFF_FIRST = 0.5
    BACKOFF_MAX = 30.0
    HEALTHY_AFTER = 60.0  # a child that lived this long has its backoff reset

    def __init__(
        self,
        command: Sequence[str],
        *,
        name: str,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
        transport: Literal["socket", "stdio"] = "socket",
        timeout: float | None = 30.0,
        max_memory_mb: int | None = None,
        start_timeout: float = 120.0,
        on_line: Callable[[str], None] | None = None,
    ) -> None:
        if transport not in ("socket", "stdio"):
            raise ValueError(f"transport must be 'socket' or 'stdio', not {transport!r}")
        self.command = list(command)
        self.name = name
        self.cwd = cwd
        self.env = dict(env) if env is not None else None
        self.transport = transport
        self.timeout = timeout
        self.max_memory_mb = max_memory_mb
        self.start_timeout = start_timeout
        self.on_line = on_line
        self.handshake: bytes | None = None
        self.restarts = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._channel: Channel | None = None
        self._socket: socket.socket | None = None
        self._lock = threading.Lock()
        self._lines: collections.deque[str] = collections.deque(maxlen=20)
        self._readers: list[threading.Thread] = []
        self._started_at = 0.0
        self._failures = 0
        self._retry_at = 0.0
        self._last_exit: str = ""
        self._closed = False

    # -- lifecycle ------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> bytes:
        """Start the child and wait for its handshake frame, which is returned.

        Raises:
            ModelLoadError: the command cannot run, or the child exited or stayed silent before its handshake.
        """
        with self._lock:
            return self._start()

    def close(self) -> None:
        """Stop the child (politely: close its channel, then SIGTERM, then SIGKILL) and refuse further calls."""
        with self._lock:
            self._closed = True
            self._stop(graceful=True)

    def __enter__(self) -> ChildProcess:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- calls ----------------------------------------------------------------------

    def call(self, payload: bytes | Sequence[bytes | memoryview], *, timeout: float | None = None) -> bytes:
        """Send one frame and return the child's answer.

        ``timeout`` overrides the child's default for this call.

        Raises:
            WorkerCrashedError: the child died while answering, or is waiting to restart.
            ModelTimeoutError: no answer in time; the child was killed and will restart.
            ModelLoadError: a restart failed.
        """
        limit = self.timeout if timeout is None else timeout
        with self._lock:
            if self._closed:
                raise WorkerCrashedError(f"{self.name}: its worker was stopped")
            if not self.alive or self._channel is None:
                self._restart()
            channel = self._channel
            assert channel is not None
            try:
                channel.send(payload)
                answer = channel.receive(None if limit is None else time.monotonic() + limit)
            except TimeoutError:
                self._crashed(f"killed after {limit:g} s without an answer")
                raise ModelTimeoutError(
                    f"{self.name} did not answer within {limit:g} s; its worker was stopped and will restart"
                ) from None
            except (ChannelClosed, OSError):
                code = self._wait_exit()
                self._crashed(code)
                raise WorkerCrashedError(
                    f"{self.name}: its worker {code} while answering; it restarts in {self._backoff():g} s"
                    + self._stderr_tail()
                ) from None
            if self._failures and time.monotonic() - self._started_at > self.HEALTHY_AFTER:
                self._failures = 0
            return answer

    # -- internals ------------------------------------------------------------------

    def _start(self) -> bytes:
        self._stop(graceful=False)
        self._lines.clear()
        child_end: socket.socket | None = None
        pass_fds: tuple[int, ...] = ()
        env = dict(self.env if self.env is not None else os.environ)
        if self.transport == "socket":
            self._socket, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            pass_fds = (child_end.fileno(),)
            env[CHANNEL_FD_VARIABLE] = str(child_end.fileno())
        try:
            self._process = subprocess.Popen(
                self.command,
                cwd=self.cwd,
                env=env,
                stdin=subprocess.PIPE if self.transport == "stdio" else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,  # its own process group: a kill takes its children too
                pass_fds=pass_fds,
            )
        except OSError as exc:
            self._close_socket()
            raise ModelLoadError(f"{self.name}: cannot start {self.command[0]!r}: {exc.strerror or exc}") from None
        finally:
            if child_end is not None:
                child_end.close()
        process = self._process
        assert process.stdout is not None
        assert process.stderr is not None
        if self.max_memory_mb is not None:
            limit = self.max_memory_mb * 1024 * 1024
            with contextlib.suppress(OSError, ValueError):  # the child may already be gone
                resource.prlimit(process.pid, resource.RLIMIT_AS, (limit, limit))
        self._readers = [self._reader(process.stderr)]
        if self.transport == "socket":
            assert self._socket is not None
            self._readers.append(self._reader(process.stdout))
            self._channel = Channel(self._socket.fileno(), self._socket.fileno())
        else:
            assert process.stdin is not None
            self._channel = Channel(process.stdout.fileno(), process.stdin.fileno())
        try:
            self.handshake = self._channel.receive(time.monotonic() + self.start_timeout)
        except TimeoutError:
            self._stop(graceful=False)
            raise ModelLoadError(
                f"{self.name}: its worker did not get ready within {self.start_timeout:g} s" + self._stderr_tail()
            ) from None
        except (ChannelClosed, OSError) as exc:
            code = f"broke its channel ({exc})" if "channel" in str(exc) else self._wait_exit()
            self._stop(graceful=False)
            raise ModelLoadError(f"{self.name}: its worker {code} before it was ready" + self._stderr_tail()) from None
        self._started_at = time.monotonic()
        log.info("%s: worker started (pid %s)", self.name, process.pid)
        return self.handshake

    def _restart(self) -> None:
        wait = self._retry_at - time.monotonic()
        if wait > 0:
            raise WorkerCrashedError(
                f"{self.name}: its worker {self._last_exit or 'stopped'}; it restarts in {wait:.1f} s"
            )
        self.restarts += 1
        log.warning("%s: restarting its worker (restart %d)", self.name, self.restarts)
        try:
            self._start()
        except ModelLoadError:
            self._failures += 1
            self._retry_at = time.monotonic() + self._backoff()
            raise

    def _crashed(self, how: str) -> None:
        self._last_exit = how
        self._failures += 1
        self._retry_at = time.monotonic() + self._backoff()
        log.error("%s: worker %s", self.name, how)
        self._stop(graceful=False)

    def _backoff(self) -> float:
        if self._failures <= 0:
            return 0.0
        return float(min(self.BACKOFF_MAX, self.BACKOFF_FIRST * 2 ** (self._failures - 1)))

    def _wait_exit(self) -> str:
        process = self._process
        if process is None:
            return "stopped"
        try:
            code = process.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            return "closed its channel"
        if code < 0:
            with contextlib.suppress(ValueError):
                return f"was killed by {signal.Signals(-code).name}"
        return f"exited with code {code}"

    def _stop(self, *, graceful: bool) -> None:
        process, self._process, self._channel = self._process, None, None
        if process is not None:
            if process.stdin is not None:
                with contextlib.suppress(OSError):
                    process.stdin.close()
            self._close_socket()
            if graceful and process.poll() is None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=2.0)
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(process.pid, signal.SIGTERM if graceful else signal.SIGKILL)
                try:
                    process.wait(timeout=3.0)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)  # anything it left behind in its group
        self._close_socket()
        for reader in self._readers:
            reader.join(timeout=1.0)
        self._readers = []
        if process is not None:
            for stream in (process.stdout, process.stderr):
                if stream is not None:
                    with contextlib.suppress(OSError):
                        stream.close()

    def _close_socket(self) -> None:
        if self._socket is not None:
            with contextlib.suppress(OSError):
                self._socket.close()
            self._socket = None

    def _reader(self, stream: IO[bytes]) -> threading.Thread:
        def read() -> None:
            with contextlib.suppress(OSError, ValueError):
                for raw in iter(stream.readline, b""):
                    line = raw.decode(errors="replace").rstrip()
                    self._lines.append(line)
                    log.info("%s: %s", self.name, line)
                    if self.on_line is not None:
                        self.on_line(line)

        thread = threading.Thread(target=read, name=f"corral-worker-log-{self.name}", daemon=True)
        thread.start()
        return thread

    def _stderr_tail(self) -> str:
        lines = [line for line in list(self._lines)[-5:] if line.strip()]
        return (": " + " | ".join(lines)) if lines else ""
