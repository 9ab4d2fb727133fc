"""Manufacturer-specific wireless M-Bus content, driven by the data table ``wmbus_layouts.json``.

Real meters send three kinds of content outside the EN 13757-3 record grammar, and each is
an entry in the table, not code:

* manufacturer-specific VIFs (``VIF 0xFF`` + VIFEs): a quantity name per manufacturer and VIFE,
  and for status words the meaning of each bit (Kamstrup's info codes: dry, reverse, leak, burst);
* compact frames (EN 13757-3 CI 0x79, Kamstrup): the record headers (DIF/VIF sequences) of the
  full frames whose *format signature* a compact frame names. The signature is the
  CRC-16/EN-13757 of the header bytes, computed here from the headers, never typed in;
* manufacturer-specific payloads: after a manufacturer CI (0xA0-0xB7: Techem, Apator 08), or
  the whole application data after a standard transport header and its ``2F`` fillers (Apator
  16-2 sends its registers under CI 0x7A, encrypted in mode 5): either fields at fixed offsets
  or a register walk (one id byte, a size per id). Each field becomes an
  :class:`~smarthub.meters.mbus.Record` with an EN 13757-3 quantity and storage number, so the
  keys and the mapping table treat it like any record
  (``heat_cost_allocator:hca_units/s1`` is the set-day value whatever the meter's make).

The table is loaded once (``WMBusLayouts.default()``); ``WMBusLayouts.load(path)`` reads another.
Field encodings (EN 13757-3 has no name for these; each is the manufacturer's):

``uint16`` / ``uint32``  little-endian unsigned, scaled by ``10**exponent`` and divided by ``divisor``
``date_dmy16``           16-bit little-endian: day bits 0-4, month bits 5-8, year-2000 bits 9-14
``date_dm16_after``      day bits 4-8, month bits 9-12; the year is the first after the date at
                         ``reference`` (a current date follows its set day)
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Context, Decimal
from pathlib import Path
from typing import Any

from smarthub.meters import mbus
from smarthub.meters.errors import TruncatedFrame, UnknownLayout

__all__ = ["Layout", "LayoutError", "ManufacturerVif", "WMBusLayouts", "format_signature"]

PROTOCOL = "wmbus"
_EXACT = Context(prec=28)
_ENCODINGS = {"uint16": 2, "uint32": 4, "date_dmy16": 2, "date_dm16_after": 2}


class LayoutError(ValueError):
    """The layout table itself is malformed."""


def _crc16(data: bytes) -> int:
    from smarthub.meters.wmbus import crc16  # one CRC implementation; imported late (no cycle)

    return crc16(data)


def format_signature(headers: bytes) -> int:
    """Kamstrup / EN 13757-3 compact-frame format signature: CRC-16/EN-13757 of the record
    headers (DIF, DIFEs, VIF, VIFEs of every record, in order)."""
    return _crc16(headers)


def _int(v: Any) -> int:
    if isinstance(v, bool):
        raise LayoutError(f"expected a number, got {v!r}")
    if isinstance(v, int):
        return v
    if isinstance(v, str):
        return int(v, 0)
    raise LayoutError(f"expected a number, got {v!r}")


@dataclass(frozen=True, slots=True)
class ManufacturerVif:
    manufacturer: str
    vife: tuple[int, ...]
    quantity: str
    bits: tuple[tuple[int, str], ...] = ()

    def flags(self, raw: object) -> frozenset[str]:
        if not isinstance(raw, int):
            return frozenset()
        return frozenset(name for mask, name in self.bits if raw & mask)


@dataclass(frozen=True, slots=True)
class _Field:
    offset: int
    encoding: str
    quantity: str
    storage: int = 0
    exponent: int = 0
    divisor: int = 1
    unit: str | None = None
    reference: int | None = None


@dataclass(frozen=True, slots=True)
class Layout:
    """One manufacturer payload layout, selected by manufacturer, CI, device type and version."""

    name: str
    manufacturer: str
    ci: frozenset[int]
    device_types: frozenset[int]
    versions: frozenset[int]
    medium: int | None
    fields: tuple[_Field, ...] = ()
    skip: int = 0
    end: int | None = None
    sizes: Mapping[int, int] = field(default_factory=dict)
    named: Mapping[int, _Field] = field(default_factory=dict)

    def records(self, data: bytes, base: int = 0) -> tuple[mbus.Record, ...]:
        """The records this layout finds in ``data`` (the bytes after a manufacturer CI, or the
        application data after a transport header without its leading ``2F`` fillers)."""
        if self.fields:
            return tuple(_field_record(f, data, base) for f in self.fields)
        return self._walk(data, base)

    def _walk(self, data: bytes, base: int) -> tuple[mbus.Record, ...]:
        out: list[mbus.Record] = []
        i = self.skip
        n = len(data)
        if i > n:
            raise TruncatedFrame(
                PROTOCOL, f"{self.name}: {self.skip} header bytes, {n} present", offset=base + n
            )
        while i < n:
            reg = data[i]
            if reg == self.end:
                break
            size = self.sizes.get(reg)
            if size is None:
                raise UnknownLayout(
                    PROTOCOL,
                    f"{self.name}: register 0x{reg:02X} at byte {base + i} has no known size",
                    values=[f"0x{r.raw:X}" if isinstance(r.raw, int) else str(r.raw) for r in out]
                    + [data[i:].hex().upper()],
                )
            if i + 1 + size > n:
                raise TruncatedFrame(
                    PROTOCOL, f"{self.name}: register 0x{reg:02X} needs {size} bytes", offset=base + n
                )
            spec = self.named.get(reg)
            if spec is not None:
                out.append(_field_record(spec, data[i + 1 : i + 1 + size], base + i + 1))
            i += 1 + size
        return tuple(out)


def _field_record(f: _Field, data: bytes, base: int) -> mbus.Record:
    length = _ENCODINGS[f.encoding]
    if f.offset + length > len(data):
        raise TruncatedFrame(
            PROTOCOL, f"field {f.quantity} at {f.offset} needs {length} bytes", offset=base + len(data)
        )
    raw = int.from_bytes(data[f.offset : f.offset + length], "little")
    flags: set[str] = set()
    value: Decimal | date | str
    if f.encoding in ("uint16", "uint32"):
        value = Decimal(raw).scaleb(f.exponent)
        if f.divisor != 1:
            value = _EXACT.divide(value, Decimal(f.divisor))
    elif f.encoding == "date_dmy16":
        d = _date(2000 + (raw >> 9 & 0x3F), raw >> 5 & 0x0F, raw & 0x1F)
        value = d if d is not None else f"{raw:04X}"
    else:  # date_dm16_after
        day, month = raw >> 4 & 0x1F, raw >> 9 & 0x0F
        ref = f.reference if f.reference is not None else 0
        rraw = int.from_bytes(data[ref : ref + 2], "little") if ref + 2 <= len(data) else 0
        year = 2000 + (rraw >> 9 & 0x3F)
        rday, rmonth = rraw & 0x1F, rraw >> 5 & 0x0F
        if (month, day) <= (rmonth, rday):
            year += 1
        d = _date(year, month, day)
        value = d if d is not None else f"{raw:04X}"
    if isinstance(value, str):
        flags.add("invalid")
    kind_date = f.encoding.startswith("date")
    return mbus.Record(
        dif=0x0F,
        dife=(),
        vif=0x6C if kind_date else 0x7F,
        vife=(),
        coding=f.encoding,
        function="inst",
        storage=f.storage,
        tariff=0,
        subunit=0,
        quantity=f.quantity,
        unit=None if kind_date else f.unit,
        value=value,
        raw=raw,
        flags=frozenset(flags),
        offset=base + f.offset,
    )


def _date(y: int, m: int, d: int) -> date | None:
    try:
        return date(y, m, d)
    except ValueError:
        return None


class WMBusLayouts:
    """The parsed table: manufacturer VIFs, compact formats, payload layouts."""

    def __init__(
        self,
        version: str,
        vifs: Sequence[ManufacturerVif],
        formats: Sequence[tuple[str, bytes]],
        layouts: Sequence[Layout],
    ) -> None:
        self.version = version
        self._vifs = {(v.manufacturer, v.vife): v for v in vifs}
        self._vif_manufacturers = frozenset(v.manufacturer for v in vifs)
        # signature -> record headers; the manufacturer is not part of the lookup (a compact
        # frame's signature is all it carries), so a clash between two entries is refused.
        self.formats: dict[int, bytes] = {}
        for _mfr, headers in formats:
            sig = format_signature(headers)
            if sig in self.formats and self.formats[sig] != headers:
                raise LayoutError(f"two compact formats share the signature 0x{sig:04X}")
            self.formats[sig] = headers
        self.layouts = tuple(layouts)
        self._by_manufacturer: dict[str, list[Layout]] = {}
        for lay in self.layouts:
            self._by_manufacturer.setdefault(lay.manufacturer, []).append(lay)

    # -- lookups ----------------------------------------------------------------------------
    def has_vifs(self, manufacturer: str) -> bool:
        return manufacturer in self._vif_manufacturers

    def has_layouts(self, manufacturer: str) -> bool:
        return manufacturer in self._by_manufacturer

    def vif(self, manufacturer: str, vife: Sequence[int]) -> ManufacturerVif | None:
        return self._vifs.get((manufacturer, tuple(e & 0x7F for e in vife)))

    def layout(self, manufacturer: str, ci: int, device_type: int, version: int) -> Layout | None:
        for lay in self._by_manufacturer.get(manufacturer, ()):
            if ci in lay.ci and device_type in lay.device_types and version in lay.versions:
                return lay
        return None

    # -- loading ----------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WMBusLayouts:
        try:
            version = str(data["version"])
            vifs = [
                ManufacturerVif(
                    str(v["manufacturer"]),
                    tuple(_int(e) & 0x7F for e in v["vife"]),
                    str(v["quantity"]),
                    tuple(sorted((_int(k), str(n)) for k, n in v.get("bits", {}).items())),
                )
                for v in data.get("manufacturer_vifs", [])
            ]
            formats = [
                (str(f["manufacturer"]), bytes.fromhex(str(f["records"])))
                for f in data.get("compact_formats", [])
            ]
            layouts = [_layout(e) for e in data.get("layouts", [])]
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise LayoutError(f"wM-Bus layout table: {err}") from None
        for headers in (h for _, h in formats):
            _check_headers(headers)
        return cls(version, vifs, formats, layouts)

    @classmethod
    def load(cls, path: Path | str) -> WMBusLayouts:
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))

    @classmethod
    def default(cls) -> WMBusLayouts:
        global _DEFAULT
        if _DEFAULT is None:
            text = (_METERS / "wmbus_layouts.json").read_text(encoding="utf-8")
            _DEFAULT = cls.from_dict(json.loads(text))
        return _DEFAULT


_DEFAULT: WMBusLayouts | None = None


def _field(e: Mapping[str, Any]) -> _Field:
    encoding = str(e["encoding"])
    if encoding not in _ENCODINGS:
        raise LayoutError(f"unknown field encoding {encoding!r}")
    divisor = _int(e.get("divisor", 1))
    if divisor < 1:
        raise LayoutError("divisor must be positive")
    return _Field(
        offset=_int(e.get("offset", 0)),
        encoding=encoding,
        quantity=str(e["quantity"]),
        storage=_int(e.get("storage", 0)),
        exponent=_int(e.get("exponent", 0)),
        divisor=divisor,
        unit=str(e["unit"]) if "unit" in e else None,
        reference=_int(e["reference"]) if "reference" in e else None,
    )


def _layout(e: Mapping[str, Any]) -> Layout:
    regs = e.get("registers")
    medium = e.get("medium")
    common: dict[str, Any] = {
        "name": str(e["name"]),
        "manufacturer": str(e["manufacturer"]),
        "ci": frozenset(_int(c) for c in e["ci"]),
        "device_types": frozenset(_int(c) for c in e["device_types"]),
        "versions": frozenset(_int(c) for c in e["versions"]),
        "medium": None if medium is None else _int(medium),
    }
    if regs is not None:
        return Layout(
            **common,
            skip=_int(regs.get("skip", 0)),
            end=_int(regs["end"]) if "end" in regs else None,
            sizes={_int(k): _int(v) for k, v in regs["sizes"].items()},
            named={_int(k): _field(v) for k, v in regs.get("named", {}).items()},
        )
    fields = tuple(_field(f) for f in e["fields"])
    if not fields:
        raise LayoutError(f"layout {common['name']!r} has no fields")
    return Layout(**common, fields=fields)


def _check_headers(headers: bytes) -> None:
    """A compact format must be whole record headers of fixed-length codings."""
    try:
        compact_lengths(headers)
    except ValueError as err:
        raise LayoutError(f"compact format {headers.hex().upper()}: {err}") from None


def compact_lengths(headers: bytes) -> list[tuple[bytes, int]]:
    """Split record headers into ``(header, value length)`` pairs (EN 13757-3 DIF codings).

    Raises ``ValueError`` for headers that cannot describe a compact frame (variable-length
    or special DIFs, plain-text VIFs, a chain running past the end)."""
    out: list[tuple[bytes, int]] = []
    i, n = 0, len(headers)
    while i < n:
        start = i
        dif = headers[i]
        i += 1
        low = dif & 0x0F
        if low in (0x0D, 0x0F) or dif == 0x2F:
            raise ValueError(f"DIF 0x{dif:02X} has no fixed length")
        ext = dif & 0x80
        while ext:
            if i >= n:
                raise ValueError("DIFE chain runs past the end")
            ext = headers[i] & 0x80
            i += 1
        if i >= n:
            raise ValueError("header ends before its VIF")
        vif = headers[i]
        i += 1
        if vif & 0x7F == 0x7C:
            raise ValueError("plain-text VIF")
        ext = vif & 0x80
        while ext:
            if i >= n:
                raise ValueError("VIFE chain runs past the end")
            ext = headers[i] & 0x80
            i += 1
        out.append((bytes(headers[start:i]), _LENGTHS[low]))
    return out


_LENGTHS = (0, 1, 2, 3, 4, 4, 6, 8, 0, 1, 2, 3, 4, -1, 6, -1)


# Read beside the module rather than through importlib.resources, which with zipfile costs a hub
# ~1.5 MB of its 64 (issue 17); the package is installed as files.
_METERS = Path(__file__).resolve().parent
