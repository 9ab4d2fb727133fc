"""VEE over the data services API: an operator's edit with its reason in the audit chain, the
day's versions, bad edits refused clearly, and the data-quality figures."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi.testclient import TestClient

from smarthub.clock import ManualClock
from smarthub.gdsc.api.app import create_app
from smarthub.gdsc.api.auth.tokens import TokenStore
from smarthub.gdsc.governance.audit import AuditLog
from smarthub.gdsc.governance.guard import AccessGuard
from smarthub.gdsc.governance.parties import Party, PartyRepository, Role
from smarthub.gdsc.readings.tables import StoredReading
from smarthub.gdsc.readings.vee.store import VeeSettings
from smarthub.gdsc.store import Store

NOW = datetime(2026, 8, 15, 12, tzinfo=UTC)
DAY0 = datetime(2026, 8, 10, tzinfo=UTC)


def test_operator_edit_is_versioned_and_audited_with_its_reason(tmp_path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'g.sqlite'}")
    store.create_schema()
    store.register_hub(
        hub_id="H1", premises_id="P1", url="https://h", lfdi="A" * 40, meters_by_fuel=[("E1", "electricity")]
    )
    store.enable_vee(VeeSettings(now=lambda: int(NOW.timestamp())))
    t0 = int(DAY0.timestamp())
    vals = [100] * 48
    vals[5] = -7  # quarantined by the gate
    store.ingest(
        "H1",
        [
            StoredReading("H1", "E1", "1-0:1.8.0", t0 + 1800 * i, 1800, v, 0, 72, 1)
            for i, v in enumerate(vals)
        ],
        {},
    )
    repo = PartyRepository(store.engine)
    repo.add_party(Party("OPS", Role.OPERATOR))
    repo.add_party(Party("SUP", Role.SUPPLIER))
    tokens = TokenStore(store.engine)
    ops, sup = tokens.issue("OPS", NOW), tokens.issue("SUP", NOW)
    guard = AccessGuard(repo, AuditLog(store.engine), ManualClock(NOW))
    with TestClient(create_app(guard, tokens)) as client:
        body = {
            "meter_id": "E1",
            "day": "2026-08-10",
            "values": {"5": 101},
            "reason": "quarantined -7: meter test",
        }
        r = client.post(
            "/v1/premises/P1/readings/edits", json=body, headers={"Authorization": f"Bearer {ops}"}
        )
        assert r.status_code == 200, r.text
        assert (r.json()["version"], r.json()["hub_id"]) == (2, "H1")
        entry = guard.audit.entries()[-1]
        assert (entry.actor, entry.action, entry.allow) == ("OPS", "edit-readings", True)
        assert entry.detail["detail"]["reason"] == "quarantined -7: meter test"
        assert entry.detail["detail"]["values"] == {"5": 101}
        r = client.get(
            "/v1/premises/P1/readings/versions",
            params={"meter_id": "E1", "day": "2026-08-10"},
            headers={"Authorization": f"Bearer {ops}"},
        )
        assert r.status_code == 200
        (v1,) = r.json()
        assert v1["version"] == 1 and v1["edited_by"] == "OPS" and "5" not in v1["readings"]
        stored = {x.interval_start: x for x in store.readings_for("H1", "E1", "1-0:1.8.0")}
        assert stored[t0 + 5 * 1800].value == 101 and stored[t0 + 5 * 1800].quality & 0x2  # manually edited
        bad = {**body, "values": {"48": 1}}
        r = client.post(
            "/v1/premises/P1/readings/edits", json=bad, headers={"Authorization": f"Bearer {ops}"}
        )
        # slot 48 is outside the published key pattern (0..47): refused as the schema says (issue 22)
        assert r.status_code == 422 and "body.values" in r.json()["detail"]
        r = client.post(
            "/v1/premises/P1/readings/edits",
            json={**body, "day": "2026-08-01"},
            headers={"Authorization": f"Bearer {ops}"},
        )
        assert r.status_code == 404
        r = client.post(
            "/v1/premises/P1/readings/edits", json=body, headers={"Authorization": f"Bearer {sup}"}
        )
        assert r.status_code == 403
        # The held reading: listed with its rule and evidence, then released with a reason.
        auth = {"Authorization": f"Bearer {ops}"}
        r = client.get("/v1/premises/P1/readings/quarantine", params={"meter_id": "E1"}, headers=auth)
        (held,) = r.json()
        assert (held["rule"], held["value"]) == ("negative", -7) and "export" in held["evidence"]
        decision = {
            "meter_id": "E1",
            "duration": 1800,
            "start": held["start"],
            "rule": "negative",
            "value": -7,
            "decision": "release",
            "reason": "export meter after all",
        }
        r = client.post("/v1/premises/P1/readings/quarantine", json=decision, headers=auth)
        assert r.status_code == 200, r.text
        assert r.json() == {"hub_id": "H1", "decision": "release", "version": 3}
        stored = {x.interval_start: x for x in store.readings_for("H1", "E1", "1-0:1.8.0")}
        assert stored[t0 + 5 * 1800].value == -7
        assert (
            client.get("/v1/premises/P1/readings/quarantine", params={"meter_id": "E1"}, headers=auth).json()
            == []
        )
        r = client.post("/v1/premises/P1/readings/quarantine", json=decision, headers=auth)
        assert r.status_code == 404  # no longer held
        r = client.get("/v1/data-quality", params={"by": "hub"}, headers={"Authorization": f"Bearer {ops}"})
        assert r.status_code == 200
        assert r.json() == [
            {
                "key": "H1",
                "quarantined": 1,
                "flagged": 0,
                "estimated": 0,
                "estimates_replaced": 0,
                "rules": {"negative": 1},
            }
        ]
    store.close()
