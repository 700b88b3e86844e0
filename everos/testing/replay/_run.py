"""One replay run (:func:`run_scenario`): the fake LLM and the server started as the scenario
says, the probes running, the corpus uploaded (in rounds), the drain awaited, the end checked, and
the report with its breaches.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

from everos.config import render_template
from everos.testing._fake_llm import FakeLLM
from everos.testing.replay._corpus import corpus_word, make_corpus
from everos.testing.replay._load import delete_documents, drain, upload_all
from everos.testing.replay._probes import HealthProbe, SearchWatch
from everos.testing.replay._report import breaches, percentiles, verify
from everos.testing.replay._scenarios import SCENARIOS, ReplayOptions, drain_timeout_s, plan_for_url
from everos.testing.replay._server import ManagedServer, server_env

__all__ = ["run_scenario"]


async def run_scenario(name: str, options: ReplayOptions | None = None) -> dict[str, Any]:
    """Run scenario ``name`` and return its report (``report["breaches"]`` empty when it held).

    Raises:
        ValueError: ``options.url`` without ``allow_writes``, or with a scenario that needs its
            own server.
    """
    options = options or ReplayOptions()
    scenario = SCENARIOS[name]
    if options.url and options.app_id == "default":
        options = plan_for_url(name, options)
    made_root: Path | None = None
    count = max(2, round(scenario.count * options.scale))
    corpus = make_corpus(count, max(500, round(scenario.size_bytes * options.scale)), scenario.languages,
                         options.seed)
    report: dict[str, Any] = {"scenario": name, "description": scenario.description, "documents": count,
                              "concurrency": scenario.concurrency}
    async with trio.open_nursery() as nursery:
        fake = None
        if not options.url and (scenario.use_llm or scenario.use_embedding_endpoint):
            fake = FakeLLM(scenario.faults(), seed=options.seed, speed=scenario.model_speed)
            await nursery.start(fake.serve, "127.0.0.1", 0)
        server = None
        if options.url:
            url = options.url
        else:
            if options.root is None:
                made_root = root = Path(tempfile.mkdtemp(prefix=f"everos-replay-{name}-"))
            else:
                root = options.root
            root.mkdir(parents=True, exist_ok=True)
            (root / "everos.toml").write_text(render_template())
            server = ManagedServer(root, server_env(scenario, fake, options.settings), scenario.open_files_limit)
            await server.start()
            url = server.url
            report["root"] = str(root)
        probe = HealthProbe(url, options.health_interval_s, options.health_timeout_s)
        await nursery.start(probe.run)
        watch = SearchWatch(url, options.scope())
        if options.rounds == 1:
            # With rounds, the per-round resource samples measure ingest alone: the watch then
            # only looks once, after the drain (searches open index files of every version read).
            nursery.start_soon(watch.run)
        if fake is not None and scenario.recover_after_s is not None:
            async def recover_later() -> None:
                await trio.sleep(scenario.recover_after_s)
                fake.recover()
            nursery.start_soon(recover_later)

        started = time.monotonic()
        rounds, uploads = [], None
        every_acknowledged: list[str] = []
        for _ in range(options.rounds):
            killed = trio.Event()

            async def maybe_kill(acknowledged: int) -> None:
                if scenario.kill_restart and not killed.is_set() and acknowledged >= count // 2:
                    killed.set()
                    probe.paused = True
                    await server.kill()
                    await server.start()
                    probe.paused = False

            uploads = await upload_all(url, corpus, scenario.concurrency, options.upload_timeout_s, maybe_kill,
                                       scenario.respond_async, options.scope(),
                                       lambda doc_id, index: watch.add(doc_id, corpus_word(index)),
                                       interval_s=scenario.upload_interval_s)
            every_acknowledged.extend(uploads["acknowledged"])
            if scenario.kill_restart and not killed.is_set():
                raise RuntimeError("the server finished before it could be killed; use a larger scale")
            if server is not None:
                rounds.append(server.resources())
        report["upload_s"] = round(time.monotonic() - started, 2)
        if fake is not None and scenario.recover_after_s is not None:
            fake.recover()  # the scenario's outage is over, however quick the uploads were
        drained = await drain(url, drain_timeout_s(scenario, options), wait_for_vectors=not scenario.vectors_stay_pending,
                              vectors_timeout_s=options.vectors_timeout_s, vectors_stall_s=options.vectors_stall_s)
        report["drain_s"], report["keyword_drain_s"] = drained.all_s, drained.keyword_s
        if drained.why:
            report["drain_failure"] = drained.why
        if drained.vectors_left:
            report["vectors_pending_after_drain"] = drained.vectors_left
        latencies = uploads.pop("latencies")
        acknowledged = uploads.pop("acknowledged")
        report["uploads"] = {**uploads, "latency_ms": percentiles(latencies)}
        await watch.check()  # a last look, after the drain
        report["search"] = watch.report()
        report["end"] = await verify(url, acknowledged, options.scope(), watch.missing())
        if options.url:
            report["scope"] = options.scope()
            report["documents_deleted"] = await delete_documents(url, every_acknowledged)
        report["health"] = probe.report()
        if rounds:
            report["server_resources_per_round"] = rounds
        if fake is not None:
            report["llm_requests"] = fake.metrics().get("requests")
            if fake.slots is not None:
                report["model"] = model_figures(fake.metrics(), count, report)
        if server is not None:
            report["server_exit_code"] = await server.stop()
        nursery.cancel_scope.cancel()
    report["breaches"] = breaches(report, scenario, options)
    if made_root is not None and not report["breaches"] and not options.keep_root:
        shutil.rmtree(made_root, ignore_errors=True)
        report["root"] = None  # removed: the run held
    return report


def model_figures(metrics: dict[str, Any], documents: int, report: dict[str, Any]) -> dict[str, Any]:
    """What the slot-limited fake saw, per document, and how the run's length compares with the
    model's own busy time (1.0: everos added nothing; the model was the bottleneck)."""
    model = metrics["model"]
    routes = model.get("routes", {})
    chat = routes.get("chat", {})
    busy = sum(slot["busy_seconds"] for slot in model["slots"])
    elapsed = (report.get("upload_s") or 0.0) + (report.get("drain_s") or 0.0)
    per_doc = lambda value: round(value / documents, 2)  # noqa: E731
    return {
        "chat_calls_per_document": per_doc(metrics["requests"]["chat"]),
        "embedding_requests_per_document": per_doc(metrics["requests"]["embeddings"]),
        "chat_prompt_tokens_per_document": per_doc(chat.get("tokens_in", 0)),
        "chat_completion_tokens_per_document": per_doc(chat.get("tokens_out", 0)),
        "busy_seconds": round(busy, 2),
        "busy_fraction": model["busy_fraction"],
        "busy_fraction_working": model["busy_fraction_working"],
        "run_over_busy": round(elapsed / busy, 3) if busy else None,
        "queue_wait_seconds_max": model["queue_wait_seconds_max"],
        "routes": routes,
    }
