"""Sub-meters stay in the home: the hub's metering as the WAN may see it.

Smart plugs and appliance sub-meters on the HAN measure *what* the household does (when the
kettle, the washing machine, the television run); the supply meters already measure the energy
that is billed. The hub keeps sub-meter intervals in its history for the IHD's cost per
appliance, and serves them to no one on the WAN: not in ``/upt``, not in ``/mup``, not to the
GDSC or any party, whatever the consent (the privacy filter governs the *supply* data only).

`WanMeters` is the `smarthub.wan.server.MeteringSource` the WAN server is given: the hub's
meters minus those ``is_submeter`` names (the home's appliance map, kept by the IHD).
"""

from __future__ import annotations

from collections.abc import Callable

from smarthub.hub.hub import SmartHub
from smarthub.hub.intervals import IntervalRecord
from smarthub.model import ObisCode


class WanMeters:
    def __init__(self, hub: SmartHub, is_submeter: Callable[[str], bool]) -> None:
        self.hub = hub
        self.is_submeter = is_submeter

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
