"""List profiles of DLMS/COSEM HAN pushes, as data (``smarthub/meters/list_profiles.json``).

Meters on Nordic and Austrian HAN ports push lists that leave things out: Kamstrup sends OBIS
codes without scaler or unit, Kaifa's Norwegian lists (``KFM_001``) send bare values by position
with no OBIS code at all. What the values mean is in the maker's published list layout; this
module reads those layouts from a JSON table so that a new meter model is a table entry, not
code. A profile is chosen by the list identifier the frame carries (``Kamstrup_V0001``,
``KFM_001``, or none) and, for positional lists, the number of elements.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from smarthub.model.obis import ObisCode

ROLES = frozenset({"identifier", "serial", "model", "clock"})


class ProfileError(ValueError):
    """A list-profile table that is malformed."""


@dataclass(frozen=True, slots=True)
class Position:
    """One element of a positional list: its OBIS code, scaler (power of ten) and unit, or the
    role it plays (the list identifier, the meter's serial or model, its clock)."""

    obis: ObisCode
    unit: str | None = None
    scaler: int = 0
    role: str | None = None


@dataclass(frozen=True, slots=True)
class UnitSpec:
    """Scaler and unit of an OBIS code the list carries without them; ``as_obis`` renames it."""

    unit: str | None
    scaler: int = 0
    as_obis: ObisCode | None = None


@dataclass(frozen=True, slots=True)
class ListProfile:
    name: str
    identifier: str | None
    length: int | None = None
    positions: tuple[Position, ...] | None = None
    units: Mapping[ObisCode, UnitSpec] | None = None
    source: str = ""


class ListProfiles:
    def __init__(
        self,
        profiles: Sequence[ListProfile],
        *,
        version: str = "0",
        serial_obis: Sequence[ObisCode] = (),
        clock_obis: Sequence[ObisCode] = (),
        trailing_string_is_serial: bool = False,
    ) -> None:
        self.version = version
        self.profiles = tuple(profiles)
        self.serial_obis = tuple(serial_obis)
        self.clock_obis = frozenset(clock_obis)
        self.trailing_string_is_serial = trailing_string_is_serial
        self._positional: dict[tuple[str | None, int], ListProfile] = {}
        self._units: dict[str, ListProfile] = {}
        for p in self.profiles:
            if p.positions is not None:
                key = (p.identifier, len(p.positions))
                if key in self._positional:
                    raise ProfileError(f"two positional profiles for {key}")
                self._positional[key] = p
            if p.units is not None and p.identifier is not None:
                self._units[p.identifier] = p

    def positional(self, identifier: str | None, length: int) -> ListProfile | None:
        return self._positional.get((identifier, length))

    def units(self, identifier: str | None) -> ListProfile | None:
        return self._units.get(identifier) if identifier is not None else None

    def knows(self, identifier: str) -> bool:
        return identifier in self._units or any(k[0] == identifier for k in self._positional)

    # -- loading ---------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ListProfiles:
        try:
            profiles = [_profile(i, p) for i, p in enumerate(data["profiles"])]
            return cls(
                profiles,
                version=str(data.get("version", "0")),
                serial_obis=[ObisCode.parse(s) for s in data.get("serial_obis", [])],
                clock_obis=[ObisCode.parse(s) for s in data.get("clock_obis", [])],
                trailing_string_is_serial=bool(data.get("trailing_string_is_serial", False)),
            )
        except (KeyError, TypeError, ValueError) as err:
            if isinstance(err, ProfileError):
                raise
            raise ProfileError(f"list profiles: {err}") from None

    @classmethod
    def load(cls, path: Path | str) -> ListProfiles:
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))

    @classmethod
    def default(cls) -> ListProfiles:
        global _DEFAULT
        if _DEFAULT is None:
            text = SHIPPED.read_text(encoding="utf-8")
            _DEFAULT = cls.from_dict(json.loads(text))
        return _DEFAULT


_DEFAULT: ListProfiles | None = None
# Read beside the module rather than through importlib.resources, which with zipfile costs a hub
# ~1.5 MB of its 64 (issue 17); the package is installed as files.
SHIPPED = Path(__file__).resolve().parents[1] / "list_profiles.json"  # the shipped profiles


def _profile(i: int, p: Mapping[str, Any]) -> ListProfile:
    name = str(p.get("name", f"profile {i}"))
    ident = p.get("identifier")
    if ident is not None and not isinstance(ident, str):
        raise ProfileError(f"profile {name!r}: identifier must be a string or null")
    positions = None
    if "positions" in p:
        positions = tuple(_position(name, q) for q in p["positions"])
        if "length" in p and int(p["length"]) != len(positions):
            raise ProfileError(f"profile {name!r}: length {p['length']} but {len(positions)} positions")
    units = None
    if "units" in p:
        units = {
            ObisCode.parse(k): UnitSpec(
                v.get("unit"),
                int(v.get("scaler", 0)),
                ObisCode.parse(v["as"]) if "as" in v else None,
            )
            for k, v in p["units"].items()
        }
    if positions is None and units is None:
        raise ProfileError(f"profile {name!r} has neither 'positions' nor 'units'")
    return ListProfile(
        name, ident, len(positions) if positions else None, positions, units, str(p.get("source", ""))
    )


def _position(name: str, q: Mapping[str, Any]) -> Position:
    role = q.get("role")
    if role is not None and role not in ROLES:
        raise ProfileError(f"profile {name!r}: unknown role {role!r}; one of {', '.join(sorted(ROLES))}")
    return Position(ObisCode.parse(str(q["obis"])), q.get("unit"), int(q.get("scaler", 0)), role)
