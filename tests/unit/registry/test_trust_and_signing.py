"""Per-version trust for pickles, and artifact signatures (required under the regulated profile)."""

from __future__ import annotations

import os
import stat
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from crafted import PICKLE_SPEC, Sentinel, pickle_archive, store_version
from sklearn.linear_model import LinearRegression, LogisticRegression

from corral.app import build_services
from corral.cli.main import main
from corral.errors import (
    ArtifactIntegrityError,
    ArtifactSignatureError,
    ConfigurationError,
    UntrustedArtifactError,
    VersionNotFoundError,
)
from corral.registry.entities import ArtifactSignature, ModelVersion
from corral.registry.service import Registry
from corral.registry.signing import ArtifactSigning, public_keys_from_pem, signed_message
from corral.runtimes.base import RuntimeSpec
from corral.settings import Settings
from corral.storage.artifacts import FsspecArtifactStore
from corral.storage.memory import MemoryRegistryStore


@pytest.fixture(scope="module")
def data(diabetes: pd.DataFrame) -> pd.DataFrame:
    return diabetes[["bmi", "bp", "target"]].iloc[:120].copy()


@pytest.fixture(scope="module")
def linear(data: pd.DataFrame) -> LinearRegression:
    return LinearRegression().fit(data[["bmi", "bp"]], data["target"])


def registry_with(
    tmp_path: Path, signing: ArtifactSigning | None, store: MemoryRegistryStore | None = None
) -> Registry:
    return Registry(
        store or MemoryRegistryStore(), FsspecArtifactStore(str(tmp_path / "artifacts")), actor="ada", signing=signing
    )


def register(registry: Registry, model: object, data: pd.DataFrame, **kw: Any) -> ModelVersion:
    return registry.log_model(model, name="reg", training_data=data, target="target", **kw)


# -- trust ----------------------------------------------------------------------------------


def test_trust_is_recorded_with_who_when_and_why_and_can_be_revoked(
    registry: Registry, linear: LinearRegression, data: pd.DataFrame
) -> None:
    register(registry, linear, data, options={"serialization": "pickle"}, trusted=True)
    version = registry.get_version("reg", 1)
    assert registry.needs_trust(version) and version.trust is None

    trusted = registry.trust("reg", 1, reason="built by our CI from commit abc123", actor="root")

    assert (trusted.trust.by, trusted.trust.reason) == ("root", "built by our CI from commit abc123")
    assert trusted.trust.at.tzinfo is not None
    assert registry.get_version("reg", 1).trust == trusted.trust
    assert registry.get_version("reg", 1).to_dict()["trust"]["by"] == "root"
    assert registry.untrust("reg", 1).trust is None
    assert registry.get_version("reg", 1).trust is None


def test_trust_needs_a_reason_and_a_real_version(
    registry: Registry, linear: LinearRegression, data: pd.DataFrame
) -> None:
    register(registry, linear, data, options={"serialization": "pickle"}, trusted=True)

    with pytest.raises(ConfigurationError, match="needs a reason"):
        registry.trust("reg", 1, reason="  ")
    with pytest.raises(VersionNotFoundError):
        registry.trust("reg", 7, reason="why not")
    assert registry.get_version("reg", 1).trust is None


def test_which_versions_need_trust(registry: Registry, linear: LinearRegression, data: pd.DataFrame) -> None:
    skops = register(registry, linear, data)
    pickled = register(registry, linear, data, options={"serialization": "pickle"}, trusted=True)
    pyfunc = RuntimeSpec(
        "mlflow", PICKLE_SPEC.task, options={"inner": RuntimeSpec("pyfunc", PICKLE_SPEC.task).to_dict()}
    )
    inner_pickle = RuntimeSpec("mlflow", PICKLE_SPEC.task, options={"inner": PICKLE_SPEC.to_dict()})

    assert not registry.needs_trust(skops)
    assert registry.needs_trust(pickled)
    assert registry.needs_trust(replace(pickled, runtime=pyfunc))
    assert registry.needs_trust(replace(pickled, runtime=inner_pickle))


def test_an_untrusted_pickle_is_refused_before_its_bytes_are_read(registry: Registry, tmp_path: Path) -> None:
    sentinel = tmp_path / "sentinel"
    store_version(registry, pickle_archive(Sentinel(sentinel)), runtime=PICKLE_SPEC)

    with pytest.raises(UntrustedArtifactError) as caught:
        registry.load("crafted/1")
    assert "crafted/1 is stored as a pickle: unpickling it can run arbitrary code" in str(caught.value)
    assert "corral models trust crafted 1 --reason" in str(caught.value)

    registry.trust("crafted", 1, reason="reviewed")  # an admin's trust lets servers load it in a worker...
    with pytest.raises(UntrustedArtifactError, match=r"An admin trusted it \(tester: reviewed\)"):
        registry.load("crafted/1")  # ...but this process still unpickles only when its caller says so
    assert not sentinel.exists()


