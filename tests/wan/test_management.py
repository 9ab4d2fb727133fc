"""Signed management commands from the GDSC to a hub over mutual TLS: executed once, or refused and logged."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from smarthub.clock import SystemClock
from smarthub.gdsc.commands.signer import CommandSigner
from smarthub.gdsc.fleet.pki import CertificateAuthority, Role
from smarthub.gdsc.store import Store
from smarthub.hub.history import HistoryStore
from smarthub.hub.hub import SmartHub
from smarthub.hub.management import ManagementInterface
from smarthub.wan.client.hub_client import HubClient
from smarthub.wan.contract.bodies import DiagnosticPing
from smarthub.wan.contract.commands import Command
from smarthub.wan.server.resources import HubWanServer
from smarthub.wan.tls import client_context, server_context


@dataclass
class Rig:
    hub: SmartHub
    mgmt: ManagementInterface
    client: HubClient
    signer: CommandSigner
    ca: CertificateAuthority
    dir: Path
    port: int


def _signer(issued, counter: list[int]) -> CommandSigner:  # type: ignore[no-untyped-def]
    def next_counter(hub_id: str) -> int:
        counter[0] += 1
        return counter[0]

    return CommandSigner(issued.private_key, issued.cert_pem, next_counter)


@pytest.fixture
async def rig(tmp_path: Path, wall_now: datetime) -> AsyncIterator[Rig]:
    ca = CertificateAuthority.create("test GDSC CA", wall_now)
    ca.save(tmp_path / "ca")
    hub_cert = ca.issue(Role.HUB, "HUB1", wall_now, hosts=("127.0.0.1",))
    hub_cert.save(tmp_path, "hub")
    ca.issue(Role.COLLECTOR, "collector", wall_now).save(tmp_path, "collector")
    hub = SmartHub("HUB1", HistoryStore(tmp_path / "history.sqlite"))
    mgmt = ManagementInterface("HUB1", ca.certificate, SystemClock(), tmp_path / "management.sqlite")
    for ctype, handler in hub.command_handlers().items():
        mgmt.register(ctype, handler)
    server = HubWanServer("HUB1", hub_cert.lfdi, hub, lambda: 0, management=mgmt)
    port = await server.start(
        "127.0.0.1", 0, server_context(tmp_path / "hub.pem", tmp_path / "hub.key", tmp_path / "ca" / "ca.pem")
    )
    ctx = client_context(tmp_path / "collector.pem", tmp_path / "collector.key", tmp_path / "ca" / "ca.pem")
    client = HubClient(f"https://127.0.0.1:{port}", ctx, hub_cert.lfdi)
    signer = _signer(ca.issue(Role.OPERATOR, "gdsc-ops", wall_now), [0])
    yield Rig(hub, mgmt, client, signer, ca, tmp_path, port)
    await client.close()
    await server.stop()
    mgmt.close()
    hub.history.close()


def newer_table(hub: SmartHub, version: str) -> dict:  # type: ignore[type-arg]
    table = hub.mapping.to_dict()
    table["version"] = version
    table["entries"].append(
        {"protocol": "wmbus", "key": "water:volume/s2", "obis": "8-0:1.0.0*2", "unit": "m3"}
    )
    return table


async def test_mapping_update_applied_once_answered_again_and_replay_refused(rig: Rig) -> None:
    cmd = rig.signer.command(
        "HUB1", "mapping.update", {"table": newer_table(rig.hub, "2027.1")}, datetime.now(UTC)
    )
    verdict = await rig.client.post_command(cmd.envelope())
    assert verdict["status"] == "applied" and verdict["result"] == {"version": "2027.1"}
    assert rig.hub.mapping.version == "2027.1"
    # The same envelope again (the collector lost the answer): the same verdict, not run again.
    again = await rig.client.post_command(cmd.envelope())
    assert again == verdict and rig.hub.mapping.version == "2027.1"
    assert rig.mgmt.log()[0][3:] == ("answered", "re-delivered: the verdict again")
    # Once a later command has run, the earlier one replayed is refused by its counter.
    ping = rig.signer.command("HUB1", "diagnostic.ping", {"nonce": 7}, datetime.now(UTC))
    assert (await rig.client.post_command(ping.envelope()))["status"] == "applied"
    replayed = await rig.client.post_command(cmd.envelope())  # captured and replayed
    assert (replayed["status"], replayed["code"]) == ("refused", "replay")
    assert rig.mgmt.log()[0][3:] == ("refused", "replay: counter 1 is not above the last accepted 2")


async def test_a_command_delivered_again_while_it_runs_gets_its_verdict(rig: Rig) -> None:
    """A collector whose connection dropped while the hub ran a long command (a firmware
    update's probation) delivers it again: the re-delivery waits for the running command's
    verdict, and the command runs once. Before, no verdict was kept yet, the counter was
    taken, and the re-delivery was refused as a replay: the GDSC took an applied firmware
    update for refused (the 7-day chaos run with channel hubs on PostgreSQL, issue 26)."""
    gate, runs = asyncio.Event(), []

    async def long_ping(body: DiagnosticPing) -> dict[str, object]:
        runs.append(body.nonce)
        await gate.wait()
        return {"pong": body.nonce}

    rig.mgmt.register("diagnostic.ping", long_ping)
    envelope = rig.signer.command("HUB1", "diagnostic.ping", {"nonce": 5}, datetime.now(UTC)).envelope()
    first = asyncio.create_task(rig.mgmt.handle(envelope))
    while not runs:
        await asyncio.sleep(0)
    again = asyncio.create_task(rig.mgmt.handle(envelope))
    for _ in range(5):
        await asyncio.sleep(0)
    assert not again.done()  # waiting for the verdict, not refused
    gate.set()
    verdict, second = await first, await again
    assert (verdict.status, verdict.result) == ("applied", {"pong": 5}) and second == verdict
    assert runs == [5] and rig.mgmt.log()[0][3:] == ("answered", "re-delivered: the verdict again")
    # Finished, the kept verdict answers a further re-delivery as before.
    assert await rig.mgmt.handle(envelope) == verdict


async def test_tampered_unsigned_and_foreign_commands_are_refused(rig: Rig, wall_now: datetime) -> None:
    good = rig.signer.command("HUB1", "diagnostic.ping", {"nonce": 1}, wall_now)
    tampered = json.loads(good.envelope())
    tampered["payload"] = tampered["payload"].replace('"nonce":1', '"nonce":2')
    foreign_ca = CertificateAuthority.create("test GDSC CA", wall_now)
    foreign = _signer(foreign_ca.issue(Role.OPERATOR, "gdsc-ops", wall_now), [100])
    not_operator = _signer(rig.ca.issue(Role.COLLECTOR, "collector-2", wall_now), [200])
    cases = [
        (json.dumps(tampered).encode(), "bad_signature"),
        (json.dumps({**tampered, "signature": ""}).encode(), "bad_signature"),
        (b"{not json", "malformed"),
        (foreign.command("HUB1", "diagnostic.ping", {}, wall_now).envelope(), "unknown_signer"),
        (not_operator.command("HUB1", "diagnostic.ping", {}, wall_now).envelope(), "unknown_signer"),
        (rig.signer.command("HUB2", "diagnostic.ping", {}, wall_now).envelope(), "wrong_hub"),
    ]
    for envelope, code in cases:
        verdict = await rig.client.post_command(envelope)
        assert (verdict["status"], verdict["code"]) == ("refused", code), (code, verdict)
    assert rig.mgmt.last_counter == 0  # nothing refused consumed a counter
    assert [row[3] for row in rig.mgmt.log()] == ["refused"] * len(cases)


async def test_a_failing_command_reports_failure_and_consumes_its_counter(
    rig: Rig, wall_now: datetime
) -> None:
    old = rig.signer.command("HUB1", "mapping.update", {"table": newer_table(rig.hub, "2000.1")}, wall_now)
    verdict = await rig.client.post_command(old.envelope())
    assert verdict["status"] == "failed" and "not newer" in verdict["detail"]
    assert rig.hub.mapping.version != "2000.1"
    assert rig.mgmt.last_counter == 1


async def test_unknown_command_type_is_refused(rig: Rig, wall_now: datetime) -> None:
    cmd = rig.signer.sign(Command("HUB1", 7, "network.reconfigure", {}, wall_now.isoformat()))
    verdict = await rig.client.post_command(cmd.envelope())
    assert (verdict["status"], verdict["code"]) == ("refused", "unsupported")


@pytest.mark.parametrize("role", [Role.PARTY, Role.INSTALLER, Role.IHD])
async def test_mgmt_from_a_certificate_other_than_a_collectors_is_refused_before_it_is_logged(
    rig: Rig, wall_now: datetime, role: Role
) -> None:
    """Issue 13 item 8: a party, installer or display certificate is a WAN client of the hub,
    but commands come from the GDSC's collectors: refused on role, nothing logged or counted."""
    rig.ca.issue(role, "HUB1" if role is Role.IHD else "someone", wall_now).save(rig.dir, "other")
    ctx = client_context(rig.dir / "other.pem", rig.dir / "other.key", rig.dir / "ca" / "ca.pem")
    envelope = rig.signer.command("HUB1", "diagnostic.ping", {"nonce": 1}, wall_now).envelope()
    async with httpx.AsyncClient(verify=ctx, timeout=10) as c:
        for body in (envelope, b"{not json"):
            r = await c.post(f"https://127.0.0.1:{rig.port}/mgmt", content=body)
            assert r.status_code == 403 and "management commands come from the GDSC" in r.text
    assert rig.mgmt.log() == [] and rig.mgmt.last_counter == 0


async def test_the_management_log_keeps_only_the_newest_entries(tmp_path: Path, wall_now: datetime) -> None:
    """Issue 13 item 8: refused commands cannot grow the log without bound."""
    ca = CertificateAuthority.create("test GDSC CA", wall_now)
    mgmt = ManagementInterface(
        "HUB1", ca.certificate, SystemClock(), tmp_path / "management.sqlite", log_limit=50
    )
    try:
        for i in range(300):
            verdict = await mgmt.handle(b'{"junk": %d' % i)
            assert verdict.code == "malformed"
        rows = mgmt.log(limit=1000)
        assert len(rows) == 50 and all(r[3] == "refused" for r in rows)
        signer = _signer(ca.issue(Role.OPERATOR, "gdsc-ops", wall_now), [0])
        ok = await mgmt.handle(signer.command("HUB1", "diagnostic.ping", {"nonce": 7}, wall_now).envelope())
        assert ok.status == "applied" and mgmt.log(limit=1000)[0][2:4] == ("diagnostic.ping", "applied")
        assert len(mgmt.log(limit=1000)) == 50
    finally:
        mgmt.close()


def test_gdsc_command_counters_survive_restart_and_never_repeat(db_url: str) -> None:
    store = Store(db_url)
    store.create_schema()
    assert [store.next_command_counter("HUB1") for _ in range(3)] == [1, 2, 3]
    assert store.next_command_counter("HUB2") == 1
    store.close()
    again = Store(db_url)
    assert again.next_command_counter("HUB1") == 4
    again.close()
