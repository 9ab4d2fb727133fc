"""A simulated ZigBee smart plug: an On/Off cluster (0x0006) relay with SE Metering (0x0702).

The plug takes real ZCL On/Off commands (``handle``) and answers each with a Default Response;
it meters what its appliance draws while the relay is closed and reports it in Metering
cluster frames (CurrentSummationDelivered in Wh as kWh/1000, InstantaneousDemand in W as
kW/1000), so the hub meters it like any ZigBee sub-meter. The appliance behind it follows
its programme (watts per step) for as long as it has been powered: switch it off and it
pauses, switch it on and it carries on. Energy is kept in whole joules, so nothing drifts.

Every switching is logged with the plug's own time, so tests see *when* the relay moved.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from smarthub.clock import Clock
from smarthub.han.poll import PollLoop
from smarthub.han.ports import PortBatch
from smarthub.han.zigbee_port import ZigbeePort
from smarthub.hub.hub import SmartHub
from smarthub.meters.errors import DecodeError
from smarthub.meters.zigbee_se import (
    A_DEVICE_TYPE,
    A_DIVISOR,
    A_INSTANTANEOUS_DEMAND,
    A_MULTIPLIER,
    A_ON_OFF,
    A_SUMMATION_DELIVERED,
    A_UNIT_OF_MEASURE,
    METERING_CLUSTER,
    ON_OFF_CLUSTER,
    STATUS_SUCCESS,
    STATUS_UNSUP_CLUSTER_COMMAND,
    T_BITMAP8,
    T_BOOL,
    T_ENUM8,
    T_INT24,
    T_UINT24,
    T_UINT48,
    decode_on_off,
    encode_default_response,
    report_attributes,
)

STATUS_MALFORMED_COMMAND = 0x80  # ZCL status code table


class SmartPlugSimulator:
    def __init__(
        self, eui64: str, programme_w: Sequence[int], step: timedelta, start: datetime, *, standby_w: int = 0
    ) -> None:
        if start.tzinfo is None:
            raise ValueError("start must be timezone-aware")
        if not programme_w or any(w < 0 for w in programme_w):
            raise ValueError("the programme is a non-empty list of watts >= 0")
        self.eui64 = eui64.lower()
        self.programme_w = tuple(programme_w)
        self.step = step
        self.standby_w = standby_w
        self.on = False
        self.log: list[tuple[datetime, bool]] = []
        self._time = start.astimezone(UTC)
        self._powered = timedelta(0)  # how long the appliance has run its programme
        self._joules = 0
        self._sequence = 0
        # At each switching: when, the joules metered and the programme's progress then, the
        # relay's new state: what the plug's registers were at any instant since can be told.
        self._marks: list[tuple[datetime, int, timedelta, bool]] = [(self._time, 0, timedelta(0), False)]
        self._reported_wh = 0

    @property
    def energy_wh(self) -> int:
        return self._joules // 3600

    def power_w(self) -> int:
        if not self.on:
            return 0
        i = int(self._powered / self.step)
        return self.programme_w[i] if i < len(self.programme_w) else self.standby_w

    def advance(self, t: datetime) -> None:
        """Run the appliance to ``t`` (second by programme step, exactly)."""
        if t < self._time:
            raise ValueError(f"plug time cannot go backwards: {t.isoformat()} < {self._time.isoformat()}")
        while self._time < t:
            if not self.on:
                self._time = t
                break
            # up to the next programme step boundary, or t
            into = self._powered % self.step
            chunk = min(t - self._time, self.step - into)
            self._joules += self.power_w() * int(chunk.total_seconds())
            self._powered += chunk
            self._time += chunk

    def handle(self, cluster_id: int, payload: bytes, t: datetime) -> bytes:
        """One ZCL frame from the hub; the plug's Default Response."""
        self.advance(t)
        if cluster_id != ON_OFF_CLUSTER:
            seq = payload[1] if len(payload) > 1 else 0
            return encode_default_response(cluster_id, seq, payload[2] if len(payload) > 2 else 0, 0xC3)
        try:
            cmd = decode_on_off(payload)
        except DecodeError:
            seq = payload[1] if len(payload) > 2 else 0
            cid = payload[2] if len(payload) > 2 else 0
            return encode_default_response(cluster_id, seq, cid, STATUS_MALFORMED_COMMAND)
        before = self.on
        self.on = {"on": True, "off": False, "toggle": not self.on}[cmd.command]
        if self.on != before:
            self.log.append((t, self.on))
            self._marks.append((self._time, self._joules, self._powered, self.on))
        command_id = {"off": 0x00, "on": 0x01, "toggle": 0x02}[cmd.command]
        status = STATUS_SUCCESS if cmd.command in ("on", "off", "toggle") else STATUS_UNSUP_CLUSTER_COMMAND
        return encode_default_response(cluster_id, cmd.sequence, command_id, status)

    def _next_sequence(self) -> int:
        self._sequence = (self._sequence + 1) & 0xFF
        return self._sequence

    def _programme_joules(self, powered: timedelta, span: timedelta) -> int:
        """What the programme draws over ``span`` of powered time from ``powered`` into it."""
        joules = 0
        while span > timedelta(0):
            i = int(powered / self.step)
            w = self.programme_w[i] if i < len(self.programme_w) else self.standby_w
            chunk = min(span, self.step - powered % self.step)
            joules += w * int(chunk.total_seconds())
            powered += chunk
            span -= chunk
        return joules

    def registers_at(self, t: datetime) -> tuple[int, int]:
        """(Wh delivered, W) at ``t``: now or later, as the plug runs; at an instant it has passed,
        what its registers were then, from its switchings (a poll loop trailing an accelerated
        clock asks about those: answered with the plug's present, a whole day's charge could
        land in one early half-hour)."""
        if t >= self._time:
            self.advance(t)
            return self.energy_wh, self.power_w()
        at, joules, powered, on = next(m for m in reversed(self._marks) if m[0] <= t or m is self._marks[0])
        if not on or t <= at:
            return joules // 3600, 0
        span = t - at
        i = int((powered + span) / self.step)
        w = self.programme_w[i] if i < len(self.programme_w) else self.standby_w
        return (joules + self._programme_joules(powered, span)) // 3600, w

    def metering_report(self, t: datetime) -> bytes:
        """The registers at ``t`` (:meth:`registers_at`); the summation never goes back (the
        whole-second steps of two ways of adding it up may differ by a few joules)."""
        wh, w = self.registers_at(t)
        self._reported_wh = max(self._reported_wh, wh)
        return report_attributes(
            [
                (A_SUMMATION_DELIVERED, T_UINT48, self._reported_wh),
                (A_INSTANTANEOUS_DEMAND, T_INT24, w),
            ],
            self._next_sequence(),
        )

    def formatting_report(self) -> bytes:
        """kWh / kW with Divisor 1000 (so raw values are Wh and W), an electric meter."""
        return report_attributes(
            [
                (A_UNIT_OF_MEASURE, T_ENUM8, 0x00),
                (A_MULTIPLIER, T_UINT24, 1),
                (A_DIVISOR, T_UINT24, 1000),
                (A_DEVICE_TYPE, T_BITMAP8, 0),
            ],
            self._next_sequence(),
        )

    def on_off_report(self) -> bytes:
        return report_attributes([(A_ON_OFF, T_BOOL, self.on)], self._next_sequence())