def test_a_pickle_spec_over_skops_bytes_is_refused_even_trusted(registry: Registry, tmp_path: Path) -> None:
    sentinel = tmp_path / "sentinel"
    store_version(registry, pickle_archive(Sentinel(sentinel), file="model.skops"))  # the spec says skops

    with pytest.raises(UntrustedArtifactError, match=r"refusing to load model\.skops: it is a pickle"):
        registry.load("crafted/1")
    assert not sentinel.exists()


# -- signatures ---------------------------------------------------------------------------


def test_a_signing_registry_signs_what_it_registers_and_checks_it_on_load(
    tmp_path: Path, linear: LinearRegression, data: pd.DataFrame
) -> None:
    signing = ArtifactSigning.generate()
    registry = registry_with(tmp_path, signing)

    version = register(registry, linear, data)

    signature = version.artifact_signature
    assert signature is not None and signature.algorithm == "ed25519" and signature.key_id == signing.key_id
    public = public_keys_from_pem(signing.public_pem())[signing.key_id]
    public.verify(bytes.fromhex(signature.value), signed_message("reg", 1, version.artifact_sha256))
    assert registry.load("reg/1").predict(data[["bmi", "bp"]]).shape == (120,)
    assert registry.get_version("reg", 1).to_dict()["artifact"]["signature"]["key_id"] == signing.key_id


def test_a_tampered_signature_is_refused(tmp_path: Path, linear: LinearRegression, data: pd.DataFrame) -> None:
    registry = registry_with(tmp_path, ArtifactSigning.generate())
    version = register(registry, linear, data)
    good = version.artifact_signature
    flipped = good.value[:10] + ("0" if good.value[10] != "0" else "1") + good.value[11:]
    registry.store.set_signature("reg", 1, ArtifactSignature(good.algorithm, good.key_id, flipped))

    with pytest.raises(ArtifactSignatureError, match=r"the artifact signature of reg/1 does not verify against key"):
        registry.load("reg/1")
    with pytest.raises(ArtifactSignatureError):
        registry.artifact(registry.get_version("reg", 1))  # what workers are given goes through the same check
    registry.store.set_signature("reg", 1, ArtifactSignature("rsa", good.key_id, good.value))
    with pytest.raises(ArtifactSignatureError, match="signed with 'rsa', which corral does not check"):
        registry.load("reg/1")


def test_a_version_pointed_at_another_artifact_is_refused(
    tmp_path: Path, linear: LinearRegression, data: pd.DataFrame
) -> None:
    store = MemoryRegistryStore()
    registry = registry_with(tmp_path, ArtifactSigning.generate(), store)
    first = register(registry, linear, data)
    other = registry.log_model(
        LogisticRegression().fit(data[["bmi"]], data["target"] > 150), name="other", training_data=data[["bmi"]]
    )
    store._versions[("reg", 1)] = replace(first, artifact_sha256=other.artifact_sha256)

    with pytest.raises(ArtifactSignatureError, match=f"artifact hash \\(sha256 {other.artifact_sha256}\\) changed"):
        registry.load("reg/1")


def test_a_key_this_installation_does_not_trust_is_refused_until_its_public_half_is_given(
    tmp_path: Path, linear: LinearRegression, data: pd.DataFrame
) -> None:
    store = MemoryRegistryStore()
    ci = ArtifactSigning.generate()
    register(registry_with(tmp_path, ci, store), linear, data)

    server = registry_with(tmp_path, ArtifactSigning.generate(), store)
    with pytest.raises(ArtifactSignatureError, match=f"signed by key {ci.key_id}, which this installation does not"):
        server.load("reg/1")
    with pytest.raises(ArtifactSignatureError, match="does not trust"):
        registry_with(tmp_path, None, store).load("reg/1")  # no keys at all: a signature cannot be checked

    (tmp_path / "ci.pem").write_text(ci.public_pem())
    verifier = ArtifactSigning.from_files(key_file=None, public_keys_file=tmp_path / "ci.pem", required=True)
    assert registry_with(tmp_path, verifier, store).load("reg/1").version.version == 1


def test_required_signatures_refuse_unsigned_versions_until_an_admin_signs_them(
    tmp_path: Path, linear: LinearRegression, data: pd.DataFrame
) -> None:
    store = MemoryRegistryStore()
    register(registry_with(tmp_path, None, store), linear, data)  # registered before signing was set up
    assert registry_with(tmp_path, ArtifactSigning.generate(), store).load("reg/1")  # default profile: loads

    regulated = registry_with(tmp_path, ArtifactSigning.generate(required=True), store)
    with pytest.raises(ArtifactSignatureError) as caught:
        regulated.load("reg/1")
    assert "reg/1 has no artifact signature, and the regulated profile loads only signed versions" in str(caught.value)
    assert "corral models sign reg 1" in str(caught.value)

    signed = regulated.sign_version("reg", 1)
    assert signed.artifact_signature is not None
    assert regulated.load("reg/1").version.version == 1
    with pytest.raises(ConfigurationError, match="no artifact signing key is configured"):
        registry_with(tmp_path, None, store).sign_version("reg", 1)


