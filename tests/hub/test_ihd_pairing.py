"""Pairing a screen with the in-home display, and what a paired screen may do (issue 13 item 2).

The display is served over real HTTP on loopback; the attacks are the ones the issue names: a
brute force of the 6-digit code (also from a web page in the consumer's own browser, through DNS
rebinding), a code that never changes, sessions that never end, and forms without CSRF tokens.
Time is the home's ManualClock, which the display reads."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest

from hub.ihd_home import IhdHome, make_home, pair_screen, paired_session
from smarthub.hub.ihd.app import COOKIE, CSRF_HEADER
from smarthub.hub.ihd.store import MAX_FAILURES, PAIRING_TTL, SESSION_IDLE, SESSION_MAX
from smarthub.hub.privacy import Granularity

START = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


@pytest.fixture
async def home(tmp_path: Path) -> AsyncIterator[IhdHome]:
    h = make_home(tmp_path, START, prepayment=False, plugs=())
    await h.side.serve()
    yield h
    await h.close()


def _jar() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


def _other(code: str) -> str:
    return f"{(int(code) + 1) % 10**6:06d}"


async def test_a_code_pairs_one_screen_once_and_only_before_it_expires(home: IhdHome) -> None:
    url, store = home.side.url, home.side.store
    code = store.new_pairing_code(home.clock.now())
    first = await paired_session(url, code, "Kitchen tablet")
    async with _jar() as second:
        r = await pair_screen(second, url, code)  # the same code again: used up
        assert r.status == 403 and "no pairing code waiting" in await r.text()
        late = store.new_pairing_code(home.clock.now())
        home.clock.advance(PAIRING_TTL + timedelta(seconds=1))
        r = await pair_screen(second, url, late)
        assert r.status == 403 and "no pairing code waiting" in await r.text()
        assert COOKIE not in {c.key for c in second.cookie_jar}
    assert (await first.get(url + "/api/summary")).status == 200
    await first.close()


async def test_wrong_codes_back_off_then_lock_pairing_until_a_new_code_is_made(home: IhdHome) -> None:
    url, store = home.side.url, home.side.store
    code = store.new_pairing_code(home.clock.now())
    async with _jar() as s:
        r = await pair_screen(s, url, _other(code), allow_redirects=False)
        assert r.status == 303 and r.headers["Location"] == "/pair?error=wrong"
        # Straight away, even the right code waits: the back-off is the hub's, not the client's.
        r = await pair_screen(s, url, code)
        assert r.status == 429 and int(r.headers["Retry-After"]) >= 1
        waits = []
        for _ in range(MAX_FAILURES - 1):
            r = await pair_screen(s, url, code)
            waits.append(int(r.headers["Retry-After"]))
            home.clock.advance(timedelta(seconds=waits[-1]))
            r = await pair_screen(s, url, _other(code), allow_redirects=False)
        assert waits == sorted(waits) and waits[-1] > waits[0]  # the waits grow
        assert r.status == 403 and "Too many wrong codes" in await r.text()
        home.clock.advance(timedelta(hours=1))
        r = await pair_screen(s, url, code)  # the right code, too late: void until a new one
        assert r.status == 403 and "Too many wrong codes" in await r.text()
        assert COOKIE not in {c.key for c in s.cookie_jar}
        r = await pair_screen(s, url, store.new_pairing_code(home.clock.now()))
        assert r.status == 200 and r.url.path == "/"


async def test_a_page_on_another_site_cannot_pair_or_read_through_dns_rebinding(home: IhdHome) -> None:
    """A rebinding page reaches the hub's address under its own name: the Host header says so."""
    url, store = home.side.url, home.side.store
    code = store.new_pairing_code(home.clock.now())
    port = url.rsplit(":", 1)[1]
    async with _jar() as s:
        evil = {"Host": f"attacker.example:{port}"}
        r = await s.get(url + "/pair", headers=evil)
        assert r.status == 421
        r = await s.post(url + "/pair", data={"code": code}, headers=evil)
        assert r.status == 421
        assert store.pairing_open(home.clock.now())  # not even counted as an attempt
    paired = await paired_session(url, code)
    try:
        r = await paired.get(url + "/api/summary", headers={"Host": f"attacker.example:{port}"})
        assert r.status == 421
        for host in (f"127.0.0.1:{port}", f"localhost:{port}"):
            assert (await paired.get(url + "/api/summary", headers={"Host": host})).status == 200
    finally:
        await paired.close()


