"""IEEE 2030.5 list paging: the one implementation every list resource of the hub uses.

IEEE 2030.5-2018 §5.4 (and the List type of the XSD): a GET of a List takes the query
parameters ``s`` (start: index of the first item to return, default 0), ``l`` (limit: the
most items to return, **default 1**) and, on lists ordered by time, ``a`` (after: only items
at or after that time). The answer's ``all`` is the number of items in the whole list (as
selected by ``a``), ``results`` the number in this response. A client pages with
``s`` += ``results`` until ``s`` ≥ ``all``; a ``s`` past the end gets an empty list, never
data. A server may return fewer than ``l`` items (the hub caps ``l`` at :data:`MAX_LIMIT`,
and the bulk mirror list caps the readings of one response), never items outside
``[s, s + l)``.

Sans-I/O: a query mapping in, a :class:`ListQuery` out; :meth:`ListQuery.window` cuts a
sequence. The HTTP layer turns :class:`QueryError` into 400.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

DEFAULT_LIMIT = 1  # §5.4: a list GET without l returns one item
MAX_LIMIT = 1000  # the most items the hub puts in one response, whatever l asks

T = TypeVar("T")


class QueryError(ValueError):
    """A list query parameter that is not a non-negative integer."""


@dataclass(frozen=True, slots=True)
class ListQuery:
    start: int = 0
    limit: int = DEFAULT_LIMIT
    after: int | None = None

    @classmethod
    def parse(cls, query: Mapping[str, str], max_limit: int = MAX_LIMIT) -> ListQuery:
        """``s``, ``l`` and ``a`` from a query string's parameters (others are ignored)."""
        try:
            start = int(query.get("s", "0"))
            limit = int(query.get("l", str(DEFAULT_LIMIT)))
            after = int(query["a"]) if "a" in query else None
        except ValueError:
            raise QueryError("query parameters s, l and a must be integers") from None
        if start < 0 or limit < 0 or (after is not None and after < 0):
            raise QueryError("query parameters s, l and a must not be negative")
        return cls(start, min(limit, max_limit), after)

    @property
    def end(self) -> int:
        """One past the index of the last item this query may return."""
        return self.start + self.limit

    def window(self, items: Sequence[T]) -> Sequence[T]:
        """The items of ``items`` (the whole list, as ``a`` selected it) this query returns."""
        return items[self.start : self.end]


__all__ = ["DEFAULT_LIMIT", "MAX_LIMIT", "ListQuery", "QueryError"]
