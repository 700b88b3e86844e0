"""Which files ``everos ingest`` sends: the PATH arguments, folders walked with the suffixes the
server accepts (:data:`~everos.knowledge._formats.ACCEPTED_SUFFIXES`), hidden files and folders
skipped, ``--include``/``--exclude`` glob patterns applied; each file once, in a stable order.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterable, Sequence
from pathlib import Path, PurePosixPath

from everos.errors import CommandError, ExitCode
from everos.knowledge._formats import ACCEPTED_SUFFIXES

__all__ = ["discover", "wanted"]


def discover(paths: Sequence[str], include: Sequence[str], exclude: Sequence[str]) -> list[Path]:
    """The files to ingest, absolute, each once, in command-line order then sorted within folders.

    Raises:
        CommandError: a path does not exist, or no file matched (``NOT_FOUND``).
    """
    found: dict[Path, None] = {}
    for given in paths:
        path = Path(given).expanduser().absolute()
        if path.is_dir():
            found.update(dict.fromkeys(_walk(path, include, exclude)))
        elif path.exists():
            found[path] = None
        else:
            raise CommandError(f"{given}: no such file or directory", exit_code=ExitCode.NOT_FOUND)
    if not found:
        raise CommandError(f"no file to ingest in {' '.join(paths)} (accepted in folders: "
                           f"{', '.join(ACCEPTED_SUFFIXES)}; see --include/--exclude)",
                           exit_code=ExitCode.NOT_FOUND)
    return list(found)


def _walk(folder: Path, include: Sequence[str], exclude: Sequence[str]) -> Iterable[Path]:
    for directory, subdirs, names in os.walk(folder):
        here = Path(directory)
        subdirs[:] = sorted(d for d in subdirs if not d.startswith(".")
                            and not _matches(_relative(here / d, folder), exclude))
        for name in sorted(names):
            relative = _relative(here / name, folder)
            if wanted(relative, include, exclude):
                yield here / name


def _relative(path: Path, folder: Path) -> PurePosixPath:
    return PurePosixPath(path.relative_to(folder).as_posix())


def wanted(relative: PurePosixPath, include: Sequence[str], exclude: Sequence[str]) -> bool:
    """Whether a file at ``relative`` (below a folder given) is ingested. Pure."""
    if relative.name.startswith(".") or relative.suffix.lower() not in ACCEPTED_SUFFIXES:
        return False
    if include and not _matches(relative, include):
        return False
    return not _matches(relative, exclude)


def _matches(relative: PurePosixPath, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(str(relative) if "/" in p else relative.name, p.strip("/")) for p in patterns)
