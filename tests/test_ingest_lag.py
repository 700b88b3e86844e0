"""``everos ingest`` slows down while the server's index lags (issue #17 item 4): the pause
(:class:`everos.folder_ingest.LagGate`) in virtual time against a scripted /health, then the whole
command against the real server whose index is held."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import trio

from quart import request

from everos.cli import main
from everos.client import ApiClient
from everos.errors import ExitCode
from everos.folder_ingest import LagGate, describe_lag, lag_of_health, render_summary
from everos.metrics import HTTP_REQUESTS

from .conftest import HeldIndex, lagging_server
from .test_ingest_cli import ingest_folder, write_notes

LAGGING = {"documents": 412, "bound": 300}
LAG_HEADERS = {"X-Everos-Index-Lag": "documents=412, bound=300"}


def health(lagging: bool) -> dict:
    return {"status": "ok", "cascade": {"lagging": lagging, "waiting_documents": 412 if lagging else 3,
                                        "lag_documents": 300}}


class ScriptedHealth:
    """/health that says ``lagging`` for its first ``lagging_polls`` answers (None: always)."""

    def __init__(self, lagging_polls: int | None) -> None:
        self.lagging_polls = lagging_polls
        self.polls: list[float] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/health"
        self.polls.append(trio.current_time())
        lagging = self.lagging_polls is None or len(self.polls) <= self.lagging_polls
        return httpx.Response(200, json=health(lagging))


def client_of(handler) -> ApiClient:
    return ApiClient("http://everos.test", transport=httpx.MockTransport(handler))


# -- pure ------------------------------------------------------------------------------------------


def test_a_health_body_lags_only_when_its_cascade_block_says_so() -> None:
    assert lag_of_health(health(True)) == LAGGING
    assert lag_of_health(health(False)) is None
    assert lag_of_health({"status": "ok"}) is None  # a server without a cascade
    assert lag_of_health(["not", "a", "body"]) is None
    assert describe_lag(LAGGING) == "412 documents wait for their index, more than 300"
    assert describe_lag({}) == "documents wait for their index"


def test_the_summary_counts_the_pauses() -> None:
    summary = {"files": 3, "server": "s", "total_seconds": 9.0, "created": 3, "duplicate": 0, "accepted": 0,
               "pending": 0, "failed": 0, "resumed": 0, "indexed": 3, "failures": [],
               "index_lag_pauses": 2, "index_lag_wait_seconds": 7.25}
    assert "waited for the server's index: 2 times, 7.2 s" in render_summary(summary)


# -- the pause, in virtual time ------------------------------------------------------------------


async def test_no_lag_seen_sends_at_once_without_asking_the_server(autojump_clock) -> None:
    scripted = ScriptedHealth(None)
    async with client_of(scripted) as client:
        gate = LagGate(client, max_wait_s=600)
        gate.saw({"content-type": "application/json"})
        with trio.fail_after(0.001):
            await gate.ready(print)
    assert scripted.polls == [] and gate.pauses == 0


async def test_after_a_lagging_answer_it_waits_until_health_no_longer_lags(autojump_clock) -> None:
    scripted, notes = ScriptedHealth(lagging_polls=3), []
    async with client_of(scripted) as client:
        gate = LagGate(client, max_wait_s=600)
        gate.saw(LAG_HEADERS)
        start = trio.current_time()
        await gate.ready(notes.append)
        assert trio.current_time() - start == pytest.approx(3.0)  # three lagging polls, a second apart
        await gate.ready(notes.append)  # the pause is over: no new one until an answer says so
    assert len(scripted.polls) == 4 and (gate.pauses, gate.waited_s) == (1, pytest.approx(3.0))
    assert notes == ["everos ingest: the server's index lags (412 documents wait for their index, more than 300): "
                     "waiting up to 600 s before sending more (--no-lag-wait sends at once)",
                     "everos ingest: the index caught up after 3 s; sending again"]


async def test_a_pause_ends_after_max_wait_even_if_the_index_still_lags(autojump_clock) -> None:
    scripted, notes = ScriptedHealth(None), []
    async with client_of(scripted) as client:
        gate = LagGate(client, max_wait_s=30)
        gate.saw(LAG_HEADERS)
        start = trio.current_time()
        await gate.ready(notes.append)
        assert trio.current_time() - start == pytest.approx(30.0)
        gate.saw(LAG_HEADERS)  # the next answer lags again: another pause
        await gate.ready(notes.append)
    assert gate.pauses == 2 and gate.waited_s == pytest.approx(60.0)
    assert notes[1] == ("everos ingest: the index still lags after 30 s (412 documents wait for their index, more "
                        "than 300); sending on")


async def test_senders_share_one_pause_and_one_poller(autojump_clock) -> None:
    scripted = ScriptedHealth(lagging_polls=5)
    released: list[float] = []
    async with client_of(scripted) as client:
        gate = LagGate(client, max_wait_s=600)
        gate.saw(LAG_HEADERS)

        async def sender() -> None:
            await gate.ready(lambda message: None)
            released.append(trio.current_time())

        async with trio.open_nursery() as nursery:
            for _ in range(4):
                nursery.start_soon(sender)
    assert len(scripted.polls) == 6 and gate.pauses == 1  # not one poller per sender
    assert released == [pytest.approx(5.0)] * 4


async def test_no_lag_wait_never_waits(autojump_clock) -> None:
    scripted = ScriptedHealth(None)
    async with client_of(scripted) as client:
        gate = LagGate(client, max_wait_s=0)
        gate.saw(LAG_HEADERS)
        with trio.fail_after(0.001):
            await gate.ready(print)
    assert scripted.polls == [] and gate.pauses == 0


async def test_a_health_that_is_not_json_does_not_hold_the_uploads(autojump_clock) -> None:
    async with client_of(lambda request: httpx.Response(200, text="<html>proxy</html>")) as client:
        gate = LagGate(client, max_wait_s=600)
        gate.saw(LAG_HEADERS)
        with trio.fail_after(0.001):
            await gate.ready(lambda message: None)
    assert gate.pauses == 1 and gate.waited_s == 0.0


async def test_cancelled_while_paused_it_stops_waiting_and_frees_the_other_senders(autojump_clock) -> None:
    scripted = ScriptedHealth(None)
    async with client_of(scripted) as client:
        gate = LagGate(client, max_wait_s=600)
        gate.saw(LAG_HEADERS)
        with trio.move_on_after(5):
            await gate.ready(lambda message: None)
        assert gate._paused is None  # the next sender starts a pause of its own
        with trio.move_on_after(5) as again:
            await gate.ready(lambda message: None)
        assert again.cancelled_caught and gate.pauses == 2


# -- the command ---------------------------------------------------------------------------------


def test_a_negative_lag_wait_is_a_usage_error(tmp_path: Path, capsys) -> None:
    write_notes(tmp_path / "docs", 1)
    assert main(["ingest", str(tmp_path / "docs"), "--root", str(tmp_path), "--lag-wait", "-1"]) == ExitCode.USAGE
    assert "--lag-wait must be 0 or more seconds" in capsys.readouterr().err


def health_requests() -> float:
    """GET /health answered by this process's servers so far (the event counters of /metrics)."""
    return HTTP_REQUESTS.labels("GET", "/health", "200")._value.get()


