"""The IHD over HTTP: pairing, supplier messages and comparisons by management command, the
live-power stream, consent changes, and refusals of bad input."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest

from hub.ihd_home import ELEC, IhdHome, make_home, pair_screen, paired_session
from smarthub.hub.ihd.app import COOKIE, CSRF_HEADER, csrf_token
from smarthub.hub.ihd.store import BadIhdInput, Comparison
from smarthub.hub.privacy import Granularity

START = datetime(2026, 11, 24, 0, 0, tzinfo=UTC)
NOW = START + timedelta(hours=13)


@pytest.fixture
async def home(tmp_path: Path) -> AsyncIterator[IhdHome]:
    h = make_home(tmp_path, START, prepayment=False)
    h.run(START, NOW)
    await h.side.serve()
    yield h
    await h.close()


async def paired(home: IhdHome) -> aiohttp.ClientSession:
    return await paired_session(home.side.url, home.side.store.new_pairing_code(home.clock.now()))


async def test_every_page_and_action_needs_a_paired_screen(home: IhdHome) -> None:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        r = await s.get(home.side.url + "/", allow_redirects=False)
        assert r.status == 303 and r.headers["Location"] == "/pair"
        for method, path in (("GET", "/api/summary"), ("GET", "/events"), ("POST", "/consent")):
            assert (await s.request(method, home.side.url + path)).status == 401
        home.side.store.new_pairing_code(home.clock.now())
        r = await pair_screen(s, home.side.url, "000000x", allow_redirects=False)
        assert r.headers["Location"] == "/pair?error=wrong"
        s.cookie_jar.update_cookies({"ihd_session": "forged"})
        assert (await s.get(home.side.url + "/api/summary")).status == 401
    s = await paired(home)
    try:
        r = await s.post(
            home.side.url + "/consent",
            data={"recipient": "x", "granularity": "daily"},
            headers={"Origin": "http://evil.example"},
        )
        assert r.status == 403  # a cross-site form cannot change consent
        assert home.consent.granularity("x") is Granularity.NONE
    finally:
        await s.close()


async def test_summary_figures_come_from_the_accumulators(home: IhdHome) -> None:
    s = await paired(home)
    try:
        data = await (await s.get(home.side.url + "/api/summary")).json()
    finally:
        await s.close()
    for fuel in ("electricity", "gas"):
        acc = home.side.consumption.supplies[fuel].accumulator
        for name, summary in (
            ("today", acc.today(NOW)),
            ("week", acc.this_week(NOW)),
            ("month", acc.this_month(NOW)),
        ):
            assert data["fuels"][fuel][name]["cost"] == str(summary.cost)
            assert data["fuels"][fuel][name]["co2_kg"] == str(summary.co2_kg)
    assert data["fuels"]["electricity"]["current_rate"]["name"] == "day"
    assert data["fuels"]["electricity"]["next_rate"]["name"] == "night"
    assert {a["name"] for a in data["appliances"]} == {p.profile.name for p in home.plugs}


async def test_a_supplier_message_shows_until_acknowledged(home: IhdHome) -> None:
    body = {
        "sender": "Northern Power",
        "id": "m-1",
        "text": "Your tariff changes on 1 January.",
        "priority": 2,
    }
    first = await home.command("ihd.message", body)
    again = await home.command("ihd.message", body)
    assert first.result == {"sender": "Northern Power", "id": "m-1", "new": True}
    assert again.result is not None and again.result["new"] is False
    bad = await home.command("ihd.message", {**body, "id": "m-2", "priority": 9})
    assert (bad.status, bad.code) == ("refused", "malformed") and "'priority'" in bad.detail, bad
    s = await paired(home)
    try:
        page = await (await s.get(home.side.url + "/")).text()
        assert page.count("Your tariff changes on 1 January.") == 1
        await s.post(home.side.url + "/messages/ack", data={"sender": "Northern Power", "id": "m-1"})
        page = await (await s.get(home.side.url + "/")).text()
        assert "Your tariff changes" not in page
    finally:
        await s.close()


async def test_the_similar_homes_comparison_from_the_gdsc_is_shown(home: IhdHome) -> None:
    body = {
        "start": "2026-11-24",
        "end": "2026-11-25",
        "homes": 214,
        "description": "3-bed semis near you",
        "electricity": {"average_kwh": "9.1", "efficient_kwh": "6.2"},
    }
    assert (await home.command("ihd.comparison", body)).status == "applied"
    s = await paired(home)
    try:
        page = await (await s.get(home.side.url + "/")).text()
    finally:
        await s.close()
    assert "3-bed semis near you (214 homes" in page
    assert 'id="similar-electricity"' in page and "9.10 kWh" in page and "6.20 kWh" in page
    mine = home.side.consumption.supplies["electricity"].accumulator.summary(
        START.date(), START.date() + timedelta(days=1)
    )
    assert f"{mine.kwh.quantize(mine.kwh.__class__('0.01'))} kWh" in page
    for broken, reason in (
        ({**body, "end": "2026-11-24"}, "empty"),
        ({**body, "homes": 0}, "at least one home"),
        ({k: v for k, v in body.items() if k != "electricity"}, "names electricity or gas"),
        ({**body, "electricity": {"average_kwh": "-1", "efficient_kwh": "1"}}, "negative"),
    ):
        with pytest.raises(BadIhdInput, match=reason):
            Comparison.from_json(broken)


async def test_an_appliance_named_by_command_is_priced_from_its_plug(home: IhdHome) -> None:
    plug = home.plugs[0]
    r = await home.command("ihd.appliance", {"meter": plug.eui, "name": "Tumble dryer"})
    assert r.status == "applied"
    assert home.side.store.appliances()[plug.eui] == "Tumble dryer"
    refused = await home.command("ihd.appliance", {"meter": ELEC, "name": "Whole house"})
    assert refused.status == "failed" and "supply meter" in refused.detail
    home.run(NOW + timedelta(minutes=30), NOW + timedelta(hours=1))
    names = {
        a.name for a in home.side.consumption.appliance_costs(START.date(), START.date() + timedelta(days=1))
    }
    assert "Tumble dryer" in names


async def test_live_power_is_pushed_when_the_mirror_changes(home: IhdHome) -> None:
    s = await paired(home)
    try:
        async with s.get(home.side.url + "/events") as stream:
            first = await _event(stream)
            assert first["watts"] == "800"  # derived from the register advance: 400 Wh per half-hour
            while home.side.ihd.live.listeners == 0:
                await asyncio.sleep(0.01)
            home.power(2345, NOW + timedelta(seconds=5))
            pushed = await asyncio.wait_for(_event(stream), 5)
            assert pushed == {"watts": "2345", "time": (NOW + timedelta(seconds=5)).isoformat()}
    finally:
        await s.close()


async def _event(stream: aiohttp.ClientResponse) -> dict[str, str]:
    data = None
    async for raw in stream.content:
        line = raw.decode().rstrip("\n")
        if line.startswith("data: "):
            data = json.loads(line[6:])
        elif line == "" and data is not None:
            return data  # type: ignore[no-any-return]
    raise AssertionError("stream ended")


async def test_consent_page_grants_and_revokes(home: IhdHome) -> None:
    s = await paired(home)
    try:
        await s.post(
            home.side.url + "/consent",
            data={"recipient": "energy-app.example", "granularity": "daily", "action": "set"},
        )
        assert home.privacy.granularity("energy-app.example") == "daily"
        await s.post(home.side.url + "/consent", data={"recipient": "energy-app.example", "action": "revoke"})
        assert home.privacy.granularity("energy-app.example") == "none"
        r = await s.post(
            home.side.url + "/consent", data={"recipient": "x", "granularity": "hourly", "action": "set"}
        )
        assert r.status == 400 and "granularity must be one of" in await r.text()
        page = await (await s.get(home.side.url + "/consent")).text()
        assert 'data-recipient="energy-app.example"' in page and 'data-recipient="gdsc"' in page
    finally:
        await s.close()


# --- the display on the hub's own HTTP server (wan.httpd) -------------------------------------

GUARD = 20.0  # a broken server fails the test instead of hanging it; not a timing assertion


async def _raw(home: IhdHome, request: bytes) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    port = int(home.side.url.rsplit(":", 1)[1])
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), GUARD)
    writer.write(request)
    await writer.drain()
    return reader, writer


async def test_a_strangers_body_is_not_read_it_is_refused_on_the_head(home: IhdHome) -> None:
    # The body never comes: a server reading it would answer 408 at its body timeout, not 401.
    home.side.ihd.body_timeout = 60.0
    reader, writer = await _raw(
        home, b"POST /consent HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\n"
    )
    answer = await asyncio.wait_for(reader.read(), GUARD)  # to EOF: the connection is closed
    writer.close()
    head = answer.split(b"\r\n\r\n", 1)[0].lower()
    assert head.startswith(b"http/1.1 401") and b"connection: close" in head, answer[:300]


async def test_a_live_stream_closed_by_the_screen_unsubscribes(home: IhdHome) -> None:
    token = home.side.store.pair(home.side.store.new_pairing_code(home.clock.now()), home.clock.now())
    reader, writer = await _raw(
        home, f"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: ihd_session={token}\r\n\r\n".encode()
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), GUARD)
    assert b"text/event-stream" in head and b"transfer-encoding: chunked" in head.lower()
    assert b"event: power" in await asyncio.wait_for(reader.readuntil(b"\n\n"), GUARD)
    assert home.side.ihd.live.listeners == 1
    writer.close()
    async with asyncio.timeout(GUARD):
        while home.side.ihd.live.listeners:
            await asyncio.sleep(0.01)


async def test_a_live_stream_ends_when_the_screen_sends_on_it(home: IhdHome) -> None:
    """An EventSource sends nothing on its stream's connection; bytes that would pile up unread
    end the stream and close the connection instead."""
    token = home.side.store.pair(home.side.store.new_pairing_code(home.clock.now()), home.clock.now())
    reader, writer = await _raw(
        home, f"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: ihd_session={token}\r\n\r\n".encode()
    )
    await asyncio.wait_for(reader.readuntil(b"event: power"), GUARD)
    writer.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" * 100)
    await writer.drain()
    rest = await asyncio.wait_for(reader.read(), GUARD)  # to EOF: closed
    writer.close()
    assert b"HTTP/1.1 200" not in rest and b"HTTP/1.1 303" not in rest  # none of them answered
    async with asyncio.timeout(GUARD):
        while home.side.ihd.live.listeners:
            await asyncio.sleep(0.01)


async def test_stopping_the_display_ends_the_live_streams(tmp_path: Path) -> None:
    h = make_home(tmp_path, START, prepayment=False)
    await h.side.serve()
    token = h.side.store.pair(h.side.store.new_pairing_code(START), START)
    reader, writer = await _raw(
        h, f"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: ihd_session={token}\r\n\r\n".encode()
    )
    await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), GUARD)
    async with asyncio.timeout(GUARD):
        while not h.side.ihd.live.listeners:
            await asyncio.sleep(0.01)
    live = h.side.ihd.live
    await asyncio.wait_for(h.close(), GUARD)
    assert live.listeners == 0  # the stream was closed by the time the display stopped
    await asyncio.wait_for(reader.read(), GUARD)  # and the connection: EOF
    assert reader.at_eof()
    writer.close()


async def test_a_multipart_form_is_refused_with_a_reason(home: IhdHome) -> None:
    s = await paired(home)
    try:
        csrf = csrf_token(next(c.value for c in s.cookie_jar if c.key == COOKIE))
        form = aiohttp.FormData({"recipient": "x", "granularity": "daily"}, default_to_multipart=True)
        r = await s.post(home.side.url + "/consent", data=form, headers={CSRF_HEADER: csrf})
        assert r.status == 415 and "x-www-form-urlencoded" in await r.text()
        assert home.consent.granularity("x") is Granularity.NONE
    finally:
        await s.close()


async def test_the_data_services_page_shows_who_holds_consent_and_what_each_read(home: IhdHome) -> None:
    """ihd.services from the GDSC (issue 25 item 3): per service its consent, its reads (when,
    what, which local days) and refused attempts; a consent past its expiry is not shown as held;
    an older view arriving late is ignored, an empty one clears the page."""
    s = await paired(home)
    try:
        page = await (await s.get(home.side.url + "/services")).text()
        assert "has not sent this home's data services yet" in page
        now = home.clock.now()
        body = {
            "as_of": now.isoformat(),
            "services": [
                {
                    "id": "ADV",
                    "organisation": "Advisor <Ltd>",
                    "purpose": "tariff advice",
                    "status": "approved",
                    "consents": [
                        {
                            "id": "K1",
                            "data_kinds": ["readings"],
                            "granularity": "half-hourly",
                            "granted": "2026-11-01T09:00:00+00:00",
                            "expires": "2027-11-01T09:00:00+00:00",
                        }
                    ],
                    "reads": [
                        {
                            "at": "2026-11-24T10:30:00+00:00",
                            "data_kind": "readings",
                            "granularity": "half-hourly",
                            "meter": "E1",
                            # local (GMT) days 1 Nov 2025 .. 31 Oct 2026 (BST: 23:00 UTC the day before)
                            "periods": [
                                {"start": "2025-11-01T00:00:00+00:00", "end": "2026-11-01T00:00:00+00:00"}
                            ],
                        }
                    ],
                    "reads_total": 18,
                    "refused_total": 2,
                    "last_read": "2026-11-24T10:30:00+00:00",
                },
                {
                    "id": "OLD",
                    "organisation": "Old Advice Co",
                    "purpose": "",
                    "status": "suspended",
                    "consents": [
                        {
                            "id": "K2",
                            "data_kinds": ["readings"],
                            "granularity": "monthly",
                            "granted": "2026-01-01T09:00:00+00:00",
                            "expires": "2026-11-01T09:00:00+00:00",  # expired
                        }
                    ],
                    "reads": [],
                    "reads_total": 0,
                    "refused_total": 0,
                    "last_read": None,
                },
            ],
        }
        assert (await home.command("ihd.services", body)).status == "applied"
        page = await (await s.get(home.side.url + "/services")).text()
        adv = page[page.index('data-service="ADV"') : page.index('data-service="OLD"')]
        old = page[page.index('data-service="OLD"') :]
        assert "Advisor &lt;Ltd&gt;" in adv and "tariff advice" in adv
        assert "readings, half-hourly, since 01 Nov 2026, until 01 Nov 2027" in adv
        assert "Read 18 times, last 24 Nov 2026 10:30." in adv
        assert "<td>24 Nov 2026 10:30</td><td>readings E1</td><td>half-hourly</td>" in adv
        assert "01 Nov 2025 – 31 Oct 2026" in adv
        assert "2 attempts refused." in adv
        assert "suspended" in old and "No consent now." in old and "Has read nothing." in old
        assert "As recorded by the GDSC at 24 Nov 2026 13:00." in page

        late = {**body, "as_of": (now - timedelta(hours=1)).isoformat(), "services": []}
        result = await home.command("ihd.services", late)
        assert result.status == "applied" and result.result == {**(result.result or {}), "kept": False}
        assert "Advisor &lt;Ltd&gt;" in await (await s.get(home.side.url + "/services")).text()
        cleared = {**late, "as_of": (now + timedelta(minutes=1)).isoformat()}
        assert (await home.command("ihd.services", cleared)).status == "applied"
        page = await (await s.get(home.side.url + "/services")).text()
        assert "No data service holds your consent or has read your data." in page
        assert '<a href="/services">' in await (await s.get(home.side.url + "/")).text()
    finally:
        await s.close()
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as stranger:
        r = await stranger.get(home.side.url + "/services", allow_redirects=False)
        assert r.status == 303 and r.headers["Location"] == "/pair"
