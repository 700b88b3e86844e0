"""The public surface of everos.cascade: sorted, complete, documented."""

from __future__ import annotations

import importlib
import inspect

import everos.cascade as cascade

MODULES = ("_facts", "_health", "_indexer", "_rows", "_scanner", "_service", "_snapshot", "_watcher", "_worker")


def test_all_is_sorted_and_unique() -> None:
    assert cascade.__all__ == sorted(set(cascade.__all__))


def test_public_classes_and_functions_have_docstrings_and_report_the_package() -> None:
    for name in cascade.__all__:
        obj = getattr(cascade, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert inspect.getdoc(obj), name
            assert obj.__module__ == "everos.cascade", name


def test_every_module_defines_all() -> None:
    for name in MODULES:
        assert importlib.import_module(f"everos.cascade.{name}").__all__, name
