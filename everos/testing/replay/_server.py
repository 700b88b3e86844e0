"""The server a run starts itself: ``everos server start`` as a subprocess on a loopback port with
the scenario's settings in its environment (and an open-file limit where the scenario asks for
one), restartable, killable, with its memory, threads and open files read from ``/proc``.
"""

from __future__ import annotations

import contextlib
import os
import random
import resource
import signal
import socket
import sys
from pathlib import Path
from typing import Any

import httpx
import trio

from everos.testing._fake_llm import FakeLLM
from everos.testing.replay._scenarios import Scenario

__all__ = ["ManagedServer", "free_port", "server_env", "settings_env"]


# Below Linux's default ephemeral range (32768-60999): no outgoing connection takes one of these
# as its local port, so a server killed and restarted on its port finds it free again (a port
# from bind(0) is ephemeral, and a client socket could hold it while the server is down).
_PORTS = range(20_000, 32_000)


def free_port() -> int:
    """A loopback port that is free now, outside the ephemeral range when one is (else any)."""
    rng = random.Random()
    for _ in range(50):
        port = rng.choice(_PORTS)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# Threads that LanceDB's native runtime starts and stops by itself (tokio's blocking pool grows
# with concurrent file I/O and lets idle threads go after 10 s; Arrow's CPU pool; jemalloc's).
NATIVE_THREADS = ("lancedb-tokio", "lance-", "jemalloc")


class ManagedServer:
    """An ``everos server start`` subprocess on a fresh root, restartable, killable."""

    def __init__(self, root: Path, env: dict[str, str], open_files_limit: int | None) -> None:
        self.root, self.env, self.open_files_limit = root, env, open_files_limit
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: trio.Process | None = None

    def _limit(self) -> None:
        if self.open_files_limit:
            resource.setrlimit(resource.RLIMIT_NOFILE, (self.open_files_limit, self.open_files_limit))

    async def start(self) -> None:
        log = open(self.root / "server.log", "ab")  # noqa: SIM115 - handed to the child
        self.process = await trio.lowlevel.open_process(
            [sys.executable, "-m", "everos.cli", "server", "start", "--root", str(self.root), "--port", str(self.port)],
            env=self.env, stdout=log, stderr=log, preexec_fn=self._limit)
        log.close()
        async with httpx.AsyncClient(base_url=self.url, timeout=1) as client:
            with trio.fail_after(30):
                while True:
                    if self.process.poll() is not None:
                        raise RuntimeError(f"the server exited at startup; see {self.root / 'server.log'}")
                    with contextlib.suppress(httpx.HTTPError):
                        if (await client.get("/readyz")).status_code == 200:
                            return
                    await trio.sleep(0.1)

    def resources(self) -> dict[str, Any]:
        """Resident memory, threads and open files of the server process, from /proc."""
        if self.process is None or self.process.poll() is not None:
            return {}
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        native = 0
        for task in os.listdir(f"/proc/{self.process.pid}/task"):
            with contextlib.suppress(OSError):  # a thread that just exited
                native += Path(f"/proc/{self.process.pid}/task/{task}/comm").read_text().startswith(NATIVE_THREADS)
        kinds = self.open_file_kinds()
        return {"rss_kib": int(fields["VmRSS"].split()[0]), "threads": int(fields["Threads"]),
                "native_threads": native, "open_files": sum(kinds.values()), "open_file_kinds": kinds}

    def open_file_kinds(self) -> dict[str, int]:
        """The server's open descriptors counted by what they are: sockets, pipes, anonymous
        inodes (epoll, eventfd), files under the root by their first path part, other files.
        A count that grows names its kind."""
        assert self.process is not None
        fd_dir = Path(f"/proc/{self.process.pid}/fd")
        kinds: dict[str, int] = {}
        for fd in os.listdir(fd_dir):
            try:
                target = os.readlink(fd_dir / fd)
            except OSError:  # closed while we looked
                continue
            if target.startswith(("socket:", "pipe:", "anon_inode:")):
                kind = target.split(":", 1)[0] if not target.startswith("anon_inode:") else target
            elif target.startswith(str(self.root) + os.sep):
                kind = "root/" + Path(target).relative_to(self.root).parts[0]
            else:
                kind = "other"
            kinds[kind] = kinds.get(kind, 0) + 1
        return dict(sorted(kinds.items()))

    async def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        await self.process.wait()

    async def stop(self) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.send_signal(signal.SIGTERM)
        with trio.move_on_after(20):
            return await self.process.wait()
        self.process.kill()
        return await self.process.wait()


def server_env(scenario: Scenario, fake: FakeLLM | None, extra: dict[str, Any] | None = None) -> dict[str, str]:
    """The server's environment: the scenario's settings, then ``extra`` (the run's options),
    then the fake model endpoints the scenario uses."""
    settings = {**scenario.settings, **(extra or {})}
    if fake is not None and scenario.use_llm:
        settings.update({"llm__provider": "openai", "llm__base_url": fake.base_url, "llm__model": "fake"})
    if fake is not None and scenario.use_embedding_endpoint:
        settings.update({"embedding__provider": "openai", "embedding__base_url": fake.base_url,
                         "embedding__model": "fake"})
    return settings_env(settings)


def settings_env(settings: dict[str, Any]) -> dict[str, str]:
    """This process's environment without its ``EVEROS_`` variables, plus ``settings``
    (``section__key``: value) as the ``EVEROS_SECTION__KEY`` variables a server reads."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVEROS_")}
    for name, value in settings.items():
        section, key = name.split("__", 1)
        env[f"EVEROS_{section.upper()}__{key.upper()}"] = str(value)
    return env
