"""The GDSC store on SQLite and on the real PostgreSQL server, through the same code."""

from __future__ import annotations

import pytest

from smarthub.gdsc.commissioning import CommissioningError, register_manifest
from smarthub.gdsc.store import Store, StoredReading
from smarthub.model.identifiers import make_mpan

T0 = 1_772_409_600


def reading(
    i: int, value: int = 100, hub: str = "HUB1", meter: str = "E1", obis: str = "1-0:1.8.0"
) -> StoredReading:
    return StoredReading(hub, meter, obis, T0 + 1800 * i, 1800, value, 0, 72, 1)


@pytest.fixture
def store(db_url: str):  # type: ignore[no-untyped-def]
    s = Store(db_url)
    s.create_schema()
    s.register_hub(
        hub_id="HUB1",
        premises_id="P1",
        url="https://127.0.0.1:1",
        lfdi="A" * 40,
        meters_by_fuel=[("E1", "electricity"), ("G1", "gas")],
        mpan=make_mpan(12, 1),
    )
    yield s
    s.close()


def test_ingest_is_idempotent_and_advances_cursor(store: Store) -> None:
    r1 = store.ingest("HUB1", [reading(i) for i in range(48)], {"/upt/E1/mr/x": T0 + 48 * 1800})
    assert (r1.inserted, r1.already_stored, r1.conflicts) == (48, 0, 0)
    # The same pull again (a GDSC that crashed before it could record its progress elsewhere).
    r2 = store.ingest("HUB1", [reading(i) for i in range(40, 50)], {"/upt/E1/mr/x": T0 + 50 * 1800})
    assert (r2.inserted, r2.already_stored) == (2, 8)
    assert store.count_readings() == 50
    assert store.duplicate_keys() == 0
    assert store.cursors("HUB1") == {"/upt/E1/mr/x": T0 + 50 * 1800}


def test_cursor_never_moves_backwards(store: Store) -> None:
    store.ingest("HUB1", [], {"ch": 5000})
    store.ingest("HUB1", [], {"ch": 4000})
    assert store.cursors("HUB1") == {"ch": 5000}


def test_conflicting_resend_keeps_stored_value_and_is_counted(store: Store) -> None:
    store.ingest("HUB1", [reading(0, 100)], {})
    res = store.ingest("HUB1", [reading(0, 999), reading(1, 5)], {})
    assert (res.inserted, res.conflicts) == (1, 1)
    assert [r.value for r in store.readings_for("HUB1", "E1", "1-0:1.8.0")] == [100, 5]


def test_ingest_refuses_readings_of_another_hub(store: Store) -> None:
    with pytest.raises(ValueError, match="pulled hub"):
        store.ingest("HUB1", [reading(0, hub="HUB2")], {})
    assert store.count_readings() == 0


def test_channel_starts_and_fleet_status(store: Store) -> None:
    store.ingest("HUB1", [reading(i) for i in range(3)] + [reading(0, meter="G1", obis="7-0:3.0.0")], {})
    starts = store.channel_starts(T0, T0 + 86400)
    assert starts[("HUB1", "E1", "1-0:1.8.0")] == {T0, T0 + 1800, T0 + 3600}
    status = store.fleet_status()
    assert status[0]["hub_id"] == "HUB1" and status[0]["readings"] == 4


def test_commissioning_validates_before_writing(store: Store) -> None:
    good = {
        "hub_id": "HUB9",
        "premises_id": "P9",
        "url": "https://127.0.0.1:2",
        "lfdi": "b" * 40,
        "meters": [["E9", "electricity"]],
        "mpan": make_mpan(14, 99),
        "mprn": "1234567",
    }
    bad = {**good, "hub_id": "HUB10", "mpan": "1200023305968"}
    with pytest.raises(CommissioningError, match="check digit"):
        register_manifest(store, {"hubs": [good, bad]})
    assert [h.hub_id for h in store.active_hubs()] == ["HUB1"]  # nothing half-registered
    assert register_manifest(store, {"hubs": [good]}) == 1
    assert [h.hub_id for h in store.active_hubs()] == ["HUB1", "HUB9"]
    assert store.hub_meters("HUB9") == {"E9": "electricity"}
