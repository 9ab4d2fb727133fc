"""The Smart Hub core: data points in from HAN ports, translated, into the mirror and history.

Ports deliver protocol data points; the versioned mapping table turns them into OBIS
readings (a point it cannot translate is stored raw with the reason, never dropped, and
can be translated by a later table). Every reading updates the mirror; register readings
of the interval channels (import and export energy, gas, water and heat) also feed the
half-hourly interval builder, whose completed intervals are committed to the history
before they are counted as stored.

A full disk does not stop the hub: the history holds what it could not write in memory
(:class:`~smarthub.hub.history.StorageFull`), the hub logs the error once and raises the
diagnosed STORAGE_FULL event, and the next write that finds space stores everything held
(also tried by :meth:`SmartHub.flush_storage` from the hub's housekeeping), clearing the event.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Iterable, MutableMapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar, cast

from smarthub.clock import Clock, SystemClock
from smarthub.han.ports import HanPort, Port, PortBatch
from smarthub.hub.appliance_runs import ApplianceRuns
from smarthub.hub.delivered_keys import DeliveredKeys
from smarthub.hub.diagnostics import Diagnostics
from smarthub.hub.flood import FloodGuard
from smarthub.hub.history import HistoryStore, StorageFull
from smarthub.hub.intervals import PERIOD, RESTORED_REGISTER, IntervalBuilder, IntervalRecord
from smarthub.hub.keys import KeyRing
from smarthub.hub.mirror import DataMirror
from smarthub.hub.power_quality import PowerQuality
from smarthub.hub.registry import RADIO_PROTOCOLS, MeterRegistry
from smarthub.meters.errors import DecodeError, KeyMissing, WrongKey
from smarthub.meters.mapping import MappingTable, Unmapped
from smarthub.model import ObisCode, Reading
from smarthub.model.reading_type import interval_channels, interval_spec
from smarthub.model.register_reads import Grid, RegisterRead
from smarthub.wan.contract.bodies import MappingUpdate, MeterKey

# OBIS value group A (IEC 62056-6-1 §7.2) → the fuel a meter is registered under; the media
# of a building's sub-meters spelled as the wireless M-Bus device types (model.datapoint).
FUEL_BY_MEDIUM = {
    1: "electricity",
    4: "heat_cost_allocator",
    6: "heat",
    7: "gas",
    8: "water",
    9: "warm_water",
}

log = logging.getLogger(__name__)


@dataclass
class HubStats:
    frames_ok: int = 0
    frame_errors: int = 0
    readings: int = 0
    intervals_stored: int = 0
    unmapped: int = 0
    quarantined: int = 0
    foreign: int = 0
    storage_full: int = 0  # writes the history refused because its disk was full
    last_errors: list[str] = field(default_factory=list)
    # Per meter and per protocol, for the hub's /metrics: a meter that stopped sending, or one
    # protocol's frames going bad, is what an operator looks for (a hub has ~100 meters at most)
    readings_by_meter: dict[str, int] = field(default_factory=dict)
    last_reading: dict[str, float] = field(default_factory=dict)  # meter -> epoch s of its newest
    frame_errors_by_protocol: dict[str, int] = field(default_factory=dict)


_P = TypeVar("_P", bound=HanPort)


class SmartHub:
    def __init__(
        self,
        hub_id: str,
        history: HistoryStore,
        *,
        clock: Clock | None = None,
        mapping: MappingTable | None = None,
        diagnostics: Diagnostics | None = None,
        registry: MeterRegistry | None = None,
    ) -> None:
        self.hub_id = hub_id
        self.history = history
        self.clock = clock or SystemClock()
        self.mapping = mapping or MappingTable.default()
        self.diagnostics = diagnostics
        self.flood = FloodGuard()
        self.registry = registry
        self.mirror = DataMirror()
        self.interval_builder = IntervalBuilder()
        self.power_quality: PowerQuality | None = None  # [power_quality] enabled (assembly)
        self.appliance_runs: ApplianceRuns | None = None  # the plugs' starts and seconds run (assembly)
        self.delivered_keys: DeliveredKeys | None = None  # meter.key's keys at rest (assembly)
        # Called with the intervals just committed to the history (e.g. running cost, prepayment).
        self.interval_observers: list[Callable[[list[IntervalRecord]], None]] = []
        self.stats = HubStats()
        self.ports: dict[str, HanPort] = {}
        self.raw_latest: dict[tuple[str, str, str], Unmapped] = {}
        self._channels = interval_channels()
        self._known_meters = set(history.meters())
        self._storage_full = False
        for meter, obis in history.channels():
            last = history.last(meter, obis)
            if last is not None:
                self.interval_builder.restore(last)

    def attach(self, port: _P) -> _P:
        self.ports[port.name] = port
        return port

    def receive(self, port_name: str, data: bytes) -> list[DecodeError]:
        """Bytes from a HAN transport. Returns the decode errors (already counted)."""
        port = cast(Port, self.ports[port_name])  # bytes go to byte-stream ports only
        return self.accept(port.receive(data), port=port_name)

    def accept(
        self, batch: PortBatch, received: datetime | None = None, *, port: str = "han"
    ) -> list[DecodeError]:
        """A batch of decoded data points (from a port or a poll cycle).

        ``received`` stamps points whose frame carries no time of its own (a poll cycle
        passes the instant it polled at); by default the hub's clock. ``port`` names where the
        batch came from, for link diagnostics.
        """
        when = received or self.clock.now()
        by_protocol = self.stats.frame_errors_by_protocol
        for err in batch.errors:
            self.stats.frame_errors += 1
            by_protocol[err.protocol] = by_protocol.get(err.protocol, 0) + 1
            self.stats.last_errors = [*self.stats.last_errors[-9:], str(err)]
        if self.registry is not None:
            # A radio hears the neighbours' meters: keep only this home's (see hub.registry). A
            # frame of a meter not commissioned that could not be decrypted makes it pending.
            registry = self.registry
            for err in batch.errors:
                if isinstance(err, KeyMissing | WrongKey) and (meter := getattr(err, "meter", None)):
                    registry.note_undecrypted(str(meter), err.protocol, when)
            batch, self.stats.foreign = _keep(
                batch, lambda meter, protocol: registry.admit(meter, protocol, when), self.stats.foreign
            )
        if self.diagnostics is not None:
            # Diagnostics watch this home's meters only (after the registry): a neighbour's meter
            # moving out of range, or one whose key we never had, is no fault of ours.
            errors = [e for e in batch.errors if self._ours(e)]
            if errors:
                self.diagnostics.observe_errors(port, errors, when)
            if batch.points:
                self.diagnostics.observe_points(
                    port, batch.points, when, rssi_dbm=batch.rssi_dbm, sensitivity_dbm=batch.sensitivity_dbm
                )
        batch, self.stats.quarantined = _keep(
            batch, lambda meter, protocol: self.flood.admit(meter, when), self.stats.quarantined
        )
        if batch.points:
            self.stats.frames_ok += 1
            translation = self.mapping.translate(batch.points, when)
            if translation.unmapped:
                self.stats.unmapped += len(translation.unmapped)
                try:
                    self.history.append_raw(translation.unmapped, when)
                    self._storage(None)
                except StorageFull as err:  # held in memory by the history
                    self._storage(err)
                for u in translation.unmapped:
                    self.raw_latest[(u.point.meter, u.point.protocol, u.point.key)] = u
            self.ingest(translation.readings)
        return batch.errors

    def _ours(self, err: DecodeError) -> bool:
        """Whether a decode error may concern this home: an error naming a radio meter that is
        not commissioned here (a neighbour's frame we cannot decrypt) does not."""
        meter = getattr(err, "meter", None)
        if self.registry is None or meter is None or err.protocol not in RADIO_PROTOCOLS:
            return True
        return self.registry.is_active(meter)

    def command_handlers(self) -> dict[str, Callable[[Any], dict[str, Any]]]:
        """Management commands this hub core executes (see :mod:`smarthub.hub.management`)."""

        def mapping_update(body: MappingUpdate) -> dict[str, Any]:
            table = MappingTable.from_dict(body.table)
            self.load_mapping(table)
            return {"version": table.version}

        def meter_key(body: MeterKey) -> dict[str, Any]:
            """Install a meter's new key: at once (the key it replaces is kept to fall back on),
            or with ``"pending": true`` staged for the re-key repair to adopt once the meter's
            frames show it has switched. Written to :attr:`delivered_keys` first (the GDSC
            sends it once), so that it is installed again after a restart."""
            meter, key, pending = body.meter, body.key, body.pending
            stores = self._key_stores(pending)
            if self.delivered_keys is not None:
                self.delivered_keys.record(meter, key, pending)
            _install(stores, meter, key, pending)
            return {"meter": meter, "ports": len(stores), "pending": pending}

        return {"mapping.update": mapping_update, "meter.key": meter_key}

    def _key_stores(self, pending: bool) -> list[MutableMapping[str, Any]]:
        """The ports' meter key stores a ``meter.key`` goes to (every port that holds keys)."""
        stores = [k for p in self.ports.values() if isinstance(k := getattr(p, "keys", None), MutableMapping)]
        if not stores:
            raise ValueError("no port on this hub holds meter keys")
        if pending and not all(isinstance(s, KeyRing) for s in stores):
            raise ValueError("a pending key needs ports that keep a key ring")
        return stores

    def restore_delivered_keys(self) -> int:
        """Install the keys ``meter.key`` delivered before this start, over the configured ones
        (precedence: :mod:`smarthub.hub.delivered_keys`); how many were installed."""
        if self.delivered_keys is None:
            return 0
        n = 0
        for d in self.delivered_keys.load():
            try:
                stores = self._key_stores(d.pending)
            except ValueError as err:  # the ports changed since (a reconfigured hub)
                log.warning(
                    "hub %s: the key delivered for meter %s is not installed: %s", self.hub_id, d.meter, err
                )
                continue
            _install(stores, d.meter, d.key, d.pending)
            n += 1
        return n

    def load_mapping(self, table: MappingTable) -> None:
        """Swap in a newer translation table at run time (refuses an older or equal version)."""
        self.mapping.check_upgrade(table)
        self.mapping = table

    def ingest(self, readings: Iterable[Reading]) -> list[IntervalRecord]:
        readings = list(readings)
        self.mirror.update(readings)
        self.stats.readings += len(readings)
        by_meter, last = self.stats.readings_by_meter, self.stats.last_reading
        for r in readings:
            by_meter[r.meter] = by_meter.get(r.meter, 0) + 1
            t = r.time.timestamp()
            if t > last.get(r.meter, 0.0):
                last[r.meter] = t
        completed: list[IntervalRecord] = []
        for r in readings:
            if r.obis not in self._channels or r.is_interval:
                continue
            spec = interval_spec(r.obis)
            base, _unit = r.in_base_unit()
            scaled = base.scaleb(-spec.power_of_ten).to_integral_value()
            if r.meter not in self._known_meters:
                self.history.add_meter(r.meter, FUEL_BY_MEDIUM.get(r.obis.a, "other"))
                self._known_meters.add(r.meter)
            completed += self.interval_builder.add(
                r.meter, r.obis, int(r.time.timestamp()), int(scaled), spec.power_of_ten
            )
        if self.power_quality is not None:
            # Voltage statistics and sag/swell counts: to the history only (the WAN serves them;
            # the consumption observers and the diagnostics' interval checks are not for them).
            quality = self.power_quality.observe(readings)
            if quality:
                try:
                    self.stats.intervals_stored += self.history.append(quality)
                except StorageFull as err:
                    self._storage(err)
        if self.appliance_runs is not None:
            # A plug's starts and seconds run per half-hour (hub.appliance_runs): to the history
            # only, like the power-quality channels (not consumption, so no observer gets them).
            runs = self.appliance_runs.observe(readings)
            if runs:
                try:
                    self.stats.intervals_stored += self.history.append(runs)
                except StorageFull as err:
                    self._storage(err)
        if completed:
            try:
                self.stats.intervals_stored += self.history.append(completed)
                self._storage(None)
            except StorageFull as err:  # held in memory by the history, written when space returns
                self._storage(err)
            for observe in self.interval_observers:
                observe(completed)
        if self.diagnostics is not None:
            self.diagnostics.observe_readings(readings)
            for record in completed:
                self.diagnostics.observe_interval(record)
        return completed

    def meters(self) -> dict[str, str]:
        return self.history.meters()

    def flush_storage(self) -> int:
        """Write what a full disk held back, if there is space now; returns intervals written."""
        if not self.history.pending and self.history.full is None:
            return 0
        try:
            written = self.history.flush()
        except StorageFull as err:
            self._storage(err)
            return 0
        self.stats.intervals_stored += written
        self._storage(None)
        return written

    def _storage(self, err: StorageFull | None) -> None:
        """Report a full history (logged once, a diagnosed event kept up to date) or its recovery."""
        was_full = self._storage_full
        self._storage_full = err is not None
        if err is not None:
            self.stats.storage_full += 1
            if not was_full:
                log.error("hub %s: %s", self.hub_id, err)
        elif was_full:
            log.warning(
                "hub %s: history %s writable again; held readings stored", self.hub_id, self.history.path
            )
        else:
            return
        if self.diagnostics is None:
            return
        numbers = {} if err is None else {"pending": err.pending, "dropped": err.dropped}
        try:
            self.diagnostics.observe_storage(
                self.history.path, None if err is None else str(err), self.clock.now(), **numbers
            )
        except sqlite3.Error as log_err:  # the event log may sit on the same full disk
            log.error("hub %s: cannot record the storage event: %s", self.hub_id, log_err)

    # -- the WAN's MeteringSource -------------------------------------------------------
    def channels(self, meter: str) -> list[ObisCode]:
        return [o for m, o in self.history.channels() if m == meter]

    def intervals(
        self,
        meter: str,
        obis: ObisCode,
        *,
        start: int | None = None,
        end: int | None = None,
        offset: int = 0,
        limit: int = 1000,
    ) -> list[IntervalRecord]:
        return self.history.query(meter, obis, start=start, end=end, offset=offset, limit=limit)

    def interval_count(
        self, meter: str, obis: ObisCode, *, start: int | None = None, end: int | None = None
    ) -> int:
        return self.history.count(meter, obis, start=start, end=end)

    def interval_days(self, meter: str, obis: ObisCode, *, start: int | None = None) -> list[int]:
        return self.history.days(meter, obis, start=start)

    def register_reads(
        self,
        meter: str,
        obis: ObisCode,
        grid: Grid,
        *,
        start: int | None = None,
        end: int | None = None,
        newest_only: bool = False,
    ) -> list[RegisterRead]:
        """The register of interval channel ``obis`` at each instant of ``grid`` in ``[start,
        end)`` for which the history knows it: the ``register_end`` of the half-hour ending
        there, the boundary value the interval builder fixed (the sample at that instant, or
        the linear interpolation between the samples either side). Nothing is stored for
        them: the half-hours already carry it, so a day's half-hours always add up to the
        advance between its two reads. A half-hour restored from the GDSC carries no register
        (``RESTORED_REGISTER``): no read there. Quality: the half-hour's (an interpolated
        boundary makes it ESTIMATED_LINEAR_INTERPOLATION)."""
        if obis not in self._channels:
            return []  # power-quality statistics are no register
        span = self.history.span(meter, obis)
        if span is None:
            return []
        lo, hi = span[0] + PERIOD, span[1] + 1  # the first and the last boundary with a register
        lo = lo if start is None else max(lo, start)
        hi = hi if end is None else min(hi, end)
        if hi <= lo:
            return []
        instants = grid(lo, hi)
        if newest_only:
            instants = instants[-40:]  # the latest boundaries (a month and more of midnights)
        rows = self.history.ending_at(meter, obis, instants, newest_only=newest_only)
        return [
            RegisterRead(r.end, r.register_end, r.quality)
            for r in rows
            if r.register_end != RESTORED_REGISTER
        ]


def _keep(batch: PortBatch, admit: Callable[[str, str], bool], dropped: int) -> tuple[PortBatch, int]:
    """The batch without the points of meters ``admit`` refuses (asked once per meter in the
    batch), and the running count of points dropped."""
    senders = {(p.meter, p.protocol) for p in batch.points}
    refused = {m for m in senders if not admit(*m)}
    if not refused:
        return batch, dropped
    kept = [p for p in batch.points if (p.meter, p.protocol) not in refused]
    return PortBatch(points=kept, errors=batch.errors), dropped + len(batch.points) - len(kept)


def _install(stores: list[MutableMapping[str, Any]], meter: str, key: bytes, pending: bool) -> None:
    for store in stores:
        if pending:
            assert isinstance(store, KeyRing)
            store.stage(meter, key)
        else:
            store[meter] = key
