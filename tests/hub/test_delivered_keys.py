"""Meter keys delivered by ``meter.key`` are kept sealed at rest and installed again at start,
over the configured key (smarthub.hub.delivered_keys)."""

from __future__ import annotations

import os
import sqlite3
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from smarthub.han.wmbus_port import WMBusPort
from smarthub.hub.delivered_keys import FILE_NAME, DeliveredKeys
from smarthub.hub.history import HistoryStore
from smarthub.hub.hub import SmartHub
from smarthub.hub.keys import KeyRing, KeyUnwrapError, load_or_create_master_key
from smarthub.model.obis import WATER_VOLUME
from smarthub.sim.load_profile import HouseholdProfile
from smarthub.sim.wmbus_meter import WMBusMeterSimulator
from smarthub.wan.contract.bodies import MeterKey

T0 = datetime(2026, 3, 2, tzinfo=UTC)
CONFIGURED = bytes.fromhex("000102030405060708090A0B0C0D0E0F")


def _files(state: Path) -> list[Path]:
    return sorted(p for p in state.iterdir() if p.is_file() and p.name != "master.key")


def test_keys_are_sealed_owner_only_and_in_delivery_order(tmp_path: Path) -> None:
    master = load_or_create_master_key(tmp_path / "master.key")
    store = DeliveredKeys(tmp_path / FILE_NAME, master)
    first, second, staged = os.urandom(16), os.urandom(16), os.urandom(16)
    store.record("W1", first, False)
    store.record("W2", staged, True)
    store.record("W1", second, False)  # a newer command for W1 replaces its first key
    assert [(d.meter, d.key, d.pending) for d in store.load()] == [
        ("W2", staged, True),
        ("W1", second, False),
    ]
    assert first.hex() not in repr(store.load()) and second.hex() not in repr(store.load())
    store.close()
    for p in _files(tmp_path):
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, p.name
        raw = p.read_bytes()
        for key in (first, second, staged):  # in no form, in the file or its WAL
            assert key not in raw and key.hex().encode() not in raw and key.hex().upper().encode() not in raw
    # Reopened with the same master key: the same keys.
    again = DeliveredKeys(tmp_path / FILE_NAME, master)
    assert [d.key for d in again.load()] == [staged, second]
    again.close()


def test_a_file_under_another_master_key_or_a_moved_row_does_not_open(tmp_path: Path) -> None:
    master = load_or_create_master_key(tmp_path / "master.key")
    store = DeliveredKeys(tmp_path / FILE_NAME, master)
    store.record("W1", os.urandom(16), False)
    store.close()
    other = DeliveredKeys(tmp_path / FILE_NAME, os.urandom(32))
    with pytest.raises(KeyUnwrapError, match="'W1' does not open under the hub master key"):
        other.load()
    other.close()
    db = sqlite3.connect(tmp_path / FILE_NAME)
    db.execute("UPDATE delivered_keys SET meter = 'W9'")  # W1's key moved to another meter
    db.commit()
    db.close()
    moved = DeliveredKeys(tmp_path / FILE_NAME, master)
    with pytest.raises(KeyUnwrapError, match="'W9'"):
        moved.load()
    moved.close()


def _hub(state: Path) -> tuple[SmartHub, WMBusPort]:
    """A hub as the assembly builds it: the configured key installed, then the delivered ones."""
    history = HistoryStore(state / "history.sqlite")
    hub = SmartHub("HUB1", history)
    port = hub.attach(WMBusPort("wmbus", KeyRing()))
    port.keys["LSE12345678"] = CONFIGURED  # from the configuration file
    hub.delivered_keys = DeliveredKeys(state / FILE_NAME, load_or_create_master_key(state / "master.key"))
    hub.restore_delivered_keys()
    return hub, port


def _close(hub: SmartHub) -> None:
    assert hub.delivered_keys is not None
    hub.delivered_keys.close()
    hub.history.close()


def test_a_delivered_key_outlives_the_hub_and_wins_over_the_configured_one(tmp_path: Path) -> None:
    new_key, staged = os.urandom(16), os.urandom(16)
    meter = WMBusMeterSimulator(12345678, "LSE", "water", CONFIGURED, HouseholdProfile(2), T0)
    assert meter.meter_id == "LSE12345678"
    hub, port = _hub(tmp_path)
    assert hub.receive("wmbus", meter.frame_at(T0)) == []
    cmd = hub.command_handlers()["meter.key"]
    cmd(MeterKey(meter.meter_id, new_key))
    cmd(MeterKey("LSE00000002", staged, pending=True))
    _close(hub)

    hub, port = _hub(tmp_path)  # restarted
    assert isinstance(port.keys, KeyRing)
    assert port.keys[meter.meter_id] == new_key
    assert port.keys.candidates(meter.meter_id) == [CONFIGURED]  # the re-key repair's fallback
    assert port.keys.candidates("LSE00000002") == [staged]
    meter.key = new_key  # the meter was re-keyed
    assert hub.receive("wmbus", meter.frame_at(T0 + timedelta(minutes=2))) == []
    assert hub.mirror.latest(meter.meter_id, WATER_VOLUME) is not None
    _close(hub)


def test_a_refused_command_stores_nothing(tmp_path: Path) -> None:
    history = HistoryStore(tmp_path / "history.sqlite")
    hub = SmartHub("HUB1", history)  # no port holds meter keys
    hub.delivered_keys = DeliveredKeys(
        tmp_path / FILE_NAME, load_or_create_master_key(tmp_path / "master.key")
    )
    with pytest.raises(ValueError, match="no port on this hub holds meter keys"):
        hub.command_handlers()["meter.key"](MeterKey("W1", os.urandom(16)))
    assert hub.delivered_keys.load() == []
    _close(hub)
