"""``everos search``, ``everos docs list|show|rm``, ``everos tasks``: the knowledge API from the shell.

::

    everos search QUERY... [--method keyword|vector|hybrid] [--top-k N] [--threshold S] [--app-id A] [--project-id P]
    everos docs list [--page N] [--page-size N] [--category C] [--app-id A] [--project-id P]
    everos docs show DOC_ID
    everos docs rm DOC_ID [--yes]
    everos tasks [list] [--status S | --dead] [--page N] [--page-size N]
    everos tasks show TASK_ID
    everos tasks retry TASK_ID

Every command takes ``--root`` / ``--url`` (which server: ``--url``, else the one that owns the
root, see :func:`everos.client.server_base_url`) and ``--json`` (print the API's ``data`` as
JSON). Without ``--json`` a listing is a table: aligned columns cut to the terminal's width on a
terminal, tab-separated lines with a header (for ``cut``, ``awk``) when stdout is not one. The
API's errors are one line with an exit code by status (:class:`everos.client.ApiError`).

``docs rm`` shows what it deletes and asks first on a terminal; without ``--yes`` it refuses
when stdin is not a terminal. ``tasks retry`` queues a dead or failed ingest job again
(``POST /api/v1/knowledge/tasks/{task_id}/retry``).
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import unicodedata
from collections.abc import Sequence
from typing import Any

from everos.config import resolve_root
from everos.errors import CommandError, ExitCode

__all__ = ["add_parser", "render_table", "run"]

API = "/api/v1/knowledge"
COMMANDS = ("search", "docs", "tasks")
TASK_ACTIONS = ("list", "show", "retry")
# The API's largest page: `tasks --dead` reads the dead and the failed rows in one page each.
MAX_PAGE_SIZE = 100
ELLIPSIS = "…"
MIN_COLUMN_WIDTH = 6


def add_parser(commands: Any) -> None:
    """Add ``search``, ``docs`` and ``tasks`` to argparse's ``commands`` (what ``add_subparsers``
    returns)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--root", help="memory root whose server to ask (default: $EVEROS_ROOT, else ~/.everos)")
    common.add_argument("--url", help="the server to ask, e.g. http://127.0.0.1:8000 (default: the root's owner)")
    common.add_argument("--json", action="store_true", help="print the API's data as JSON")
    scope = argparse.ArgumentParser(add_help=False)
    scope.add_argument("--app-id", help="scope: app id (default: default)")
    scope.add_argument("--project-id", help="scope: project id (default: default)")
    paging = argparse.ArgumentParser(add_help=False)
    paging.add_argument("--page", type=int, default=1, help="page number, from 1 (default 1)")
    paging.add_argument("--page-size", type=int, default=20, help=f"rows per page, 1 to {MAX_PAGE_SIZE} (default 20)")

    search = commands.add_parser("search", parents=[common, scope], help="search the knowledge of a scope")
    search.add_argument("query", nargs="+", help="what to look for (the words are joined)")
    search.add_argument("--method", choices=("keyword", "vector", "hybrid"), default="hybrid",
                        help="keyword (BM25), vector (embeddings) or hybrid (both, fused; default)")
    search.add_argument("--top-k", type=int, default=10, help="hits to return, 1 to 100 (default 10)")
    search.add_argument("--threshold", type=float, help="leave out hits scoring below this")

    docs = commands.add_parser("docs", help="list, show and delete documents")
    docs_commands = docs.add_subparsers(dest="docs_command", required=True, metavar="SUBCOMMAND")
    listing = docs_commands.add_parser("list", parents=[common, scope, paging], help="documents of a scope, a page "
                                                                                    "at a time")
    listing.add_argument("--category", help="only documents of this category")
    show = docs_commands.add_parser("show", parents=[common], help="a document's outline: title, category, index "
                                                                   "status and error, topics")
    show.add_argument("doc_id")
    remove = docs_commands.add_parser("rm", parents=[common], help="delete a document, its topics and its files")
    remove.add_argument("doc_id")
    remove.add_argument("--yes", action="store_true", help="do not ask (needed when stdin is not a terminal)")

    tasks = commands.add_parser("tasks", parents=[common, paging], help="ingest tasks: list them, show one, retry a "
                                                                        "dead or failed one")
    tasks.add_argument("action", nargs="?", choices=TASK_ACTIONS, default="list",
                       help="list (default), show TASK_ID, retry TASK_ID")
    tasks.add_argument("task_id", nargs="?", help="the task to show or retry")
    tasks.add_argument("--status", choices=("queued", "running", "succeeded", "failed", "dead"),
                       help="list only tasks in this state")
    tasks.add_argument("--dead", action="store_true", help="list the dead and failed tasks with their last error")


def run(args: argparse.Namespace) -> int:
    """Run ``search``, ``docs …`` or ``tasks …``; print the answer; return the exit code.

    Raises:
        CommandError: a usage problem (exit 2), no server to talk to or one that does not answer
            (exit 6), or the server's error (:class:`everos.client.ApiError`: 404 exit 5, 4xx exit 2).
    """
    if args.command == "search":
        return _search(args)
    if args.command == "docs":
        return {"list": _docs_list, "show": _docs_show, "rm": _docs_rm}[args.docs_command](args)
    return _tasks(args)


