"""The pydantic constraints of the tariff model's fields, for the GDSC's API (OpenAPI document,
request validation): what each :class:`smarthub.model.tariff._Schema` marker stands for.

Imported only when pydantic builds a schema from the tariff classes, never by a hub that prices
(issue 17). The hub checks the same rules in the classes' ``__post_init__`` (which pydantic
calls as well); the decimal patterns are the shared :mod:`smarthub.model.decimals` ones.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import AwareDatetime, Field

from smarthub.model.decimals import (
    DATE_TEXT,
    FRACTION_4,
    INSTANT_TEXT,
    JSON_INTEGER,
    NON_NEGATIVE_PRICE,
    POSITIVE_QUANTITY,
    PRICE,
)


def _with(*metadata: Any) -> Callable[[Any], Any]:
    return lambda source: Annotated[(source, *metadata)]


RULES: dict[str, Callable[[Any], Any]] = {
    "price": _with(Field(allow_inf_nan=False, decimal_places=6, max_digits=18), PRICE),
    "non_negative_price": _with(
        Field(ge=0, allow_inf_nan=False, decimal_places=6, max_digits=18), NON_NEGATIVE_PRICE
    ),
    "positive_quantity": _with(Field(gt=0, allow_inf_nan=False, decimal_places=6), POSITIVE_QUANTITY),
    "vat_rate": _with(Field(ge=0, lt=1, decimal_places=4), FRACTION_4),
    "name": _with(Field(min_length=1, max_length=64)),
    "nonempty": _with(Field(min_length=1)),
    "version": _with(Field(ge=1), JSON_INTEGER),
    "date": _with(DATE_TEXT),
    "instant": lambda _source: Annotated[AwareDatetime, INSTANT_TEXT],
    "tagged": _with(Field(discriminator="type")),
}

__all__ = ["RULES", "Decimal", "datetime"]
