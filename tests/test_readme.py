"""The README's quick start reproduces: its commands, run against a fresh server, answer what it shows.

Each ``$ curl …`` line of the quick start's example block is run as written (from the repository
root, with ``localhost:8000`` pointed at a server on a free port, root ``<tmp>/.everos``), and its
answer must match the line shown under it, where ``…`` stands for anything and the example's
doc id for whatever id this run minted (the same one everywhere).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import httpx
import pytest
import trio

from .conftest import knowledge_server, write_config

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
DOC_ID = re.compile(r"d_[0-9a-f]{12}")


def quick_start_examples() -> list[tuple[str, str]]:
    """``(command, expected answer)`` for each ``$`` line of the README's example block."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    block = text.split("With the server running", 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    lines = block.splitlines()
    return [(line[2:], lines[i + 1]) for i, line in enumerate(lines) if line.startswith("$ ")]


def pattern_of(expected: str) -> re.Pattern[str]:
    """``expected`` as a regex: ``…`` is anything, every doc id is one and the same id."""
    out, seen = [], False
    for part in re.split(rf"(…|{DOC_ID.pattern})", expected):
        if part == "…":
            out.append(".*?")
        elif DOC_ID.fullmatch(part):
            out.append("(?P=doc)" if seen else f"(?P<doc>{DOC_ID.pattern})")
            seen = True
        else:
            out.append(re.escape(part))
    return re.compile("".join(out), re.DOTALL)


async def quiet(client: httpx.AsyncClient, timeout_s: float = 30) -> None:
    """Until every stored document is indexed, as a person would wait before searching (a
    liveness bound, not a speed claim). Uploads answer 201 here, so extraction is done."""
    with trio.fail_after(timeout_s):
        while True:
            documents = (await client.get("/api/v1/knowledge/documents")).json()["data"]["documents"]
            if all(d["index_status"] == "indexed" for d in documents):
                return
            await trio.sleep(0.05)


def test_the_readme_has_an_example_block_and_ships_its_document() -> None:
    examples = quick_start_examples()
    assert [command.split()[0] for command, _ in examples] == ["curl", "curl", "curl"]
    assert "file=@docs/examples/guide.md" in examples[0][0]
    assert (REPO / "docs" / "examples" / "guide.md").is_file()


async def test_the_readme_quick_start_answers_what_it_shows(tmp_path: Path) -> None:
    assert shutil.which("curl"), "the quick start uses curl; install it (apt-get install curl)"
    root = tmp_path / ".everos"
    write_config(root)
    async with knowledge_server(root) as server:
        port = httpx.URL(server.base_url).port
        for command, expected in quick_start_examples():
            done = await trio.run_process(["bash", "-c", command.replace("localhost:8000", f"127.0.0.1:{port}")],
                                          cwd=REPO, capture_stdout=True, capture_stderr=True, check=False)
            answer = done.stdout.decode()
            assert done.returncode == 0, (command, done.stderr)
            assert pattern_of(expected).fullmatch(answer.strip()), f"{command}\nshown:  {expected}\ngot:    {answer}"
            await quiet(server.client)
