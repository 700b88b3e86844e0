"""The public surface of everos.api: sorted, complete, documented."""

from __future__ import annotations

import importlib
import inspect

import everos.api as api

MODULES = ("_answers", "_fields", "_model", "_requests")


def test_all_is_sorted_and_unique() -> None:
    assert api.__all__ == sorted(set(api.__all__))


def test_every_module_export_is_reexported() -> None:
    for name in MODULES:
        module = importlib.import_module(f"everos.api.{name}")
        assert set(module.__all__) <= set(api.__all__), name


def test_public_classes_and_functions_have_docstrings() -> None:
    for name in api.__all__:
        obj = getattr(api, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert inspect.getdoc(obj), name
            assert obj.__module__ == "everos.api", name
