"""The translation table: protocol data point → OBIS code, unit and scaling, as data.

The table is versioned JSON (or YAML), shipped as ``mapping_default.json`` and replaceable
at run time: the hub swaps in a newer version without a restart and refuses an older or
equal one (so a replayed or out-of-order update cannot roll the table back). Protocols that
name their values by OBIS natively (DSMR, DLMS/COSEM, and IEC 62056-21 lines written with
A-B) pass through unchanged unless an entry overrides them. A point the table cannot
translate — unknown key, non-numeric value, incompatible unit — is returned as *unmapped*,
with the reason, for the hub to keep raw and flag; nothing is dropped.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from smarthub.model import ObisCode, Quality, Reading, Unit
from smarthub.model.datapoint import PROTOCOLS, DataPoint
from smarthub.model.reading import BASE_UNIT


class MappingError(ValueError):
    """A mapping table that is malformed, or an update that is not newer than the current one."""


@dataclass(frozen=True, slots=True)
class MappingEntry:
    protocol: str
    key: str
    obis: ObisCode
    unit: Unit
    scale: Decimal = Decimal(1)


@dataclass(frozen=True, slots=True)
class Unmapped:
    point: DataPoint
    reason: str


@dataclass
class Translation:
    readings: list[Reading] = field(default_factory=list)
    unmapped: list[Unmapped] = field(default_factory=list)
    ignored: int = 0


def parse_version(text: str) -> tuple[int, ...]:
    try:
        parts = tuple(int(p) for p in text.split("."))
    except ValueError:
        raise MappingError(f"version must be dot-separated integers, got {text!r}") from None
    if not parts:
        raise MappingError("empty version")
    return parts


# Flags that make a value less than measured-and-valid, and flags that only describe it.
_FLAG_DOUBT = {"estimated": Quality.ESTIMATED_LINEAR_INTERPOLATION, "error": Quality.QUESTIONABLE}
_FLAG_NOTE = {"derived": Quality.DERIVED}


class MappingTable:
    def __init__(
        self,
        version: str,
        entries: Iterable[MappingEntry],
        obis_native: Iterable[str] = (),
        ignored: Mapping[tuple[str, str], str] | None = None,
    ) -> None:
        self.version = version
        # Points the table knows and deliberately does not turn into readings (the meter's
        # serial, its clock, scaling attributes the codec has already applied), with why.
        self.ignored = dict(ignored or {})
        self.version_key = parse_version(version)
        self.entries: dict[tuple[str, str], MappingEntry] = {}
        for e in entries:
            if (e.protocol, e.key) in self.entries:
                raise MappingError(f"duplicate mapping for {e.protocol} {e.key!r}")
            self.entries[(e.protocol, e.key)] = e
        self.obis_native = frozenset(obis_native)

    # -- loading ----------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MappingTable:
        if not isinstance(data, Mapping):
            raise MappingError("a mapping table is an object with 'version' and 'entries'")
        version = data.get("version")
        if not isinstance(version, str):
            raise MappingError("mapping table has no string 'version'")
        raw_entries = data.get("entries")
        if not isinstance(raw_entries, list):
            raise MappingError("mapping table has no 'entries' list")
        entries = []
        ignored: dict[tuple[str, str], str] = {}
        for i, e in enumerate(raw_entries):
            try:
                protocol = str(e["protocol"])
                if protocol not in PROTOCOLS:
                    raise MappingError(f"unknown protocol {protocol!r}")
                if "ignore" in e:
                    ignored[(protocol, str(e["key"]))] = str(e["ignore"])
                    continue
                entries.append(
                    MappingEntry(
                        protocol,
                        str(e["key"]),
                        ObisCode.parse(str(e["obis"])),
                        Unit.parse(str(e["unit"])),
                        Decimal(str(e.get("scale", 1))),
                    )
                )
            except (KeyError, TypeError, ValueError, InvalidOperation) as err:
                raise MappingError(f"entry {i}: {err}") from None
        native = data.get("obis_native", [])
        if not isinstance(native, list) or any(p not in PROTOCOLS for p in native):
            raise MappingError("'obis_native' must list known protocols")
        return cls(version, entries, native, ignored)

    @classmethod
    def from_text(cls, text: str, *, yaml: bool = False) -> MappingTable:
        try:
            if yaml:
                import yaml as pyyaml

                data = pyyaml.safe_load(text)
            else:
                data = json.loads(text)
        except Exception as err:  # json and yaml raise different types; both mean "not parseable"
            raise MappingError(f"mapping table is not valid {'YAML' if yaml else 'JSON'}: {err}") from None
        return cls.from_dict(data)

    @classmethod
    def load(cls, path: Path | str) -> MappingTable:
        p = Path(path)
        return cls.from_text(p.read_text(encoding="utf-8"), yaml=p.suffix.lower() in (".yaml", ".yml"))

    @classmethod
    def default(cls) -> MappingTable:
        # Beside this module, not through importlib.resources (with zipfile ~1.5 MB of a hub's 64).
        text = Path(__file__).with_name("mapping_default.json").read_text(encoding="utf-8")
        return cls.from_text(text)

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "obis_native": sorted(self.obis_native),
            "entries": [
                {
                    "protocol": e.protocol,
                    "key": e.key,
                    "obis": str(e.obis),
                    "unit": e.unit.value,
                    "scale": str(e.scale),
                }
                for e in self.entries.values()
            ],
        }

    def check_upgrade(self, new: MappingTable) -> None:
        if new.version_key <= self.version_key:
            raise MappingError(f"mapping update {new.version} is not newer than the current {self.version}")

    # -- translating ---------------------------------------------------------------------
    def translate(self, points: Iterable[DataPoint], received: datetime) -> Translation:
        """Readings for the points the table knows; the others, with the reason, as unmapped."""
        out = Translation()
        for p in points:
            if (p.protocol, p.key) in self.ignored:
                out.ignored += 1
                continue
            reading_or_reason = self._one(p, received)
            if isinstance(reading_or_reason, Reading):
                out.readings.append(reading_or_reason)
            else:
                out.unmapped.append(Unmapped(p, reading_or_reason))
        return out

    def _one(self, p: DataPoint, received: datetime) -> Reading | str:
        entry = self.entries.get((p.protocol, p.key))
        if entry is None and p.protocol in self.obis_native:
            try:
                obis = ObisCode.parse(p.key) if "-" in p.key else None
            except ValueError:
                obis = None
            if obis is not None and p.unit is not None:
                try:
                    entry = MappingEntry(p.protocol, p.key, obis, Unit.parse(p.unit))
                except ValueError:
                    return f"unknown unit {p.unit!r}"
        if entry is None:
            return "no mapping for this key"
        if not isinstance(p.value, Decimal):
            return "value is not a number"
        try:
            src = Unit.parse(p.unit) if p.unit is not None else entry.unit
        except ValueError:
            return f"unknown unit {p.unit!r}"
        src_base, src_pow = BASE_UNIT[src]
        dst_base, dst_pow = BASE_UNIT[entry.unit]
        if src_base is not dst_base:
            return f"unit {src.value!r} cannot be expressed in {entry.unit.value!r}"
        value = (p.value * entry.scale).scaleb(src_pow - dst_pow)
        doubt = Quality.NONE
        note = Quality.NONE
        for flag in p.flags:
            doubt |= _FLAG_DOUBT.get(flag, Quality.NONE)
            note |= _FLAG_NOTE.get(flag, Quality.NONE)
        quality = (doubt or Quality.VALID) | note
        return Reading(p.meter, entry.obis, value, entry.unit, p.time or received, quality=quality)
