"""Parsers of setting values that are text with a structure of their own; pure, used by the
settings' checks and by the code that reads those values."""

from __future__ import annotations

import math
import zoneinfo

__all__ = ["is_time_zone", "parse_similarity_range", "parse_weight"]


def is_time_zone(name: str) -> bool:
    """Whether ``name`` is an IANA time zone this machine knows (``UTC``, ``Europe/Berlin``)."""
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        return False
    return True


def parse_similarity_range(value: str) -> tuple[float, float] | None:
    """``"FLOOR,CEILING"`` as two floats with -1 <= floor < ceiling <= 1; None when it is not."""
    parts = value.split(",")
    try:
        floor, ceiling = (float(part) for part in parts) if len(parts) == 2 else (math.nan, math.nan)
    except ValueError:
        return None
    return (floor, ceiling) if -1 <= floor < ceiling <= 1 else None


def parse_weight(value: str) -> float | None:
    """``value`` as a float from 0 to 1; None when it is not one."""
    try:
        weight = float(value)
    except ValueError:
        return None
    return weight if 0 <= weight <= 1 else None
