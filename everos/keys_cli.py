"""``everos keys create|list|revoke``: the root's API keys (issue #16 item 1).

::

    everos keys create --scope read|write|admin [--name N] [--rate R] [--burst B] [--uploads U] [--root DIR] [--json]
    everos keys list [--root DIR] [--json]
    everos keys revoke ID [--root DIR] [--json]

``create`` prints the new key once, on stdout (``--json``: with its record); only its SHA-256 is
kept, in ``<root>/.keys.json`` (mode 0600); ``--rate``, ``--burst`` and ``--uploads`` give it rates
of its own instead of the server's ``[api]`` defaults. ``list`` shows each key's id, name, scope,
first characters, creation time, when a server last saw it used (``<root>/.keys-used.json``,
written every 30 s) and its own rates, never the key. ``revoke`` removes a key by its id. A server running
on the root applies the change within about a second (it stats the file), without a restart.

These commands touch only the key file (under its own lock), never the root's lock: they are
safe next to a running server. Exit codes: 0 done; 2 a bad scope or name; 5 no key has that id.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from everos.config import resolve_root
from everos.errors import ExitCode

__all__ = ["add_parser", "run"]


def add_parser(commands: Any) -> None:
    """Add ``keys`` to argparse's ``commands`` (the object ``add_subparsers`` returns)."""
    from everos.auth import SCOPES

    keys = commands.add_parser("keys", help="create, list and revoke the API keys of the root")
    actions = keys.add_subparsers(dest="keys_command", required=True, metavar="SUBCOMMAND")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--root", help="memory root (default: $EVEROS_ROOT, else ~/.everos)")
    common.add_argument("--json", action="store_true", help="print JSON")
    create = actions.add_parser("create", parents=[common], help="make a key and print it (once)")
    create.add_argument("--scope", required=True, choices=SCOPES,
                        help="read: GET routes, search and read tools; write: also uploads, changes and "
                             "deletes; admin: also the cascade routes and task retries")
    create.add_argument("--name", help="a label for `everos keys list` (default: SCOPE-ID)")
    create.add_argument("--rate", type=float, metavar="N",
                        help="requests a second this key may send (0: no limit; default: [api] key_requests_per_second)")
    create.add_argument("--burst", type=int, metavar="N", help="requests at once above the rate (default: [api] key_burst)")
    create.add_argument("--uploads", type=int, metavar="N",
                        help="uploads in flight at once (0: no limit; default: [api] key_concurrent_uploads)")
    actions.add_parser("list", parents=[common],
                       help="the keys (id, name, scope, prefix, created, last used, own rates); never the key")
    revoke = actions.add_parser("revoke", parents=[common], help="remove a key by its id")
    revoke.add_argument("key_id", metavar="ID", help="the key's id, as `everos keys list` shows it")


def run(args: argparse.Namespace) -> int:
    """Run ``everos keys``; return the exit code.

    Raises:
        InvalidInput: a bad ``--name`` (exit 2).
        NotFound: ``revoke`` of an id no key has (exit 5).
        ConfigError: the key file is damaged (exit 1).
    """
    from everos.auth import create_key, list_keys, revoke_key
    from everos.key_limits import last_used

    root = resolve_root(args.root)
    if args.keys_command == "create":
        key, record = create_key(root, args.scope, args.name, requests_per_second=args.rate, burst=args.burst,
                                 concurrent_uploads=args.uploads)
        if args.json:
            print(json.dumps({"key": key, **record.public()}, indent=2))
        else:
            print(key)
            print(f"everos: created {record.scope} key {record.id} ({record.name}); it is shown only this once: "
                  "send it as `Authorization: Bearer <key>`", file=sys.stderr)
        return ExitCode.OK
    if args.keys_command == "list":
        used = last_used(root)
        keys = [{**key.public(), "last_used_at": used.get(key.id)} for key in list_keys(root)]
        if args.json:
            print(json.dumps(keys, indent=2))
        elif not keys:
            print("no API keys: the server needs none (loopback only); `everos keys create` makes one",
                  file=sys.stderr)
        else:
            from everos.api_cli import _print_table

            columns = ("id", "name", "scope", "prefix", "created_at", "last_used_at")
            _print_table([*columns, "rate"], [[key[c] or "-" for c in columns] + [_rate(key)] for key in keys])
        return ExitCode.OK
    record = revoke_key(root, args.key_id)
    if args.json:
        print(json.dumps(record.public(), indent=2))
    else:
        print(f"revoked {record.scope} key {record.id} ({record.name})")
    return ExitCode.OK


def _rate(key: dict[str, Any]) -> str:
    """A key's own rates for the table ("default" where it has none)."""
    own = [f"{name}={key[name]:g}" for name in ("requests_per_second", "burst", "concurrent_uploads")
           if key[name] is not None]
    return " ".join(own) or "default"
