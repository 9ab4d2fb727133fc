"""Management commands from the GDSC to a hub: the types, the signed payload and its envelope.

A command is canonical JSON (sorted keys, no spaces) naming the hub, a per-hub counter that
only ever rises, its type and body, and when it was issued; the GDSC signs it with ECDSA P-256 /
SHA-256 under a GDSC operator certificate (``smarthub.gdsc.commands.signer.CommandSigner``) and the hub
verifies it (``smarthub.hub.management``). IEEE 2030.5 has no general command function set, so
the envelope is JSON on a hub resource ``/mgmt``::

    {"payload": "<canonical JSON>", "signature": "<base64 DER ECDSA>", "signer": "<PEM>"}

Both sides build and read the payload and the envelope with this module, and both know the same
:data:`COMMAND_TYPES`.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

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
    "ihd.building",
    "ihd.appliance",
    "ihd.services",
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
    "transfer.policy",
    # Recovery of a replaced or wiped hub (issue 20 item 2: smarthub.gdsc.fleet.recovery).
    "recovery.snapshot",
    "history.restore",
    "prepayment.restore",
    "recovery.complete",
)


class MalformedCommand(ValueError):
    """An envelope, signed payload or body that is not a command; the message says what is
    wrong, and ``field`` names the body's field at fault when it is one."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


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

    @classmethod
    def from_payload(cls, payload: bytes) -> Command:
        """The command a (verified) signed payload carries; :class:`MalformedCommand` if it is
        not one. ``hub_id`` is kept as sent (the hub compares it with its own id)."""
        try:
            command = json.loads(payload)
            hub_id, counter, ctype, body = (
                command["hub_id"],
                command["counter"],
                command["type"],
                command["body"],
            )
        except (ValueError, KeyError, TypeError, RecursionError) as err:
            raise MalformedCommand(f"signed payload is not a command: {err}") from None
        if not isinstance(counter, int) or not isinstance(body, dict) or not isinstance(ctype, str):
            raise MalformedCommand("counter must be an integer, type a string, body an object")
        issued = command.get("issued")
        return cls(hub_id, counter, ctype, body, issued if isinstance(issued, str) else "")


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

    @classmethod
    def from_envelope(cls, envelope: bytes) -> SignedCommand:
        """The parts of an envelope (nothing verified yet); :class:`MalformedCommand` if it is
        not an envelope."""
        try:
            outer = json.loads(envelope)
            payload = outer["payload"].encode()
            signature = base64.b64decode(outer["signature"], validate=True)
            signer = outer["signer"].encode()
        except (ValueError, KeyError, TypeError, AttributeError, binascii.Error, RecursionError) as err:
            # (RecursionError: JSON nested thousands deep.)
            raise MalformedCommand(f"not a command envelope: {err}") from None
        return cls(payload, signature, signer)


__all__ = ["COMMAND_TYPES", "Command", "MalformedCommand", "SignedCommand"]
