"""Scripted faults: validation, selection by route / request number / probability, merging."""

import random

import pytest

from everos.testing import Effects, Fault, combine, parse_fault_spec, select_faults


def test_fault_constructors():
    assert Fault.latency(1.5).seconds == 1.5
    assert Fault.stall().kind == "stall"
    assert Fault.close("mid_response").at == "mid_response"
    assert Fault.trickle(10).bytes_per_second == 10
    status = Fault.status(429, retry_after=2)
    assert (status.status_code, status.retry_after) == (429, "2")
    assert Fault.status(503, retry_after="Wed, 21 Oct 2026 07:28:00 GMT").retry_after.startswith("Wed")
    assert Fault.malformed_json(in_body=True).in_body
    assert Fault.wrong_dim(12).dim == 12


@pytest.mark.parametrize(
    "build",
    [
        lambda: Fault("explode"),
        lambda: Fault.stall(route="images"),
        lambda: Fault.stall(probability=1.5),
        lambda: Fault.close("sometime"),
        lambda: Fault.trickle(0),
        lambda: Fault.status(99),
        lambda: Fault.wrong_dim(0),
        lambda: Fault.latency(-1),
    ],
)
def test_invalid_faults_are_refused(build):
    with pytest.raises(ValueError):
        build()


def test_requests_accept_one_number_or_many():
    assert Fault.stall(requests=2).requests == frozenset({2})
    assert Fault.stall(requests=range(1, 4)).requests == frozenset({1, 2, 3})


def test_matches_route_and_request_number():
    fault = Fault.stall(route="chat", requests={2})
    assert fault.matches("chat", 2)
    assert not fault.matches("chat", 1)
    assert not fault.matches("embeddings", 2)
    assert Fault.stall().matches("rerank", 99)


def test_selection_by_probability_is_repeatable_with_a_seed():
    faults = [Fault.status(500, probability=0.3)]
    runs = [[bool(select_faults(faults, "chat", n, rng)) for n in range(1, 51)]
            for rng in (random.Random(7), random.Random(7))]
    assert runs[0] == runs[1]
    assert 0 < sum(runs[0]) < 50


def test_certain_faults_do_not_draw_from_the_rng():
    rng = random.Random(1)
    state = rng.getstate()
    select_faults([Fault.stall(), Fault.latency(1.0, route="chat")], "chat", 1, rng)
    assert rng.getstate() == state


def test_combine_merges_effects():
    effects = combine([
        Fault.latency(1.0), Fault.latency(0.5), Fault.close("mid_response"), Fault.close("before_response"),
        Fault.status(429, retry_after=3), Fault.status(500), Fault.wrong_dim(8), Fault.malformed_json(),
    ])
    assert effects.latency_seconds == 1.5
    assert effects.close_at == "before_response"
    assert (effects.status_code, effects.retry_after) == (429, "3")
    assert effects.wrong_dim == 8
    assert effects.malformed_json and not effects.malformed_body


def test_no_faults_means_no_effects():
    assert combine([]) == Effects()


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("stall", Fault.stall()),
        ("stall,route=chat", Fault.stall(route="chat")),
        ("latency=1.5,p=0.1", Fault.latency(1.5, probability=0.1)),
        ("status=429,retry_after=2,requests=1-3+7", Fault.status(429, retry_after="2", requests={1, 2, 3, 7})),
        ("close=mid_request", Fault.close("mid_request")),
        ("close", Fault.close()),
        ("trickle=100,route=embeddings", Fault.trickle(100, route="embeddings")),
        ("malformed_json,in_body=1", Fault.malformed_json(in_body=True)),
        ("wrong_dim=12", Fault.wrong_dim(12)),
    ],
)
def test_parse_fault_spec(spec, expected):
    assert parse_fault_spec(spec) == expected


@pytest.mark.parametrize("spec", ["explode", "stall,route", "stall,colour=red", "latency=soon", "status=abc"])
def test_parse_fault_spec_refuses_nonsense(spec):
    with pytest.raises(ValueError):
        parse_fault_spec(spec)
