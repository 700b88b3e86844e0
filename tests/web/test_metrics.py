"""``/metrics``: Prometheus text that parses, answered before the request layer, with series that
move with the work (G2: cheap to scrape, no database on its path)."""

from __future__ import annotations

from pathlib import Path

import httpx
import trio
from prometheus_client.parser import text_string_to_metric_families

from everos.testing import FakeLLM

from ..conftest import knowledge_server

API = "/api/v1/knowledge"
GUIDE = b"# Solar power\n\nPanels turn light into power.\n\n## Wiring\n\nUse copper cables rated for the current.\n"


async def scrape(client: httpx.AsyncClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of ``/metrics``: ``{(name, sorted labels): value}``, parsed by Prometheus's parser."""
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(response.text) for sample in family.samples}


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def wait_for(client: httpx.AsyncClient, name: str, at_least: float, timeout_s: float = 20, **labels: str):
    """Scrape until ``name{labels}`` reaches ``at_least`` (the queue monitors refresh each second)."""
    with trio.fail_after(timeout_s):
        while value(samples := await scrape(client), name, **labels) < at_least:
            await trio.sleep(0.1)
    return samples


async def test_metrics_parse_and_name_the_state_of_every_part(root: Path) -> None:
    async with knowledge_server(root) as server:
        samples = await scrape(server.client)
        names = {name for name, _ in samples}
        for expected in ("everos_server_state", "everos_uptime_seconds", "everos_worker_restarts_total",
                         "everos_process_threads", "process_resident_memory_bytes", "process_open_fds",
                         "everos_event_loop_lag_seconds_bucket", "everos_index_pending_operations"):
            assert expected in names, expected
        assert value(samples, "everos_server_state", state="ready") == 1.0
        assert (await server.client.post("/metrics")).status_code == 405


async def test_requests_are_counted_by_route_template_and_status(root: Path) -> None:
    async with knowledge_server(root) as server:
        before = await scrape(server.client)
        for _ in range(3):
            assert (await server.client.get(f"{API}/documents/d_0123456789ab")).status_code == 404
        await server.client.get("/no/such/route")
        await server.client.get("/health")
        after = await scrape(server.client)
        route = "/api/v1/knowledge/documents/<doc_id>"
        counted = "everos_http_requests_total"
        assert value(after, counted, method="GET", route=route, status="404") - \
            value(before, counted, method="GET", route=route, status="404") == 3
        assert value(after, counted, method="GET", route="unmatched", status="404") >= 1
        assert value(after, counted, method="GET", route="/health", status="200") >= 1
        assert not any("d_0123456789ab" in str(labels) for _, labels in after)  # templates, never raw ids
        assert value(after, "everos_http_request_duration_seconds_count", method="GET", route=route) >= 3


async def test_queue_and_index_series_move_with_an_upload(root: Path) -> None:
    async with knowledge_server(root) as server:
        response = await server.client.post(f"{API}/documents", files={"file": ("guide.md", GUIDE)},
                                            data={"title": "Solar guide"})
        assert response.status_code == 201
        await wait_for(server.client, "everos_ingest_queue", 1, state="succeeded")
        samples = await wait_for(server.client, "everos_cascade_documents", 1, index_status="indexed")
        assert value(samples, "everos_index_rows", table="knowledge_topic") >= 2
        assert value(samples, "everos_index_commit_operations_count") >= 1


async def test_model_calls_attempts_and_circuit_are_counted_per_endpoint(root: Path, nursery) -> None:
    fake = FakeLLM()
    await nursery.start(fake.serve, "127.0.0.1", 0)
    async with knowledge_server(root, embedding__provider="openai", embedding__base_url=fake.base_url,
                                embedding__model="fake") as server:
        before = await scrape(server.client)
        response = await server.client.post(f"{API}/documents", files={"file": ("guide.md", GUIDE)},
                                            data={"title": "Solar guide"})
        assert response.status_code == 201
        ok_calls = value(before, "everos_model_calls_total", endpoint="embedding", outcome="ok") + 1
        samples = await wait_for(server.client, "everos_model_calls_total", ok_calls, endpoint="embedding",
                                 outcome="ok")
        assert value(samples, "everos_model_attempts_total", endpoint="embedding", outcome="ok") >= 1
        assert value(samples, "everos_model_circuit_state", endpoint="embedding") == 0.0  # closed
        assert value(samples, "everos_model_call_duration_seconds_count", endpoint="embedding") >= 1
    nursery.cancel_scope.cancel()
