"""Rotating the operator certificate (gdsc.commands.rotation): a hub that knows the old one is
revoked refuses what was signed under it, and credits what the GDSC signed again (issue 24)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from cryptography import x509
from sqlalchemy import select

from smarthub.clock import ManualClock
from smarthub.gdsc.commands.rotation import Resigned, resign_queued, rotate_operator
from smarthub.gdsc.commands.signer import CommandSigner
from smarthub.gdsc.commands.vouchers import VoucherIssuer
from smarthub.gdsc.fleet.pki import CertificateAuthority, Role
from smarthub.gdsc.pull.plan import PullPlan
from smarthub.gdsc.pull.tables import Priority, urgent_work
from smarthub.gdsc.store import Store
from smarthub.hub.management import ManagementInterface
from smarthub.hub.prepayment import PrepaymentLedger, topup_command
from smarthub.wan.contract.bodies import PrepaymentTopup

NOW = datetime.now(UTC).replace(microsecond=0)


def _envelopes(store: Store) -> dict[str, bytes]:
    with store.engine.connect() as conn:
        rows = conn.execute(select(urgent_work.c.command_type, urgent_work.c.envelope)).all()
    return {r.command_type: r.envelope.encode() for r in rows}


async def test_a_rotation_re_signs_what_is_queued_and_the_hub_credits_it(tmp_path: Path) -> None:
    ca = CertificateAuthority.create("GDSC CA", NOW - timedelta(days=1))
    old = ca.issue(Role.OPERATOR, "operator", NOW - timedelta(days=1))
    assert old.private_key is not None
    store = Store(f"sqlite:///{tmp_path / 'gdsc.sqlite'}")
    store.create_schema()
    issuer = VoucherIssuer(store, old.private_key, old.cert_pem)
    signer = CommandSigner(old.private_key, old.cert_pem, store.next_command_counter)
    plan = PullPlan(store)
    voucher = issuer.issue("HUB1", "electricity", Decimal("12.50"), NOW)
    (pending,) = issuer.pending("HUB1")
    plan.queue_command(
        signer, "HUB1", "prepayment.topup", PrepaymentTopup.parse(pending.envelope), NOW, Priority.URGENT
    )
    plan.queue_command(signer, "HUB1", "diagnostic.ping", {}, NOW, Priority.URGENT)
    before = _envelopes(store)

    # The rotation: a new certificate, the shared signer moved to it, the queue signed again;
    # then the old certificate revoked, and the hub holding that CRL.
    new = ca.issue(Role.OPERATOR, "operator-2", NOW)
    assert new.private_key is not None
    assert rotate_operator(store, signer, new.private_key, new.cert_pem) == Resigned(1, 2)
    assert resign_queued(store, signer) == Resigned(0, 0)  # nothing left under the old one
    ca.revoke(old.certificate.serial_number, NOW)
    crl = ca.crl(NOW + timedelta(seconds=1))
    clock = ManualClock(NOW + timedelta(minutes=1))
    mgmt = ManagementInterface("HUB1", ca.certificate, clock, tmp_path / "mgmt.sqlite", crl)
    ledger = PrepaymentLedger(tmp_path / "pp.sqlite", "HUB1", ca.certificate, crl=crl)
    mgmt.register("prepayment.topup", topup_command(ledger, clock.now))
    try:
        # What was queued under the old certificate is refused for its signer ...
        refused = await mgmt.handle(before["prepayment.topup"])
        assert (refused.status, refused.code) == ("refused", "unknown_signer")
        # ... what the rotation signed again is taken: same counter, same voucher, new signer.
        after = _envelopes(store)
        for envelope in after.values():
            signer_pem = json.loads(envelope)["signer"].encode()
            assert x509.load_pem_x509_certificate(signer_pem) == new.certificate
        topup = json.loads((await mgmt.handle(after["prepayment.topup"])).to_json())
        assert topup["status"] == "applied" and topup["result"]["credited"] is True, topup
        assert topup["result"]["voucher_id"] == voucher.voucher_id
        assert ledger.balance("electricity").credit == Decimal("12.50")
        # The voucher pending at the GDSC carries the new signature too (a later re-send).
        (again,) = issuer.pending("HUB1")
        assert again.envelope["signer"] == new.cert_pem.decode()
        assert again.envelope["voucher"] == pending.envelope["voucher"]
        # Commands signed from now on use the new certificate (the signer is shared).
        later = signer.command("HUB1", "diagnostic.ping", {}, NOW)
        assert later.signer_pem == new.cert_pem
    finally:
        ledger.close()
        mgmt.close()
        store.close()