# -- talking to the server ------------------------------------------------------------------------


def _ask(args: argparse.Namespace, *requests: tuple[str, str, dict[str, Any]]) -> list[Any]:
    """The ``data`` of each ``(method, path, httpx keyword arguments)`` request, asked in order of
    the server chosen by ``--url`` / ``--root``.

    Raises:
        CommandError: see :func:`everos.client.server_base_url` and :class:`everos.client.ApiClient`.
    """
    # Imported here: `everos --help` and the other commands need neither trio nor httpx.
    import trio

    from everos.client import ApiClient, server_base_url

    async def ask() -> list[Any]:
        server = server_base_url(resolve_root(args.root), args.url)
        async with ApiClient(server) as client:
            return [await client.data(method, path, **kwargs) for method, path, kwargs in requests]

    return trio.run(ask)


def _scope(args: argparse.Namespace) -> dict[str, str]:
    return {name: value for name, value in (("app_id", args.app_id), ("project_id", args.project_id)) if value}


def _print_json(data: Any) -> int:
    print(json.dumps(data, indent=2, ensure_ascii=False))
    return ExitCode.OK


def _print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], footer: str | None = None) -> int:
    """A table as :func:`render_table` renders it for stdout; ``footer`` on a terminal only."""
    terminal = sys.stdout.isatty()
    width = shutil.get_terminal_size().columns if terminal else None
    print(render_table(headers, rows, width=width))
    if terminal and footer:
        print(footer)
    return ExitCode.OK


# -- search ----------------------------------------------------------------------------------------


def _search(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"query": " ".join(args.query), "method": args.method, "top_k": args.top_k, **_scope(args)}
    if args.threshold is not None:
        body["score_threshold"] = args.threshold
    (answer,) = _ask(args, ("POST", f"{API}/search", {"json": body}))
    if args.json:
        return _print_json(answer)
    rows = [(rank, f"{hit.get('score', 0):.3f}", hit.get("topic_name"), hit.get("topic_path"),
             (hit.get("document") or {}).get("title"), _best_fact(hit))
            for rank, hit in enumerate(answer["hits"], 1)]
    return _print_table(("RANK", "SCORE", "TOPIC", "PATH", "DOCUMENT", "BEST FACT"), rows,
                        f"{answer['total']} hits in {answer.get('took_ms', 0)} ms")


def _best_fact(hit: dict[str, Any]) -> str:
    facts = hit.get("facts") or []
    return facts[0].get("text", "") if facts else ""


# -- docs --------------------------------------------------------------------------------------------


def _docs_list(args: argparse.Namespace) -> int:
    params = {"page": args.page, "page_size": args.page_size, **_scope(args)}
    if args.category:
        params["category_id"] = args.category
    (answer,) = _ask(args, ("GET", f"{API}/documents", {"params": params}))
    if args.json:
        return _print_json(answer)
    rows = [(d["doc_id"], d.get("title"), d.get("category_id"), d.get("topic_count"), d.get("index_status"),
             d.get("updated_at")) for d in answer["documents"]]
    pages = max(1, math.ceil(answer["total"] / answer["page_size"]))
    return _print_table(("DOC_ID", "TITLE", "CATEGORY", "TOPICS", "INDEX", "UPDATED"), rows,
                        f"page {answer['page']} of {pages} ({answer['total']} documents)")


def _docs_show(args: argparse.Namespace) -> int:
    (document,) = _ask(args, ("GET", f"{API}/documents/{args.doc_id}", {}))
    if args.json:
        return _print_json(document)
    print(document_outline(document))
    return ExitCode.OK


def document_outline(document: dict[str, Any]) -> str:
    """``docs show``'s text: the document's fields, then its topic tree indented by depth. Pure."""
    fields = [("title", document.get("title")), ("doc_id", document.get("doc_id")),
              ("category", document.get("category_id")), ("index_status", document.get("index_status")),
              ("index_error", document.get("index_error")), ("extractor", document.get("extractor")),
              ("source", document.get("source_name")), ("md_path", document.get("md_path")),
              ("updated_at", document.get("updated_at"))]
    lines = _fields(fields)
    topics = document.get("topics") or []
    lines.append(f"topics ({len(topics)}):")
    lines.extend(f"  {'  ' * max(0, (topic.get('depth') or 1) - 1)}{topic.get('topic_name')}" for topic in topics)
    return "\n".join(lines)


def _fields(pairs: Sequence[tuple[str, Any]]) -> list[str]:
    width = max(len(name) for name, _ in pairs) + 1
    return [f"{name + ':':<{width}} {'-' if value is None else value}" for name, value in pairs]


