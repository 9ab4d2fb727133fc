"""Issue 25 item 2, the prepayment top-up provider end to end: payments by card and mobile from a
simulated payment provider (declines, webhooks delivered again and again), turned into top-ups
through the GDSC's API under uvicorn on loopback, reached through a proxy that injects a GDSC
outage (connections refused) and lost answers (the GDSC did the top-up, the provider never heard).
No top-up may be lost or doubled: every paid payment ends as exactly one voucher at the GDSC or as
a refund, with a receipt; SQLite and PostgreSQL."""

from __future__ import annotations

import contextlib
import json
import os
import random
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from gdsc.api_world import NOW, World, build
from sqlalchemy import select

from smarthub.gdsc.api.auth.clients import ClientRegistry
from smarthub.gdsc.commands.vouchers import settle, vouchers
from smarthub_services.client import Credentials, DataServicesClient
from smarthub_services.payments import Declined, SimulatedPaymentProvider
from smarthub_services.topup_provider import DELIVERED, REFUNDED, TopUpProvider


class FaultyLink:
    """A TCP proxy on loopback in front of the API. Per connection: ``pass`` forwards both ways,
    ``down`` closes at once (the GDSC unreachable), ``drop`` forwards the request, lets the GDSC
    carry it out and closes as its answer begins, passing nothing on (a response lost on the way back)."""

    def __init__(self, upstream: str, rng: random.Random) -> None:
        host, port = upstream.removeprefix("http://").split(":")
        self.upstream = (host, int(port))
        self.rng = rng
        self.modes: tuple[str, ...] = ("pass",)
        self.dropped: list[bytes] = []  # the request line of each answer lost
        self.refused = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            mode = self.rng.choice(self.modes)
            if mode == "down":
                self.refused += 1
                client.close()
                continue
            threading.Thread(target=self._relay, args=(client, mode), daemon=True).start()

    def _relay(self, client: socket.socket, mode: str) -> None:
        upstream = socket.create_connection(self.upstream)

        asked: list[bytes] = []

        def forward() -> None:
            try:
                while data := client.recv(65536):
                    asked.append(data)
                    upstream.sendall(data)
            except OSError:
                pass

        threading.Thread(target=forward, daemon=True).start()
        try:
            while data := upstream.recv(65536):
                if mode == "drop":  # the answer has begun: the GDSC is done; it never arrives
                    self.dropped.append(b"".join(asked).split(b"\r\n", 1)[0])
                    break
                client.sendall(data)
        except OSError:
            pass
        for end in (upstream, client):  # shutdown first: a recv blocked in `forward` would hold it open
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
            end.close()

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def world(db_url: str, tmp_path: Path) -> Iterator[World]:
    w = build(db_url, tmp_path / "state")
    yield w
    w.store.close()