async def test_a_session_ends_when_unused_and_at_its_maximum_age(home: IhdHome) -> None:
    url, store = home.side.url, home.side.store
    idle = await paired_session(url, store.new_pairing_code(home.clock.now()))
    used = await paired_session(url, store.new_pairing_code(home.clock.now()))
    try:
        home.clock.advance(SESSION_IDLE - timedelta(days=1))
        assert (await used.get(url + "/api/summary")).status == 200
        home.clock.advance(timedelta(days=2))
        assert (await idle.get(url + "/api/summary")).status == 401  # unused for 31 days
        assert (await used.get(url + "/api/summary")).status == 200
        while home.clock.now() < START + SESSION_MAX - timedelta(days=20):
            home.clock.advance(timedelta(days=20))
            assert (await used.get(url + "/api/summary")).status == 200
        home.clock.advance(timedelta(days=21))
        assert (await used.get(url + "/api/summary")).status == 401  # a year after pairing
    finally:
        await idle.close()
        await used.close()


async def test_paired_screens_are_listed_and_can_be_unpaired(home: IhdHome) -> None:
    url, store = home.side.url, home.side.store
    kitchen = await paired_session(url, store.new_pairing_code(home.clock.now()), "Kitchen tablet")
    try:
        # The kitchen screen makes the code for the hall screen.
        page = await (await kitchen.post(url + "/screens/code")).text()
        found = re.search(r'id="pairing-code" class="big">(\d{6})<', page)
        assert found is not None, page
        hall = await paired_session(url, found.group(1), "Hall display")
        page = await (await kitchen.get(url + "/screens")).text()
        assert "Kitchen tablet</strong> (this screen)" in page and "Hall display</strong>" in page
        hall_id = next(s.id for s in store.screens(home.clock.now()) if s.name == "Hall display")
        r = await kitchen.post(url + "/screens/unpair", data={"screen": str(hall_id)})
        assert r.status == 200 and "Hall display" not in await r.text()
        assert (await hall.get(url + "/api/summary")).status == 401
        await hall.close()
        assert [s.name for s in store.screens(home.clock.now())] == ["Kitchen tablet"]
    finally:
        await kitchen.close()


async def test_state_changing_forms_need_the_sessions_csrf_token(home: IhdHome) -> None:
    url, store = home.side.url, home.side.store
    s = await paired_session(url, store.new_pairing_code(home.clock.now()))
    try:
        token = s.headers.pop(CSRF_HEADER)
        form = {"recipient": "energy-app.example", "granularity": "daily", "action": "set"}
        for extra in ({}, {"csrf": "0" * 32}):  # a cross-site form has none, or guesses
            r = await s.post(url + "/consent", data={**form, **extra})
            assert r.status == 403 and "CSRF" in await r.text()
        assert home.consent.granularity("energy-app.example") is Granularity.NONE
        page = await (await s.get(url + "/consent")).text()
        assert f'name="csrf" value="{token}"' in page  # every form of the page carries it
        r = await s.post(url + "/consent", data={**form, "csrf": token})
        assert r.status == 200 and home.consent.granularity("energy-app.example") is Granularity.DAILY
        # The pairing form's token must match its own cookie (double submit).
        code = store.new_pairing_code(home.clock.now())
        async with _jar() as stranger:
            r = await stranger.post(url + "/pair", data={"code": code, "csrf": "made-up"})
            assert r.status == 403 and store.pairing_open(home.clock.now())
    finally:
        await s.close()


def test_the_pairing_code_is_not_kept_in_clear(home: IhdHome) -> None:
    code = home.side.store.new_pairing_code(home.clock.now())
    files = sorted((home.dir / "ihd").glob("ihd.sqlite*"))
    assert files and all(code.encode() not in f.read_bytes() for f in files)
