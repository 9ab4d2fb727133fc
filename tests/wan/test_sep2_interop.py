"""IEEE 2030.5 as an independent implementation reads the hub: py20305's ``Sep2Client`` (the
SunSpec/DER Security CSIP client, its own TLS context and xsdata models of the 2030.5 XSD)
connects to a running hub over mutual TLS with each role's certificate, crawls from ``/dcap``
with no prior knowledge, and pages every list it finds with ``l`` = 1, 5 and 1000."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import py20305.models.sep as sep_models
import pytest
from py20305.client import Sep2Client, TlsConfig
from py20305.client.errors import Sep2ProtocolError

from wan.crawl import Crawl, Fetch, crawl, page_list
from wan.full_hub import CLIENTS, REFUSED, FullHub, full_hub


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def hub(tmp_path: Path, wall_now: datetime) -> AsyncIterator[FullHub]:
    async with full_hub(tmp_path, wall_now) as h:
        yield h


def client(hub: FullHub, who: str) -> Sep2Client:
    cert, key, ca = hub.files(who)
    return Sep2Client(hub.url, tls=TlsConfig(client_cert=cert, client_key=key, ca_cert=ca))


def fetcher(c: Sep2Client) -> Fetch:
    async def fetch(href: str, kind: str) -> bytes:
        # py20305 parses the body into its model of the advertised type (xsdata, from the XSD).
        _, body = await c.get_with_body(href, getattr(sep_models, kind))
        return body

    return fetch


async def crawl_as(hub: FullHub, who: str) -> Crawl:
    async with client(hub, who) as c:
        return await crawl(fetcher(c), CLIENTS[who].start)


@pytest.mark.parametrize("who", sorted(CLIENTS))
async def test_every_href_resolves_to_its_advertised_type_for_every_role(hub: FullHub, who: str) -> None:
    found = await crawl_as(hub, who)
    kinds = set(found.documents.values())
    # What each role reaches, from /dcap alone (no parameter a href does not carry).
    expected = {
        "collector": {
            "MirrorUsagePointList",
            "MirrorUsagePoint",
            "MirrorMeterReading",
            "ReadingList",
            "ReadingSet",
            "Reading",
            "ReadingType",
            "LogEventList",
            "LogEvent",
            "EndDevice",
        },
        "collector-for-registers": {"UsagePoint", "MeterReading", "Reading", "ReadingType", "EndDevice"},
        "party-daily": {"MirrorUsagePoint", "ReadingSet", "ReadingList", "Reading"},
        "party-registers": {"MeterReading", "Reading", "ReadingType"},
        "ihd": {
            "TariffProfile",
            "RateComponent",
            "TimeTariffInterval",
            "ConsumptionTariffInterval",
            "MessagingProgram",
            "TextMessage",
            "UsagePoint",
            "MeterReading",
            "Reading",
            "ReadingType",
            "Time",
        },
    }[who]
    assert expected <= kinds, expected - kinds
    if who.endswith("registers"):
        assert "ReadingSetList" not in kinds and "MirrorUsagePointList" not in kinds  # no interval data
        registers = [h for h, k in found.documents.items() if k == "MeterReading"]
        assert any("/mr/1.0.1.8.1.255" in h for h in registers), registers


@pytest.mark.parametrize("who", sorted(CLIENTS))
async def test_every_list_pages_with_l_1_5_and_1000_and_gives_every_item_exactly_once(
    hub: FullHub, who: str
) -> None:
    async with client(hub, who) as c:
        fetch = fetcher(c)
        found = await crawl(fetch, CLIENTS[who].start)
        assert found.lists
        longest = 0
        for href, kind in found.lists.items():
            pages = {limit: await page_list(fetch, href, kind, limit) for limit in (1, 5, 1000)}
            one = pages[1].items
            assert len(one) == len(set(one)) == pages[1].all_, (href, kind)  # every item once
            for limit, got in pages.items():
                assert got.items == one, (href, limit)  # the same items in the same order
                assert got.requests == max(1, -(-len(one) // limit)), (href, limit)
            longest = max(longest, len(one))
    # Lists of several pages at l = 5: readings of a day, the hub's events, a display's messages
    # (a party with daily or register consent has short lists only, and no events).
    assert longest > 5 or who.startswith("party") or who.endswith("registers"), longest


async def test_a_list_without_l_returns_one_item_and_past_the_end_none(hub: FullHub) -> None:
    async with client(hub, "collector") as c:
        first = await c.get("/upt", sep_models.UsagePointList)
        assert first.results == 1 and first.all == 3 and len(first.usage_point) == 1  # E, G, the DSMR meter
        past = await c.get("/upt?s=3&l=5", sep_models.UsagePointList)
        assert past.results == 0 and past.all == 3 and not past.usage_point
        mup = await c.get("/mup?s=0&l=1", sep_models.MirrorUsagePointList)
        assert mup.results == 1 and len(mup.mirror_usage_point) == 1


@pytest.mark.parametrize("who", sorted(REFUSED))
async def test_roles_that_read_nothing_here_are_refused_at_dcap(hub: FullHub, who: str) -> None:
    async with client(hub, who) as c:
        with pytest.raises(Sep2ProtocolError) as refused:
            await c.get("/dcap", sep_models.DeviceCapability)
        assert refused.value.status_code == 403
