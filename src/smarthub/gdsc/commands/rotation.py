"""Rotating the GDSC operator certificate: what was signed under the old one is signed again.

The operator certificate signs every management command and every top-up voucher, and a hub
refuses both once its CRL lists the signer (``hub.management``, ``hub.prepayment``; RFC 5280
§6.3.3: a revoked certificate's signatures are not accepted after its revocation). Revoking it
(a compromised key, a routine rotation) would therefore strand what is queued but not yet
delivered: the urgent commands in the plan and the vouchers still pending. :func:`rotate_operator`
moves the running :class:`~smarthub.gdsc.commands.signer.CommandSigner` to the new key and
certificate (every part of the GDSC that holds it signs with the new one from then on), then
signs those again under the new certificate:

* each **pending voucher**: the same canonical voucher (same id, amount and issue time, so a hub
  that credited it already answers "credited before"), a new signature and signer;
* each **undelivered command** (pending, or claimed and in flight: should that delivery fail,
  its retry carries the new envelope): the same payload, so the same counter, which the hub has
  not accepted yet, signed anew; a top-up command's voucher is re-signed inside it first.

The caller revokes the old certificate afterwards (``HubLifecycle.revoke_certificate``), and
should call :func:`resign_queued` once more then: a command queued by another task while the
first pass ran may still carry the old signature. Not re-signed: a firmware package inside a
``firmware.update`` (a build artefact the operator signs and rebuilds), and commands another GDSC
process signs with its own copy of the old key until it is restarted on the new files.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select, update

from smarthub.gdsc.commands.signer import CommandSigner
from smarthub.gdsc.commands.vouchers import TOPUP, vouchers
from smarthub.gdsc.pull.tables import CLAIMED, PENDING, urgent_work
from smarthub.gdsc.store import Store
from smarthub.wan.contract.commands import Command, SignedCommand


@dataclass(frozen=True, slots=True)
class Resigned:
    """How many pending vouchers and undelivered commands were signed again."""

    vouchers: int
    commands: int


def rotate_operator(
    store: Store, signer: CommandSigner, private_key: ec.EllipticCurvePrivateKey, signer_pem: bytes
) -> Resigned:
    """Move ``signer`` (shared by the GDSC's parts) to the new key and certificate, then sign
    what is queued under any other certificate again (:func:`resign_queued`)."""
    signer.private_key, signer.signer_pem = private_key, signer_pem
    return resign_queued(store, signer)


def resign_queued(store: Store, signer: CommandSigner) -> Resigned:
    """Sign again, under ``signer``'s certificate, every pending voucher and every undelivered
    command signed under another one (module docstring). Idempotent."""
    new_pem = signer.signer_pem.decode()
    n_vouchers = n_commands = 0
    with store.engine.begin() as conn:
        for row in conn.execute(
            select(vouchers.c.hub_id, vouchers.c.voucher_id, vouchers.c.envelope).where(
                vouchers.c.status == "pending"
            )
        ).all():
            envelope = json.loads(row.envelope)
            if envelope.get("signer") == new_pem:
                continue
            conn.execute(
                update(vouchers)
                .where(vouchers.c.hub_id == row.hub_id, vouchers.c.voucher_id == row.voucher_id)
                .values(envelope=json.dumps(_resign_voucher(envelope, signer)))
            )
            n_vouchers += 1
        u = urgent_work
        for job in conn.execute(
            select(u.c.id, u.c.envelope).where(
                u.c.kind == "command", u.c.state.in_((PENDING, CLAIMED)), u.c.envelope.is_not(None)
            )
        ).all():
            signed = SignedCommand.from_envelope(job.envelope.encode())
            if signed.signer_pem.decode() == new_pem:
                continue
            command = Command.from_payload(signed.payload)
            if command.type == TOPUP and command.body.get("signer") != new_pem:
                command = Command(
                    command.hub_id,
                    command.counter,
                    command.type,
                    _resign_voucher(command.body, signer),
                    command.issued,
                )
            envelope = signer.sign(command).envelope().decode()
            conn.execute(update(u).where(u.c.id == job.id).values(envelope=envelope))
            n_commands += 1
    return Resigned(n_vouchers, n_commands)


def _resign_voucher(envelope: dict[str, Any], signer: CommandSigner) -> dict[str, Any]:
    """The same canonical voucher under ``signer`` (``model.prepayment.voucher_envelope``)."""
    signature = signer.private_key.sign(envelope["voucher"].encode(), ec.ECDSA(hashes.SHA256()))
    return {
        **envelope,
        "signature": base64.b64encode(signature).decode(),
        "signer": signer.signer_pem.decode(),
    }


__all__ = ["Resigned", "resign_queued", "rotate_operator"]
