"""The GDSC CA's CRL riding along with the bulk pull (hub side: ``hub.management.CrlStore``).

A national fleet cannot be kept current with one signed ``pki.crl`` command per hub per day
(30 M commands, each signed, queued and acknowledged); yet a hub whose CRL goes past its
nextUpdate would refuse its commands. So the CRL travels with the pull the GDSC makes anyway:

1. every bulk request of a collector carries ``Smarthub-CRL: number=N; base=B`` — the number of
   the GDSC's current CRL and the number of the first CRL listing the same revoked set (so a
   hub holding a CRL numbered ``B`` or later misses no revocation);
2. a hub that wants it (it has none, misses a revocation, or the one it holds is near its
   nextUpdate: ``CrlStore.wants``) answers that request with ``Smarthub-CRL-Wanted: <the number
   it holds, 0 for none>``;
3. the collector then ``PUT``s the CRL to ``/crl`` on the same connection, DER-encoded as
   ``application/pkix-crl`` (RFC 2585 §4.2). A CRL is signed by the CA itself, so no command
   envelope is needed; the hub checks its issuer, signature and number (``CrlStore.install``).

The cost is one header per pull and, per hub, one small PUT every few days (when its CRL nears
renewal) and one after each revocation — no rows in the plan, no signatures.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization

__all__ = ["CRL_MEDIA_TYPE", "CRL_PATH", "OFFER", "WANTED", "CrlOffer", "parse_offer"]

OFFER = "Smarthub-CRL"
WANTED = "Smarthub-CRL-Wanted"
CRL_PATH = "/crl"
CRL_MEDIA_TYPE = "application/pkix-crl"
_OFFER_RE = re.compile(r"^\s*number=(\d{1,40})\s*;\s*base=(\d{1,40})\s*$")


@dataclass(frozen=True, slots=True)
class CrlOffer:
    """The CRL a collector offers the hubs it pulls."""

    der: bytes
    number: int
    base: int
    serials: frozenset[int]

    @property
    def header(self) -> str:
        return f"number={self.number}; base={self.base}"

    @classmethod
    def after(cls, previous: CrlOffer | None, pem: bytes) -> CrlOffer:
        """The offer for the CRL in ``pem``, following ``previous``: its base moves on only when
        the revoked set changed (without a previous offer, the CRL is its own base, so every hub
        holding an older one takes it once)."""
        crl = x509.load_pem_x509_crl(pem)
        try:
            number = int(crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number)
        except x509.ExtensionNotFound:
            raise ValueError("a CRL without a CRL number cannot be offered (RFC 5280 §5.2.3)") from None
        serials = frozenset(r.serial_number for r in crl)
        base = number
        if previous is not None and previous.serials == serials and previous.number <= number:
            base = previous.base
        return cls(crl.public_bytes(serialization.Encoding.DER), number, base, serials)


def parse_offer(value: str | None) -> tuple[int, int] | None:
    """``(number, base)`` from an ``Smarthub-CRL`` header; None if absent or malformed."""
    if not value:
        return None
    m = _OFFER_RE.match(value)
    if m is None:
        return None
    number, base = int(m.group(1)), int(m.group(2))
    return (number, base) if base <= number else None
