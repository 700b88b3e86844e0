"""API keys with scopes (issue #16 item 1): the key file, the key ring the server reads, and the
scope each request needs.

Keys are ``evk_`` + 32 URL-safe characters from :mod:`secrets` (192 random bits). Only their
SHA-256 is stored, in ``<root>/.keys.json`` (mode 0600, replaced atomically): a fast hash is
enough for keys that random, no salt or slow KDF is needed as nobody can guess a preimage.

The server checks a bearer key by looking up the SHA-256 digest of what the client sent in a dict
of the stored digests. What a timing difference could tell an attacker is how close the digest of
their own guess is to a stored digest, which says nothing usable about any key (that would need a
SHA-256 preimage), so the lookup is as safe as ``hmac.compare_digest`` over every stored hash and
does not grow with the number of keys.

:class:`KeyRing` is what the server holds: it stats the file at most once a second and reloads it
when its inode, size or mtime changed, so keys created or revoked with ``everos keys`` apply to a
running server within about a second, without a restart and without reading the file per request.

Scopes are ordered: ``read`` < ``write`` < ``admin``; a key allows its scope and those below it.

Rates per key and when each key was last used are in :mod:`everos.key_limits`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import logging
import math
import os
import re
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from everos.errors import ConfigError, InvalidInput, NotFound
from everos.runtime import is_loopback
from everos.store import atomic_write_bytes_sync

__all__ = [
    "KEY_FILENAME",
    "KEY_PREFIX",
    "SCOPES",
    "ApiKey",
    "KeyRing",
    "check_bind_auth",
    "create_key",
    "hash_key",
    "is_upload",
    "list_keys",
    "required_scope",
    "revoke_key",
    "scope_allows",
]

log = logging.getLogger("everos.auth")

KEY_FILENAME = ".keys.json"
KEY_PREFIX = "evk_"
SCOPES = ("read", "write", "admin")
FILE_VERSION = 1
# How often a running server looks at the key file (a stat), at most.
RELOAD_INTERVAL_S = 1.0
# How much of a key `everos keys list` shows, so a person can tell keys apart (4 random characters).
SHOWN_PREFIX_LENGTH = len(KEY_PREFIX) + 4


@dataclass(frozen=True)
class ApiKey:
    """A stored key: never the key itself, only its SHA-256 and what it may do."""

    id: str
    name: str
    scope: str
    prefix: str
    sha256: str
    created_at: str
    # The key's own rate (None: the server's [api] default); see RateLimiter.
    requests_per_second: float | None = None
    burst: int | None = None
    concurrent_uploads: int | None = None

    def public(self) -> dict[str, Any]:
        """What ``everos keys list`` shows (no hash)."""
        return {"id": self.id, "name": self.name, "scope": self.scope, "prefix": self.prefix,
                "created_at": self.created_at, **{name: getattr(self, name) for name in _LIMIT_FIELDS}}


_REQUIRED_FIELDS = ("id", "name", "scope", "prefix", "sha256", "created_at")
_LIMIT_FIELDS = {"requests_per_second": float, "burst": int, "concurrent_uploads": int}


def _is_rate(value: float | None) -> bool:
    """A key's own rate: unset (None), or a finite number, 0 (no limit) or more."""
    return value is None or (math.isfinite(value) and value >= 0)


def keys_path(root: Path) -> Path:
    return Path(root) / KEY_FILENAME


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def scope_allows(granted: str, needed: str) -> bool:
    """True when a key of scope ``granted`` may do what needs ``needed``."""
    return SCOPES.index(granted) >= SCOPES.index(needed)


# -- the key file -----------------------------------------------------------------------------------


def _parse(raw: bytes, path: Path) -> list[ApiKey]:
    try:
        body = json.loads(raw)
        keys = [ApiKey(**{field: str(item[field]) for field in _REQUIRED_FIELDS},
                       **{field: None if item.get(field) is None else kind(item[field])
                          for field, kind in _LIMIT_FIELDS.items()})
                for item in body["keys"]]
        if not all(_is_rate(getattr(key, field)) for key in keys for field in _LIMIT_FIELDS):
            raise ValueError("a rate must be a finite number, 0 or more")
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path} is not a key file everos wrote ({exc.__class__.__name__}: {exc}); "
                          "restore it or remove it and create the keys again") from None
    bad = [key.id for key in keys if key.scope not in SCOPES]
    if bad:
        raise ConfigError(f"{path}: key(s) {', '.join(bad)} have an unknown scope; scopes: {', '.join(SCOPES)}")
    return keys


