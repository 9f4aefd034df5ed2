from __future__ import annotations

import importlib
import inspect
import pkgutil
from pathlib import Path

import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

import corral
from corral import errors


def test_all_is_sorted_complete_and_documented() -> None:
    assert corral.__all__ == sorted(corral.__all__)
    for name in corral.__all__:
        obj = getattr(corral, name)
        if callable(obj):
            assert inspect.getdoc(obj), f"corral.{name} has no docstring"
    public = {n for n, v in vars(corral).items() if not n.startswith("_") and not inspect.ismodule(v)}
    public -= {"annotations", "threading", "Any", "TYPE_CHECKING"}
    assert public | {"Services"} == set(corral.__all__) - {"__version__"}  # Services is imported on first use


def test_every_error_is_a_corral_error_and_listed() -> None:
    classes = [v for v in vars(errors).values() if inspect.isclass(v) and issubclass(v, Exception)]
    assert all(issubclass(c, errors.CorralError) for c in classes)
    assert sorted(c.__name__ for c in classes) == errors.__all__
    for cls in classes:
        assert cls.__name__.endswith("Error")
        assert cls.__name__ in (errors.__doc__ or ""), f"{cls.__name__} missing from the tree in errors.py"


def test_every_module_imports_and_rooms_say_what_lives_there() -> None:
    for info in pkgutil.walk_packages(corral.__path__, "corral."):
        if ".migrations" in info.name:
            continue
        module = importlib.import_module(info.name)
        if info.ispkg and info.name.count(".") == 1:
            assert (module.__doc__ or "").strip(), f"{info.name}/__init__.py needs a docstring"


def test_sdk_functions_use_connected_stores(tmp_path: Path, cancer: pd.DataFrame) -> None:
    services = corral.connect(home=tmp_path / "home", user="notebook")
    try:
        data = cancer[["mean radius", "target"]]
        model = LogisticRegression(max_iter=500).fit(data[["mean radius"]], data["target"])
        version = corral.log_model(model, name="sdk", training_data=data, target="target")
        assert version.created_by == "notebook"
        corral.promote("sdk", 1)
        assert (
            corral.load_model("sdk@champion").predict(data[["mean radius"]]).tolist()
            == model.predict(data[["mean radius"]]).tolist()
        )
        with pytest.raises(errors.RollbackError):
            corral.rollback("sdk")
        assert (tmp_path / "home" / "corral.db").exists()
        assert services.registry.get_model("sdk").aliases == {"champion": 1}
    finally:
        services.close()
        corral._services = None
