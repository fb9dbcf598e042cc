"""The public surface: tuple __all__ (anyio's rule) whose every name exists and is documented."""

from __future__ import annotations

import importlib

import pytest

MODULES = ["muxwsgi", "muxwsgi.classic"]


@pytest.mark.parametrize("name", MODULES)
def test_all_is_a_sorted_tuple_of_real_names(name: str) -> None:
    module = importlib.import_module(name)
    assert isinstance(module.__all__, tuple)
    for attr in module.__all__:
        assert hasattr(module, attr), f"{name}.{attr} is in __all__ but missing"


@pytest.mark.parametrize("name", MODULES)
def test_public_classes_and_functions_have_docstrings(name: str) -> None:
    module = importlib.import_module(name)
    undocumented = [
        attr
        for attr in module.__all__
        if callable(getattr(module, attr))
        and not isinstance(getattr(module, attr), int)
        and not (getattr(module, attr).__doc__ or "").strip()
    ]
    assert undocumented == []
