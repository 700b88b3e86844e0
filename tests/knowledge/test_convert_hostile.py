"""Hostile documents: each gets a clear error, never a crash of this process and never a hang.

Where the converter refuses a file itself (a zip bomb, a password, a broken page tree) the test
calls it directly. Where only the worker's deadline can stop it (100,000 pages; a 50 MiB
spreadsheet, which converts in about 5 s on this machine), it runs through a worker pool with a
short deadline, and the next conversion must succeed. Bounds are for liveness, not speed.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import trio

from everos.errors import ConversionFailed, ExtractionEmpty, WorkerTimeout
from everos.knowledge._convert import convert_to_markdown, warm_up_converter
from everos.workers import open_cpu_workers

from . import documents

# Generous: a refusal that takes longer than this is a hang, on any machine.
LIVENESS_S = 30


def test_a_docx_zip_bomb_is_refused_before_it_inflates() -> None:
    bomb = documents.zip_bomb_docx(256)  # 270 KiB that inflate to 256 MiB
    with pytest.raises(ConversionFailed) as caught:
        convert_to_markdown(bomb, "bomb.docx")
    assert caught.value.message.startswith("'bomb.docx' was refused by the converter's safety limits")
    assert "word/document.xml" in caught.value.message


def test_an_encrypted_pdf_says_it_needs_its_password() -> None:
    with pytest.raises(ConversionFailed) as caught:
        convert_to_markdown(documents.encrypted_pdf(), "secret.pdf")
    assert caught.value.message == ("'secret.pdf' is a password-protected PDF; everos cannot open it "
                                    "(remove the password and upload it again)")


def test_a_pdf_whose_page_tree_loops_gives_no_text_instead_of_looping() -> None:
    with pytest.raises(ExtractionEmpty, match="no text could be extracted from 'loop.pdf'"):
        convert_to_markdown(documents.looping_pdf(), "loop.pdf")


def test_html_nested_100000_deep_is_refused_without_recursing() -> None:
    with pytest.raises(ExtractionEmpty, match="nested too deeply to follow"):
        convert_to_markdown(documents.deep_html(100_000), "deep.html")


@pytest.mark.parametrize(("name", "build"), [
    ("many.pdf", lambda: documents.many_pages_pdf(100_000)),
    ("big.xlsx", lambda: documents.big_xlsx(50)),
])
async def test_a_conversion_past_its_deadline_is_stopped_and_the_next_one_succeeds(
        name: str, build: Callable[[], bytes]) -> None:
    data = build()
    async with open_cpu_workers(workers=1, init=warm_up_converter) as pool:
        with trio.fail_after(LIVENESS_S):
            with pytest.raises(WorkerTimeout) as caught:
                await pool.run_cpu(convert_to_markdown, data, name, deadline_s=0.5, memory_mb=4096,
                                   task=f"converting '{name}'")
            assert caught.value.message == (f"converting '{name}' did not finish within 0.5 s; its worker "
                                            "process was stopped")
            assert caught.value.status == 422 and caught.value.code == "WORKER_TIMEOUT"
            converted = await pool.run_cpu(convert_to_markdown, documents.outline_pdf(), "next.pdf",
                                           deadline_s=LIVENESS_S, memory_mb=4096)
        assert converted.detected_format == "pdf"
        assert pool.snapshot().killed == 1