def test_no_top_up_lost_or_doubled_under_retries_and_an_outage(world: World, tmp_path: Path) -> None:
    rng = random.Random(2025)
    # The supplier S1 registers an OAuth2 client for its top-up agent: commands only.
    scopes = frozenset({"commands:write", "commands:read"})
    client_id, secret = ClientRegistry(world.store.engine).register("S1", scopes, NOW)
    payments = SimulatedPaymentProvider(random.Random(7), decline=0.15, duplicate=0.3, lost_ack=0.2)
    with world.served() as base:
        link = FaultyLink(base, rng)
        api = DataServicesClient(link.url, Credentials(client_id, secret), timeout=10)
        provider = TopUpProvider(tmp_path / "ledger.sqlite", api, payments.refund)
        paid, declined = [], 0
        # Rounds: the GDSC down; up; every answer lost (the GDSC acts, the provider never hears);
        # down again; then a mix per connection. New payments arrive throughout.
        schedule = [("down",), ("pass",), ("drop",), ("down",), ("pass", "drop", "down"), ("pass", "drop")]
        for modes in [*schedule, *[("pass",)] * 6]:
            link.modes = modes
            for _ in range(6 if len(paid) < 30 else 0):
                meter = "G1" if rng.random() < 0.1 else "E1"  # S1 does not supply P1's gas: refused
                try:
                    paid.append(
                        payments.pay(
                            rng.choice(("card", "mobile")), "P1", meter, Decimal(rng.choice((5, 10, 20)))
                        )
                    )
                except Declined:
                    declined += 1
            payments.notify(provider.on_payment)
            provider.deliver()
        for _ in range(30):  # the payment provider's last redeliveries
            if payments.notify(provider.on_payment) == 0:
                break
        assert payments.outbox == []
        assert provider.deliver() == 0
        # The meters' verdicts (as the running GDSC records them from the hubs): the first
        # delivered voucher refused, the others credited; the provider follows its jobs.
        unsettled = [r for r in provider.receipts() if r.state == DELIVERED]
        assert provider.confirm() == len(unsettled)  # no verdict yet
        for i, r in enumerate(unsettled):
            verdict = {"refused": "voucher not for this meter"} if i == 0 else {"credited": True}
            assert r.voucher_id is not None
            settle(world.store, "H1", r.voucher_id, {"status": "applied", "result": verdict}, NOW)
        link.modes = ("pass",)
        assert provider.confirm() == 0
        receipts = {r.payment_id: r for r in provider.receipts()}
        provider.close()
        link.close()

    # The faults did happen: refused connections, answers lost after the GDSC acted, webhooks again.
    lost = [line for line in link.dropped if line.startswith(b"POST /v1/premises/P1/commands/top-up")]
    assert link.refused > 0 and len(lost) >= 5 and declined > 0, (link.refused, link.dropped)
    assert payments.deliveries > len(paid)
    # Every paid payment has exactly one receipt; none for a declined one.
    assert sorted(receipts) == sorted(p.payment_id for p in paid)
    delivered = [r for r in receipts.values() if r.state == DELIVERED]
    refunded = [r for r in receipts.values() if r.state == REFUNDED]
    assert len(delivered) + len(refunded) == len(paid)
    refused_by_gdsc = [r for r in refunded if r.outcome is None]
    refused_by_meter = [r for r in refunded if r.outcome == "refused"]
    assert {r.meter_id for r in refused_by_gdsc} == {"G1"} and all(
        "403" in (r.reason or "") for r in refused_by_gdsc
    )
    assert [r.voucher_id for r in refused_by_meter] == [unsettled[0].voucher_id]
    assert all(r.outcome == "credited" for r in delivered)
    assert payments.refunds == {r.payment_id: r.amount for r in refunded}
    # At the GDSC: exactly one voucher per top-up made, of its amount, and no other.
    with world.store.engine.connect() as conn:
        issued = {v.voucher_id: Decimal(v.amount) for v in conn.execute(select(vouchers))}
    assert issued == {r.voucher_id: r.amount for r in (*delivered, *refused_by_meter)}
    assert sum(issued.values()) == sum(r.amount for r in (*delivered, *refused_by_meter))
    assert "refunded" in refunded[0].text() and "credited" in delivered[0].text()


def test_the_program_pays_delivers_and_prints_the_receipt(world: World, tmp_path: Path) -> None:
    client_id, secret = ClientRegistry(world.store.engine).register("S1", frozenset({"commands:write"}), NOW)
    (tmp_path / "secret").write_text(secret)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    with world.served() as base:
        common = ["--api", base, "--client-id", client_id, "--client-secret-file", str(tmp_path / "secret")]
        run = [
            sys.executable,
            "-m",
            "smarthub_services.topup_provider",
            *common,
            "--ledger",
            str(tmp_path / "l.db"),
        ]
        paid = subprocess.run(
            [*run, "--premises", "P1", "--meter", "E1", "--amount", "12.50", "--method", "mobile"],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        assert paid.returncode == 0, paid.stderr
        receipt = json.loads(paid.stdout)
        assert receipt["state"] == "delivered" and receipt["receipt"].startswith("Top-up £12.50 by mobile")
        again = subprocess.run(run, capture_output=True, text=True, env=env, timeout=120)  # nothing new
        assert again.returncode == 0 and json.loads(again.stdout) == receipt
    with world.store.engine.connect() as conn:
        assert [v.amount for v in conn.execute(select(vouchers))] == ["12.50"]
