"""``everos ingest PATH… [--url URL | --root DIR]``: upload files and folders through the HTTP API.

::

    everos ingest docs/ notes.md [--include GLOB]… [--exclude GLOB]… [--concurrency 2]
                  [--app-id A] [--project-id P] [--category-id C] [--no-wait] [--wait-timeout S]
                  [--lag-wait S | --no-lag-wait] [--json]

Which files: a file named on the command line is always sent (the server decides from its
bytes); a folder is walked recursively for the suffixes the server accepts
(:data:`everos.knowledge._formats.ACCEPTED_SUFFIXES`), skipping hidden names, keeping only
``--include`` matches when any are given and dropping ``--exclude`` matches. A pattern without a
``/`` matches a file or folder name; one with a ``/`` matches the path below the folder given
(``*`` crosses folders). Titles are the file name without its suffix.

Which server: ``--url``, else the one that owns the root (its URL from ``<root>/.lock``), else a
full server started in this process on 127.0.0.1, port 0, which holds the root's lock until the
command ends and stops in an orderly way (after indexing, unless ``--no-wait``).

Each upload carries ``Idempotency-Key``: the SHA-256 of the file's content hash and the form
fields sent with it, so a re-sent upload is answered from the server's memory of the first one
(the server scopes keys by app and project); the same bytes under another name are not a key
conflict but the server's content dedupe (200 ``duplicate``). 429 and 503 are retried after their
``Retry-After`` (:class:`everos.client.ApiClient`).

Backpressure: while the server's index lags (more documents wait for their index than its
``[cascade] lag_documents``), upload answers carry ``X-Everos-Index-Lag``; the next upload then
waits, with a line on stderr, until ``/health``'s cascade block no longer says ``lagging`` (polled
each second), at most ``--lag-wait`` seconds (600) per pause, after which the uploads go on
(:class:`everos.folder_ingest._lag.LagGate`). ``--no-lag-wait`` sends without waiting. The
summary counts the pauses and their time.

Resume: every answer is appended to a manifest (JSON lines, fsync per line) under
``<root>/.index/ingest/`` (or ``$XDG_STATE_HOME/everos/ingest/`` with ``--url`` and no
``--root``), named by a hash of the target, the scope and the input paths. A rerun with the same
arguments skips every file acknowledged before (201, 200, 202) whose size, mtime and SHA-256 are
unchanged: after Ctrl-C or a crash nothing acknowledged is sent again. A file in flight at the
crash is sent again and answered by its idempotency key or the content dedupe, once the server has
finished the first request (it stores the key's answer, and dedupes content, only then: a rerun
within seconds of a crash, while that request still waits on its extraction, can add the document
twice).

Waiting: uploads wait for their extraction on the server (``sync_wait_seconds``), a 202's task is
then polled, and each document until its ``index_status`` is ``indexed`` or ``failed``, in upload
order, for at most ``--wait-timeout``. ``--no-wait`` sends ``Prefer: respond-async`` and returns
once every file is accepted.

Output: progress on stderr (a tqdm bar on a terminal, else one plain line every tenth of the files
or every few seconds), the summary table on stdout (``--json``: the summary as JSON). Exit code 0
only when every file was accepted and, unless ``--no-wait``, extracted and indexed;
``CHECK_FAILED`` (7) otherwise.
"""

from __future__ import annotations

import argparse
from typing import Any

from everos.errors import CommandError, ExitCode

__all__ = ["add_parser", "run"]

DEFAULT_WAIT_TIMEOUT_S = 3600.0
DEFAULT_LAG_WAIT_S = 600.0


def add_parser(commands: Any) -> None:
    """Add ``ingest`` to argparse's ``commands`` (the object ``add_subparsers`` returns)."""
    ingest = commands.add_parser("ingest", help="upload files and folders (resumable, with progress)")
    ingest.add_argument("paths", nargs="+", metavar="PATH", help="files and folders (folders recursively)")
    ingest.add_argument("--url", help="the server to upload to (default: the one that owns the root, else one "
                                      "started in this process)")
    ingest.add_argument("--root", help="memory root (default: $EVEROS_ROOT, else ~/.everos)")
    ingest.add_argument("--include", action="append", default=[], metavar="GLOB",
                        help="in folders, only files matching GLOB (repeatable)")
    ingest.add_argument("--exclude", action="append", default=[], metavar="GLOB",
                        help="in folders, skip files and folders matching GLOB (repeatable)")
    ingest.add_argument("--concurrency", type=int, default=2, metavar="N",
                        help="uploads in flight (default 2, the server's default extract workers: more only queues)")
    ingest.add_argument("--app-id", help="scope app_id (default: default)")
    ingest.add_argument("--project-id", help="scope project_id (default: default)")
    ingest.add_argument("--category-id", help="put every document in this category")
    ingest.add_argument("--no-wait", dest="wait", action="store_false",
                        help="return once every file is accepted; do not wait for extraction and indexing")
    ingest.add_argument("--wait-timeout", type=float, default=DEFAULT_WAIT_TIMEOUT_S, metavar="SECONDS",
                        help=f"give up waiting for indexing after this long (default {DEFAULT_WAIT_TIMEOUT_S:g})")
    ingest.add_argument("--lag-wait", type=float, default=DEFAULT_LAG_WAIT_S, metavar="SECONDS",
                        help="while the server's index lags, wait up to this long before sending more "
                             f"(default {DEFAULT_LAG_WAIT_S:g})")
    ingest.add_argument("--no-lag-wait", dest="lag_wait", action="store_const", const=0.0,
                        help="send at full speed even while the server's index lags")
    ingest.add_argument("--json", action="store_true", help="print the summary as JSON")


def run(args: argparse.Namespace) -> int:
    """Run ``everos ingest``; print the summary on stdout; return the exit code.

    Raises:
        CommandError: a path does not exist or nothing matched (``NOT_FOUND``), a bad flag
            (``USAGE``), the server cannot be reached (``UNREACHABLE``).
        InvalidInput: a malformed ``--app-id`` / ``--project-id``.
        RootLocked: the root was taken between the check and the in-process server's start.
    """
    import json

    import trio

    from everos.folder_ingest import IngestOptions, discover, form_fields, ingest_command, render_summary

    if args.concurrency < 1:
        raise CommandError("--concurrency must be at least 1", exit_code=ExitCode.USAGE)
    if not args.lag_wait >= 0:  # also NaN
        raise CommandError("--lag-wait must be 0 or more seconds", exit_code=ExitCode.USAGE)
    form = form_fields(args.app_id, args.project_id, args.category_id)
    options = IngestOptions(paths=tuple(args.paths), root=args.root, url=args.url, form=form,
                            concurrency=args.concurrency, wait=args.wait, wait_timeout_s=args.wait_timeout,
                            lag_wait_s=args.lag_wait)
    files = discover(args.paths, args.include, args.exclude)
    summary = trio.run(ingest_command, files, options)
    print(json.dumps(summary, indent=2, ensure_ascii=False) if args.json else render_summary(summary))
    return ExitCode.OK if summary["ok"] else ExitCode.CHECK_FAILED
