"""Each meter protocol through its HAN port or poll cycle into a hub: intervals exact to the register."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from smarthub.clock import ManualClock
from smarthub.han.iec_poll import iec_cycle
from smarthub.han.poll import PollLoop, SimulatedLink, simulated
from smarthub.han.zigbee_port import ZigbeePort
from smarthub.hub.history import HistoryStore
from smarthub.hub.hub import SmartHub
from smarthub.model import ObisCode
from smarthub.model.obis import EXPORT_ACTIVE_ENERGY, GAS_VOLUME, IMPORT_ACTIVE_ENERGY
from smarthub.sim.iec_meter import IecMeterSimulator
from smarthub.sim.load_profile import HouseholdProfile
from smarthub.sim.zigbee_meter import ZigbeeMeterSimulator

T0 = datetime(2026, 3, 2, tzinfo=UTC)
HOUR = timedelta(hours=1)


@pytest.fixture
def hub(tmp_path: Path) -> SmartHub:
    return SmartHub("HUB1", HistoryStore(tmp_path / "h.sqlite"), clock=ManualClock(T0))


async def run_loop(loop: PollLoop, clock: ManualClock, until: datetime) -> None:
    clock.set(until)  # every due time is past: the loop runs its cycles back to back
    await loop.run(until=until)


async def test_iec_meter_polled_gives_exact_half_hours(hub: SmartHub) -> None:
    clock = hub.clock
    assert isinstance(clock, ManualClock)
    meter = IecMeterSimulator("12345678", "ABB", HouseholdProfile(5, pv_kwp=3.5), start=T0)
    boundary: dict[datetime, tuple[int, int]] = {}

    def sink(batch, t):  # type: ignore[no-untyped-def]
        hub.accept(batch, t)
        if t.minute % 30 == 0 and t.second == 0:
            boundary[t] = (meter.registers.import_wh, meter.registers.export_wh)

    link = SimulatedLink(meter)
    loop = PollLoop(
        "iec", clock, simulated(link, iec_cycle(link)), sink, period=timedelta(minutes=1), start=T0
    )
    await run_loop(loop, clock, T0 + HOUR)
    assert loop.failures == 0 and hub.stats.frame_errors == 0
    got = hub.history.query("12345678", IMPORT_ACTIVE_ENERGY)
    assert [r.value for r in got] == [
        boundary[T0 + timedelta(minutes=30)][0] - boundary[T0][0],
        boundary[T0 + HOUR][0] - boundary[T0 + timedelta(minutes=30)][0],
    ]
    assert len(hub.history.query("12345678", EXPORT_ACTIVE_ENERGY)) == 2


async def test_zigbee_gas_meter_reports_give_exact_half_hours(hub: SmartHub) -> None:
    meter = ZigbeeMeterSimulator("00:0d:6f:00:0a:bc:de:f0", "gas", HouseholdProfile(8), start=T0)
    port = ZigbeePort("zb")
    hub.accept(port.receive_frame(meter_id := "00:0d:6f:00:0a:bc:de:f0", meter.formatting_report()), T0)
    starts = []
    for minute in range(0, 61):
        t = T0 + timedelta(minutes=minute)
        hub.accept(port.receive_frame(meter_id, meter.report_at(t)), t)
        if minute % 30 == 0:
            starts.append(meter.registers.summation_delivered)
    assert port.errors == 0
    got = hub.history.query(meter_id, GAS_VOLUME)
    # divisor 1000 on m3: the raw summation is litres, the interval value (10^-3 m3) equals it exactly
    assert [r.value for r in got] == [starts[1] - starts[0], starts[2] - starts[1]]


async def test_encrypted_dlms_meter_polled_gives_exact_half_hours(hub: SmartHub) -> None:
    from smarthub.han.dlms_poll import dlms_cycle
    from smarthub.meters.dlms.client import DlmsClient
    from smarthub.meters.dlms.security import SecurityKeys
    from smarthub.sim.dlms_meter import DlmsMeterSimulator

    clock = hub.clock
    assert isinstance(clock, ManualClock)
    keys = SecurityKeys(bytes(range(16)), bytes(range(16, 32)))
    title = b"LGZ\x00\x00\x00\x00\x07"
    meter = DlmsMeterSimulator(title, "7", HouseholdProfile(9), start=T0, keys=keys)
    link = SimulatedLink(meter)
    client = DlmsClient(client_sap=1, server_address=1, system_title=b"SHB\x00\x00\x00\x00\x01", keys=keys)
    at_boundary: list[int] = []

    def sink(batch, t):  # type: ignore[no-untyped-def]
        hub.accept(batch, t)
        if t.minute % 30 == 0:
            at_boundary.append(meter.registers.import_wh)

    cycle = dlms_cycle(link, client, (IMPORT_ACTIVE_ENERGY, EXPORT_ACTIVE_ENERGY))
    loop = PollLoop("dlms", clock, simulated(link, cycle), sink, period=timedelta(minutes=1), start=T0)
    await run_loop(loop, clock, T0 + HOUR)
    assert loop.failures == 0 and hub.stats.frame_errors == 0
    got = hub.history.query(title.hex().upper(), IMPORT_ACTIVE_ENERGY)
    assert [r.value for r in got] == [at_boundary[1] - at_boundary[0], at_boundary[2] - at_boundary[1]]
    assert client.invocation_counter > 60  # one counter across all 61 associations: replays stay refused


def test_wmbus_frame_with_the_wrong_key_stores_nothing(hub: SmartHub) -> None:
    from smarthub.han.wmbus_port import WMBusPort
    from smarthub.meters.wmbus import DecryptionError
    from smarthub.sim.wmbus_meter import WMBusMeterSimulator

    meter = WMBusMeterSimulator(12345678, "LSE", "water", bytes(16), HouseholdProfile(1), start=T0, mode=5)
    port = WMBusPort("radio", {meter.meter_id: bytes(range(16))})
    errors = hub.accept(port.receive(meter.frame_at(T0)), T0)
    assert len(errors) == 1 and isinstance(errors[0], DecryptionError)
    assert hub.mirror.meters() == [] and port.errors == 1
    port.keys[meter.meter_id] = bytes(16)  # the right key arrives (a key change from the GDSC)
    assert hub.accept(port.receive(meter.frame_at(T0 + timedelta(seconds=30))), T0) == []
    assert hub.mirror.meters() == [meter.meter_id]


def test_wmbus_port_reads_compact_frames_with_the_format_of_a_full_frame_it_heard(hub: SmartHub) -> None:
    """A meter that sends a full frame (CI 0x78) now and then and compact frames (CI 0x79, EN
    13757-3) between: the port learns the format from the full frame, so compact frames of a
    format the layout table does not know are read, not refused."""
    from smarthub.han.wmbus_port import WMBusPort
    from smarthub.meters.errors import UnknownLayout
    from smarthub.meters.wmbus import CI_COMPACT, CI_NO_HEADER, decode_frame, encode_frame

    def frame(ci: int, litres: int, access_no: int) -> bytes:
        # volume (4-byte, litres) then energy (4-byte, kWh): no table entry has these headers
        records = (
            bytes.fromhex("0413")
            + litres.to_bytes(4, "little")
            + bytes.fromhex("0406")
            + (7).to_bytes(4, "little")
        )
        return encode_frame(
            manufacturer="ABC",
            ident=31415926,
            version=1,
            device_type=0x07,
            records=records,
            access_no=access_no,
            ci=ci,
        )

    compact = frame(CI_COMPACT, 1001, 1)
    with pytest.raises(UnknownLayout):  # not learnt yet, and not in the layout table
        decode_frame(compact)
    port = WMBusPort("radio")
    batches = [port.receive(f) for f in (compact, frame(CI_NO_HEADER, 1002, 2), frame(CI_COMPACT, 1003, 3))]
    assert [len(b.errors) for b in batches] == [1, 0, 0]  # only the compact frame before any full one
    volumes = [p.value for b in batches[1:] for p in b.points if p.key.endswith("volume")]
    assert volumes == [Decimal("1.002"), Decimal("1.003")]
    assert port.frames == 2 and port.errors == 1


async def test_a_refused_dlms_poll_does_not_stop_the_next_ones(hub: SmartHub) -> None:
    from smarthub.han.dlms_poll import dlms_cycle
    from smarthub.meters.dlms.client import DlmsClient
    from smarthub.sim.dlms_meter import DlmsMeterSimulator

    clock = hub.clock
    assert isinstance(clock, ManualClock)
    meter = DlmsMeterSimulator(b"LGZ\x00\x00\x00\x00\x08", "8", HouseholdProfile(9), start=T0)
    link = SimulatedLink(meter)
    client = DlmsClient(client_sap=16, server_address=1, system_title=b"SHB\x00\x00\x00\x00\x01")
    bad = dlms_cycle(link, client, (ObisCode.parse("1-0:99.99.99"),), meter="M8")  # no such register
    good = dlms_cycle(link, client, (IMPORT_ACTIVE_ENERGY,), meter="M8")
    link.t = T0 + timedelta(minutes=1)
    with pytest.raises(Exception):  # noqa: B017 - the meter's refusal, whatever its type
        await bad(link.t)
    link.t = T0 + timedelta(minutes=2)
    batch = await good(link.t)
    assert [p.key for p in batch.points] == ["1-0:1.8.0"]
