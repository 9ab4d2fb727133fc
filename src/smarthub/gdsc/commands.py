"""Management commands the GDSC sends to hubs: built, counted, signed.

A command is canonical JSON (sorted keys, no spaces) naming the hub, a per-hub counter that
only ever rises, its type and body, signed with ECDSA P-256 / SHA-256 by a GDSC operator
certificate. The hub accepts it only if the signature verifies under a certificate issued by
the GDSC CA with the operator role, the hub id is its own, and the counter is above every
counter it has accepted before (so a captured command cannot be replayed). IEEE 2030.5 has no
general command function set, so the envelope is JSON on a hub resource ``/mgmt``.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

COMMAND_TYPES = (
    "mapping.update",
    "meter.key",
    "meter.add",
    "meter.remove",
    "meter.replace",
    "consent.set",
    "supplier.keys",
    "network.configure",
    "supply.disconnect",
    "supply.reconnect",
    "supply.state",
    "supply.limit",
    "prepayment.topup",
    "tariff.update",
    "ihd.message",
    "ihd.comparison",
    "ihd.appliance",
    "message.display",
    "firmware.update",
    "diagnostic.ping",
    "diagnostic.han_scan",
    "diagnostic.link_test",
    "appliance.run",
    "drlc.event",
    "drlc.responses",
    "pki.crl",
    "pki.certificate",
)


@dataclass(frozen=True, slots=True)
class Command:
    hub_id: str
    counter: int
    type: str
    body: dict[str, Any]
    issued: str  # ISO 8601, UTC

    def canonical(self) -> bytes:
        return json.dumps(
            {
                "hub_id": self.hub_id,
                "counter": self.counter,
                "type": self.type,
                "body": self.body,
                "issued": self.issued,
            },
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
        ).encode()


@dataclass(frozen=True, slots=True)
class SignedCommand:
    payload: bytes
    signature: bytes
    signer_pem: bytes

    def envelope(self) -> bytes:
        """The body POSTed to the hub's ``/mgmt``."""
        return json.dumps(
            {
                "payload": self.payload.decode(),
                "signature": base64.b64encode(self.signature).decode(),
                "signer": self.signer_pem.decode(),
            }
        ).encode()


class CommandSigner:
    """Signs commands with the GDSC operator key.

    ``next_counter(hub_id)`` must hand out a strictly rising number per hub that survives GDSC
    restarts (``Store.next_command_counter``): a hub refuses any counter it has seen.
    """

    def __init__(
        self, private_key: ec.EllipticCurvePrivateKey, signer_pem: bytes, next_counter: Callable[[str], int]
    ) -> None:
        self.private_key = private_key
        self.signer_pem = signer_pem
        self.next_counter = next_counter

    @classmethod
    def from_files(cls, cert_path: str, key_path: str, next_counter: Callable[[str], int]) -> CommandSigner:
        with open(key_path, "rb") as f:
            key = serialization.load_pem_private_key(f.read(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError("the operator key must be an EC key")
        with open(cert_path, "rb") as f:
            return cls(key, f.read(), next_counter)

    def command(
        self, hub_id: str, type_: str, body: dict[str, Any], now: datetime, counter: int | None = None
    ) -> SignedCommand:
        """Sign a command; ``counter`` if the caller took it already, else ``next_counter``'s."""
        if type_ not in COMMAND_TYPES:
            raise ValueError(f"unknown command type {type_!r}")
        if counter is None:
            counter = self.next_counter(hub_id)
        return self.sign(Command(hub_id, counter, type_, body, now.isoformat()))

    def sign(self, command: Command) -> SignedCommand:
        payload = command.canonical()
        return SignedCommand(
            payload, self.private_key.sign(payload, ec.ECDSA(hashes.SHA256())), self.signer_pem
        )
