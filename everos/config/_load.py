"""Loading one root's configuration with EverOS's precedence.

Lowest first: the built-in defaults (:mod:`._settings`) < ``<root>/everos.toml`` <
``EVEROS_<SECTION>__<KEY>`` environment variables < command-line flags. Every value is validated
where it comes in, so a bad one stops startup with one :class:`~everos.errors.ConfigError` naming
the key, the file or variable it came from, and what is allowed; :class:`LoadedConfig` keeps where
each value came from for ``everos config show``. EverOS 1.x sections and keys everos does not use
are accepted and reported as ignored.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_type_hints

from everos.config._settings import IGNORED_KEYS, IGNORED_SECTIONS, RETIRED_KEYS, SECTIONS, Config, section_class
from everos.config._validate import check_value, section_fields
from everos.errors import ConfigError

__all__ = ["CONFIG_FILENAME", "LoadedConfig", "config_path", "load_config", "resolve_root"]

CONFIG_FILENAME = "everos.toml"


@dataclass(frozen=True)
class LoadedConfig:
    """The effective config, the root it belongs to, and where every value came from."""

    root: Path
    config: Config
    sources: Mapping[tuple[str, str], str]
    ignored: tuple[str, ...] = ()

    def source_of(self, section: str, key: str) -> str:
        return self.sources.get((section, key), "default")


def resolve_root(flag: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None) -> Path:
    """The memory root: ``--root``, else ``EVEROS_ROOT``, else ``~/.everos``."""
    environ = os.environ if environ is None else environ
    if flag:
        return Path(flag).expanduser().resolve()
    if environ.get("EVEROS_ROOT"):
        return Path(environ["EVEROS_ROOT"]).expanduser().resolve()
    return (Path.home() / ".everos").resolve()


def config_path(root: Path) -> Path:
    return root / CONFIG_FILENAME


def _parse_env_value(raw: str, typ: type) -> Any:
    """Turn an environment string into the setting's type; leave it as-is when it does not parse."""
    text = raw.strip()
    if typ is bool:
        lowered = text.lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        return raw
    if typ is int:
        try:
            return int(text)
        except ValueError:
            return raw
    if typ is float:
        try:
            return float(text)
        except ValueError:
            return raw
    if typ in (dict, list):
        try:
            return json.loads(text)
        except (ValueError, RecursionError):
            return raw
    return raw


def _env_target(var: str) -> tuple[str, str] | None:
    """Map ``EVEROS_KNOWLEDGE__SEARCH__RECALL_N`` to ``("knowledge.search", "recall_n")``."""
    if not var.startswith("EVEROS_") or "__" not in var:
        return None
    parts = var[len("EVEROS_"):].lower().split("__")
    for cut in range(len(parts) - 1, 0, -1):
        section = ".".join(parts[:cut])
        key = "__".join(parts[cut:])
        if section in SECTIONS or section in IGNORED_SECTIONS:
            return section, key
    return parts[0], "__".join(parts[1:])


def _flatten_toml(data: Mapping[str, Any], origin: str) -> dict[str, dict[str, Any]]:
    """Split a parsed TOML document into ``{section: {key: value}}`` (nested tables dotted)."""
    out: dict[str, dict[str, Any]] = {}
    for name, table in data.items():
        if not isinstance(table, dict):
            raise ConfigError(f"{name} = {table!r} in {origin} is not inside a section; put it under [api], [llm], ...")
        for sub in list(table):
            dotted = f"{name}.{sub}"
            if isinstance(table[sub], dict) and dotted in SECTIONS:
                out[dotted] = dict(table[sub])
        out[name] = {k: v for k, v in table.items() if f"{name}.{k}" not in SECTIONS}
    return out


def load_config(
    root: Path,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[tuple[str, str], Any] | None = None,
    require_file: bool = True,
) -> LoadedConfig:
    """Load ``<root>/everos.toml``, apply the environment and then ``overrides`` (CLI flags).

    Raises:
        ConfigError: the file is missing (when ``require_file``), unreadable or not TOML, or any key
            is unknown or has a value that is not allowed. The message names the key, where the
            value came from and what is allowed.
    """
    environ = os.environ if environ is None else environ
    values: dict[str, dict[str, Any]] = {s: {} for s in SECTIONS}
    sources: dict[tuple[str, str], str] = {}
    ignored: list[str] = []
    hints = {s: get_type_hints(section_class(s)) for s in SECTIONS}

    path = config_path(root)
    if path.exists():
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read {path}: {exc.__class__.__name__}: {exc}") from None
        except (tomllib.TOMLDecodeError, ValueError) as exc:  # ValueError: an integer of over 4,300 digits
            raise ConfigError(f"{path} is not valid TOML: {exc}") from None
        except RecursionError:
            raise ConfigError(f"{path} is not valid TOML: arrays or tables nested too deeply") from None
        for section, table in _flatten_toml(data, str(path)).items():
            if section in IGNORED_SECTIONS:
                ignored.append(f"[{section}] in {path} (an EverOS memory feature everos does not serve)")
                continue
            if section not in SECTIONS:
                if not table and any(s.startswith(section + ".") for s in SECTIONS):
                    continue
                raise ConfigError(
                    f"unknown section [{section}] in {path}; known sections: "
                    + ", ".join(f"[{s}]" for s in SECTIONS)
                )
            known = section_fields(section_class(section))
            for key, value in table.items():
                if key in IGNORED_KEYS.get(section, ()):
                    ignored.append(f"[{section}] {key} in {path} (EverOS setting with no meaning in everos)")
                    continue
                if key in RETIRED_KEYS.get(section, {}):
                    ignored.append(f"[{section}] {key} in {path} (retired: {RETIRED_KEYS[section][key]})")
                    continue
                if key not in known:
                    raise ConfigError(
                        f"unknown key [{section}] {key} in {path}; keys of [{section}]: " + ", ".join(known)
                    )
                values[section][key] = check_value(section, key, value, known[key], hints[section][key], str(path))
                sources[(section, key)] = str(path)
    elif require_file:
        raise ConfigError(f"no {CONFIG_FILENAME} in {root}; run `everos init --root {root}` first")

    for var in sorted(environ):
        target = _env_target(var)
        if target is None:
            continue
        section, key = target
        if section in IGNORED_SECTIONS or key in IGNORED_KEYS.get(section, ()):
            ignored.append(f"{var} (EverOS setting with no meaning in everos)")
            continue
        if key in RETIRED_KEYS.get(section, {}):
            ignored.append(f"{var} (retired: {RETIRED_KEYS[section][key]})")
            continue
        if section not in SECTIONS:
            raise ConfigError(f"unknown section in environment variable {var}; known sections: " + ", ".join(SECTIONS))
        known = section_fields(section_class(section))
        if key not in known:
            raise ConfigError(f"unknown key in environment variable {var}; keys of [{section}]: " + ", ".join(known))
        typ = hints[section][key]
        value = _parse_env_value(environ[var], typ)
        values[section][key] = check_value(section, key, value, known[key], typ, f"environment variable {var}")
        sources[(section, key)] = f"env {var}"

    for (section, key), value in (overrides or {}).items():
        known = section_fields(section_class(section))
        values[section][key] = check_value(section, key, value, known[key], hints[section][key], "the command line")
        sources[(section, key)] = "command line"

    config = Config(**{SECTIONS[s]: section_class(s)(**kv) for s, kv in values.items()})
    return LoadedConfig(root=root, config=config, sources=sources, ignored=tuple(ignored))
