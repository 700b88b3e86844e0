"""The server the contract tests fuzz: ``everos server start`` in a subprocess, on a fresh root
with the default settings (the hashing embedder, as every test), holding a few documents.

A subprocess, not the in-process server the other tests start: schemathesis's tests are
synchronous (its requests block), and pytest-trio runs only ``async`` tests in a trio loop, so a
server in the test's own loop would never be served; a subprocess also runs the server as users
run it, on the other core. One server for the session: both contract modules use it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from hypothesis.configuration import set_hypothesis_home_dir

from everos import api
from everos.testing.replay import free_port

from ..conftest import write_config

GUIDE = ("# Solar power\n\nPanels turn light into power.\n\n## Wiring\n\nUse copper cables rated for the "
         "current.\n\n## Care\n\nClean the panels twice a year.\n")
# The stored documents, by what the fuzzing does to them: "keep" is read, patched and
# re-extracted, "put" replaced, each "delete-<n>" deleted by one run of DELETE cases.
ROLES = ("keep", "put", "delete-1", "delete-2", "delete-3", "delete-4")


@dataclass
class Seeded:
    """The documents, topic and task the server holds before the fuzzing starts."""

    url: str
    docs: dict[str, str]
    topic_id: str
    task_id: str
    victims: dict[str, str] = field(default_factory=dict)

    def ids_for(self, method: str, run: str) -> dict[str, str]:
        """The seeded path parameters for a case of ``method``: the DELETE cases of one ``run``
        (a test's operation) delete a document of their own (once it is gone, 204), a PUT
        replaces the one to replace, the rest read the one that stays."""
        if method == "DELETE":
            spare = [role for role in ROLES if role.startswith("delete") and role not in self.victims.values()]
            role = self.victims.setdefault(run, spare[0] if spare else ROLES[-1])
        else:
            role = "put" if method == "PUT" else "keep"
        return {"doc_id": self.docs[role], "topic_id": self.topic_id, "task_id": self.task_id}


_HYPOTHESIS_HOME = pytest.StashKey[Path]()


def pytest_configure(config) -> None:
    """Hypothesis's own files (its Unicode tables, the constants it collects from the code, at
    collection already) in a temporary directory removed at the end, not in a ``.hypothesis``
    directory of the checkout."""
    config.stash[_HYPOTHESIS_HOME] = Path(tempfile.mkdtemp(prefix="everos-hypothesis-"))
    set_hypothesis_home_dir(config.stash[_HYPOTHESIS_HOME])


def pytest_unconfigure(config) -> None:
    set_hypothesis_home_dir(None)
    shutil.rmtree(config.stash[_HYPOTHESIS_HOME], ignore_errors=True)


@pytest.fixture(scope="session")
def everos_server(tmp_path_factory) -> Iterator[Seeded]:
    """``everos server start`` on a fresh root in the test's temporary directory, with the
    :data:`ROLES` documents stored; stopped with SIGTERM at the end, which must exit 0."""
    root = tmp_path_factory.mktemp("contract") / "root"
    write_config(root)
    port = free_port()
    env = {name: value for name, value in os.environ.items() if not name.startswith("EVEROS_")}
    log_path = root.parent / "server.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "everos.cli", "server", "start", "--root", str(root),
                                    "--port", str(port)], env=env, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, process, log_path)
        yield _seed(url)
    finally:
        process.terminate()
        try:
            code = process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            code = process.wait()
    assert code == 0, log_path.read_text()[-4000:]


def _wait_ready(url: str, process: subprocess.Popen, log_path: Path, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, log_path.read_text()[-4000:]
        try:
            if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError("the server was not ready in time")


def _seed(url: str) -> Seeded:
    with httpx.Client(base_url=url, timeout=30) as client:
        assert client.get("/openapi.json").json() == api.openapi_document()  # what the fuzzing reads
        docs = {}
        for role in ROLES:
            created = client.post("/api/v1/knowledge/documents", files={"file": (f"{role}.md", GUIDE + role)},
                                  data={"title": role})
            assert created.status_code == 201, created.text
            docs[role] = created.json()["data"]["doc_id"]
        topics = client.get(f"/api/v1/knowledge/documents/{docs['keep']}").json()["data"]["topics"]
        tasks = client.get("/api/v1/knowledge/tasks").json()["data"]["tasks"]
    return Seeded(url, docs, topics[0]["topic_id"], tasks[0]["task_id"])


def seed_case(case, seeded: Seeded, run: str, turn: list[int]) -> None:
    """Every second positive case naming a document, topic or task names a seeded one, so the
    success answers are checked too, not only the 404s. ``run`` names the caller (a module),
    ``turn`` is its counter of such cases."""
    params = case.path_parameters
    if case.meta.generation.mode.value != "positive" or not params:
        return
    turn[0] += 1
    if turn[0] % 2 == 0:
        ids = seeded.ids_for(case.method.upper(), f"{run} {case.operation.label}")
        params.update({name: ids[name] for name in params if name in ids})
