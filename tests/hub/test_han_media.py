"""HAN media with their range and loss (issue 26 item 3): the link model reproduces the source
document's Table 1, walls and floors weigh as each band's physics says, and the hub's weak-signal
diagnosis is caused by where a meter is — a meter moved behind two floors on 2.4 GHz 802.15.4 is
diagnosed, the same meter on 868 MHz is not."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from smarthub.clock import ManualClock
from smarthub.han.media import FADE_MARGIN_DB, MEDIA, METRES_PER_WALL, MediumKind, Placement, estimate
from smarthub.han.zigbee_port import ZigbeePort
from smarthub.hub.diagnostics import Diagnostics
from smarthub.hub.history import HistoryStore
from smarthub.hub.hub import SmartHub
from smarthub.sim.load_profile import HouseholdProfile
from smarthub.sim.radio import RadioLink
from smarthub.sim.zigbee_meter import ZigbeeMeterSimulator
from smarthub.wan.contract.diagnosis import DiagnosisCode

T0 = datetime(2026, 3, 2, tzinfo=UTC)
EUI = "00:0d:6f:00:0a:bc:de:f0"
RADIOS = [k for k, m in MEDIA.items() if m.kind is MediumKind.RADIO]


def test_table_1_as_published() -> None:
    """The rows of Table 1 (rate, IP, power, reliable range, nodes) are carried as published."""
    rows = {
        k: (m.gross_rate_bps, m.ip_based, m.rx_on_power_w, m.reliable_range_m, m.max_nodes)
        for k, m in MEDIA.items()
    }
    assert rows == {
        "zigbee-2.4": (250_000, False, 0.1, 10.0, None),
        "zigbee-868": (20_000, False, 0.1, 30.0, None),
        "wifi": (2_000_000, True, 0.4, 15.0, None),
        "homeplug-1.0t": (2_000_000, True, 1.5, 150.0, 32),
        "10base-t": (100_000_000, True, 0.1, 100.0, 2),
        "homeplug-gp": (3_800_000, True, 0.3, 150.0, None),
        "wmbus-868": (16_000, False, 0.1, 30.0, None),
    }


@pytest.mark.parametrize("key", RADIOS)
def test_each_radio_keeps_its_fade_margin_at_its_reliable_range_and_fails_well_past_it(key: str) -> None:
    m = MEDIA[key]
    walls = round(m.reliable_range_m / METRES_PER_WALL)
    at_range = estimate(m, Placement(m.reliable_range_m, walls=walls))
    assert at_range.margin_db == pytest.approx(FADE_MARGIN_DB, abs=0.05) and at_range.reaches
    far = estimate(m, Placement(2.5 * m.reliable_range_m, walls=round(2.5 * walls)))
    assert not far.reaches and far.delivery < 0.5


def test_floors_and_walls_cost_more_at_2_4_ghz_than_at_868_mhz() -> None:
    upstairs = Placement(8, walls=2, floors=2)
    low, high = estimate(MEDIA["zigbee-868"], upstairs), estimate(MEDIA["zigbee-2.4"], upstairs)
    assert low.reaches and not high.reaches
    assert MEDIA["wmbus-868"].tx_power_dbm - MEDIA["zigbee-2.4"].tx_power_dbm == pytest.approx(
        4.0
    )  # 25 mW vs 10 mW
    # The text's "a factor of three to five" in range of EN 13757-4 over 2.4 GHz at 10 mW.
    assert 3 <= MEDIA["wmbus-868"].reliable_range_m / MEDIA["zigbee-2.4"].reliable_range_m <= 5


def test_wired_media_go_by_the_length_of_the_wiring() -> None:
    basement = Placement(20, walls=6, floors=3)  # wiring 1.5 × 20 + 3 × 3 = 39 m
    assert estimate(MEDIA["homeplug-1.0t"], basement).reaches
    assert estimate(MEDIA["10base-t"], Placement(20, wiring_m=99)).delivery == 1.0
    assert estimate(MEDIA["10base-t"], Placement(20, wiring_m=120)).delivery == 0.0
    assert not estimate(MEDIA["homeplug-gp"], Placement(20, wiring_m=260)).reaches


def _run(
    medium_key: str, placement: Placement, tmp_path: Path, frames: int = 120
) -> tuple[SmartHub, RadioLink]:
    clock = ManualClock(T0)
    hub = SmartHub(
        "HUB1", HistoryStore(tmp_path / f"{medium_key}.sqlite"), clock=clock, diagnostics=Diagnostics()
    )
    meter = ZigbeeMeterSimulator(EUI, "electric", HouseholdProfile(3), start=T0)
    port = ZigbeePort("zb")
    medium = MEDIA[medium_key]
    link = RadioLink(medium, Placement(5, walls=1), random.Random(4))
    hub.accept(port.receive_frame(EUI, meter.formatting_report()), T0)
    for i in range(frames):
        t = T0 + timedelta(minutes=i)
        clock.set(t)
        if i == frames // 2:
            link.placement = placement  # the meter is moved
        got = link.carry(meter.report_at(t))
        if got is not None:
            frame, rssi = got
            batch = port.receive_frame(EUI, frame, rssi_dbm=rssi, sensitivity_dbm=medium.sensitivity_dbm)
            hub.accept(batch, t, port="zb")
    return hub, link


def _weak(hub: SmartHub) -> list[str]:
    assert hub.diagnostics is not None
    return [e.device for e in hub.diagnostics.log.open_events() if e.code is DiagnosisCode.HAN_WEAK_SIGNAL]


def test_a_meter_moved_behind_two_floors_is_diagnosed_on_2_4_ghz_and_not_on_868_mhz(tmp_path: Path) -> None:
    upstairs = Placement(8, walls=2, floors=2)
    hub24, link24 = _run("zigbee-2.4", upstairs, tmp_path)
    assert _weak(hub24) == [EUI]
    assert link24.lost > link24.sent // 4  # and frames went missing for the same reason
    hub868, link868 = _run("zigbee-868", upstairs, tmp_path)
    assert _weak(hub868) == [] and link868.lost == 0


def test_the_planner_ranks_media_for_a_layout_and_names_what_they_miss(tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from smarthub.cli import app

    layout = Path(__file__).parents[2] / "examples" / "layouts" / "terraced-house.toml"
    result = CliRunner().invoke(app, ["plan-han", str(layout), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    by_medium = {m["medium"]: m for m in report["media"]}
    assert report["meters"] == 4 and report["media"][0]["all_reached"]
    assert by_medium["zigbee-2.4"]["misses"] == ["heat-cost allocator (back bedroom)"]
    assert by_medium["zigbee-868"]["misses"] == [] and by_medium["wmbus-868"]["misses"] == []
    assert not by_medium["10base-t"]["nodes_ok"]  # a point-to-point cable: one meter, not four
    bad = tmp_path / "bad.toml"
    bad.write_text('[[meters]]\nid = "E"\nwalls = 2\n')
    refused = CliRunner().invoke(app, ["plan-han", str(bad)])
    assert refused.exit_code == 2 and "meters[0].distance_m: missing" in refused.output
