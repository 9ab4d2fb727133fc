"""The IHD in a real browser: it loads, live power follows new readings, the appliance chart
renders, a top-up shows in the balance, revoking consent stops the WAN serving that party, and
"Stop sharing" of a consent the GDSC holds asks the GDSC and shows its answer.

Screenshots (phone- and desktop-sized) go to test-artifacts/browser/ (gitignored)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from hub.ihd_home import IhdHome, make_home
from playwright.async_api import Browser, Page, expect

from smarthub.gdsc.fleet.pki import Role
from smarthub.hub.ihd.app import money
from smarthub.hub.privacy import Granularity
from smarthub.wan.client.hub_client import HubClient, PullError
from smarthub.wan.contract.revocations import APPLIED, RevocationAnswer
from smarthub.wan.server.resources import HubWanServer
from smarthub.wan.tls import client_context, server_context

from .conftest import ARTIFACTS, DESKTOP, PHONE

pytestmark = pytest.mark.browser

# Tuesday 24 November 2026: readings from midnight to 13:00 (outside the friendly-credit hours).
START = datetime(2026, 11, 24, 0, 0, tzinfo=UTC)
NOW = START + timedelta(hours=13)


@pytest.fixture
async def home(tmp_path: Path) -> AsyncIterator[IhdHome]:
    h = make_home(tmp_path, START)
    assert (await h.top_up("30.00")).result["credited"]  # type: ignore[index]
    assert (await h.top_up("20.00", "gas")).result["credited"]  # type: ignore[index]
    h.run(START, NOW)
    await h.side.serve()
    yield h
    await h.close()


async def paired_page(browser: Browser, home: IhdHome, viewport: dict[str, int]) -> Page:
    """A new screen pairs with the hub's code through the pairing form, as a consumer would."""
    page = await browser.new_page(viewport=viewport)  # type: ignore[arg-type]
    await page.goto(home.side.url + "/")
    await expect(page).to_have_url(home.side.url + "/pair")
    await page.fill("input[name=code]", home.side.store.new_pairing_code(home.clock.now()))
    await page.click("button")
    await expect(page.locator("#live-power")).to_be_visible()
    return page


async def test_the_ihd_loads_on_a_phone_and_a_desktop(browser: Browser, home: IhdHome) -> None:
    for name, viewport in (("phone", PHONE), ("desktop", DESKTOP)):
        page = await paired_page(browser, home, viewport)
        for fuel in ("electricity", "gas"):
            today = home.side.consumption.supplies[fuel].accumulator.today(NOW)
            await expect(page.locator(f"#fuel-{fuel} table.figures tr").nth(1)).to_contain_text(
                money(today.cost)
            )
        await expect(page.locator("#fuel-electricity")).to_contain_text("Northern Power")
        await expect(page.locator("#fuel-gas")).to_contain_text("Shire Gas")
        closed = (NOW - START) // timedelta(minutes=30)  # the half-hours 00:00 .. 12:30 have closed
        await expect(page.locator("#halfhours-electricity rect.bar")).to_have_count(closed)
        # Nothing wider than the screen: the page works on a phone without sideways scrolling.
        overflow = await page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{name}: page is {overflow}px wider than the screen"
        await page.screenshot(path=str(ARTIFACTS / f"ihd-{name}.png"), full_page=True)
        await page.close()


async def test_an_unpaired_screen_gets_nothing(browser: Browser, home: IhdHome) -> None:
    page = await browser.new_page()
    resp = await page.goto(home.side.url + "/api/summary")
    assert resp is not None and resp.status == 401
    await page.goto(home.side.url + "/pair")
    await page.fill("input[name=code]", "not-it")
    await page.evaluate("document.querySelector('input[name=code]').removeAttribute('pattern')")
    await page.click("button")
    await expect(page.locator(".error")).to_be_visible()
    await page.close()


