"""``python -m everos.testing.fake_llm``: arguments, and one real run in a subprocess."""

import signal
import subprocess
import sys

import httpx
import pytest
import trio

from everos.testing import Fault
from everos.testing.fake_llm import build_parser, fake_from_args, main


def test_arguments_build_the_fake():
    args = build_parser().parse_args(
        ["--dim", "8", "--model", "tiny", "--seed", "3", "--no-json-mode", "--fence-json", "--api-key", "k",
         "--fault", "stall,route=chat", "--fault", "status=429,retry_after=1"]
    )
    fake = fake_from_args(args)
    assert (fake.dim, fake.model, fake.api_key) == (8, "tiny", "k")
    assert not fake.supports_response_format and fake.fence_json
    assert fake._faults == [Fault.stall(route="chat"), Fault.status(429, retry_after="1")]


def test_a_bad_fault_exits_with_usage_error(capsys):
    with pytest.raises(SystemExit) as caught:
        main(["--fault", "explode"])
    assert caught.value.code == 2
    assert "unknown fault kind" in capsys.readouterr().err


@pytest.mark.slow
async def test_module_serves_until_interrupted():
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "everos.testing.fake_llm", "--port", "0", "--dim", "4"], stdout=subprocess.PIPE
    )
    try:
        line = b""
        with trio.fail_after(30):
            while not line.endswith(b"\n"):
                chunk = await process.stdout.receive_some(1)
                assert chunk, "the fake exited before printing its URL"
                line += chunk
        base_url = line.decode().split()[4]
        async with httpx.AsyncClient(timeout=5.0) as client:
            answer = (await client.post(base_url + "/embeddings", json={"input": "x"})).json()
        assert len(answer["data"][0]["embedding"]) == 4
        process.send_signal(signal.SIGINT)
        with trio.fail_after(10):
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        await process.stdout.aclose()


def test_an_address_in_use_exits_with_1(capsys):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["--port", str(port)]) == 1
    assert "cannot listen" in capsys.readouterr().err
