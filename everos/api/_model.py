"""The base of every request model: a pydantic model whose refusals are EverOS's.

Each field of a request model carries two things (``_fields.py``): its JSON schema (type, limits,
pattern, enum, description) and, as a before-validator made by :func:`checked`, the EverOS check
that refuses a value with the one-line message the API answers (``InvalidInput`` naming the
field). :meth:`RequestModel.parse` runs both and raises the refusal as that ``EverosError``, never
pydantic's text. :meth:`RequestModel.from_query` reads a query string, whose values are text: the
same fields parse whole numbers from it. :meth:`RequestModel.schema_parameters` gives the fields
without the checks, for a framework that must refuse exactly what the published schema refuses
(the MCP SDK, ``mcp/_catalog.py``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Annotated, Any, ClassVar, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    ValidationError,
    ValidationInfo,
    WrapValidator,
)
from pydantic_core import PydanticCustomError

from everos.errors import EverosError, InvalidInput

__all__ = ["RequestModel", "checked", "refusal"]

# The pydantic error type that carries an EverOS refusal (its ``ctx["error"]``) to ``parse``.
_REFUSAL = "everos_refusal"
_CHECKS = (AfterValidator, BeforeValidator, PlainValidator, WrapValidator)


def refusal(error: EverosError) -> PydanticCustomError:
    """The pydantic error that carries ``error`` out of validation, for :meth:`RequestModel.parse`
    to raise. Raise this from a validator, not ``error`` itself: pydantic would let an
    ``EverosError`` escape at once, losing the refusals of the fields before it."""
    return PydanticCustomError(_REFUSAL, error.message, {"error": error})


def checked(check: Callable[..., Any], *, with_info: bool = False) -> BeforeValidator:
    """``check`` as a field's before-validator: it gets the value as sent (and the
    ``ValidationInfo`` with ``with_info``: the field's name, the validation context), returns
    the value to keep, and refuses by raising an ``EverosError``, which :meth:`RequestModel.parse`
    raises again as it is. The field's own type and limits are validated after it, on the value
    it returned, so a check must refuse whatever they would."""

    def validate(value: Any, info: ValidationInfo) -> Any:
        try:
            return check(value, info) if with_info else check(value)
        except EverosError as exc:
            raise refusal(exc) from None

    return BeforeValidator(validate)


class RequestModel(BaseModel):
    """One operation's request: its fields' schema, their checks and their documentation.

    Unknown fields are ignored unless the model refuses them (``PATCH``, ``POST /cascade/fix``);
    an instance is immutable.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    refusal_order: ClassVar[tuple[str, ...]] = ()
    """Which refused field is answered first when several are, where that is not the order of the
    fields (the order the routes checked them in, which EverOS clients see); empty: field order."""

    @classmethod
    def parse(cls, data: Mapping[str, Any], **context: Any) -> Self:
        """The request in ``data`` (a JSON body, tool arguments, form fields), validated.

        ``context`` reaches the checks that need the server's settings (``top_k_cap``).

        Raises:
            InvalidInput: a field is refused (the first, by :attr:`refusal_order`): the message
                and ``field`` of its check. Another ``EverosError`` a check raises (a file name
                with NUL is ``PathTraversal``) is raised as it is.
        """
        try:
            return cls.model_validate(dict(data.items()), context=context)
        except ValidationError as exc:
            raise cls._refusal(exc) from None

    @classmethod
    def from_query(cls, args: Mapping[str, str], **context: Any) -> Self:
        """The request in a query string's ``args`` (the first value of each name): as
        :meth:`parse`, but a whole-number field takes its digits as text (``page=2``), and
        refuses other text with ``<field> must be a whole number``."""
        return cls.parse(args, **context, query_string=True)

    @classmethod
    def _refusal(cls, exc: ValidationError) -> EverosError:
        order = cls.refusal_order or tuple(cls.model_fields)

        def position(error: Mapping[str, Any]) -> int:
            name = error["loc"][0] if error["loc"] else None
            return order.index(name) if name in order else -1  # a refusal of the whole body first

        first = min(exc.errors(include_url=False), key=position)
        refusal = (first.get("ctx") or {}).get("error")
        if isinstance(refusal, EverosError):
            return refusal
        field = str(first["loc"][0]) if first["loc"] else "body"
        if first["type"] == "missing":
            return InvalidInput(f"{field} is required", field=field)
        # Every field's check refuses what its type and limits would; a rule without one is a bug,
        # answered without pydantic's wording.
        return InvalidInput(f"{field} is invalid", field=field)

    @classmethod
    def schema_parameters(cls) -> list[inspect.Parameter]:
        """The fields as keyword-only parameters annotated with their JSON schema alone (type,
        limits, pattern, description; not the EverOS checks), with their defaults: for a
        framework that builds its validation from a signature, which then refuses exactly what
        :meth:`model_json_schema` publishes."""
        parameters = []
        for name, field in cls.model_fields.items():
            schema = [item for item in field.metadata if not isinstance(item, _CHECKS)]
            annotation = Annotated[(field.annotation, *schema, Field(description=field.description))]
            default = inspect.Parameter.empty if field.is_required() else field.default
            parameters.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default,
                                                annotation=annotation))
        return parameters
