"""DocumentLocks: one writer per document at a time, a deadline on the wait, nothing left behind."""

from __future__ import annotations

import pytest
import trio

from everos.errors import StoreBusy
from everos.ingest import LOCK_TIMEOUT_S, DocumentLocks


async def test_holders_of_one_document_take_turns_and_other_documents_do_not_wait(autojump_clock) -> None:
    locks = DocumentLocks()
    events: list[str] = []

    async def hold(doc_id: str, name: str) -> None:
        async with locks.hold(doc_id):
            events.append(f"{name} in")
            await trio.sleep(1)
            events.append(f"{name} out")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(hold, "d_1", "a")
        await trio.sleep(0.1)
        nursery.start_soon(hold, "d_1", "b")
        nursery.start_soon(hold, "d_2", "c")
    assert events.index("a out") < events.index("b in")
    assert events.index("c in") < events.index("a out")


async def hold_in_another_task(nursery: trio.Nursery, locks: DocumentLocks, doc_id: str) -> trio.Event:
    """Hold ``doc_id``'s lock in a task of ``nursery`` until the returned event is set."""
    release = trio.Event()

    async def holder(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with locks.hold(doc_id):
            task_status.started()
            await release.wait()

    await nursery.start(holder)
    return release


async def test_a_lock_not_free_within_the_timeout_is_store_busy_and_the_body_does_not_run(autojump_clock) -> None:
    locks = DocumentLocks()
    ran = False
    async with trio.open_nursery() as nursery:
        release = await hold_in_another_task(nursery, locks, "d_1")
        started = trio.current_time()
        with trio.fail_after(2 * LOCK_TIMEOUT_S), pytest.raises(StoreBusy, match="document d_1 is busy") as info:
            async with locks.hold("d_1"):
                ran = True
        assert trio.current_time() - started == pytest.approx(LOCK_TIMEOUT_S)
        release.set()
    assert not ran and info.value.retry_after_s == 5


async def test_a_lock_exists_only_while_held_or_awaited() -> None:
    locks = DocumentLocks(timeout_s=0.01)
    async with trio.open_nursery() as nursery:
        release = await hold_in_another_task(nursery, locks, "d_1")
        with pytest.raises(StoreBusy):
            async with locks.hold("d_1"):
                pass
        assert list(locks._entries) == ["d_1"]
        release.set()
    with pytest.raises(RuntimeError):
        async with locks.hold("d_2"):
            raise RuntimeError("the body failed")
    assert locks._entries == {}