def counting_uploads() -> tuple[dict, object]:
    """A ``configure_app`` counting upload POSTs, and its counter."""
    counted = {"posts": 0}

    def configure(app) -> None:
        @app.before_request
        async def count() -> None:
            if request.method == "POST" and request.path == "/api/v1/knowledge/documents":
                counted["posts"] += 1

    return counted, configure


async def test_ingest_waits_while_the_index_lags_and_sends_the_rest_once_it_caught_up(
    root: Path, tmp_path: Path, held_index: HeldIndex, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.setattr("everos.folder_ingest._lag.POLL_INTERVAL_S", 0.05)
    write_notes(tmp_path / "docs", 4)
    counted, configure = counting_uploads()
    summary: dict = {}
    async with lagging_server(root, held_index, configure_app=configure) as server:
        assert counted["posts"] == 2  # the two documents the index holds

        async def ingest() -> None:
            summary.update(await ingest_folder(tmp_path / "docs", root, {"server": server}, concurrency=1, wait=True))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(ingest)
            err = ""
            with trio.fail_after(30):  # the first upload's answer says the index lags
                while "the server's index lags" not in (err := err + capsys.readouterr().err):
                    await trio.sleep(0.02)
                polled = health_requests()
                while health_requests() < polled + 3:  # the command polls /health, and sends nothing
                    await trio.sleep(0.02)
            assert counted["posts"] == 3
            held_index.released.set()
    err += capsys.readouterr().err
    assert "everos ingest: the index caught up after" in err
    assert counted["posts"] == 6
    assert (summary["ok"], summary["created"], summary["indexed"]) == (True, 4, 4)
    assert summary["index_lag_pauses"] >= 1 and summary["index_lag_wait_seconds"] > 0


async def test_no_lag_wait_sends_everything_while_the_index_lags(root: Path, tmp_path: Path, held_index: HeldIndex,
                                                                  capsys) -> None:
    write_notes(tmp_path / "docs", 3)
    counted, configure = counting_uploads()
    async with lagging_server(root, held_index, configure_app=configure) as server:
        with trio.fail_after(30):
            summary = await ingest_folder(tmp_path / "docs", root, {"server": server}, concurrency=1, wait=False,
                                          lag_wait_s=0)
        assert counted["posts"] == 2 + 3 and (await server.client.get("/health")).json()["cascade"]["lagging"]
    assert (summary["ok"], summary["accepted"], summary["index_lag_pauses"]) == (True, 3, 0)
    assert "index lags" not in capsys.readouterr().err
