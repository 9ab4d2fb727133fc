"""OBIS codes (IEC 62056-61): the six value groups A-B:C.D.E*F that name every quantity.

A = medium (1 electricity, 7 gas, 8 water, 0 abstract), B = channel, C = quantity
(1 = active power +, 2 = active power -), D = processing (7 instantaneous, 8 time
integral 1 = register), E = tariff, F = historical value (255 = current, usually omitted).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_OBIS_RE = re.compile(r"^\s*(\d{1,3})-(\d{1,3}):(\d{1,3})\.(\d{1,3})\.(\d{1,3})(?:[.*&](\d{1,3}))?\s*$")


@dataclass(frozen=True, slots=True, order=True)
class ObisCode:
    """One OBIS code. Formats as ``A-B:C.D.E`` and appends ``*F`` only when F is not 255."""

    a: int
    b: int
    c: int
    d: int
    e: int
    f: int = 255
    # The hash, made once: codes are dictionary keys on every decode (a DSMR telegram looks up
    # ~70), and the generated __hash__ built and hashed a 6-tuple on each (issue 17).
    _hash: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("a", "b", "c", "d", "e", "f"):
            v = getattr(self, name)
            if not 0 <= v <= 255:
                raise ValueError(f"OBIS value group {name.upper()}={v} is outside 0..255")
        object.__setattr__(self, "_hash", hash((self.a, self.b, self.c, self.d, self.e, self.f)))

    def __hash__(self) -> int:
        return self._hash

    @classmethod
    def parse(cls, text: str) -> ObisCode:
        """Parse ``1-0:1.8.0``, ``1-0:1.8.0.255`` or ``1-0:1.8.0*255``."""
        m = _OBIS_RE.match(text)
        if m is None:
            raise ValueError(f"not an OBIS code: {text!r} (expected A-B:C.D.E or A-B:C.D.E*F)")
        a, b, c, d, e, f = m.groups()
        return cls(int(a), int(b), int(c), int(d), int(e), 255 if f is None else int(f))

    @classmethod
    def from_bytes(cls, raw: bytes) -> ObisCode:
        """The 6-byte logical name used by DLMS/COSEM."""
        if len(raw) != 6:
            raise ValueError(f"an OBIS logical name is 6 bytes, got {len(raw)}")
        return cls(*raw)

    def to_bytes(self) -> bytes:
        return bytes((self.a, self.b, self.c, self.d, self.e, self.f))

    def __str__(self) -> str:
        base = f"{self.a}-{self.b}:{self.c}.{self.d}.{self.e}"
        return base if self.f == 255 else f"{base}*{self.f}"


# The codes the platform uses by name (DESIGN.md section 4).
IMPORT_ACTIVE_ENERGY = ObisCode(1, 0, 1, 8, 0)
EXPORT_ACTIVE_ENERGY = ObisCode(1, 0, 2, 8, 0)
IMPORT_ACTIVE_POWER = ObisCode(1, 0, 1, 7, 0)
EXPORT_ACTIVE_POWER = ObisCode(1, 0, 2, 7, 0)
GAS_VOLUME = ObisCode(7, 0, 3, 0, 0)
WATER_VOLUME = ObisCode(8, 0, 1, 0, 0)
HOT_WATER_VOLUME = ObisCode(9, 0, 1, 0, 0)
HEAT_ENERGY = ObisCode(6, 0, 1, 0, 0)
# Heat-cost allocator units (EN 834; OBIS medium 4, EN 13757-1 / IEC 62056-6-1 §7.2): a
# dimensionless count since the allocator's set day.
HCA_UNITS = ObisCode(4, 0, 1, 0, 0)


def counts_since_set_day(obis: ObisCode) -> bool:
    """A register that restarts from zero after its set day: a heat-cost allocator's units
    (EN 834: the consumption of the billing period, frozen as the set-day value at the end of
    the set day, then counted again from zero). Its drop is a new period, not a fault."""
    return obis.a == 4
