"""The public surface of everos.knowledge: sorted, complete, documented."""

from __future__ import annotations

import importlib
import inspect

import everos.knowledge as knowledge

MODULES = ("_builtin_extractor", "_convert", "_decode", "_extractor", "_layout", "_markdown", "_models", "_taxonomy")


def test_all_is_sorted_and_unique() -> None:
    assert knowledge.__all__ == sorted(set(knowledge.__all__))


def test_every_module_export_is_reexported() -> None:
    for name in MODULES:
        module = importlib.import_module(f"everos.knowledge.{name}")
        assert set(module.__all__) <= set(knowledge.__all__), name


def test_public_classes_and_functions_have_docstrings() -> None:
    for name in knowledge.__all__:
        obj = getattr(knowledge, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert inspect.getdoc(obj), name
            assert obj.__module__ == "everos.knowledge", name
