"""The answer helpers of ``everos.api._answers`` that have no server behind them."""

from __future__ import annotations

from everos.api._answers import index_lag_header, parse_index_lag


def test_the_index_lag_header_reads_back_what_it_says() -> None:
    value = index_lag_header(412, 300)
    assert value == "documents=412, bound=300"
    assert parse_index_lag(value) == {"documents": 412, "bound": 300}


def test_no_header_is_no_lag_and_a_header_of_unknown_members_still_says_it_lags() -> None:
    assert parse_index_lag(None) is None
    assert parse_index_lag("documents=many, seconds=4.5, bound=3") == {"bound": 3}
    assert parse_index_lag("") == {}
