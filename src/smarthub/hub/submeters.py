"""Sub-meters stay in the home unless the consumer shares them: the hub's metering as the WAN sees it.

Smart plugs and appliance sub-meters on the HAN measure *what* the household does (when the
kettle, the washing machine, the television run); the supply meters already measure the energy
that is billed. The hub keeps sub-meter intervals in its history for the IHD's cost per
appliance. By default it serves them to no one on the WAN: not in ``/upt``, not in ``/mup``.
Only a consent covering appliances (``hub.privacy``, "Appliances", issue 25: an appliance-health
service) opens them, and then to that recipient and the GDSC's collection alone, each plug as a
2030.5 UsagePoint of its own with roleFlags ``isSubmeter`` (§E RoleFlagsType bit 6: not a
premises aggregation point) and the appliance's name as its description.

`WanMeters` is the `smarthub.wan.server.resources.MeteringSource` the WAN server is given: the hub's
meters minus those ``is_submeter`` names (the home's appliance map, kept by the IHD) while
``shared()`` is false; while it is true the plugs are listed, and the privacy filter decides per
recipient (granularity none: not listed to it).
`WanEvents` does the same for the diagnosed events the GDSC pulls as LogEvents: a plug going
quiet (someone unplugged the television) is the household's business; the hub still diagnoses
it for the IHD, but the event never reaches the GDSC's error log.
"""

from __future__ import annotations

from collections.abc import Callable

from smarthub.hub.diagnostics import DiagnosedEvent, DiagnosticsLog
from smarthub.hub.hub import SmartHub
from smarthub.hub.intervals import IntervalRecord
from smarthub.model import ObisCode
from smarthub.model.register_reads import Grid, RegisterRead


class WanMeters:
    def __init__(
        self,
        hub: SmartHub,
        is_submeter: Callable[[str], bool],
        shared: Callable[[], bool] | None = None,
        names: Callable[[str], str | None] | None = None,
    ) -> None:
        self.hub = hub
        self._submeter = is_submeter
        self.shared = shared or (lambda: False)  # some consent covers appliance data now
        self.names = names or (lambda _meter: None)  # a plug's appliance, as the consumer named it

    def is_submeter(self, meter: str) -> bool:
        """Kept home now: a sub-meter while no consent covers appliances."""
        return self._submeter(meter) and not self.shared()

    def appliance(self, meter: str) -> str | None:
        """The appliance a listed sub-meter measures (its UsagePoint's description); None for a
        supply meter."""
        if not self._submeter(meter):
            return None
        return self.names(meter) or meter

    def meters(self) -> dict[str, str]:
        return {m: fuel for m, fuel in self.hub.meters().items() if not self.is_submeter(m)}

    def channels(self, meter: str) -> list[ObisCode]:
        return [] if self.is_submeter(meter) else self.hub.channels(meter)

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
        if self.is_submeter(meter):
            return []
        return self.hub.intervals(meter, obis, start=start, end=end, offset=offset, limit=limit)

    def interval_count(
        self, meter: str, obis: ObisCode, *, start: int | None = None, end: int | None = None
    ) -> int:
        return 0 if self.is_submeter(meter) else self.hub.interval_count(meter, obis, start=start, end=end)

    def interval_days(self, meter: str, obis: ObisCode, *, start: int | None = None) -> list[int]:
        return [] if self.is_submeter(meter) else self.hub.interval_days(meter, obis, start=start)

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
        if self.is_submeter(meter):
            return []
        return self.hub.register_reads(meter, obis, grid, start=start, end=end, newest_only=newest_only)


class WanEvents:
    """The hub's diagnosed events without those about a sub-meter (ids and order unchanged)."""

    _BATCH = 500

    def __init__(self, log: DiagnosticsLog, is_submeter: Callable[[str], bool]) -> None:
        self.log = log
        self.is_submeter = is_submeter

    def _shown(self, e: DiagnosedEvent) -> bool:
        return not self.is_submeter(e.device)

    def events(self, after_id: int | None = None, limit: int = 100) -> list[DiagnosedEvent]:
        out: list[DiagnosedEvent] = []
        cursor = after_id
        while len(out) < limit:
            batch = self.log.events(after_id=cursor, limit=self._BATCH)
            out += [e for e in batch if self._shown(e)]
            if len(batch) < self._BATCH:
                break
            cursor = batch[-1].id
        return out[:limit]

    def count(self) -> int:
        n, cursor = 0, None
        while True:
            batch = self.log.events(after_id=cursor, limit=self._BATCH)
            n += sum(1 for e in batch if self._shown(e))
            if len(batch) < self._BATCH:
                return n
            cursor = batch[-1].id

    def get(self, event_id: int) -> DiagnosedEvent:
        e = self.log.get(event_id)
        if not self._shown(e):
            raise KeyError(event_id)
        return e