def test_a_corrupted_artifact_is_never_signed(tmp_path: Path, linear: LinearRegression, data: pd.DataFrame) -> None:
    registry = registry_with(tmp_path, ArtifactSigning.generate())
    version = registry.log_model(linear, name="reg", training_data=data, target="target")
    (blob,) = [p for p in (tmp_path / "artifacts").rglob("*") if p.is_file()]
    raw = bytearray(blob.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    blob.write_bytes(bytes(raw))

    with pytest.raises(ArtifactIntegrityError, match="refusing to sign it"):
        registry.sign_version("reg", 1)
    assert registry.get_version("reg", 1).artifact_signature == version.artifact_signature


def test_a_signing_failure_registers_nothing(tmp_path: Path, linear: LinearRegression, data: pd.DataFrame) -> None:
    bad = tmp_path / "keys" / "key.pem"
    bad.parent.mkdir()
    bad.write_text("not a key")
    bad.chmod(0o600)
    registry = registry_with(tmp_path, ArtifactSigning(key_file=bad))

    with pytest.raises(ConfigurationError, match="is not an unencrypted PEM private key"):
        register(registry, linear, data)
    assert registry.list_models() == []
    assert not (tmp_path / "artifacts").exists() or not [p for p in (tmp_path / "artifacts").rglob("*") if p.is_file()]


def test_the_key_file_is_created_private_once_and_shared(tmp_path: Path) -> None:
    path = tmp_path / "home" / "signing" / "artifact-key.pem"
    first = ArtifactSigning(key_file=path)
    second = ArtifactSigning(key_file=path)

    assert first.key_id == second.key_id
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    path.chmod(0o644)
    with pytest.raises(ConfigurationError, match=f"readable by group or others .*chmod 600 {path}"):
        _ = ArtifactSigning(key_file=path).key_id


# -- the profile, from settings ------------------------------------------------------------


def test_the_regulated_profile_signs_and_requires_signatures(
    tmp_path: Path, linear: LinearRegression, data: pd.DataFrame
) -> None:
    default = build_services(Settings(home=tmp_path / "default"))
    try:
        assert not default.registry.signing.signs and not default.registry.signing.required
        unsigned = register(default.registry, linear, data)
        assert unsigned.artifact_signature is None
        assert not (tmp_path / "default" / "signing").exists()
    finally:
        default.close()

    home = tmp_path / "regulated"
    services = build_services(Settings(home=home, profile="regulated"))
    try:
        version = register(services.registry, linear, data)
        key = home / "signing" / "artifact-key.pem"
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
        assert version.artifact_signature.key_id == services.registry.signing.key_id
        assert services.registry.load("reg/1").version.version == 1
    finally:
        services.close()


def test_settings_read_the_profile_and_signing_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CORRAL_PROFILE", "regulated")
    monkeypatch.setenv("CORRAL_SIGNING__KEY_FILE", str(tmp_path / "k.pem"))
    monkeypatch.setenv("CORRAL_LOADING__MAX_ARTIFACT_MEMBERS", "12")

    settings = Settings(home=tmp_path)

    assert settings.profile == "regulated"
    assert settings.resolved_signing_key_file() == tmp_path / "k.pem"
    assert settings.loading.max_artifact_members == 12
    monkeypatch.delenv("CORRAL_SIGNING__KEY_FILE")
    assert Settings(home=tmp_path).resolved_signing_key_file() == (tmp_path / "signing" / "artifact-key.pem").resolve()
    monkeypatch.setenv("CORRAL_PROFILE", "default")
    assert Settings(home=tmp_path).resolved_signing_key_file() is None


# -- the command line ------------------------------------------------------------------------


def test_models_trust_sign_and_lineage_from_the_command_line(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    linear: LinearRegression,
    data: pd.DataFrame,
) -> None:
    monkeypatch.setenv("CORRAL_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CORRAL_USER", "root")
    monkeypatch.setenv("COLUMNS", "200")
    services = build_services(Settings())
    register(services.registry, linear, data, options={"serialization": "pickle"}, trusted=True)
    services.close()

    assert main(["models", "trust", "reg", "1"]) == 1
    assert "--reason" in capsys.readouterr().err
    assert main(["models", "trust", "reg", "1", "--reason", "our CI built it"]) == 0
    assert "reg/1 trusted by root: servers load it in a worker process" in capsys.readouterr().out
    assert main(["lineage", "reg", "1"]) == 0
    assert "trusted by root" in capsys.readouterr().out
    assert main(["models", "trust", "reg", "1", "--revoke", "--json"]) == 0
    assert '"trust": null' in capsys.readouterr().out
    assert main(["lineage", "reg", "1"]) == 0
    assert "needs an admin's trust" in capsys.readouterr().out

    assert main(["models", "sign", "reg", "1"]) == 1
    assert "no artifact signing key is configured" in capsys.readouterr().err
    monkeypatch.setenv("CORRAL_PROFILE", "regulated")
    assert main(["models", "sign", "reg", "1"]) == 0
    assert "reg/1 signed with key" in capsys.readouterr().out
    assert os.path.exists(tmp_path / "home" / "signing" / "artifact-key.pem")