def _docs_rm(args: argparse.Namespace) -> int:
    (document,) = _ask(args, ("GET", f"{API}/documents/{args.doc_id}", {}))
    if not args.yes:
        if not sys.stdin.isatty():
            raise CommandError(f"docs rm: not deleting {args.doc_id} without --yes: stdin is not a terminal to "
                               "confirm on", exit_code=ExitCode.USAGE)
        topics = len(document.get("topics") or [])
        reply = input(f"delete {document.get('title')!r} ({args.doc_id}), its {topics} topics and its files? [y/N] ")
        if reply.strip().lower() not in ("y", "yes"):
            print(f"kept {args.doc_id}")
            return ExitCode.OK
    (answer,) = _ask(args, ("DELETE", f"{API}/documents/{args.doc_id}",
                            {"params": {"app_id": document["app_id"], "project_id": document["project_id"]}}))
    answer = answer or {"doc_id": args.doc_id, "deleted_topics": 0}  # 204: nothing was left to delete
    if args.json:
        return _print_json(answer)
    print(f"deleted {answer['doc_id']} ({answer['deleted_topics']} topics)")
    return ExitCode.OK


# -- tasks -------------------------------------------------------------------------------------------


def _tasks(args: argparse.Namespace) -> int:
    if args.action != "list" and not args.task_id:
        raise CommandError(f"tasks {args.action} needs a TASK_ID (t_<hex>, as `everos tasks` lists them)",
                           exit_code=ExitCode.USAGE)
    if args.action == "list":
        return _tasks_list(args)
    if args.action == "retry":
        (task,) = _ask(args, ("POST", f"{API}/tasks/{args.task_id}/retry", {"json": {}}))
        if args.json:
            return _print_json(task)
        print(f"queued {task['task_id']} again (document {task['doc_id']}, status {task['status']}); follow it with "
              f"`everos tasks show {task['task_id']}`")
        return ExitCode.OK
    (task,) = _ask(args, ("GET", f"{API}/tasks/{args.task_id}", {}))
    if args.json:
        return _print_json(task)
    print("\n".join(_fields([(name, task.get(name)) for name in (
        "task_id", "doc_id", "status", "attempts", "max_attempts", "last_error", "created_at", "updated_at",
        "finished_at")])))
    return ExitCode.OK


def _tasks_list(args: argparse.Namespace) -> int:
    if args.dead and args.status:
        raise CommandError("tasks: --dead lists the dead and failed tasks; give --dead or --status, not both",
                           exit_code=ExitCode.USAGE)
    paging = {"page": args.page, "page_size": args.page_size}
    if args.dead:
        pages = _ask(args, *(("GET", f"{API}/tasks", {"params": {"status": status, "page_size": MAX_PAGE_SIZE}})
                             for status in ("dead", "failed")))
        tasks = sorted((task for page in pages for task in page["tasks"]), key=lambda task: task["updated_at"] or "")
        answer: dict[str, Any] = {"tasks": tasks}
    else:
        params = {**paging, **({"status": args.status} if args.status else {})}
        (answer,) = _ask(args, ("GET", f"{API}/tasks", {"params": params}))
    if args.json:
        return _print_json(answer)
    rows = [(t["task_id"], t.get("doc_id"), t["status"], f"{t['attempts']}/{t['max_attempts']}", t.get("updated_at"),
             t.get("last_error") or "") for t in answer["tasks"]]
    footer = (f"{len(rows)} dead or failed; retry one with `everos tasks retry TASK_ID`" if args.dead
              else f"page {answer['page']} ({len(rows)} tasks)")
    return _print_table(("TASK_ID", "DOC_ID", "STATUS", "ATTEMPTS", "UPDATED", "LAST_ERROR"), rows, footer)


# -- tables ------------------------------------------------------------------------------------------


def render_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], *, width: int | None) -> str:
    """The rows under their headers. With ``width`` (a terminal's columns): aligned columns two
    spaces apart, the widest cells cut with ``…`` until a line fits (no column narrower than
    :data:`MIN_COLUMN_WIDTH`). Without: one tab-separated line per row, cells whole. ``None`` is
    shown as ``-``; tabs and newlines inside a cell become spaces. Pure."""
    cells = [[_cell(value) for value in row] for row in [headers, *rows]]
    if width is None:
        return "\n".join("\t".join(row) for row in cells)
    widths = [max(display_width(row[i]) for row in cells) for i in range(len(headers))]
    while sum(widths) + 2 * (len(widths) - 1) > width:
        widest = max(range(len(widths)), key=lambda i: widths[i])
        if widths[widest] <= MIN_COLUMN_WIDTH:
            break
        widths[widest] -= 1
    return "\n".join("  ".join(_fit(text, widths[i]) for i, text in enumerate(row)).rstrip() for row in cells)


def _cell(value: Any) -> str:
    return "-" if value is None else " ".join(str(value).split())


def display_width(text: str) -> int:
    """Columns ``text`` takes on a terminal: wide (CJK) characters take two. Pure."""
    return sum(2 if unicodedata.east_asian_width(char) in "WF" else 1 for char in text)


def _fit(text: str, width: int) -> str:
    """``text`` padded to ``width`` columns, or cut to fit with ``…``."""
    if display_width(text) <= width:
        return text + " " * (width - display_width(text))
    cut, used = [], 0
    for char in text:
        char_width = display_width(char)
        if used + char_width > width - 1:
            break
        cut.append(char)
        used += char_width
    return "".join(cut) + ELLIPSIS + " " * (width - 1 - used)
