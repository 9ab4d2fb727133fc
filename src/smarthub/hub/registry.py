"""The hub's meter registry: which meters belong to this home (HAN pairing and asset changes).

A radio receiver hears the neighbours' meters too: a wireless M-Bus or ZigBee frame from a
meter that was not commissioned on this hub must never be attributed to this home. Meters on
a wire (a P1 cable, an M-Bus loop, an optical head) are the home's by construction, so ports
are either *open* (every meter heard is the home's) or *closed* (only commissioned meters).
Commissioning, removal and replacement arrive as management commands; every change is kept,
so the history of a replaced meter stays attached to the home.

**Pending meters** (issue 20 item 4). A radio meter heard but not commissioned is kept as
*pending*, never as this home's: none of its readings is stored (:meth:`MeterRegistry.admit`
refuses them), but the hub notes when it was first and last heard, how many of its frames
decoded and how many could not be decrypted (no key, or a wrong one). The GDSC reads the list
with the HAN scan it sends riding on its pulls (``diagnostic.han_scan``: hubs never push) and
registers the meter once the manufacturer's shipment data and the installer's job confirm it
(:mod:`smarthub.gdsc.fleet.field_meters`): first the shipment's key (``meter.key``), then, when
the hub's next scan shows frames decoded under it — the authentication wM-Bus security modes
5 and 7 allow (EN 13757-7: the decrypted 0x2F2F check, mode 7's CMAC) — the ``meter.add`` or
``meter.replace`` that commissions it. The list is bounded (``MAX_PENDING``, the least recently
heard go first: a receiver in a block of flats hears many neighbours) and survives a restart.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from smarthub.clock import Clock
from smarthub.hub import sqlite_files
from smarthub.wan.contract.bodies import HanScan, MeterAdd, MeterRemove, MeterReplace

RADIO_PROTOCOLS = frozenset({"wmbus", "zigbee"})

SCHEMA = sqlite_files.Schema(
    "meter registry",
    [
        # 1: when versions began (IF NOT EXISTS adopts an unversioned file)
        "CREATE TABLE IF NOT EXISTS meters (meter TEXT PRIMARY KEY, protocol TEXT NOT NULL,"
        " fuel TEXT NOT NULL, added INTEGER NOT NULL, removed INTEGER, replaced_by TEXT);",
        # 2: meters heard but not commissioned (pending: see the module docstring)
        "CREATE TABLE pending (meter TEXT PRIMARY KEY, protocol TEXT NOT NULL, first_heard INTEGER NOT NULL,"
        " last_heard INTEGER NOT NULL, decoded INTEGER NOT NULL, undecrypted INTEGER NOT NULL);",
    ],
)
MAX_PENDING = 256  # pending meters kept (the least recently heard are dropped first)
PERSIST_EVERY = (
    900  # seconds: a pending meter's counts are written at most this often (and on change of kind)
)


@dataclass(frozen=True, slots=True)
class MeterEntry:
    meter: str
    protocol: str
    fuel: str
    added: int
    removed: int | None
    replaced_by: str | None


class MeterRegistry:
    def __init__(self, path: Path | str, clock: Clock) -> None:
        self.clock = clock
        self._file = sqlite_files.open_database(path, SCHEMA)
        self._db, self._lock = self._file.connection, self._file.lock
        self._active: set[str] = set()
        self._reload()
        self.heard: dict[str, tuple[str, datetime, int]] = {}  # meter → (protocol, last heard, frames)
        self.rejected: dict[str, int] = {}
        # meter → [protocol, first heard, last heard, decoded, undecrypted, last written] (epoch s)
        self._pending: dict[str, list[Any]] = {}
        with self._lock:
            for row in self._db.execute("SELECT * FROM pending"):
                self._pending[row[0]] = [*row[1:], row[3]]

    def _reload(self) -> None:
        with self._lock:
            self._active = {m for (m,) in self._db.execute("SELECT meter FROM meters WHERE removed IS NULL")}

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def entries(self) -> list[MeterEntry]:
        with self._lock:
            return [
                MeterEntry(*row) for row in self._db.execute("SELECT * FROM meters ORDER BY added, meter")
            ]

    def is_active(self, meter: str) -> bool:
        return meter in self._active

    def admit(self, meter: str, protocol: str, when: datetime) -> bool:
        """Whether a point from ``meter`` heard on ``protocol`` is this home's (noting that it was heard)."""
        _, _, frames = self.heard.get(meter, (protocol, when, 0))
        self.heard[meter] = (protocol, when, frames + 1)
        if protocol not in RADIO_PROTOCOLS or meter in self._active:
            return True
        self.rejected[meter] = self.rejected.get(meter, 0) + 1
        self._note(meter, protocol, when, decoded=1)
        return False

    def note_undecrypted(self, meter: str, protocol: str, when: datetime) -> None:
        """A frame of ``meter`` that could not be decrypted (no key, or a wrong one): pending
        if the meter is not commissioned."""
        if meter not in self._active:
            self._note(meter, protocol, when, undecrypted=1)

    def _note(
        self, meter: str, protocol: str, when: datetime, decoded: int = 0, undecrypted: int = 0
    ) -> None:
        t = int(when.timestamp())
        entry = self._pending.get(meter)
        write = entry is None or (decoded and not entry[3]) or t - entry[5] >= PERSIST_EVERY
        if entry is None:
            entry = self._pending[meter] = [protocol, t, t, 0, 0, t]
        entry[2], entry[3], entry[4] = t, entry[3] + decoded, entry[4] + undecrypted
        if len(self._pending) > MAX_PENDING:
            oldest = min(self._pending, key=lambda m: self._pending[m][2])
            del self._pending[oldest]
            with self._lock:
                self._db.execute("DELETE FROM pending WHERE meter = ?", (oldest,))
            if oldest == meter:
                return
        if write:  # first heard, first decoded, or a while since: bounded writes per meter
            entry[5] = t
            with self._lock:
                self._db.execute(
                    "INSERT OR REPLACE INTO pending VALUES (?, ?, ?, ?, ?, ?)", (meter, *entry[:5])
                )

    def pending(self) -> list[dict[str, Any]]:
        """The meters heard but not commissioned, by meter id (see the module docstring)."""
        return [
            {
                "meter": m,
                "protocol": e[0],
                "first_heard": e[1],
                "last_heard": e[2],
                "decoded": e[3],
                "undecrypted": e[4],
            }
            for m, e in sorted(self._pending.items())
            if m not in self._active
        ]

    def add(self, meter: str, protocol: str, fuel: str) -> MeterEntry:
        now = int(self.clock.now().timestamp())
        with self._lock:
            self._db.execute(
                "INSERT INTO meters VALUES (?, ?, ?, ?, NULL, NULL) ON CONFLICT(meter) DO UPDATE SET"
                " protocol=excluded.protocol, fuel=excluded.fuel, added=excluded.added,"
                " removed=NULL, replaced_by=NULL",
                (meter, protocol, fuel, now),
            )
            self._db.execute("DELETE FROM pending WHERE meter = ?", (meter,))
        self._pending.pop(meter, None)
        self._reload()
        return MeterEntry(meter, protocol, fuel, now, None, None)

    def remove(self, meter: str, replaced_by: str | None = None) -> None:
        if meter not in self._active:
            raise KeyError(f"meter {meter!r} is not commissioned on this hub")
        with self._lock:
            self._db.execute(
                "UPDATE meters SET removed=?, replaced_by=? WHERE meter=?",
                (int(self.clock.now().timestamp()), replaced_by, meter),
            )
        self._reload()

    def scan(self) -> list[dict[str, Any]]:
        """What the HAN hears: each meter's protocol, last frame, frame count, and whether it is ours."""
        return [
            {
                "meter": m,
                "protocol": p,
                "last_heard": t.isoformat(),
                "frames": n,
                "commissioned": m in self._active,
                # on a wire the meter is the home's by construction; on a radio only if commissioned
                "ours": p not in RADIO_PROTOCOLS or m in self._active,
                "rejected": self.rejected.get(m, 0),
            }
            for m, (p, t, n) in sorted(self.heard.items())
        ]


def registry_commands(registry: MeterRegistry) -> dict[str, Any]:
    """Management commands for pairing, removal and replacement of meters, and the HAN scan."""

    def add(body: MeterAdd) -> dict[str, Any]:
        e = registry.add(body.meter, body.protocol, body.fuel)
        return {"meter": e.meter, "protocol": e.protocol, "commissioned": True}

    def remove(body: MeterRemove) -> dict[str, Any]:
        registry.remove(body.meter)
        return {"meter": body.meter, "commissioned": False}

    def replace(body: MeterReplace) -> dict[str, Any]:
        old, new = body.old, body.new
        registry.add(new, body.protocol, body.fuel)
        registry.remove(old, replaced_by=new)
        return {"old": old, "new": new}

    def scan(body: HanScan) -> dict[str, Any]:
        return {"heard": registry.scan(), "pending": registry.pending()}

    return {"meter.add": add, "meter.remove": remove, "meter.replace": replace, "diagnostic.han_scan": scan}