async def test_live_power_follows_a_new_reading_within_a_second(browser: Browser, home: IhdHome) -> None:
    page = await paired_page(browser, home, PHONE)
    await page.wait_for_function("() => document.getElementById('live-power').dataset.updated !== undefined")
    assert home.side.ihd.live.listeners == 1
    for watts, shown in ((3456, "3,456"), (120, "120")):
        home.power(watts, home.clock.now() + timedelta(seconds=10))
        # The DOM must change within 1 s of the reading reaching the mirror: SSE, no polling.
        await page.wait_for_function(
            f"() => document.getElementById('live-power').textContent === '{shown}'", timeout=1000
        )
    await page.screenshot(path=str(ARTIFACTS / "ihd-live-phone.png"))
    await page.close()


async def test_the_appliance_breakdown_chart_renders(browser: Browser, home: IhdHome) -> None:
    page = await paired_page(browser, home, DESKTOP)
    costs = home.side.consumption.appliance_costs(NOW.date(), NOW.date() + timedelta(days=1))
    rows = page.locator("#appliance-chart g.row")
    await expect(rows).to_have_count(len(costs) + 1)  # each plug, and the rest of the home
    for i, a in enumerate(costs):
        await expect(rows.nth(i)).to_have_attribute("data-label", a.name)
        await expect(rows.nth(i)).to_contain_text(money(a.cost))
    widths = await rows.locator("rect.bar").evaluate_all("bars => bars.map(b => b.getBBox().width)")
    # Bars are drawn to scale: the bars' widths stand to each other as the costs they show.
    assert widths[0] > 0 and costs[0].cost > 0
    for w, a in zip(widths, costs, strict=False):
        assert w / widths[0] == pytest.approx(float(a.cost / costs[0].cost), abs=0.01)
    await page.locator("#appliances").screenshot(path=str(ARTIFACTS / "ihd-appliances-desktop.png"))
    await page.set_viewport_size(PHONE)
    await page.locator("#appliances").screenshot(path=str(ARTIFACTS / "ihd-appliances-phone.png"))
    await page.close()


async def test_a_top_up_appears_in_the_balance(browser: Browser, home: IhdHome) -> None:
    page = await paired_page(browser, home, PHONE)
    before = home.side.ledger.balance("electricity").credit  # type: ignore[union-attr]
    await expect(page.locator("#balance-electricity")).to_have_text(money(before))
    verdict = await home.top_up("15.00")
    assert verdict.status == "applied" and verdict.result["applied_now"]  # type: ignore[index]
    await page.reload()
    await expect(page.locator("#balance-electricity")).to_have_text(money(before + Decimal("15.00")))
    await expect(page.locator("#topups-electricity li").first).to_contain_text("£15.00")
    # The same voucher delivered again (a WAN retry) is not credited twice.
    assert home.last_voucher is not None
    again = await home.command("prepayment.topup", home.last_voucher)
    assert again.result is not None and again.result["credited"] and not again.result["applied_now"]
    await page.reload()
    await expect(page.locator("#balance-electricity")).to_have_text(money(before + Decimal("15.00")))
    await page.screenshot(path=str(ARTIFACTS / "ihd-topup-phone.png"), full_page=True)
    await page.close()


