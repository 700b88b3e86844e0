"""The ``everos`` command line.

::

    everos init [--root DIR] [--force] [--print]
    everos config show [--root DIR]
    everos server start [--host H] [--port P] [--root DIR] [--log-level L] [--insecure-no-auth]
    everos keys create --scope read|write|admin [--name N] | list | revoke ID   [--root DIR] [--json]
    everos mcp [--url URL] [--root DIR] [--log-level L]
    everos cascade status|sync [PATH]|fix [--apply]|rebuild [--root DIR]
    everos reextract [--root DIR] [--url URL]
    everos ingest PATH... [--url URL | --root DIR] [--include GLOB] [--exclude GLOB] [--no-wait] [--json]
    everos search QUERY... | docs list|show ID|rm ID [--yes] | tasks [--dead] [show|retry ID]   (--url/--root, --json)
    everos doctor [--root DIR] [--json] [--timeout S]
    everos replay SCENARIO [--url URL --allow-writes] [--scale F] [--rounds N] [--root DIR] [--keep-root]

Exit codes (:class:`everos.errors.ExitCode`), each failure one line on stderr (a traceback only
with ``--log-level debug``): 0 success; 1 a configuration problem (the message says which key and
what is allowed); 2 a usage problem (a flag, a path that is not a document); 3 another process
owns the root; 4 the server cannot listen on its address; 5 a path or id does not exist; 6 the
server to talk to does not answer; 7 ``replay`` found a broken guarantee, ``cascade status``
is unhealthy or ``doctor`` found a problem; 70 a bug; 130 Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Sequence

from everos import __version__, api_cli, doctor, ingest_cli, keys_cli
from everos.config import (
    CONFIG_FILENAME,
    config_path,
    display_value,
    iter_settings,
    load_config,
    render_template,
    resolve_root,
)
from everos.errors import (
    BadRequest,
    CommandError,
    ConfigError,
    EverosError,
    ExitCode,
    InvalidInput,
    NotFound,
    RootLocked,
)

__all__ = ["main"]

EXIT_CONFIG = ExitCode.CONFIG
# Re-extract every document whose model extraction fell back (the server answers at once).
REEXTRACT_PATH = "/api/v1/knowledge/reextract"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="everos", description="A local-first knowledge server that cannot hang.")
    parser.add_argument("--version", action="version", version=f"everos {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    init = commands.add_parser("init", help=f"write {CONFIG_FILENAME} with every setting, commented")
    init.add_argument("--root", help="memory root (default: $EVEROS_ROOT, else ~/.everos)")
    init.add_argument("--force", action="store_true", help=f"overwrite an existing {CONFIG_FILENAME}")
    init.add_argument("--print", dest="print_only", action="store_true", help="print the template instead")

    config = commands.add_parser("config", help="inspect the configuration")
    config_commands = config.add_subparsers(dest="config_command", required=True, metavar="SUBCOMMAND")
    show = config_commands.add_parser("show", help="print every effective value and where it came from")
    show.add_argument("--root", help="memory root (default: $EVEROS_ROOT, else ~/.everos)")

    server = commands.add_parser("server", help="run the HTTP server")
    server_commands = server.add_subparsers(dest="server_command", required=True, metavar="SUBCOMMAND")
    start = server_commands.add_parser("start", help="start the server in the foreground (SIGINT/SIGTERM stop it)")
    start.add_argument("--host", help="bind address (default from [api] host, 127.0.0.1)")
    start.add_argument("--port", type=int, help="TCP port (default from [api] port, 8000)")
    start.add_argument("--root", help="memory root (default: $EVEROS_ROOT, else ~/.everos)")
    start.add_argument("--log-level", choices=("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"),
                       type=str.upper, help="log level (default from [api] log_level or $EVEROS_LOG_LEVEL)")
    start.add_argument("--insecure-no-auth", action="store_true",
                       help="start on a non-loopback [api] host even though no API key exists (anyone who can "
                            "reach it can read and change everything)")
    cascade = commands.add_parser("cascade", help="inspect and repair the markdown -> index cascade")
    cascade_commands = cascade.add_subparsers(dest="cascade_command", required=True, metavar="SUBCOMMAND")
    for name, text in (("status", "queue depth by state, oldest lease, dead rows, failed documents and their "
                                  "errors (safe next to a server)"),
                       ("sync", "queue PATH's document (or whatever changed) and index it now"),
                       ("fix", "list dead and failed rows with their errors (safe next to a server); --apply "
                               "queues them again and indexes them (through the server, when one runs)"),
                       ("rebuild", "drop the derived index and index every markdown document again")):
        sub = cascade_commands.add_parser(name, help=text)
        sub.add_argument("--root", help="memory root (default: $EVEROS_ROOT, else ~/.everos)")
        if name == "sync":
            sub.add_argument("path", nargs="?", help="a document directory or a file inside one")
        if name == "fix":
            sub.add_argument("--apply", action="store_true",
                             help="queue the rows again and index them; with a server running, ask it to")

    replay = commands.add_parser("replay", help="drive a server through a hang scenario while probing /health")
    replay.add_argument("scenario", help="seed-316, llm-stall, llm-down, llm-flaky, llm-slow, burst, embed-stall, "
                                         "fd-256, kill-restart, local-llm")
    replay.add_argument("--url", help="drive this running server instead of starting one (burst only; needs "
                                      "--allow-writes)")
    replay.add_argument("--allow-writes", action="store_true",
                        help="with --url: let the run upload synthetic documents to that server (into app_id "
                             "'everos-replay', deleted at the end)")
    replay.add_argument("--keep-root", action="store_true",
                        help="keep the temporary root the harness made even when the run held")
    replay.add_argument("--scale", type=float, default=1.0, help="scale document count and size (default 1)")
    replay.add_argument("--rounds", type=int, default=1, help="upload the corpus this many times")
    replay.add_argument("--root", help="root for the server the harness starts (default: a new temp dir)")
    reextract = commands.add_parser(
        "reextract", help="ask the server that owns the root to extract again, with the model, every document "
                          "whose model extraction fell back to the built-in extractor")
    reextract.add_argument("--root", help="memory root (default: $EVEROS_ROOT, else ~/.everos)")
    reextract.add_argument("--url", help="the server to ask (default: the one that owns the root)")
    ingest_cli.add_parser(commands)
    keys_cli.add_parser(commands)
    api_cli.add_parser(commands)
    doctor.add_parser(commands)
    mcp = commands.add_parser("mcp", help="serve the knowledge tools over MCP stdio (for clients that launch a "
                                          "command)")
    mcp.add_argument("--url", help="proxy to the server at this /mcp URL (default: open the root, or proxy "
                                   "to the server that owns it)")
    mcp.add_argument("--root", help="memory root (default: $EVEROS_ROOT, else ~/.everos)")
    mcp.add_argument("--log-level", choices=("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"),
                     type=str.upper, help="log level on stderr (default from [api] log_level)")
    return parser


def _cmd_mcp(args: argparse.Namespace) -> int:
    from everos.mcp_cli import run

    return run(args.root, args.url, args.log_level or os.environ.get("EVEROS_LOG_LEVEL", "").upper() or None)


def _cmd_cascade(args: argparse.Namespace) -> int:
    import functools
    import json

    import trio

    from everos.cascade_cli import run_cascade_command

    root = resolve_root(args.root)
    loaded = load_config(root)
    options = {"path": getattr(args, "path", None), "apply": getattr(args, "apply", False)}
    report = trio.run(functools.partial(run_cascade_command, progress_stream=sys.stderr), loaded,
                      args.cascade_command, options)
    print(json.dumps(report, indent=2, ensure_ascii=False, default=str))
    unhealthy = args.cascade_command == "status" and report.get("healthy") is False
    return ExitCode.CHECK_FAILED if unhealthy else ExitCode.OK  # a watchdog reads the exit code


def _cmd_reextract(args: argparse.Namespace) -> int:
    import json

    import trio

    from everos.client import ApiClient, server_base_url

    async def ask() -> dict:
        server = server_base_url(resolve_root(args.root), args.url)
        async with ApiClient(server, max_retries=0) as client:
            return {**await client.data("POST", REEXTRACT_PATH, json={}), "server": server}

    print(json.dumps(trio.run(ask), indent=2, ensure_ascii=False))
    return ExitCode.OK


def _cmd_replay(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    import trio

    from everos.testing.replay import SCENARIOS, ReplayOptions, describe_plan, plan_for_url, run_scenario

    if args.scenario not in SCENARIOS:
        raise CommandError(f"unknown scenario {args.scenario!r}; scenarios: {', '.join(SCENARIOS)}",
                           exit_code=ExitCode.USAGE)
    options = ReplayOptions(scale=args.scale, url=args.url, rounds=args.rounds, allow_writes=args.allow_writes,
                            keep_root=args.keep_root, root=Path(args.root) if args.root else None)
    try:
        if options.url:
            options = plan_for_url(args.scenario, options)
    except ValueError as exc:
        raise CommandError(str(exc), exit_code=ExitCode.USAGE) from None
    print(f"everos: {describe_plan(args.scenario, options)}", file=sys.stderr)
    report = trio.run(run_scenario, args.scenario, options)
    print(json.dumps(report, indent=2, ensure_ascii=False))
    return ExitCode.CHECK_FAILED if report["breaches"] else ExitCode.OK


def _cmd_init(args: argparse.Namespace) -> int:
    template = render_template()
    if args.print_only:
        sys.stdout.write(template)
        return 0
    root = resolve_root(args.root)
    path = config_path(root)
    if path.exists() and not args.force:
        print(f"{path} exists; kept as it is (use --force to overwrite).")
        return EXIT_CONFIG
    root.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(template, encoding="utf-8")
    os.replace(tmp, path)
    print(f"wrote {path}")
    print(f"next: everos server start --root {root}")
    return 0


def _cmd_config_show(args: argparse.Namespace) -> int:
    root = resolve_root(args.root)
    loaded = load_config(root, require_file=False)
    path = config_path(root)
    print(f"# root: {root}")
    print(f"# config file: {path}" + ("" if path.exists() else " (missing: defaults apply; run `everos init`)"))
    section = None
    for name, key, value, field in iter_settings(loaded.config):
        if name != section:
            print(f"\n[{name}]")
            section = name
        print(f"{key} = {display_value(value, field)}  # {loaded.source_of(name, key)}")
    for item in loaded.ignored:
        print(f"# ignored: {item}")
    return 0


def _cmd_server_start(args: argparse.Namespace) -> int:
    from everos import allocator
    from everos.logs import configure_logging

    root = resolve_root(args.root)
    overrides: dict[tuple[str, str], object] = {}
    if args.host is not None:
        overrides[("api", "host")] = args.host
    if args.port is not None:
        overrides[("api", "port")] = args.port
    log_level = args.log_level or os.environ.get("EVEROS_LOG_LEVEL", "").upper() or None
    if log_level:
        overrides[("api", "log_level")] = log_level
    loaded = load_config(root, overrides=overrides)
    # Before lancedb is imported: its first thread would fix glibc's arena limit at the default.
    allocator.limit_arenas(loaded.config.limits.malloc_arenas)
    configure_logging(loaded.config.api.log_level, fmt=loaded.config.api.log_format)
    from everos.server import run
    from everos.services import open_services

    run(loaded, services=open_services, insecure_no_auth=args.insecure_no_auth)
    return 0


def _leaf(exc: BaseException) -> BaseException:
    """The error to report from what ``trio.run`` raised: groups of one are unwrapped, and in a
    larger group an interrupt or one of ours wins over the rest."""
    while isinstance(exc, BaseExceptionGroup):
        leaves = [_leaf(inner) for inner in exc.exceptions]
        exc = next((e for e in leaves if isinstance(e, KeyboardInterrupt)),
                   next((e for e in leaves if isinstance(e, EverosError)), leaves[0]))
    return exc


def _failure(exc: BaseException) -> tuple[str, int]:
    """The one line to print and the exit code for a command that raised ``exc``."""
    if isinstance(exc, ConfigError):
        return f"configuration error: {exc.message}", ExitCode.CONFIG
    if isinstance(exc, RootLocked):
        return exc.message, ExitCode.ROOT_LOCKED
    if isinstance(exc, CommandError):
        return exc.message, exc.exit_code
    if isinstance(exc, NotFound):
        return exc.message, ExitCode.NOT_FOUND
    if isinstance(exc, (InvalidInput, BadRequest)):
        return exc.message, ExitCode.USAGE
    if isinstance(exc, EverosError):
        return f"{exc.code}: {exc.message}", ExitCode.INTERNAL
    if isinstance(exc, FileNotFoundError):
        return f"{exc.filename or exc}: no such file or directory", ExitCode.NOT_FOUND
    text = " ".join(str(exc).split())[:300]
    return (f"unexpected error: {exc.__class__.__name__}: {text} (this is a bug; run again with "
            "--log-level debug for the traceback)"), ExitCode.INTERNAL


def _debugging(args: argparse.Namespace) -> bool:
    level = getattr(args, "log_level", None) or os.environ.get("EVEROS_LOG_LEVEL", "")
    return level.upper() == "DEBUG"


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; every failure a user can cause is one line on stderr and a distinct exit
    code (:class:`~everos.errors.ExitCode`). Tracebacks only with ``--log-level debug``."""
    args = _parser().parse_args(argv)
    commands = {"init": _cmd_init, "config": _cmd_config_show, "server": _cmd_server_start, "mcp": _cmd_mcp,
                "cascade": _cmd_cascade, "replay": _cmd_replay, "reextract": _cmd_reextract,
                "ingest": ingest_cli.run, "doctor": doctor.run, "keys": keys_cli.run, **dict.fromkeys(api_cli.COMMANDS, api_cli.run)}
    try:
        return commands[args.command](args)
    except BaseException as raised:  # noqa: BLE001 - the command line's last word on every failure
        exc = _leaf(raised)
        if isinstance(exc, KeyboardInterrupt):
            return ExitCode.INTERRUPTED
        if isinstance(exc, SystemExit):
            raise exc from None
        message, code = _failure(exc)
        _stop_logging()
        if _debugging(args):
            traceback.print_exception(raised)
        print(f"everos: {message}", file=sys.stderr)
        return code


def _stop_logging() -> None:
    """Let the log writer thread flush first, so the error line is the last thing printed."""
    from everos.logs import shutdown_logging

    shutdown_logging()


if __name__ == "__main__":
    sys.exit(main())
