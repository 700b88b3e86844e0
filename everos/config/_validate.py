"""What a setting allows, checked: one value from a file, the environment or a flag against its
declaration (:func:`~everos.config._settings.setting`), and the words that describe what it allows,
shared by the error messages and the ``everos init`` template.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from everos.errors import ConfigError

__all__ = ["check_value", "describe_allowed", "section_fields"]


def section_fields(cls: type) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls)}


def describe_allowed(f: dataclasses.Field, typ: type) -> str:
    meta = f.metadata
    if meta.get("choices"):
        return "one of " + ", ".join(repr(c) for c in meta["choices"])
    if meta.get("check"):
        return meta["check"][1]
    name = {bool: "true or false", int: "a whole number", float: "a number", str: "a string",
            dict: "a table (of strings, numbers, booleans, lists and tables)", list: "a list"}[typ]
    if meta.get("positive"):
        return f"{name} greater than 0"
    low, high = meta.get("minimum"), meta.get("maximum")
    if low is not None and high is not None:
        return f"{name} from {low:g} to {high:g}"
    if low is not None:
        return f"{name} >= {low:g}"
    if high is not None:
        return f"{name} <= {high:g}"
    return name


def check_value(section: str, key: str, value: Any, f: dataclasses.Field, typ: type, origin: str) -> Any:
    """Validate one value from TOML or an already-parsed environment string.

    Beyond the declaration, a value must be one ``everos.toml`` can hold and a model endpoint's
    JSON can carry (:func:`_storable`): no NaN or infinity, no text with a lone surrogate (an
    environment variable of undecodable bytes), no null or date inside a table.
    """
    ok: bool
    if typ is bool:
        ok = isinstance(value, bool)
    elif typ is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif typ is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if ok:
            try:
                value = float(value)
            except OverflowError:  # an integer too large for a float
                ok = False
    else:
        ok = isinstance(value, typ)
    ok = ok and _storable(value)
    meta = f.metadata
    if ok and meta.get("choices") and value not in meta["choices"]:
        ok = False
    if ok and meta.get("positive") and not value > 0:
        ok = False
    if ok and meta.get("minimum") is not None and value < meta["minimum"]:
        ok = False
    if ok and meta.get("maximum") is not None and value > meta["maximum"]:
        ok = False
    if ok and meta.get("check") and not meta["check"][0](value):
        ok = False
    if not ok:
        raise ConfigError(
            f"[{section}] {key} = {value!r} from {origin} is not allowed: expected {describe_allowed(f, typ)}."
        )
    return value


def _storable(value: Any) -> bool:
    """Whether ``value`` is made of what TOML and JSON both hold: text UTF-8 can encode, booleans,
    integers, finite floats, and lists and tables of them (``float("nan") < 0`` is False, so a
    NaN would pass every bound)."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, (bool, int)):
        return True
    if isinstance(value, list):
        return all(_storable(item) for item in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _storable(k) and _storable(v) for k, v in value.items())
    return False
