"""RequestModel: EverOS refusals out of pydantic validation, query strings, and the schema alone."""

from __future__ import annotations

import inspect
from typing import Annotated, Any

import pytest
from pydantic import Field, ValidationError, create_model

from everos.api import RequestModel, checked, refusal
from everos.errors import EverosError, InvalidInput, PathTraversal


def positive(value: object, info: Any) -> int:
    if isinstance(value, str) and (info.context or {}).get("query_string"):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInput(f"{info.field_name} must be positive", field=info.field_name)
    return value


def no_nul(value: object) -> str:
    if not isinstance(value, str):
        raise InvalidInput("name must be a string", field="name")
    if "\x00" in value:
        raise PathTraversal("name holds NUL")
    return value.strip()


Count = Annotated[int, Field(description="How many.", strict=True, ge=1), checked(positive, with_info=True)]
Name = Annotated[str, Field(description="A name.", min_length=1, max_length=5), checked(no_nul)]


class Probe(RequestModel):
    """A model with two checked fields."""

    name: Name
    count: Count = 1
    size: Count = 2


class Reordered(Probe):
    refusal_order = ("size", "count", "name")


def refused(model: type[RequestModel], data: dict[str, Any], **context: Any) -> EverosError:
    with pytest.raises(EverosError) as caught:
        model.parse(data, **context)
    return caught.value


def test_parse_keeps_what_the_checks_return() -> None:
    assert Probe.parse({"name": " ab ", "count": 3}) == Probe(name="ab", count=3, size=2)


def test_a_refusal_is_the_checks_own_error_not_pydantics() -> None:
    error = refused(Probe, {"name": "ab", "count": 0})
    assert type(error) is InvalidInput and (error.message, error.field) == ("count must be positive", "count")


def test_another_everos_error_of_a_check_is_raised_as_it_is() -> None:
    assert type(refused(Probe, {"name": "a\x00"})) is PathTraversal


def test_the_first_refused_field_is_answered_in_field_order() -> None:
    assert refused(Probe, {"name": 5, "count": 0, "size": 0}).field == "name"
    assert refused(Probe, {"name": "ab", "count": 0, "size": 0}).field == "count"


def test_refusal_order_overrides_field_order() -> None:
    assert refused(Reordered, {"name": 5, "count": 0, "size": 0}).field == "size"
    assert refused(Reordered, {"name": 5, "count": 0}).field == "count"


def test_a_missing_required_field_is_required() -> None:
    error = refused(Probe, {"count": 2})
    assert type(error) is InvalidInput and (error.message, error.field) == ("name is required", "name")


def test_from_query_hands_the_checks_text_and_the_query_string_context() -> None:
    assert Probe.from_query({"name": "ab", "count": "4"}) == Probe(name="ab", count=4)
    assert refused(Probe, {"name": "ab", "count": "4"}).message == "count must be positive"  # typed: no text


def at_most_cap(value: object, info: Any) -> object:
    if value > info.context["cap"]:  # type: ignore[operator]
        raise InvalidInput(f"value must be at most {info.context['cap']}", field="value")
    return value


class Capped(RequestModel):
    value: Annotated[int, checked(at_most_cap, with_info=True)]


def test_context_reaches_the_checks() -> None:
    assert Capped.parse({"value": 7}, cap=7).value == 7
    assert refused(Capped, {"value": 8}, cap=7).message == "value must be at most 7"


def test_a_model_validator_refuses_with_refusal() -> None:
    from pydantic import model_validator

    class Strict(Probe):
        @model_validator(mode="before")
        @classmethod
        def _only_name(cls, data: Any) -> Any:
            if set(data) - {"name"}:
                raise refusal(InvalidInput("only name", field="body"))
            return data

    error = refused(Strict, {"name": "ab", "count": 1})
    assert (error.message, error.field) == ("only name", "body")


def test_unknown_fields_are_ignored_and_a_request_is_immutable() -> None:
    request = Probe.parse({"name": "ab", "other": 1})
    assert not hasattr(request, "other")
    with pytest.raises(ValidationError):
        request.name = "cd"  # type: ignore[misc]


def test_schema_parameters_are_the_schema_without_the_checks() -> None:
    parameters = Probe.schema_parameters()
    assert [(p.name, p.kind, p.default) for p in parameters] == [
        ("name", inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.empty),
        ("count", inspect.Parameter.KEYWORD_ONLY, 1), ("size", inspect.Parameter.KEYWORD_ONLY, 2)]
    bare = create_model("Probe", **{p.name: (p.annotation, ... if p.default is p.empty else p.default)
                                    for p in parameters})
    assert bare.model_json_schema()["properties"] == Probe.model_json_schema()["properties"]
    # The schema's limits still refuse; the checks (strip, NUL, the messages) are gone.
    assert bare.model_validate({"name": " ab "}).name == " ab "
    with pytest.raises(ValidationError) as caught:
        bare.model_validate({"name": "abcdef", "count": "2"})
    assert [e["type"] for e in caught.value.errors()] == ["string_too_long", "int_type"]