class SwitchedLoad:
    """A constant-power appliance behind a plug, as the household's meter sees it
    (:class:`~smarthub.sim.load_profile.ExtraLoad`): ``watts`` while the plug's relay is closed,
    from the plug's switching log. A meter asks about instants up to its clock's now, and a
    switching is logged at the clock's now when it happens, so what it is told never changes."""

    def __init__(self, plug: SmartPlugSimulator, watts: float) -> None:
        self.plug = plug
        self.watts = watts

    def _on_seconds(self, t0: datetime, t1: datetime) -> float:
        on, t, total = False, t0, 0.0
        for at, state in self.plug.log:
            if at <= t0:
                on = state
                continue
            if at >= t1:
                break
            if on:
                total += (at - t).total_seconds()
            on, t = state, at
        if on:
            total += (t1 - t).total_seconds()
        return total

    def power_w(self, t: datetime) -> float:
        on = False
        for at, state in self.plug.log:
            if at > t:
                break
            on = state
        return self.watts if on else 0.0

    def energy_wh(self, t0: datetime, t1: datetime) -> float:
        return self.watts * self._on_seconds(t0, t1) / 3600 if t1 > t0 else 0.0


class SimulatedPlugLink:
    """The HAN path to simulated plugs: a frame in, the plug's answer out, at the clock's time."""

    def __init__(self, clock: Clock, plugs: Sequence[SmartPlugSimulator] = ()) -> None:
        self.clock = clock
        self.plugs = {p.eui64: p for p in plugs}
        self.frames = 0

    async def request(self, eui64: str, cluster_id: int, payload: bytes) -> bytes:
        plug = self.plugs.get(eui64.lower())
        if plug is None:
            raise ConnectionError(f"no plug {eui64} on the HAN")
        self.frames += 1
        return plug.handle(cluster_id, payload, self.clock.now())


def plug_loop(
    hub: SmartHub,
    port: ZigbeePort,
    clock: Clock,
    plug: SmartPlugSimulator,
    start: datetime,
    period: timedelta,
) -> PollLoop:
    """The plug reporting its metering to the hub every ``period`` (a sub-meter on the HAN)."""
    hub.accept(port.receive_frame(plug.eui64, plug.formatting_report()), start)

    async def report(t: datetime) -> PortBatch:
        return port.receive_frame(plug.eui64, plug.metering_report(t), METERING_CLUSTER)

    def sink(batch: PortBatch, t: datetime) -> None:
        hub.accept(batch, t, port=port.name)

    return PollLoop(f"plug:{plug.eui64}", clock, report, sink, period=period, start=start)


__all__ = ["SimulatedPlugLink", "SmartPlugSimulator", "SwitchedLoad", "plug_loop"]
