"""ExecutionPolicy: where a deployment's versions run and within which limits; bad settings are named."""

from __future__ import annotations

import pytest

from corral.errors import ConfigurationError
from corral.serving.entities import ExecutionPolicy


def test_defaults_run_in_process_when_libraries_match_with_a_30_second_timeout_and_no_caps() -> None:
    policy = ExecutionPolicy()
    assert (policy.isolation, policy.device, policy.timeout_seconds) == ("auto", "cpu", 30.0)
    assert policy.max_concurrency is None and policy.max_memory_mb is None
    assert ExecutionPolicy.from_dict(policy.to_dict()) == policy
    assert ExecutionPolicy.from_dict({}) == policy and ExecutionPolicy.from_dict(None) == policy


@pytest.mark.parametrize("device", ["cpu", "cuda", "cuda:0", "cuda:3"])
def test_devices(device: str) -> None:
    assert ExecutionPolicy(device=device).device == device


@pytest.mark.parametrize(
    ("settings", "fragment"),
    [
        ({"isolation": "docker"}, "isolation 'docker' is not one of auto, in_process, isolated"),
        ({"device": "tpu"}, "device 'tpu' is not cpu, cuda or cuda:N"),
        ({"device": "cuda:x"}, "device 'cuda:x'"),
        ({"timeout_seconds": 0}, "timeout_seconds must be in"),
        ({"timeout_seconds": 7200}, "timeout_seconds must be in"),
        ({"max_concurrency": 0}, "max_concurrency must be at least 1"),
        ({"max_queue": -1}, "max_queue must not be negative"),
        ({"max_memory_mb": 10}, "max_memory_mb must be at least 64"),
        ({"gpus": 2}, r"unknown execution settings \['gpus'\]"),
    ],
)
def test_bad_settings_are_refused_by_name(settings: dict[str, object], fragment: str) -> None:
    with pytest.raises(ConfigurationError, match=fragment):
        ExecutionPolicy.from_dict(settings)
