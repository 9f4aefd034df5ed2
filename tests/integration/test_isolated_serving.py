"""Isolated deployments in a real ModelServer: workers in their own environments, and their failures.

Every worker here is a real process started with an environment's own interpreter (built once with uv and
cached across runs); the model is a custom class shipped inside the artifact (``code_paths``), which exits,
hangs, raises or hoards memory on chosen inputs.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import sklearn
from moody import MODELS, SIGNATURE, moody

from corral.core.schema import FeatureKind, FeatureSpec
from corral.errors import (
    ConfigurationError,
    EnvironmentBuildError,
    ModelTimeoutError,
    NotReadyError,
    OverloadedError,
    WorkerCrashedError,
)
from corral.isolation.codec import ModelFailedError
from corral.isolation.environments import Environments, environment_key, requirement_lines
from corral.isolation.host import WorkerRuntime, needs_isolation
from corral.registry.service import Registry
from corral.runtimes.process import ChildProcess
from corral.serving.deployments import Deployments
from corral.serving.entities import BatchingPolicy, ExecutionPolicy
from corral.serving.server import ModelServer
from corral.storage.artifacts import FsspecArtifactStore
from corral.storage.memory import MemoryDeploymentStore, MemoryRegistryStore

ISOLATED = ExecutionPolicy(isolation="isolated", timeout_seconds=3.0)


@pytest.fixture
def world(tmp_path: Path, environments: Environments) -> dict[str, Any]:
    store = MemoryRegistryStore()
    registry = Registry(store, FsspecArtifactStore(str(tmp_path / "artifacts")), actor="t")
    registry.log_model(moody(), name="moody", signature=SIGNATURE, options={"code_paths": [str(MODELS)]})
    registry.promote("moody", 1)
    deployments = Deployments(MemoryDeploymentStore(store), actor="t")
    deployments.create("iso", model="moody", execution=ISOLATED)
    deployments.create("local", model="moody", execution=ExecutionPolicy(isolation="in_process"))
    server = ModelServer(deployments.store, registry, refresh_seconds=60, environments=environments)
    return {"registry": registry, "deployments": deployments, "server": server}


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 120))


def rows(*values: float) -> list[dict[str, float]]:
    return [{"x": v} for v in values]


async def started(server: ModelServer) -> ModelServer:
    await server.start()
    return server


def worker_of(server: ModelServer, name: str) -> WorkerRuntime:
    runtime = server._get(name).model.runtime
    assert isinstance(runtime, WorkerRuntime)
    return runtime


def test_an_isolated_deployment_answers_from_its_own_process_and_environment(world: dict[str, Any]) -> None:
    server: ModelServer = world["server"]

    async def scenario() -> None:
        await started(server)
        try:
            result = await server.predict("iso", rows(1, 2.5, 40))
            assert result.prediction.values.tolist() == [2.0, 5.0, 80.0]
            worker = worker_of(server, "iso")
            assert worker.pid not in (None, os.getpid())
            assert worker.process.command[0].startswith(str(Path(server.environments.root)))  # type: ignore[union-attr]
            local = await server.predict("local", rows(3))
            assert local.prediction.values.tolist() == [6.0]
            assert not isinstance(server._get("local").model.runtime, WorkerRuntime)
        finally:
            await server.stop()
        assert not worker.process.alive  # stopping the server stops its workers

    run(scenario())


def test_batching_applies_to_isolated_workers(world: dict[str, Any]) -> None:
    server: ModelServer = world["server"]
    world["deployments"].update("iso", batching=BatchingPolicy(max_batch_size=64, max_wait_ms=20))

    async def scenario() -> list[Any]:
        await started(server)
        try:
            return await asyncio.gather(*(server.predict("iso", rows(20 + i)) for i in range(40)))
        finally:
            await server.stop()

    results = run(scenario())
    assert [r.prediction.values.tolist() for r in results] == [[2.0 * (20 + i)] for i in range(40)]
    assert max(r.batch_size for r in results) > 1


def test_a_worker_that_crashes_fails_its_request_with_a_503_and_comes_back(world: dict[str, Any]) -> None:
    server: ModelServer = world["server"]

    async def scenario() -> None:
        await started(server)
        try:
            first = worker_of(server, "iso").pid
            with pytest.raises(
                WorkerCrashedError, match=r"deployment 'iso' \(moody/1\): its worker exited with code 9"
            ):
                await server.predict("iso", rows(13))
            assert (await server.predict("local", rows(4))).prediction.values.tolist() == [8.0]  # untouched
            await asyncio.sleep(ChildProcess.BACKOFF_FIRST + 0.2)
            again = await server.predict("iso", rows(4))
            assert again.prediction.values.tolist() == [8.0]
            assert worker_of(server, "iso").pid != first
        finally:
            await server.stop()

    run(scenario())


def test_a_hanging_model_gets_a_504_naming_the_deployment_and_its_worker_is_killed(world: dict[str, Any]) -> None:
    server: ModelServer = world["server"]
    world["deployments"].set_execution("iso", replace(ISOLATED, timeout_seconds=1.0))

    async def scenario() -> None:
        await started(server)
        try:
            pid = worker_of(server, "iso").pid
            with pytest.raises(ModelTimeoutError, match=r"deployment 'iso'.*did not answer within 1 s"):
                await server.predict("iso", rows(7))
            await asyncio.sleep(0.6)  # the worker's own deadline kills it
            assert pid is not None
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
            await asyncio.sleep(ChildProcess.BACKOFF_FIRST)
            assert (await server.predict("iso", rows(1))).prediction.values.tolist() == [2.0]
        finally:
            await server.stop()

    run(scenario())


def test_a_slow_in_process_model_also_gets_a_504(world: dict[str, Any]) -> None:
    server: ModelServer = world["server"]
    world["deployments"].set_execution("local", ExecutionPolicy(isolation="in_process", timeout_seconds=0.5))

    async def scenario() -> None:
        await started(server)
        try:
            with pytest.raises(ModelTimeoutError, match=r"deployment 'local': moody/1 did not answer within 0.5 s"):
                await server.predict("local", rows(11))  # sleeps 2 s in a server thread, which cannot be killed
            await asyncio.sleep(2)  # so the deployment answers again once it returns (isolate to kill instead)
            assert (await server.predict("local", rows(1))).prediction.values.tolist() == [2.0]
        finally:
            await server.stop()

    run(scenario())


def test_an_error_raised_by_the_model_leaves_the_worker_serving(world: dict[str, Any]) -> None:
    server: ModelServer = world["server"]

    async def scenario() -> None:
        await started(server)
        try:
            pid = worker_of(server, "iso").pid
            with pytest.raises(ModelFailedError, match="five is not a number this model likes"):
                await server.predict("iso", rows(5))
            assert (await server.predict("iso", rows(1))).prediction.values.tolist() == [2.0]
            assert worker_of(server, "iso").pid == pid
        finally:
            await server.stop()

    run(scenario())


def test_a_memory_limit_stops_a_hoarding_model_not_the_server(world: dict[str, Any]) -> None:
    server: ModelServer = world["server"]
    world["deployments"].set_execution("iso", replace(ISOLATED, max_memory_mb=400))
    world["deployments"].update("iso", batching=BatchingPolicy(enabled=False))
    signature = replace(SIGNATURE, inputs=(FeatureSpec("x", "float64", FeatureKind.NUMERICAL),))
    registry: Registry = world["registry"]
    registry.log_model(moody(), name="hoard", signature=signature, options={"code_paths": [str(MODELS)]})
    registry.promote("hoard", 1)
    world["deployments"].create("hoard", model="hoard", execution=replace(ISOLATED, max_memory_mb=400))

    async def scenario() -> None:
        await started(server)
        try:
            with pytest.raises((ModelFailedError, WorkerCrashedError), match=r"MemoryError|Unable to allocate|killed"):
                await server.predict("hoard", rows(2000))  # 2 GB under a 400 MB limit
            assert (await server.predict("local", rows(1))).prediction.values.tolist() == [2.0]
        finally:
            await server.stop()

    run(scenario())


def test_limits_refuse_past_concurrency_and_queue_with_a_429(world: dict[str, Any]) -> None:
    server: ModelServer = world["server"]
    world["deployments"].set_execution("iso", replace(ISOLATED, timeout_seconds=1.0, max_concurrency=1, max_queue=1))
    world["deployments"].update("iso", batching=BatchingPolicy(enabled=False))

    async def scenario() -> None:
        await started(server)
        try:
            slow = asyncio.ensure_future(server.predict("iso", rows(7)))
            await asyncio.sleep(0.1)
            queued = asyncio.ensure_future(server.predict("iso", rows(1)))
            await asyncio.sleep(0.1)
            with pytest.raises(OverloadedError, match="deployment 'iso' is at its limit of 1 concurrent") as refused:
                await server.predict("iso", rows(2))
            assert refused.value.retry_after >= 1
            with pytest.raises(ModelTimeoutError):
                await slow
            with pytest.raises((WorkerCrashedError, ModelTimeoutError)):  # its worker was killed for the slow one
                await queued
        finally:
            await server.stop()

    run(scenario())


def test_a_version_whose_environment_cannot_be_built_never_takes_traffic(world: dict[str, Any]) -> None:
    server: ModelServer = world["server"]
    registry: Registry = world["registry"]
    registry.log_model(
        moody(),
        name="moody",
        signature=SIGNATURE,
        options={"code_paths": [str(MODELS)]},
        requirements={"numpy": "99.0.0"},
    )
    world["deployments"].set_execution("iso", replace(ISOLATED, isolation="auto"))

    async def scenario() -> None:
        await started(server)
        try:
            registry.promote("moody", 2)
            await server.refresh()
            status = server.deployment_status("iso")
            assert status.version == 1 and status.state == "READY"  # the old version keeps serving
            assert "numpy==99.0.0" in status.reason and "could not be installed" in status.reason
            assert (await server.predict("iso", rows(1))).version == 1
        finally:
            await server.stop()

    run(scenario())


def test_a_deployment_needing_isolation_on_a_server_without_environments_says_so(world: dict[str, Any]) -> None:
    registry: Registry = world["registry"]
    server = ModelServer(world["deployments"].store, registry, refresh_seconds=60)

    async def scenario() -> None:
        await started(server)
        try:
            with pytest.raises(NotReadyError, match="needs its own environment but this server has none"):
                await server.predict("iso", rows(1))
        finally:
            await server.stop()

    run(scenario())


# -- the environment cache --------------------------------------------------------------------------------------


def test_environments_are_shared_by_requirement_hash_and_reused(environments: Environments) -> None:
    versions = needs_isolation_free()
    first = environments.ensure(versions)
    again = environments.ensure(dict(reversed(list(versions.items()))))

    assert again.key == first.key == environment_key(versions)
    assert again.created_at == first.created_at  # found, not rebuilt
    assert first.key in {env.key for env in environments.list()}
    assert not [p for p in environments.root.iterdir() if p.name.startswith(".building-")]


def test_a_requirement_that_cannot_be_installed_is_named_and_leaves_nothing(environments: Environments) -> None:
    wanted = {**needs_isolation_free(), "scikit-learn": "99.0.0"}

    with pytest.raises(EnvironmentBuildError, match=r"the requirement scikit-learn==99.0.0 could not be installed"):
        environments.ensure(wanted, what="fraud/3")

    assert not (environments.root / environment_key(wanted)).exists()
    assert not [p for p in environments.root.iterdir() if p.name.startswith(".building-")]


@pytest.mark.parametrize(
    ("requirements", "fragment"),
    [
        ({"numpy; rm -rf /": "1"}, "is not a distribution name"),
        ({"numpy": "1.0 --index-url http://evil"}, "is not a release number"),
        ({"--editable": "1"}, "is not a distribution name"),
        ({"numpy": "https://example.com/numpy.whl"}, "is not a release number"),
    ],
)
def test_requirements_that_are_not_plain_releases_are_refused(requirements: dict[str, str], fragment: str) -> None:
    with pytest.raises(ConfigurationError, match=fragment):
        requirement_lines(requirements)


def test_corral_itself_is_never_installed_into_an_environment() -> None:
    assert requirement_lines({"corral": "0.1.0", "numpy": "2.0.0"}) == ["numpy==2.0.0"]
    assert needs_isolation({"corral": "0.0.0-other"}) == []


def needs_isolation_free() -> dict[str, str]:
    """The releases this process has of what a custom model records: an environment equal to this one."""
    from importlib import metadata

    return {name: metadata.version(name) for name in ("numpy", "pandas")}


def test_auto_isolates_only_versions_whose_libraries_differ_from_the_servers() -> None:
    same = needs_isolation_free()
    assert needs_isolation(same) == []
    assert needs_isolation({**same, "scikit-learn": "1.2.2"}) == [f"scikit-learn==1.2.2 (here {sklearn.__version__})"]
    assert needs_isolation({"no-such-distribution-xyz": "1.0"}) == [
        "no-such-distribution-xyz==1.0 (not installed here)"
    ]


def test_external_programs_never_need_a_python_environment() -> None:
    assert needs_isolation({"numpy": "0.0.1"}, "external") == []
    assert needs_isolation({"numpy": "0.0.1"}, "sklearn") != []
