"""Fixtures of the store tests: settings with test-sized bounds and an open database."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from everos.config import SQLiteSettings
from everos.store import Database, MigrationSet, open_database


def sqlite_settings(**changes: object) -> SQLiteSettings:
    """Default settings with ``changes`` applied."""
    return dataclasses.replace(SQLiteSettings(), **changes)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "index" / "sqlite" / "system.db"


@pytest.fixture
async def db(db_path: Path) -> AsyncIterator[Database]:
    notes = MigrationSet("notes", ("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL UNIQUE)",))
    async with open_database(db_path, sqlite_settings(), trio.CapacityLimiter(2), migrations=[notes]) as database:
        yield database
