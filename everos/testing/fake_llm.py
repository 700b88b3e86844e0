"""Run the fake OpenAI-compatible server from the command line.

    everos-fake-llm --port 8089 --fault status=503,requests=1-2 --fault latency=0.5,p=0.2

Point everos (or anything OpenAI-compatible) at the printed base URL; ``GET /metrics`` on the same
port shows what happened. See :func:`everos.testing.parse_fault_spec` for the ``--fault`` syntax.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence

import trio

from everos.testing._fake_llm import FakeLLM
from everos.testing._faults import parse_fault_spec
from everos.testing._slots import ModelSpeed

__all__ = ["build_parser", "fake_from_args", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="everos-fake-llm",
        description="A fake OpenAI-compatible server (chat, embeddings, rerank) with scripted faults.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8089, help="port to bind; 0 picks a free one (default 8089)")
    parser.add_argument("--dim", type=int, default=384, help="embedding width when a request names none")
    parser.add_argument("--model", default="fake-model", help="model name to answer with")
    parser.add_argument("--seed", type=int, default=0, help="seed of probabilistic faults")
    parser.add_argument("--api-key", default=None, help="require this Bearer token")
    parser.add_argument("--no-json-mode", action="store_true", help="reject response_format with a 400")
    parser.add_argument("--fence-json", action="store_true", help="wrap chat JSON in a ```json fence")
    speed = parser.add_argument_group(
        "model speed", "answer as slowly as a local model server: requests beyond the slots queue, each holds "
        "its slot for prompt/prefill + completion/decode seconds (defaults: a 9B model on one consumer GPU)")
    speed.add_argument("--local-model", action="store_true", help="use the default speed (1 slot, 1500/40 tok/s)")
    speed.add_argument("--slots", type=int, default=None, help="parallel slots (default 1)")
    speed.add_argument("--prefill-tps", type=float, default=None, help="prompt tokens per second (default 1500)")
    speed.add_argument("--decode-tps", type=float, default=None, help="completion tokens per second (default 40)")
    speed.add_argument("--embed-tps", type=float, default=None, help="embedding input tokens per second (default 20000)")
    parser.add_argument(
        "--fault", action="append", default=[], metavar="SPEC",
        help="KIND[=VALUE][,route=R][,requests=1-3+7][,p=P][,retry_after=S][,in_body=1]; "
        "kinds: latency=S stall close=mid_request|before_response|mid_response trickle=BPS "
        "status=CODE malformed_json wrong_dim=N; repeatable",
    )
    return parser


def fake_from_args(args: argparse.Namespace, *, speed: ModelSpeed | None = None) -> FakeLLM:
    """The server the parsed ``args`` describe (``speed``: the speed flags', if already read).
    Raises ValueError for a bad ``--fault`` or speed flag."""
    return FakeLLM(
        [parse_fault_spec(spec) for spec in args.fault],
        seed=args.seed,
        dim=args.dim,
        model=args.model,
        supports_response_format=not args.no_json_mode,
        fence_json=args.fence_json,
        api_key=args.api_key,
        speed=speed if speed is not None else _speed(args),
    )


def _speed(args: argparse.Namespace) -> ModelSpeed | None:
    """The model speed the flags ask for; None (answer at once) when no speed flag is given."""
    given = {name: value for name, value in (
        ("slots", args.slots), ("prefill_tokens_per_second", args.prefill_tps),
        ("decode_tokens_per_second", args.decode_tps), ("embed_tokens_per_second", args.embed_tps),
    ) if value is not None}
    if not given and not args.local_model:
        return None
    return ModelSpeed(**given)


async def _run(fake: FakeLLM, host: str, port: int) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            await nursery.start(fake.serve, host, port)
            print(f"fake LLM serving at {fake.base_url} (metrics: {fake.base_url[:-3]}/metrics)", flush=True)
            async for _ in signals:
                break
            nursery.cancel_scope.cancel()


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until SIGINT or SIGTERM. Returns the exit status: 0, 1 when the address cannot be
    bound, 2 for a bad argument."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        speed = _speed(args)
    except ValueError as exc:
        parser.error(f"model speed: {exc}")
    try:
        fake = fake_from_args(args, speed=speed)
    except ValueError as exc:
        parser.error(f"--fault: {exc}")
    status = 0
    try:
        trio.run(_run, fake, args.host, args.port)
    except* OSError as group:
        print(f"cannot listen on {args.host}:{args.port}: {group.exceptions[0]}", file=sys.stderr)
        status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