async def test_consent_revocation_stops_the_wan_serving_that_party(
    browser: Browser, home: IhdHome, tmp_path: Path
) -> None:
    wall = datetime.now(UTC) - timedelta(days=1)
    home.ca.save(tmp_path / "ca")
    hub_cert = home.ca.issue(Role.HUB, "HUB000001", wall, hosts=("127.0.0.1",))
    hub_cert.save(tmp_path, "hub")
    home.ca.issue(Role.PARTY, "energy-app.example", wall).save(tmp_path, "party")
    server = HubWanServer("HUB000001", hub_cert.lfdi, home.hub, lambda: 0, privacy=home.privacy)
    port = await server.start(
        "127.0.0.1", 0, server_context(tmp_path / "hub.pem", tmp_path / "hub.key", tmp_path / "ca" / "ca.pem")
    )
    ctx = client_context(tmp_path / "party.pem", tmp_path / "party.key", tmp_path / "ca" / "ca.pem")
    app = HubClient(f"https://127.0.0.1:{port}", ctx, hub_cert.lfdi)
    page = await paired_page(browser, home, PHONE)
    try:
        await page.click("text=Data sharing")
        party = page.locator('li.recipient[data-recipient="energy-app.example"]')
        await party.locator("select").select_option(Granularity.HALF_HOURLY.value)
        await party.locator("button[value=set]").click()
        await expect(party.locator(".granularity")).to_have_text("half-hourly")
        got = await app.pull_intervals({})
        assert {i.duration for i in got.intervals} == {1800} and got.intervals
        await page.screenshot(path=str(ARTIFACTS / "ihd-consent-granted-phone.png"), full_page=True)

        await party.locator("button[value=revoke]").click()
        await expect(party.locator(".granularity")).to_have_text("none")
        assert home.consent.granularity("energy-app.example") is Granularity.NONE
        with pytest.raises(PullError, match=r"403.*not consented"):
            await app.pull_intervals({})
        await page.set_viewport_size(DESKTOP)
        await page.screenshot(path=str(ARTIFACTS / "ihd-consent-revoked-desktop.png"), full_page=True)
    finally:
        await page.close()
        await app.close()
        await server.stop()


async def test_stop_sharing_a_gdsc_consent_asks_the_gdsc_and_shows_its_answer(
    browser: Browser, home: IhdHome
) -> None:
    """Issue 25 item 3 on a phone: "Stop sharing" beside a consent the GDSC holds records the
    request for the GDSC's next pull and says so; the GDSC's answer then shows the consent ended."""
    consent = {
        "id": "K1",
        "data_kinds": ["readings"],
        "granularity": "half-hourly",
        "granted": "2026-11-01T09:00:00+00:00",
        "expires": "2027-11-01T09:00:00+00:00",
    }
    service = {
        "id": "energy-app.example",
        "organisation": "Energy App Ltd",
        "purpose": "tariff advice",
        "status": "approved",
        "consents": [consent],
        "reads": [],
        "reads_total": 0,
        "refused_total": 0,
        "last_read": None,
    }
    view = {"as_of": NOW.isoformat(), "services": [service]}
    assert (await home.command("ihd.services", view)).status == "applied"
    home.consent.set("energy-app.example", Granularity.HALF_HOURLY, START)
    revocations = home.side.revocations
    assert revocations is not None
    page = await paired_page(browser, home, PHONE)
    try:
        await page.click("text=Data services")
        held = page.locator('li.consent[data-consent="K1"]')
        await held.locator("#stop-K1").click()
        await expect(held.locator(".stop-pending")).to_contain_text(
            "You asked to stop this at 24 Nov 2026 13:00"
        )
        await expect(page.locator("#stop-K1")).to_have_count(0)
        [asked] = revocations.pending()
        assert asked.consent_id == "K1" and home.consent.granularity("energy-app.example") is Granularity.NONE
        overflow = await page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"the page is {overflow}px wider than the phone"
        await page.screenshot(path=str(ARTIFACTS / "ihd-stop-sharing-pending-phone.png"), full_page=True)

        # The GDSC's collector read it and answered (as PUT /crv keeps it).
        revocations.answer([RevocationAnswer(asked.request_id, APPLIED, NOW + timedelta(minutes=12))])
        await page.reload()
        service_item = page.locator('li.service[data-service="energy-app.example"]')
        await expect(service_item.locator(".stopped")).to_contain_text(
            "the GDSC ended the consent at 24 Nov 2026 13:12"
        )
        await expect(page.locator('li.consent[data-consent="K1"]')).to_have_count(0)
        await page.screenshot(path=str(ARTIFACTS / "ihd-stop-sharing-done-phone.png"), full_page=True)
    finally:
        await page.close()