def _read(path: Path) -> list[ApiKey]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return []
    return _parse(raw, path)


def _write(path: Path, keys: list[ApiKey]) -> None:
    # A key without a rate of its own is stored as before rates existed.
    body = {"version": FILE_VERSION, "keys": [{name: value for name, value in key.__dict__.items()
                                               if value is not None or name not in _LIMIT_FIELDS}
                                              for key in keys]}
    atomic_write_bytes_sync(path, (json.dumps(body, indent=2) + "\n").encode(), mode=0o600)


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[Path]:
    """The key file, with an exclusive lock on its sidecar so two ``everos keys`` commands do not
    lose each other's change (the server only reads, and never takes this lock)."""
    path = keys_path(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.with_name(KEY_FILENAME + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield path
    finally:
        os.close(fd)


_NAME_RE = re.compile(r"^[\w.@:-]{1,64}$")


def create_key(root: Path, scope: str, name: str | None = None, *, requests_per_second: float | None = None,
               burst: int | None = None, concurrent_uploads: int | None = None) -> tuple[str, ApiKey]:
    """Make a new key of ``scope``; store its hash; return ``(key, record)``. The key is not kept
    anywhere: this is the only time it exists in the clear. The rates, when given, are the key's
    own (0: no limit); otherwise the server's ``[api]`` defaults apply.

    Raises:
        InvalidInput: an unknown scope, a name that is not 1-64 letters, digits, ``_.@:-``, or a
            negative or non-finite rate.
    """
    if scope not in SCOPES:
        raise InvalidInput(f"scope must be one of {', '.join(SCOPES)}, not {scope!r}", field="scope")
    if name is not None and not _NAME_RE.match(name):
        raise InvalidInput("a key's name is 1-64 letters, digits and _ . @ : -", field="name")
    limits = {"requests_per_second": requests_per_second, "burst": burst, "concurrent_uploads": concurrent_uploads}
    for field, value in limits.items():
        if not _is_rate(value):
            raise InvalidInput(f"{field} must be 0 (no limit) or more", field=field)
    key = KEY_PREFIX + secrets.token_urlsafe(24)  # 24 bytes: 32 characters
    created = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    with _locked(root) as path:
        keys = _read(path)
        taken = {k.id for k in keys}
        key_id = secrets.token_hex(4)
        while key_id in taken:
            key_id = secrets.token_hex(4)
        record = ApiKey(id=key_id, name=name or f"{scope}-{key_id}", scope=scope,
                        prefix=key[:SHOWN_PREFIX_LENGTH], sha256=hash_key(key), created_at=created, **limits)
        _write(path, [*keys, record])
    return key, record


def list_keys(root: Path) -> list[ApiKey]:
    return _read(keys_path(root))


def revoke_key(root: Path, key_id: str) -> ApiKey:
    """Remove the key ``key_id`` (its id, as ``list_keys`` shows it); return its record.

    Raises:
        NotFound: no key has that id.
    """
    with _locked(root) as path:
        keys = _read(path)
        found = next((k for k in keys if k.id == key_id), None)
        if found is None:
            raise NotFound(f"no key with id {key_id!r}; `everos keys list` shows the ids")
        _write(path, [k for k in keys if k.id != key_id])
    return found


# -- the server's view --------------------------------------------------------------------------------


class KeyRing:
    """The keys a running server accepts, kept fresh from the key file by a stat at most every
    ``interval_s``. Not a checkpoint; the stat (and, after a change, the read of a small file) is
    the only I/O, done on the calling thread.

    A key file that cannot be read or parsed keeps the keys last loaded; if there were none, the
    ring is *closed*: keys are required and none is accepted (a damaged file must not open the
    server).
    """

    def __init__(self, root: Path, *, interval_s: float = RELOAD_INTERVAL_S,
                 clock: Any = time.monotonic) -> None:
        self.path = keys_path(root)
        self.interval_s = interval_s
        self.clock = clock
        self._by_digest: dict[str, ApiKey] = {}
        self._closed = False
        self.problem: str | None = None  # why the last load failed, while it stays failed
        self._signature: tuple[int, int, int] | None = None
        self._checked_at = -float("inf")
        self.refresh(force=True)

    @property
    def required(self) -> bool:
        """True when requests need a key (at least one key exists, or the file is damaged)."""
        self.refresh()
        return bool(self._by_digest) or self._closed

    def lookup(self, key: str) -> ApiKey | None:
        """The stored key ``key`` is, or None."""
        self.refresh()
        return self._by_digest.get(hash_key(key))

    def refresh(self, *, force: bool = False) -> None:
        now = self.clock()
        if not force and now - self._checked_at < self.interval_s:
            return
        self._checked_at = now
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            self._by_digest, self._closed, self._signature, self.problem = {}, False, None, None
            return
        except OSError as exc:
            self._failed(f"cannot stat {self.path}: {exc.strerror}")
            return
        signature = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
        if signature == self._signature:
            return
        try:
            keys = _read(self.path)
        except ConfigError as exc:
            self._failed(exc.message)
            return
        except OSError as exc:
            self._failed(f"cannot read {self.path}: {exc.strerror}")
            return
        self._signature = signature
        self._by_digest = {key.sha256: key for key in keys}
        self._closed, self.problem = False, None
        log.info("api keys loaded", extra={"fields": {"keys": len(keys)}})

    def _failed(self, why: str) -> None:
        self._signature = None  # try again at the next check
        self.problem = why
        if not self._by_digest:
            self._closed = True
        log.error("api keys: %s; keeping the %d key(s) loaded before", why, len(self._by_digest))


def check_bind_auth(host: str, keys: KeyRing, *, insecure_no_auth: bool = False) -> None:
    """Refuse to serve beyond loopback with no key, unless the operator said so.

    Raises:
        ConfigError: the key file cannot be read or parsed (on any bind: a server that started
            with it would refuse every request); or ``host`` is not loopback, no key exists and
            ``insecure_no_auth`` is false.
    """
    if keys.problem is not None:
        raise ConfigError(keys.problem)
    if is_loopback(host) or keys.required or insecure_no_auth:
        return
    raise ConfigError(f"[api] host = {host!r} is reachable beyond this machine and no API key exists, so anyone "
                      "who can reach it could read and change the knowledge base; create a key with "
                      "`everos keys create --scope admin`, bind to 127.0.0.1, or pass --insecure-no-auth")


# -- what a request needs -------------------------------------------------------------------------------


def required_scope(method: str, path: str) -> str:
    """The scope a request needs: ``admin`` for the cascade routes and task retries, ``read`` for
    GET/HEAD, search, /mcp (whose tools are checked one by one), /metrics and the docs, ``write``
    for every other change. Pure.

    The path is read as the router will: empty segments (``//``) and a trailing slash do not
    change what a route needs.
    """
    segments = [part for part in path.split("/") if part]
    method = method.upper()
    if len(segments) >= 3 and segments[0] == "api" and segments[2] == "cascade":
        return "admin"
    if segments and segments[0] == "mcp":
        return "read"
    if method in ("GET", "HEAD", "OPTIONS"):
        return "read"
    if method == "POST" and len(segments) >= 3 and segments[-3] == "tasks" and segments[-1] == "retry":
        return "admin"
    if method == "POST" and segments and segments[-1] == "search":
        return "read"
    return "write"


def is_upload(method: str, path: str) -> bool:
    """True for the routes that take a document's bytes: ``POST .../documents`` and ``PUT
    .../documents/{doc_id}`` (what ``concurrent_uploads`` counts). Pure."""
    segments = [part for part in path.split("/") if part]
    method = method.upper()
    return ((method == "POST" and segments[-1:] == ["documents"])
            or (method == "PUT" and segments[-2:-1] == ["documents"]))
