"""Exact decimals (money, prices, rates) carried in JSON as strings, with the rule published (and
dates and times that are RFC 3339 strings only, :data:`DATE_TEXT`, :data:`INSTANT_TEXT`).

A JSON number is a binary float to most clients (``0.1 + 0.2``), so money and rates travel as
decimal strings (``"24.50"``), never numbers. :class:`DecimalText` is a pydantic annotation that
makes one pattern the whole rule, in both directions (issue 22 item 2):

* the JSON Schema (and so the OpenAPI document) says ``{"type": "string", "pattern": P}``;
* the validator refuses JSON numbers (a float is inexact; an ``int`` would pass a schema that
  says string, so it is refused too) and any string ``P`` does not match *whole* (``re.fullmatch``:
  JSON Schema's ECMA ``$`` never matches before a trailing newline, Python's ``re.search`` would);
* a ``Decimal`` from Python code is checked by the field's own constraints as before;
* JSON output is fixed-point (``format(d, "f")``), so what the server writes it reads back.

Each pattern encodes the bounds and decimal places of its field (``0 < amount <= 500.00``, two
places) so a client validates before sending; the pydantic constraints stay on the field as a
second check of values built in Python. Hand-written because pydantic publishes a decimal as
number-or-string without its bounds, places or digits.

Importing this module does not import pydantic (the hub checks tariffs with these patterns and
no pydantic, issue 17): the hooks import it when pydantic calls them, building a schema.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
    from pydantic.json_schema import JsonSchemaValue
    from pydantic_core import CoreSchema


def fixed_point(d: Decimal) -> str:
    """``d`` without an exponent (``Decimal("1E+1")`` is ``"10"``)."""
    return format(d, "f")


@dataclass(frozen=True, slots=True)
class DecimalText:
    """``Annotated[Decimal, Field(...), DecimalText(pattern, rule)]``: see the module docstring."""

    pattern: str
    rule: str  # the pattern in words, for the error and the schema's description
    example: str

    def check(self, value: object) -> object:
        if isinstance(value, Decimal):
            return value
        if isinstance(value, str) and re.fullmatch(self.pattern, value):
            return value
        shown = repr(value) if isinstance(value, str) else f"the JSON number {value!r}"
        raise ValueError(f"{shown} is not a decimal string of {self.rule} (e.g. {self.example!r})")

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        from pydantic_core import core_schema

        return core_schema.no_info_before_validator_function(
            self.check,
            handler(source),
            serialization=core_schema.plain_serializer_function_ser_schema(
                fixed_point, when_used="json", return_schema=core_schema.str_schema()
            ),
        )

    def __get_pydantic_json_schema__(
        self, _schema: CoreSchema, _handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {
            "type": "string",
            "format": "decimal",
            "pattern": self.pattern,
            "description": f"a decimal string: {self.rule}",
            "examples": [self.example],
        }


_SIX_PLACES_POSITIVE = "|".join(f"0\\.0{{{z}}}[1-9][0-9]{{0,{5 - z}}}" for z in range(6))

NON_NEGATIVE_PRICE = DecimalText(
    r"^[0-9]{1,12}(\.[0-9]{1,6})?$", "0 or more, up to 12 digits before the point and 6 after", "24.50"
)
PRICE = DecimalText(
    r"^-?[0-9]{1,12}(\.[0-9]{1,6})?$",
    "may be negative, up to 12 digits before the point and 6 after",
    "-1.25",
)
POSITIVE_QUANTITY = DecimalText(
    rf"^([1-9][0-9]{{0,11}}(\.[0-9]{{1,6}})?|{_SIX_PLACES_POSITIVE})$",
    "more than 0, no leading zero, up to 12 digits before the point and 6 after",
    "5",
)
FRACTION_4 = DecimalText(r"^0(\.[0-9]{1,4})?$", "0 or more and less than 1, up to 4 places", "0.05")
POUNDS_AND_PENCE_500 = DecimalText(
    r"^(([1-9][0-9]?|[1-4][0-9]{2})\.[0-9]{2}|500\.00|0\.(0[1-9]|[1-9][0-9]))$",
    "pounds and pence, 0.01 to 500.00, exactly two places",
    "10.00",
)
# A heat bill's inputs (the housing provider's API): the bounds in the pattern, so a schema-valid
# value is always accepted (no digit limit the document cannot state).
EUROS_BELOW_1E9 = DecimalText(
    r"^(0|[1-9][0-9]{0,8})(\.[0-9]{1,2})?$", "0 or more, below 1,000,000,000, up to 2 places", "12400.00"
)
KWH_POSITIVE_3 = DecimalText(
    r"^([1-9][0-9]{0,9}(\.[0-9]{1,3})?|0\.([1-9][0-9]{0,2}|0[1-9][0-9]?|00[1-9]))$",
    "more than 0, below 10,000,000,000, up to 3 places",
    "180000",
)
SHARE_30_TO_50 = DecimalText(r"^0\.(3[0-9]?|4[0-9]?|50?)$", "0.30 to 0.50, up to 2 places", "0.30")

__all__ = [
    "DATE_TEXT",
    "EUROS_BELOW_1E9",
    "FRACTION_4",
    "INSTANT_TEXT",
    "JSON_INTEGER",
    "KWH_POSITIVE_3",
    "NON_NEGATIVE_PRICE",
    "POSITIVE_QUANTITY",
    "POUNDS_AND_PENCE_500",
    "PRICE",
    "SHARE_30_TO_50",
    "DecimalText",
    "fixed_point",
]


@dataclass(frozen=True, slots=True)
class _Before:
    """pydantic's ``BeforeValidator(check)``, without importing pydantic until a schema is built."""

    check: Callable[[object], object]

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        from pydantic_core import core_schema

        return core_schema.no_info_before_validator_function(self.check, handler(source))


def _rfc3339(pattern: str, what: str) -> _Before:
    """Dates and times travel as RFC 3339 strings (JSON Schema's ``format: date``/``date-time``):
    pydantic's lax mode would also take a JSON number, or a string of digits, as a Unix time
    (``0`` as 1970-01-01), which the published format refuses."""
    rx = re.compile(pattern)

    def check(value: object) -> object:
        if isinstance(value, int | float):
            raise ValueError(f"the JSON number {value!r} is not an RFC 3339 {what} (a string)")
        if isinstance(value, str) and not rx.fullmatch(value):
            raise ValueError(f"{value[:40]!r} is not an RFC 3339 {what}")
        return value

    return _Before(check)


DATE_TEXT = _rfc3339(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", "full-date (YYYY-MM-DD)")
"""``Annotated[date, DATE_TEXT]``: a date from an RFC 3339 string (or a Python value), never a number."""
INSTANT_TEXT = _rfc3339(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})",
    "date-time with its offset (e.g. 2026-08-10T00:00:00Z)",
)
"""``Annotated[AwareDatetime, INSTANT_TEXT]``: likewise for an instant."""


def _json_integer(value: object) -> object:
    """A JSON Schema ``integer`` is a number with no fractional part (``2.0`` is one); a string
    or a boolean is not, though pydantic's lax mode would take ``"2"`` and ``true``."""
    if isinstance(value, str | bool):
        raise ValueError(f"{value!r} is not an integer (a JSON number)")
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


JSON_INTEGER = _Before(_json_integer)
"""``Annotated[int, JSON_INTEGER]``: an integer as JSON Schema means it."""
