"""What a model server does with what the registry guards: pickles, corrupted artifacts, signatures.

- An untrusted pickle version never takes traffic, and its payload never runs in the server process.
- A trusted one is served from a worker process of its own, whatever the execution policy says; trusting it
  while the server runs takes effect at the next refresh, and revoking the trust takes it off the traffic.
- A flipped byte in a stored artifact, a missing or a tampered signature: the version never loads.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from crafted import PICKLE_SPEC, Sentinel, pickle_archive, store_version
from sklearn.linear_model import LinearRegression

from corral.errors import NotReadyError
from corral.isolation.environments import Environments
from corral.isolation.host import WorkerRuntime
from corral.registry.entities import ArtifactSignature
from corral.registry.service import Registry
from corral.registry.signing import ArtifactSigning, public_keys_from_pem
from corral.serving.deployments import Deployments
from corral.serving.entities import SHADOW, ExecutionPolicy, Member
from corral.serving.server import ModelServer
from corral.storage.artifacts import FsspecArtifactStore
from corral.storage.memory import MemoryDeploymentStore, MemoryRegistryStore

IN_PROCESS = ExecutionPolicy(isolation="in_process")
ISOLATED = ExecutionPolicy(isolation="isolated")
FRAME = pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0, 4.0], "y": [1.0, 3.0, 5.0, 7.0, 9.0]})  # y = 2x + 1


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 180))


def world(tmp_path: Path, signing: ArtifactSigning | None = None) -> tuple[Registry, Deployments]:
    store = MemoryRegistryStore()
    registry = Registry(store, FsspecArtifactStore(str(tmp_path / "artifacts")), actor="t", signing=signing)
    return registry, Deployments(MemoryDeploymentStore(store), actor="t")


def server_for(registry: Registry, deployments: Deployments, environments: Environments | None = None) -> ModelServer:
    return ModelServer(deployments.store, registry, refresh_seconds=60, environments=environments)


async def statuses(server: ModelServer) -> dict[str, Any]:
    await server.start()
    try:
        return {s.name: s for s in server.status()}
    finally:
        await server.stop()


# -- an untrusted pickle ---------------------------------------------------------------------


def test_an_untrusted_pickle_never_takes_traffic_and_never_runs_in_the_server(tmp_path: Path) -> None:
    registry, deployments = world(tmp_path)
    sentinel = tmp_path / "sentinel"
    store_version(registry, pickle_archive(Sentinel(sentinel)), runtime=PICKLE_SPEC)  # crafted/1: a pickle
    store_version(registry, pickle_archive(Sentinel(sentinel), file="model.skops"), name="liar")  # says skops
    registry.promote("crafted", 1)
    registry.promote("liar", 1)
    deployments.create("local", model="crafted", execution=IN_PROCESS)
    deployments.create("iso", model="crafted", execution=ISOLATED)
    deployments.create("liar", model="liar", execution=IN_PROCESS)
    server = server_for(registry, deployments)

    async def scenario() -> dict[str, Any]:
        await server.start()
        try:
            for name in ("local", "iso", "liar"):
                with pytest.raises(NotReadyError, match=f"deployment '{name}' is not ready"):
                    await server.predict(name, [{"x": 1.0}])
            return {s.name: s for s in server.status()}
        finally:
            await server.stop()

    found = run(scenario())

    for name in ("local", "iso"):
        assert found[name].state == "FAILED" and found[name].version is None
        assert "crafted/1 is a pickle (loading it can run any code) and no admin has trusted it" in found[name].reason
        assert "corral models trust crafted 1 --reason" in found[name].reason
    assert found["liar"].state == "FAILED"
    assert "UntrustedArtifactError: refusing to load model.skops: it is a pickle" in found["liar"].reason
    assert not sentinel.exists()


def test_an_untrusted_pickle_shadow_is_left_out_until_trusted_and_the_champion_serves(tmp_path: Path) -> None:
    registry, deployments = world(tmp_path)
    model = LinearRegression().fit(FRAME[["x"]], FRAME["y"])
    registry.log_model(model, name="lin", training_data=FRAME, target="y")
    registry.log_model(
        model, name="lin", training_data=FRAME, target="y", options={"serialization": "pickle"}, trusted=True
    )
    registry.promote("lin", 1)
    deployments.create("lin", model="lin", execution=IN_PROCESS)
    deployments.add_member("lin", Member("lin", 2, SHADOW))
    server = server_for(registry, deployments)  # no environments: a trusted pickle cannot run here either

    async def scenario() -> None:
        await server.start()
        try:
            assert (await server.predict("lin", [{"x": 1.0}])).prediction.values.tolist() == pytest.approx([3.0])
            assert ("lin", 2) not in server._members.get("lin", {})
            assert (
                "lin/2 is a pickle (loading it can run any code) and no admin has trusted it"
                in server._failed[("lin", "lin", 2)]
            )
            registry.trust("lin", 2, reason="reviewed")
            await server.refresh()  # tried again once trusted: now it needs a worker, which this server cannot start
            assert "needs its own environment but this server has none" in server._failed[("lin", "lin", 2)]
            assert server.deployment_status("lin").state == "READY"
        finally:
            await server.stop()

    run(scenario())


# -- a trusted pickle ------------------------------------------------------------------------


@pytest.mark.slow
def test_a_trusted_pickle_serves_from_a_worker_process_even_when_the_policy_says_in_process(
    tmp_path: Path, environments: Environments
) -> None:
    registry, deployments = world(tmp_path)
    model = LinearRegression().fit(FRAME[["x"]], FRAME["y"])
    registry.log_model(
        model, name="lin", training_data=FRAME, target="y", options={"serialization": "pickle"}, trusted=True
    )
    registry.promote("lin", 1)
    deployments.create("lin", model="lin", execution=IN_PROCESS)
    server = server_for(registry, deployments, environments)

    async def scenario() -> None:
        await server.start()
        try:
            refused = server.deployment_status("lin")
            assert refused.state == "FAILED" and "no admin has trusted it" in refused.reason

            registry.trust("lin", 1, reason="trained by this test", actor="admin")
            await server.refresh()  # the refusal is not remembered past the trust
            assert server.deployment_status("lin").state == "READY"
            result = await server.predict("lin", [{"x": 10.0}, {"x": 0.5}])
            assert result.prediction.values.tolist() == pytest.approx([21.0, 2.0])
            worker = server._get("lin").model.runtime
            assert isinstance(worker, WorkerRuntime)
            assert worker.pid not in (None, os.getpid())
            assert worker.process.alive

            registry.untrust("lin", 1)
            await server.refresh()  # revoked: off the traffic at once
            revoked = server.deployment_status("lin")
            assert revoked.state == "FAILED" and "no admin has trusted it" in revoked.reason
            with pytest.raises(NotReadyError):
                await server.predict("lin", [{"x": 1.0}])
            for _ in range(100):
                if not worker.process.alive:
                    break
                await asyncio.sleep(0.05)
            assert not worker.process.alive
        finally:
            await server.stop()

    run(scenario())


# -- corrupted artifacts and signatures -----------------------------------------------------------


def _flip_a_byte(registry: Registry) -> None:
    (blob,) = [p for p in Path(registry.artifacts.url).rglob("*") if p.is_file()]
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0x01
    blob.write_bytes(bytes(data))


def test_a_flipped_byte_in_the_stored_artifact_is_refused_and_nothing_loads(tmp_path: Path) -> None:
    registry, deployments = world(tmp_path)
    registry.log_model(LinearRegression().fit(FRAME[["x"]], FRAME["y"]), name="lin", training_data=FRAME, target="y")
    registry.promote("lin", 1)
    deployments.create("lin", model="lin", execution=IN_PROCESS)
    _flip_a_byte(registry)
    server = server_for(registry, deployments)

    found = run(statuses(server))

    assert found["lin"].state == "FAILED" and found["lin"].version is None
    assert "lin/1 failed to load: ArtifactIntegrityError: the artifact of lin/1 is corrupt" in found["lin"].reason
    assert "lin" not in server._live


def test_the_regulated_profile_refuses_unsigned_and_tampered_versions(tmp_path: Path) -> None:
    signing = ArtifactSigning.generate()
    registry, deployments = world(tmp_path, signing)
    model = LinearRegression().fit(FRAME[["x"]], FRAME["y"])
    signed = registry.log_model(model, name="signed", training_data=FRAME, target="y")
    unsigned_registry = Registry(registry.store, registry.artifacts, actor="t")
    unsigned_registry.log_model(model, name="unsigned", training_data=FRAME, target="y")
    registry.log_model(model, name="tampered", training_data=FRAME, target="y")
    good = signed.artifact_signature
    assert good is not None
    registry.store.set_signature("tampered", 1, ArtifactSignature(good.algorithm, good.key_id, good.value))
    for name in ("signed", "unsigned", "tampered"):
        registry.promote(name, 1)
        deployments.create(name, model=name, execution=IN_PROCESS)
    verifying = ArtifactSigning(public_keys=public_keys_from_pem(signing.public_pem()), required=True)
    regulated = Registry(registry.store, registry.artifacts, actor="t", signing=verifying)  # a server without the key

    found = run(statuses(server_for(regulated, deployments)))

    assert found["signed"].state == "READY"
    assert found["unsigned"].state == "FAILED"
    assert "ArtifactSignatureError: unsigned/1 has no artifact signature" in found["unsigned"].reason
    assert found["tampered"].state == "FAILED"
    assert "the artifact signature of tampered/1 does not verify" in found["tampered"].reason
    # the default profile loads the unsigned version, and still refuses the tampered one
    default = Registry(registry.store, registry.artifacts, actor="t", signing=signing)
    found = run(statuses(server_for(default, deployments)))
    assert found["unsigned"].state == "READY" and found["tampered"].state == "FAILED"
