"""The hub's DLMS HAN and SML ports on a byte stream as it arrives from a serial adapter: frames
published from real meters (tests/meters/real_captures.py, with their sources), cut at arbitrary
points, run back to back with noise between them; and from there into the hub's history."""

from __future__ import annotations

import importlib.util
import os
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from smarthub.han.dlms_push import DlmsPushPort, PushFramer
from smarthub.han.ports import PortBatch
from smarthub.han.sml_port import SmlFramer, SmlPort
from smarthub.meters.dlms.security import SecurityKeys
from smarthub.meters.errors import DecodeError, KeyMissing, WrongKey

_spec = importlib.util.spec_from_file_location(
    "real_captures", Path(__file__).resolve().parents[1] / "meters" / "real_captures.py"
)
assert _spec is not None and _spec.loader is not None
c = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(c)

EXAMPLES = int(os.environ.get("SMARTHUB_FUZZ_EXAMPLES", "300"))


def feed(port: DlmsPushPort | SmlPort, stream: bytes, cut: int) -> PortBatch:
    out = PortBatch()
    for i in range(0, len(stream), cut):
        b = port.receive(stream[i : i + cut])
        out.points += b.points
        out.errors += b.errors
    return out


def values(batch: PortBatch, meter: str) -> dict[str, Decimal | str]:
    return {p.key: p.value for p in batch.points if p.meter == meter}


def test_a_han_port_takes_real_meters_pushes_as_the_bytes_arrive() -> None:
    # Aidon (array list), Kamstrup (flat list, profile units), Iskra (three segmented HDLC
    # frames), noise, and the Aidon again: whatever the adapter's read size.
    stream = (
        c.AIDON_NO_3PHASE
        + c.KAMSTRUP_NO_LIST1
        + c.ISKRA_AM550_SEGMENTED
        + b"\x00\x13\x37"
        + c.AIDON_NO_3PHASE
    )
    for cut in (1, 7, 64, 4096):
        batch = feed(DlmsPushPort("han"), stream, cut)
        assert batch.errors and all("start no HDLC" in str(e) for e in batch.errors), cut  # the noise only
        iskra = values(batch, "84895126")
        # hdlc_iskra550.h: 182 W, 261927 Wh imported
        assert iskra["1-0:1.7.0"] == 182 and iskra["1-0:1.8.0"] == 261927, cut
        meters = {p.meter for p in batch.points}
        assert len(meters) == 3, (cut, meters)


def test_an_austrian_port_over_mbus_frames_with_and_without_its_key() -> None:
    # Netz NOE customer interface: encrypted, split over two M-Bus long frames.
    keys = SecurityKeys(c.NETZ_NOE_KEY, c.NETZ_NOE_KEY)
    port = DlmsPushPort("han", keys)
    batch = feed(port, c.NETZ_NOE, 13)
    assert not batch.errors
    v = values(batch, "181220000009")
    assert v["1-0:1.8.0"] == 12937 and v["1-0:32.7.0"] == Decimal("233.7")  # mbus_netz_noe_p1.h
    assert "not above the last accepted" in str(port.receive(c.NETZ_NOE).errors[0])  # replayed: refused
    without = DlmsPushPort("han", meter="181220000009").receive(c.NETZ_NOE)
    wrong = DlmsPushPort("han", SecurityKeys(bytes(16), bytes(16))).receive(c.NETZ_NOE)
    assert isinstance(without.errors[0], KeyMissing) and without.errors[0].meter == "181220000009"  # type: ignore[attr-defined]
    assert isinstance(wrong.errors[0], WrongKey) and not wrong.points


def test_a_replayed_push_is_refused() -> None:
    keys = SecurityKeys(c.KAMSTRUP_OMNIPOWER_EK, c.KAMSTRUP_OMNIPOWER_AK)
    port = DlmsPushPort("han", keys)
    first = port.receive(c.KAMSTRUP_OMNIPOWER)
    again = port.receive(c.KAMSTRUP_OMNIPOWER)
    assert first.points and not first.errors
    assert not again.points and "counter" in str(again.errors[0]).lower()


def test_an_optical_head_takes_real_sml_files_as_the_bytes_arrive() -> None:
    stream = b"\x55\xaa" + c.SML_DZG + c.SML_HOLLEY + c.SML_EMH + c.SML_ISKRA
    for cut in (3, 100, 4096):
        port = SmlPort("head")
        batch = feed(port, stream, cut)
        assert port.frames == 4 and len(batch.errors) == 1, (cut, batch.errors)  # the bytes before the first
        assert len(batch.points) >= c.SML_DZG_ENTRIES, cut


def test_a_corrupted_sml_file_costs_that_file_only() -> None:
    bad = bytearray(c.SML_DZG)
    bad[20] ^= 0xFF
    port = SmlPort("head")
    batch = port.receive(bytes(bad) + c.SML_EMH)
    assert port.frames == 1 and [type(e).__name__ for e in batch.errors] == ["ChecksumError"]


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.binary(max_size=700), st.integers(1, 64))
def test_fuzz_the_stream_framers_never_raise(data: bytes, cut: int) -> None:
    for framer in (PushFramer(), SmlFramer()):
        for i in range(0, len(data), cut):
            for item in framer.feed(data[i : i + cut]):
                assert isinstance(item, bytes | DecodeError)
    port = DlmsPushPort("han", SecurityKeys(bytes(16), bytes(16)))
    port.receive(c.AIDON_NO_3PHASE[:40] + data)  # whatever follows a cut-off frame: typed errors only


async def test_pushes_from_a_han_port_reach_the_history(tmp_path: Path) -> None:
    from smarthub.clock import ManualClock
    from smarthub.hub.history import HistoryStore
    from smarthub.hub.hub import SmartHub
    from smarthub.model.obis import IMPORT_ACTIVE_ENERGY
    from smarthub.sim.dlms_meter import DlmsMeterSimulator
    from smarthub.sim.load_profile import HouseholdProfile

    t0 = datetime(2026, 3, 2, tzinfo=UTC)
    keys = SecurityKeys(bytes(range(16)), bytes(range(16, 32)))
    meter = DlmsMeterSimulator(
        bytes.fromhex("4B464D1020000001"), "1", HouseholdProfile(3), start=t0, keys=keys
    )
    clock = ManualClock(t0)
    hub = SmartHub("HUB1", HistoryStore(tmp_path / "h.sqlite"), clock=clock)
    port = hub.attach(DlmsPushPort("han", keys))
    for i in range(6 * 61):  # every 10 s for an hour, as the bytes come off the line
        clock.set(t0 + timedelta(seconds=10 * i))
        push = meter.push_at(clock.now())
        for j in range(0, len(push), 50):
            hub.receive(port.name, push[j : j + 50])
    assert hub.stats.frame_errors == 0
    assert len(hub.history.query("4B464D1020000001", IMPORT_ACTIVE_ENERGY)) == 2
