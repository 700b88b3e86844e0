"""What a document costs the model: chat calls, embedding requests and inputs, tokens, and the
model's own seconds, against a fake that is as slow as a local model server.

The server runs as its own process (as `everos server start` would), with `[llm]` and
`[embedding]` pointed at `everos.testing.FakeLLM` with `ModelSpeed` (one slot, 1,500 prefill and
40 decode tokens/s: a 9B model on one consumer GPU), sped up `--speedup` times so a run takes
minutes; the model seconds printed are scaled back to the model's own speed (tokens / rate).
Documents are uploaded one after another (the seed reporter's script), then the run waits until
the index has drained. One block per `[cascade] llm_facts` mode, and the figures issue #11
measured black-box for EverOS 1.1/1.5 and for everos before the call economy, for comparison.

    python bench/model_calls.py [--documents 5] [--kib 80] [--speedup 20] [--modes off,with-extraction,batched]
    python bench/model_calls.py --documents 20 --latency 0.2 --modes off   # issue #11's harness shape

With ``--latency`` the fake has no slots or rates: every request is answered after that many
seconds (the 0.2 s fake of issue #11's black-box measurement), and the model figures are calls
and tokens only.

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import trio

from everos.config import render_template
from everos.testing import Fault, FakeLLM
from everos.testing._slots import ModelSpeed
from everos.testing.replay._corpus import make_corpus
from everos.testing.replay._load import drain, upload_all
from everos.testing.replay._server import ManagedServer, settings_env

# Issue #11's black-box measurement (20 uploads of 80 KB, a fake answering in 0.2 s a call).
REFERENCE = {
    "everos_1.x": {"chat_calls_per_document": 2, "embedding_requests_per_document": 69,
                   "embedding_inputs_per_document": 69},
    "everos_before_call_economy": {"chat_calls_per_document": 75, "embedding_requests_per_document": 23,
                                   "embedding_inputs_per_document": 700},
}
PREFILL, DECODE, EMBED = 1500.0, 40.0, 20000.0


def server_env(fake: FakeLLM, mode: str) -> dict[str, str]:
    # As README advises for one llama-server slot: no more in flight than it serves.
    slots = {"llm__slots": 1, "embedding__slots": 1} if fake.slots is not None else {}
    return settings_env({
        "llm__provider": "openai", "llm__base_url": fake.base_url, "llm__model": "fake",
        "embedding__provider": "openai", "embedding__base_url": fake.base_url, "embedding__model": "fake",
        "cascade__llm_facts": mode, "knowledge__dedupe": "none", **slots})


async def run_mode(mode: str, corpus: list[tuple[str, bytes]], speedup: float, latency: float | None) -> dict:
    speed = ModelSpeed(slots=1, prefill_tokens_per_second=PREFILL * speedup,
                       decode_tokens_per_second=DECODE * speedup, embed_tokens_per_second=EMBED * speedup)
    fake = FakeLLM([Fault.latency(latency)]) if latency is not None else FakeLLM(speed=speed)
    with tempfile.TemporaryDirectory(prefix="everos-bench-calls-") as tmp:
        root = Path(tmp) / "root"
        root.mkdir()
        (root / "everos.toml").write_text(render_template())
        async with trio.open_nursery() as nursery:
            await nursery.start(fake.serve, "127.0.0.1", 0)
            server = ManagedServer(root, server_env(fake, mode), None)
            await server.start()
            try:
                started = time.monotonic()
                uploads = await upload_all(server.url, corpus, 1, 600.0)
                upload_s = time.monotonic() - started
                drain_s = (await drain(server.url, 900.0)).all_s
            finally:
                await server.stop()
            embedding_inputs = sum(len(r.body.get("input") or []) for r in fake.requests
                                   if r.route == "embeddings" and isinstance(r.body, dict))
            metrics = fake.metrics()
            nursery.cancel_scope.cancel()
    documents = len(corpus)
    per_doc = lambda value: round(value / documents, 2)  # noqa: E731
    if "model" not in metrics:  # --latency: no slots, no token counts
        return {"statuses": uploads["statuses"], "chat_calls_per_document": per_doc(metrics["requests"]["chat"]),
                "embedding_requests_per_document": per_doc(metrics["requests"]["embeddings"]),
                "upload_wall_seconds": round(upload_s, 2), "drained_after_last_upload_seconds": drain_s}
    routes = metrics["model"]["routes"]
    chat, embed = routes.get("chat", {}), routes.get("embeddings", {})
    return {
        "statuses": uploads["statuses"],
        "chat_calls_per_document": per_doc(metrics["requests"]["chat"]),
        "embedding_requests_per_document": per_doc(metrics["requests"]["embeddings"]),
        # Only the last 200 requests are kept by the fake: a lower bound on long runs.
        "embedding_inputs_per_document": per_doc(embedding_inputs),
        "chat_tokens_in_per_document": per_doc(chat.get("tokens_in", 0)),
        "chat_tokens_out_per_document": per_doc(chat.get("tokens_out", 0)),
        "model_seconds_per_document": per_doc((chat.get("busy_seconds", 0) + embed.get("busy_seconds", 0)) * speedup),
        "chat_model_seconds_per_document": per_doc(chat.get("busy_seconds", 0) * speedup),
        "upload_wall_seconds": round(upload_s, 2),
        "drained_after_last_upload_seconds": drain_s,
        "model_busy_fraction": metrics["model"]["busy_fraction"],
        "model_busy_fraction_working": metrics["model"]["busy_fraction_working"],
        "queue_wait_seconds_max": round(metrics["model"]["queue_wait_seconds_max"] * speedup, 2),
    }


async def main(args: argparse.Namespace) -> None:
    corpus = make_corpus(args.documents, args.kib * 1000, ("en",), 316)
    model = ({"seconds_per_request": args.latency} if args.latency is not None else
             {"slots": 1, "prefill_tokens_per_second": PREFILL, "decode_tokens_per_second": DECODE})
    result = {"documents": args.documents, "kib": args.kib, "speedup": args.speedup, "model": model,
              "reference_issue_11": REFERENCE, "modes": {}}
    for mode in args.modes.split(","):
        result["modes"][mode] = await run_mode(mode, corpus, args.speedup, args.latency)
        print(f"{mode}: done", file=sys.stderr)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--documents", type=int, default=5)
    parser.add_argument("--kib", type=int, default=80)
    parser.add_argument("--speedup", type=float, default=20.0)
    parser.add_argument("--modes", default="off,with-extraction,batched")
    parser.add_argument("--latency", type=float, default=None, help="a fake answering every request in this many "
                        "seconds, instead of one as slow as a local model")
    trio.run(main, parser.parse_args())
