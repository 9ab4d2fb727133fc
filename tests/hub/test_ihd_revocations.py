"""One-tap revocation of a GDSC consent at the display, the hub's side (issue 25 item 3).

The consumer taps "Stop sharing" beside a consent on the "Data services" page: the hub records
the request (consent, time, the paired screen) durably, stops sharing with the service itself at
once, and serves the request to the GDSC's collector on the pull connection (the
``Smarthub-Revocations`` header, ``GET /crv``), keeping the GDSC's answers (``PUT /crv``)."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from hub.ihd_home import IhdHome, make_home, paired_session
from smarthub.assembly.config import parse_config
from smarthub.assembly.hub import build_hub
from smarthub.gdsc.fleet.pki import CertificateAuthority, Role
from smarthub.hub.ihd.revocations import RevocationRequests
from smarthub.hub.privacy import Granularity
from smarthub.sim.consumer import sample_electricity
from smarthub.wan.client.hub_client import PullError
from smarthub.wan.client.pull import PullClient
from smarthub.wan.contract import revocations as contract
from smarthub.wan.server.resources import HubWanServer
from smarthub.wan.tls import client_context, server_context

START = datetime(2026, 11, 24, 0, 0, tzinfo=UTC)
NOW = START + timedelta(hours=13)


def view(now: datetime, *consents: str) -> dict[str, Any]:
    """An ``ihd.services`` body: service ADV holding ``consents``."""
    return {
        "as_of": now.isoformat(),
        "services": [
            {
                "id": "ADV",
                "organisation": "Advisor Ltd",
                "purpose": "tariff advice",
                "status": "approved",
                "consents": [
                    {
                        "id": c,
                        "data_kinds": ["readings"],
                        "granularity": "half-hourly",
                        "granted": "2026-11-01T09:00:00+00:00",
                        "expires": "2027-11-01T09:00:00+00:00",
                    }
                    for c in consents
                ],
                "reads": [],
                "reads_total": 0,
                "refused_total": 0,
                "last_read": None,
            }
        ],
    }


@pytest.fixture
async def home(tmp_path: Path) -> AsyncIterator[IhdHome]:
    h = make_home(tmp_path, START, prepayment=False, plugs=())
    h.run(START, NOW)
    await h.side.serve()
    yield h
    await h.close()


def test_a_request_is_kept_once_survives_a_restart_and_ends_with_its_answer(tmp_path: Path) -> None:
    path = tmp_path / "revocations.sqlite"
    store = RevocationRequests(path)
    first = store.request("K1", "ADV", "Kitchen #1", NOW)
    again = store.request("K1", "ADV", "Hall #2", NOW + timedelta(seconds=5))  # a second tap
    assert again.request == first.request and first.state == "pending"
    store.request("K2", "ADV", "Hall #2", NOW + timedelta(seconds=9))
    store.close()

    store = RevocationRequests(path)  # the hub restarted (or lost power after the tap)
    try:
        pending = store.pending()
        assert [(r.consent_id, r.screen, r.requested_at) for r in pending] == [
            ("K1", "Kitchen #1", NOW),
            ("K2", "Hall #2", NOW + timedelta(seconds=9)),
        ]
        k1, k2 = pending
        answered = NOW + timedelta(minutes=20)
        answers = [
            contract.RevocationAnswer(k1.request_id, contract.APPLIED, answered),
            contract.RevocationAnswer(k2.request_id, contract.REFUSED, answered, "not yours"),
            contract.RevocationAnswer("unknown", contract.APPLIED, answered),
        ]
        assert store.answer(answers) == 2
        assert store.answer(answers) == 0  # the same answers again change nothing
        assert store.pending() == [] and store.pending_count() == 0
        latest = store.latest()
        assert (latest["K1"].state, latest["K1"].answered) == ("applied", answered)
        assert (latest["K2"].state, latest["K2"].reason) == ("refused", "not yours")
        # A refused request may be asked again; an applied one is not asked twice.
        assert store.request("K2", "ADV", "Hall #2", answered).request.request_id != k2.request_id
        assert store.request("K1", "ADV", "Hall #2", answered).state == "applied"
        assert [r.consent_id for r in store.pending()] == ["K2"]
        with pytest.raises(ValueError, match=r"consent id is 1\.\.64"):
            store.request("", "ADV", "x", NOW)
    finally:
        store.close()


async def test_stop_sharing_records_the_request_and_stops_the_hub_serving_the_service(home: IhdHome) -> None:
    home.consent.set("ADV", Granularity.HALF_HOURLY, START)
    assert (await home.command("ihd.services", view(NOW, "K1", "K2"))).status == "applied"
    s = await paired_session(home.side.url, home.side.store.new_pairing_code(home.clock.now()), "Kitchen")
    try:
        page = await (await s.get(home.side.url + "/services")).text()
        assert 'id="stop-K1"' in page and 'id="stop-K2"' in page
        token = re.search(r'name="csrf" value="([^"]+)"', page)
        assert token is not None
        r = await s.post(
            home.side.url + "/services/stop",
            data={"consent_id": "K1", "csrf": token.group(1)},
            allow_redirects=False,
        )
        assert r.status == 303 and r.headers["Location"] == "/services"
        revocations = home.side.revocations
        assert revocations is not None
        [asked] = revocations.pending()
        assert (asked.consent_id, asked.service_id, asked.requested_at) == ("K1", "ADV", NOW)
        assert asked.screen.startswith("Kitchen #")
        # The hub itself shares nothing more with the service, at once.
        assert home.consent.granularity("ADV") is Granularity.NONE
        page = await (await s.get(home.side.url + "/services")).text()
        k1 = page[page.index('data-consent="K1"') : page.index('data-consent="K2"')]
        assert "You asked to stop this at 24 Nov 2026 13:00 (Kitchen #" in k1 and "within 30 minutes" in k1
        assert 'id="stop-K1"' not in page and 'id="stop-K2"' in page

        # Only a consent the display shows can be stopped from it; a form without its token is refused.
        r = await s.post(home.side.url + "/services/stop", data={"consent_id": "K9", "csrf": token.group(1)})
        assert r.status == 404
        s.headers.pop("X-CSRF-Token", None)
        r = await s.post(home.side.url + "/services/stop", data={"consent_id": "K2"})
        assert r.status == 403
        assert [x.consent_id for x in revocations.pending()] == ["K1"]

        # The GDSC's answer: the consent no longer shows as held, even in the view it sent before.
        revocations.answer(
            [contract.RevocationAnswer(asked.request_id, contract.APPLIED, NOW + timedelta(minutes=7))]
        )
        page = await (await s.get(home.side.url + "/services")).text()
        assert 'data-consent="K1"' not in page and 'data-consent="K2"' in page
        assert "the GDSC ended the consent at 24 Nov 2026 13:07" in page

        # A refusal is shown with its reason, and the button is back to ask again.
        s.headers["X-CSRF-Token"] = token.group(1)
        assert (await s.post(home.side.url + "/services/stop", data={"consent_id": "K2"})).status == 200
        [k2] = revocations.pending()
        revocations.answer(
            [contract.RevocationAnswer(k2.request_id, contract.REFUSED, NOW, "not this tenancy's")]
        )
        page = await (await s.get(home.side.url + "/services")).text()
        assert "The GDSC did not stop it: not this tenancy&#x27;s" in page and 'id="stop-K2"' in page
    finally:
        await s.close()


async def test_the_requests_ride_on_the_collectors_pull_and_take_its_answers(
    home: IhdHome, tmp_path: Path
) -> None:
    """Over mutual TLS as the GDSC's collector reaches the hub: every answer says how many wait,
    ``GET /crv`` lists them, ``PUT /crv`` answers them; another role gets neither."""
    wall = datetime.now(UTC) - timedelta(days=1)
    home.ca.save(tmp_path / "ca")
    hub_cert = home.ca.issue(Role.HUB, "HUB000001", wall, hosts=("127.0.0.1",))
    hub_cert.save(tmp_path, "hub")
    home.ca.issue(Role.COLLECTOR, "collector-1", wall).save(tmp_path, "collector")
    home.ca.issue(Role.PARTY, "ADV", wall).save(tmp_path, "party")
    revocations = home.side.revocations
    assert revocations is not None
    server = HubWanServer("HUB000001", hub_cert.lfdi, home.hub, lambda: 0, privacy=home.privacy)
    server.revocations = revocations
    port = await server.start(
        "127.0.0.1", 0, server_context(tmp_path / "hub.pem", tmp_path / "hub.key", tmp_path / "ca" / "ca.pem")
    )
    ca = tmp_path / "ca" / "ca.pem"
    url = f"https://127.0.0.1:{port}"
    collector = PullClient(client_context(tmp_path / "collector.pem", tmp_path / "collector.key", ca))
    party = PullClient(client_context(tmp_path / "party.pem", tmp_path / "party.key", ca))
    try:
        conn = await collector.connect(url, hub_cert.lfdi)
        await conn.get("/tm", None, lambda _chunk: None)  # every answer says whether requests wait
        assert conn.revocations_waiting == 0
        asked = revocations.request("K1", "ADV", "Kitchen #1", NOW)
        assert json.loads(await conn.get_json(contract.PATH)) == {"requests": [asked.request.to_json()]}
        assert conn.revocations_waiting == 1
        [read] = contract.parse_requests(await conn.get_json(contract.PATH))
        assert read == asked.request

        answered = contract.answers_json([contract.RevocationAnswer(read.request_id, contract.APPLIED, NOW)])
        got: list[bytes] = []
        await conn.put(contract.PATH, answered, contract.MEDIA_TYPE, got.append)
        assert json.loads(b"".join(got)) == {"answered": 1, "pending": 0}
        assert conn.revocations_waiting == 0
        await conn.put(contract.PATH, answered, contract.MEDIA_TYPE)  # an answer read twice: harmless
        assert revocations.latest()["K1"].state == "applied"
        with pytest.raises(PullError, match=r"HTTP 400.*answers"):
            await conn.put(contract.PATH, b'{"answers": [{"id": "x"}]}', contract.MEDIA_TYPE)
        conn.close()

        other = await party.connect(url, hub_cert.lfdi)
        with pytest.raises(PullError, match=r"HTTP 403.*collectors"):
            await other.get_json(contract.PATH)
        other.close()
    finally:
        await server.stop()


async def test_the_assembled_hub_serves_its_displays_requests_across_a_restart(
    tmp_path: Path, wall_now: datetime
) -> None:
    """``smarthub hub`` with a display: its WAN server serves the display's requests, and a
    request made before a restart is still waiting after it."""
    ca = CertificateAuthority.create("GDSC CA", wall_now)
    ca.save(tmp_path / "ca")
    ca.issue(Role.HUB, "HUBREV", wall_now, hosts=("127.0.0.1",)).save(tmp_path, "hub")
    tariff = tmp_path / "tariff.json"
    tariff.write_text(sample_electricity(START.date() - timedelta(days=40)).to_json())
    config = parse_config(f"""
[hub]
id = "HUBREV"
state = "{tmp_path}"
ca = "{tmp_path / "ca" / "ca.pem"}"

[consumer.electricity]
meter = "E1"
supplier = "Northern Power"
tariff = "{tariff}"

[[meters]]
id = "E1"
protocol = "dsmr"
transport = {{ kind = "tcp", host = "127.0.0.1", port = 1 }}
""")
    for run in (1, 2):
        assembly = build_hub(config)
        try:
            side = assembly.consumer
            assert side is not None and side.revocations is not None
            assert assembly.server.revocations is side.revocations
            if run == 1:
                side.revocations.request("K1", "ADV", "Kitchen #1", NOW)
            assert [r.consent_id for r in side.revocations.pending()] == ["K1"]
        finally:
            await assembly.stop()
