"""A model worker's main program: ``python -m corral.isolation.worker``.

Started by the server (:class:`corral.isolation.host.WorkerRuntime`) with the interpreter of the version's
own environment. It loads one model with corral's runtime for its flavor, says so in its first frame (the
handshake: ``{"op": "ready", "spec": ..., "versions": ...}``, or ``{"op": "error", ...}`` when loading
failed), then answers prediction requests until its channel closes. With ``--save`` it first writes the
model given as a path into the folder, as registration does, and hands back the resulting spec.

It imports only numpy, pandas, the framework and the parts of corral that models need (``core``,
``errors``, ``runtimes`` and this package), so an environment needs nothing else.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from corral.core.schema import Signature
from corral.isolation import codec
from corral.runtimes.base import ModelRuntime, RuntimeSpec
from corral.runtimes.loader import runtime_class
from corral.runtimes.process import CHANNEL_FD_VARIABLE, Channel, ChannelClosed


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="corral-worker", description=__doc__)
    parser.add_argument("--flavor", required=True)
    parser.add_argument("--folder", required=True, type=Path, help="the unpacked artifact (written with --save)")
    parser.add_argument("--spec", help="the version's runtime spec, JSON (to load)")
    parser.add_argument("--save", help="a model file or folder to save into --folder first")
    parser.add_argument("--signature", help="the signature, JSON (with --save)")
    parser.add_argument("--options", default="{}", help="flavor options, JSON (with --save)")
    parser.add_argument("--device", help="overrides the spec's device option")
    parser.add_argument("--trusted", action="store_true", help="allow artifacts that run code when loaded")
    return parser.parse_args(argv)


def _versions(requirements: tuple[str, ...]) -> dict[str, str]:
    found = {}
    for name in ("numpy", "pandas", *requirements):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def _load(args: argparse.Namespace) -> tuple[ModelRuntime, RuntimeSpec]:
    cls = runtime_class(args.flavor)
    if args.save:
        signature = Signature.from_dict(json.loads(args.signature)) if args.signature else None
        args.folder.mkdir(parents=True, exist_ok=True)
        spec = cls.save(args.save, args.folder, signature=signature, options=json.loads(args.options))
    else:
        spec = RuntimeSpec.from_dict(json.loads(args.spec))
    if args.device:
        spec = RuntimeSpec(spec.flavor, spec.task, spec.classes, {**spec.options, "device": args.device})
    return cls.load(args.folder, spec, trusted=args.trusted), spec


def serve(channel: Channel, runtime: ModelRuntime) -> None:
    """Answer prediction requests until the server closes the channel."""
    while True:
        try:
            frame = channel.receive()
        except ChannelClosed:
            return
        try:
            header, body = codec.unpack(frame)
            if header.get("op") == "ping":
                answer = codec.pack({"op": "pong"})
            else:
                answer = codec.encode_prediction(runtime.predict(codec.decode_frame(header, body)))
        except Exception as exc:  # the model's failure is the answer; the worker lives on
            answer = codec.encode_error(exc)
        channel.send(answer)


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    fd = int(os.environ[CHANNEL_FD_VARIABLE])
    channel = Channel(fd, fd)
    try:
        runtime, spec = _load(args)
    except Exception as exc:
        channel.send(codec.encode_error(exc))
        return 1
    requirements = tuple(getattr(type(runtime), "requirements", ()))
    ready: dict[str, Any] = {
        "op": "ready",
        "spec": spec.to_dict(),
        "python": platform.python_version(),
        "versions": _versions(requirements),
        "pid": os.getpid(),
    }
    channel.send(codec.pack(ready))
    serve(channel, runtime)
    return 0


if __name__ == "__main__":
    sys.exit(main())
