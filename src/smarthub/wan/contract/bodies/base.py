"""What every typed command body shares: the base class and a reader that names the bad field.

A body is a frozen dataclass per command type (:data:`smarthub.wan.contract.commands.COMMAND_TYPES`)
with ``parse(body) -> Body``, which raises :class:`~smarthub.wan.contract.commands.MalformedCommand`
naming the command type and the field, and ``to_json()``, the JSON object on the wire (the
``body`` of the signed payload). ``parse(b.to_json()) == b`` for every body. Keys a body does not
know are ignored (a newer GDSC may send more), and optional keys that are absent are left absent
by ``to_json`` where the hub treats absence differently from any value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar, Self

from smarthub.wan.contract.commands import MalformedCommand


class CommandBody:
    """The body of one command type; subclasses are frozen dataclasses."""

    __slots__ = ()
    TYPE: ClassVar[str]

    @classmethod
    def parse(cls, body: Mapping[str, object]) -> Self:
        raise NotImplementedError

    def to_json(self) -> dict[str, Any]:
        raise NotImplementedError


_MISSING: Any = object()


class Fields:
    """Typed reads from one command's body; each failure a :class:`MalformedCommand` that says
    which command, which field and what was wrong."""

    def __init__(self, ctype: str, body: Mapping[str, object]) -> None:
        if not isinstance(body, Mapping):
            raise MalformedCommand(f"{ctype}: the body must be a JSON object, not {type(body).__name__}")
        self.ctype = ctype
        self.body = body

    def bad(self, key: str, what: str) -> MalformedCommand:
        return MalformedCommand(f"{self.ctype}: {key!r} {what}", field=key)

    def has(self, key: str) -> bool:
        return key in self.body

    def raw(self, key: str, default: object = _MISSING) -> object:
        if key in self.body:
            return self.body[key]
        if default is _MISSING:
            raise self.bad(key, "is missing")
        return default

    def text(self, key: str, default: str = _MISSING, *, nonempty: bool = False, max_len: int = 0) -> str:
        v = self.raw(key, default)
        if not isinstance(v, str):
            raise self.bad(key, f"must be a string, got {v!r:.80}")
        if nonempty and not v.strip():
            raise self.bad(key, "must not be empty")
        if max_len and len(v) > max_len:
            raise self.bad(key, f"must be at most {max_len} characters, got {len(v)}")
        return v

    def opt_text(self, key: str) -> str | None:
        v = self.raw(key, None)
        if v is None:
            return None
        return self.text(key)

    def integer(self, key: str, default: int = _MISSING, *, minimum: int | None = None) -> int:
        v = self.raw(key, default)
        if isinstance(v, bool) or not isinstance(v, int):
            raise self.bad(key, f"must be an integer, got {v!r:.80}")
        if minimum is not None and v < minimum:
            raise self.bad(key, f"must be at least {minimum}, got {v}")
        return v

    def opt_integer(self, key: str, *, minimum: int | None = None) -> int | None:
        if self.raw(key, None) is None:
            return None
        return self.integer(key, minimum=minimum)

    def flag(self, key: str, default: bool = _MISSING) -> bool:
        v = self.raw(key, default)
        if not isinstance(v, bool):
            raise self.bad(key, f"must be true or false, got {v!r:.80}")
        return v

    def choice(self, key: str, choices: Sequence[str], default: str = _MISSING) -> str:
        v = self.text(key, default)
        if v not in choices:
            raise self.bad(key, f"must be one of {', '.join(choices)}, got {v!r:.80}")
        return v

    def decimal(self, key: str, v: object = _MISSING) -> Decimal:
        """A number (JSON number or numeric string) as a Decimal."""
        v = self.raw(key) if v is _MISSING else v
        if isinstance(v, bool) or not isinstance(v, int | float | str):
            raise self.bad(key, f"must be a number, got {v!r:.80}")
        try:
            d = Decimal(str(v))
        except InvalidOperation:
            raise self.bad(key, f"must be a number, got {v!r:.80}") from None
        if not d.is_finite():
            raise self.bad(key, f"must be a finite number, got {v!r:.80}")
        return d

    def instant(self, key: str, *, aware: bool = True) -> datetime:
        """An ISO 8601 time (with a UTC offset when ``aware``)."""
        text = self.text(key)
        try:
            t = datetime.fromisoformat(text)
        except ValueError:
            raise self.bad(key, f"is not an ISO 8601 time: {text!r:.80}") from None
        if aware and t.tzinfo is None:
            raise self.bad(key, f"needs a UTC offset: {text!r:.80}")
        return t

    def date(self, key: str) -> date:
        text = self.text(key)
        try:
            return date.fromisoformat(text)
        except ValueError:
            raise self.bad(key, f"is not an ISO 8601 date: {text!r:.80}") from None

    def mapping(self, key: str, default: Mapping[str, object] = _MISSING) -> Mapping[str, object]:
        v = self.raw(key, default)
        if not isinstance(v, Mapping):
            raise self.bad(key, f"must be a JSON object, got {type(v).__name__}")
        return v

    def array(self, key: str, default: Sequence[object] = _MISSING) -> Sequence[object]:
        v = self.raw(key, default)
        if not isinstance(v, list | tuple):
            raise self.bad(key, f"must be a JSON array, got {type(v).__name__}")
        return v

    def hex(self, key: str, *, length: int) -> str:
        """Hex digits of exactly ``length`` characters, upper case."""
        v = self.text(key).upper()
        # (The value is not echoed: a meter key is a secret.)
        if len(v) != length or any(c not in "0123456789ABCDEF" for c in v):
            raise self.bad(key, f"must be {length} hex digits, got {len(v)} characters that are not")
        return v


LFDI_HEX = 40
FUELS = ("electricity", "gas", "water", "heat")


class NoFields(CommandBody):
    """A body that carries no field: ``{}`` on the wire (keys sent anyway are ignored)."""

    __slots__ = ()

    @classmethod
    def parse(cls, body: Mapping[str, object]) -> Self:
        Fields(cls.TYPE, body)  # still a JSON object, or refused by name
        return cls()

    def to_json(self) -> dict[str, Any]:
        return {}


@dataclass(frozen=True, slots=True)
class OnMeter(CommandBody):
    """A body that names one meter and nothing else: ``{"meter": <id>}``."""

    meter: str

    @classmethod
    def parse(cls, body: Mapping[str, object]) -> Self:
        return cls(Fields(cls.TYPE, body).text("meter", nonempty=True))

    def to_json(self) -> dict[str, Any]:
        return {"meter": self.meter}


__all__ = ["FUELS", "LFDI_HEX", "CommandBody", "Fields", "NoFields", "OnMeter"]
