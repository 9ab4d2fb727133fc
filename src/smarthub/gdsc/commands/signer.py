"""Management commands the GDSC sends to hubs: counted and signed.

The command, its canonical payload and the envelope are the WAN contract's
(:mod:`smarthub.wan.contract.commands`); here the GDSC signs them with its operator key.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from smarthub.wan.contract.bodies import CommandBody
from smarthub.wan.contract.commands import COMMAND_TYPES, Command, SignedCommand


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
        self,
        hub_id: str,
        type_: str,
        body: CommandBody | dict[str, Any],
        now: datetime,
        counter: int | None = None,
    ) -> SignedCommand:
        """Sign a command; ``counter`` if the caller took it already, else ``next_counter``'s.

        ``body`` is the type's typed body (``smarthub.wan.contract.bodies``: built, it is well
        formed), or JSON signed as given (the operator's ``smarthub command``, tests of the hub's
        refusals); the hub parses either into the typed body before it takes the counter."""
        if type_ not in COMMAND_TYPES:
            raise ValueError(f"unknown command type {type_!r}")
        if isinstance(body, CommandBody):
            if type_ != body.TYPE:
                raise ValueError(f"a {body.TYPE} body cannot be sent as a {type_} command")
            body = body.to_json()
        if counter is None:
            counter = self.next_counter(hub_id)
        return self.sign(Command(hub_id, counter, type_, body, now.isoformat()))

    def sign(self, command: Command) -> SignedCommand:
        payload = command.canonical()
        return SignedCommand(
            payload, self.private_key.sign(payload, ec.ECDSA(hashes.SHA256())), self.signer_pem
        )
