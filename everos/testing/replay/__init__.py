"""The hang-replay harness: drive a server through a named scenario while probing ``/health``.

Each scenario generates a corpus, uploads it (sequentially or at a set concurrency) while a
separate probe hits ``/health`` every 0.25 s with a 1 s timeout, optionally scripts the fake LLM
(:class:`~everos.testing.FakeLLM`), waits for the queues to drain, and checks what is listed at the
end. The drain has two parts: until keyword search finds every document (``keyword_drain_s``,
within ``drain_timeout_s``), then until the vectors are made too (``drain_s``): a slow built-in
embedder makes them in the background, so that part may take ``vectors_timeout_s`` as long as the
documents waiting for vectors get fewer at least every ``vectors_stall_s`` (``drain_failure``
says which part did not end). The report is plain JSON; ``breaches`` lists every guarantee that broke:

- ``G2``: a health probe failed or took longer than ``health_timeout_s``;
- ``G1``: an upload got no answer within its deadline;
- ``G6``: an acknowledged document is neither listed nor visibly failed (dead, with its error),
  or is not found by a keyword search for a word only it holds by the end of the run;
- ``G7``: a job is still ``running`` after the drain, a dead job has no error, a document is
  still ``pending`` indexing, or index rows are still queued or running after the drain.

While it runs, a search watch looks each acknowledged document up by its word (keyword search)
until it is found, and the report gives how long after its acknowledgement that took
(``search.searchable_after_ms``; with ``--rounds`` it looks only once, after the drain, so the
per-round resource samples measure ingest alone). The end check reads every acknowledged document and counts
its ``index_status``, the ones searchable by keyword only (vectors pending) and which extractor
made it (``llm``, ``builtin``, ``builtin (llm fallback)``).

By default the harness starts the server itself (a subprocess on a loopback port with a fresh
root, the scenario's settings, an open-file limit where the scenario asks for one) and the fake
LLM in-process; a root it made itself is removed afterwards unless the run broke a guarantee (or
``keep_root``). With ``url`` it drives a server you run; scenarios that script the LLM or kill the
server need their own server and refuse ``url``. Driving your server writes synthetic documents
into it, so it is refused unless ``allow_writes`` says so; the documents then go into a scope of
their own (``app_id = "everos-replay"``, a fresh ``project_id``) and are deleted at the end.

::

    _scenarios  SCENARIOS, ReplayOptions, the plan of a run against someone's server
    _corpus     the synthetic documents, each with a word of its own
    _server     ManagedServer: ``everos server start`` as a subprocess; free_port()
    _probes     HealthProbe (/health), SearchWatch (each document found by its word)
    _load       the uploads, the drain, the deletes at the end
    _report     the end check, percentiles, the breaches
    _run        run_scenario(): all of it, in order
"""

from everos._exports import claim_public_names
from everos.testing.replay._corpus import corpus_word, make_corpus
from everos.testing.replay._probes import HealthProbe, SearchWatch
from everos.testing.replay._run import run_scenario
from everos.testing.replay._scenarios import (
    REPLAY_APP_ID,
    SCENARIOS,
    ReplayOptions,
    Scenario,
    describe_plan,
    plan_for_url,
)
from everos.testing.replay._server import ManagedServer, free_port

__all__ = ["REPLAY_APP_ID", "SCENARIOS", "HealthProbe", "ManagedServer", "ReplayOptions", "Scenario", "SearchWatch",
           "corpus_word", "describe_plan", "free_port", "make_corpus", "plan_for_url", "run_scenario"]

claim_public_names(globals())
