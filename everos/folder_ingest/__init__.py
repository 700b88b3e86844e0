"""Uploading files and folders through the HTTP API: the machinery of ``everos ingest``
(:mod:`everos.ingest_cli` has the command line and its contract).

::

    _files      discover()          paths, --include/--exclude -> the files, each once
    _manifest   Manifest            append-only JSON lines (fsync per line): what the server acknowledged
    _upload     Uploader            resumable() skips acknowledged, unchanged files; send_all() with N in flight
    _lag        LagGate             no upload sent while the server's index lags (X-Everos-Index-Lag, /health)
    _progress   Progress            a tqdm bar on a terminal, plain lines otherwise (also
                                    `everos cascade rebuild`'s)
    _settle     settle_all()        poll tasks (202) and documents until extracted and indexed, in upload order
    _command    in_process_server() a full server on 127.0.0.1:0 when no server owns the root;
                ingest_command()    the run, from the files to the summary
    _summary    summarize()         outcomes per file -> the summary (table or JSON)

Pure parts (``wanted``, ``idempotency_key``, ``outcome``, ``final_outcome``, ``summarize``,
``render_summary``, ``manifest_path``, ``describe_lag``, ``lag_of_health``) are tested without a
server.
"""

from everos._exports import claim_public_names
from everos.folder_ingest._command import IngestOptions, form_fields, in_process_server, ingest_command
from everos.folder_ingest._files import discover, wanted
from everos.folder_ingest._lag import HEALTH_PATH, LagGate, describe_lag, lag_of_health
from everos.folder_ingest._manifest import FileRecord, Manifest, manifest_path
from everos.folder_ingest._progress import Progress
from everos.folder_ingest._settle import settle_all
from everos.folder_ingest._summary import final_outcome, render_summary, summarize
from everos.folder_ingest._upload import Uploader, idempotency_key, outcome

__all__ = ["HEALTH_PATH", "FileRecord", "IngestOptions", "LagGate", "Manifest", "Progress", "Uploader",
           "describe_lag", "discover", "final_outcome", "form_fields", "idempotency_key", "in_process_server",
           "ingest_command", "lag_of_health", "manifest_path", "outcome", "render_summary", "settle_all",
           "summarize", "wanted"]

claim_public_names(globals())
