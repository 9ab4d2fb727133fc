"""Who may call the data services API besides bearer-token holders: OAuth2 clients, their access
tokens, and the client certificates bound to parties.

* ``api_clients``: an OAuth2 client (RFC 6749 §2) registered for one party, with the scopes it may
  ask for. Its secret is shown once; the table keeps only a salted scrypt hash (RFC 7914,
  ``hashlib.scrypt``), compared in constant time, so a leaked database hands out no working secret.
* ``api_access_tokens``: access tokens issued by the token endpoint (:mod:`smarthub.gdsc.api.auth.oauth`).
  Opaque random tokens, only their SHA-256 kept (they carry 256 random bits, so a fast hash is
  enough: nothing to guess), with their scope and expiry. Each use looks the token up *with its
  client*, so revoking the client makes every token it was issued useless at once.
* ``party_certificates``: the LFDI (IEEE 2030.5-2018 §6.3.4) of a GDSC-issued ``party``
  certificate and the party it names, for mutual TLS: a certificate the CA issued but nobody bound
  authenticates nobody. Unbinding (revoking) takes effect at the next request.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Column, DateTime, Engine, ForeignKey, String, Table, and_, select, update

from smarthub.gdsc.db.database import metadata
from smarthub.gdsc.governance.parties import PartyRepository, utc

api_clients = Table(
    "api_clients",
    metadata,
    Column("client_id", String(64), primary_key=True),
    Column("party_id", String(64), ForeignKey("parties.party_id"), nullable=False, index=True),
    Column("secret_hash", String(200), nullable=False),  # scrypt$N$r$p$salt$hash (base64)
    Column("scopes", String(500), nullable=False),  # space-separated, as RFC 6749 §3.3 writes them
    Column("created", DateTime(timezone=True), nullable=False),
    Column("revoked", DateTime(timezone=True)),
)

api_access_tokens = Table(
    "api_access_tokens",
    metadata,
    Column("digest", String(64), primary_key=True),  # SHA-256 hex of the access token
    Column("client_id", String(64), ForeignKey("api_clients.client_id"), nullable=False, index=True),
    Column("scope", String(500), nullable=False),
    Column("issued", DateTime(timezone=True), nullable=False),
    Column("expires", DateTime(timezone=True), nullable=False),
)

party_certificates = Table(
    "party_certificates",
    metadata,
    Column("lfdi", String(40), primary_key=True),  # upper-case hex, as security.certificates.lfdi
    Column("party_id", String(64), ForeignKey("parties.party_id"), nullable=False, index=True),
    Column("serial", String(40), nullable=False),  # hex, to revoke it at the CA as well
    Column("bound", DateTime(timezone=True), nullable=False),
    Column("revoked", DateTime(timezone=True)),
)

# scrypt cost: N=2^15, r=8, p=1 needs 32 MiB and some tens of milliseconds per check (RFC 7914 §2;
# OWASP's floor for scrypt is N=2^17 with r=8, p=1 — the secrets are 256 random bits, so the slow
# hash guards against nothing but a weak future secret and this cost is ample).
_N, _R, _P = 2**15, 8, 1
_MAXMEM = 64 * 1024 * 1024


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def hash_secret(secret: str, salt: bytes | None = None, n: int = _N, r: int = _R, p: int = _P) -> str:
    salt = secrets.token_bytes(16) if salt is None else salt
    h = hashlib.scrypt(secret.encode(), salt=salt, n=n, r=r, p=p, maxmem=_MAXMEM, dklen=32)
    return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(h)}"


def check_secret(secret: str, stored: str) -> bool:
    """Constant-time comparison of ``secret`` against a :func:`hash_secret` string."""
    kind, n, r, p, salt, digest = stored.split("$")
    if kind != "scrypt":
        raise ValueError(f"unknown secret hash {kind!r}")
    h = hashlib.scrypt(
        secret.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p), maxmem=_MAXMEM, dklen=32
    )
    return hmac.compare_digest(h, base64.b64decode(digest))


# Checked against for an unknown client id, so a wrong id costs as long as a wrong secret.
_DUMMY = hash_secret("no such client", b"\0" * 16)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Client:
    client_id: str
    party_id: str
    scopes: frozenset[str]
    created: datetime
    revoked: datetime | None


@dataclass(frozen=True, slots=True)
class AccessToken:
    party_id: str
    client_id: str
    scopes: frozenset[str]
    expires: datetime


@dataclass(frozen=True, slots=True)
class CertificateBinding:
    lfdi: str
    party_id: str
    serial: int
    bound: datetime
    revoked: datetime | None


class ClientRegistry:
    """OAuth2 clients, their access tokens, and parties' certificate bindings (see module doc)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # -- clients --

    def register(self, party_id: str, scopes: frozenset[str], now: datetime) -> tuple[str, str]:
        """A new client for an existing party (else
        :class:`~smarthub.gdsc.governance.parties.UnknownParty`): ``(client_id, client_secret)``;
        the secret is not kept and cannot be shown again."""
        PartyRepository(self.engine).party(party_id)
        if not scopes:
            raise ValueError("a client needs at least one scope")
        client_id = f"c-{secrets.token_hex(8)}"
        secret = secrets.token_urlsafe(32)
        with self.engine.begin() as conn:
            conn.execute(
                api_clients.insert().values(
                    client_id=client_id,
                    party_id=party_id,
                    secret_hash=hash_secret(secret),
                    scopes=" ".join(sorted(scopes)),
                    created=utc(now),
                )
            )
        return client_id, secret

    def client(self, client_id: str) -> Client | None:
        with self.engine.connect() as conn:
            r = conn.execute(select(api_clients).where(api_clients.c.client_id == client_id)).first()
        if r is None:
            return None
        return Client(r.client_id, r.party_id, frozenset(r.scopes.split()), utc(r.created), utc(r.revoked))

    def authenticate(self, client_id: str, secret: str) -> Client | None:
        """The live client with this id and secret, or None (unknown, wrong secret or revoked); takes
        the time of one scrypt whichever it is."""
        with self.engine.connect() as conn:
            r = conn.execute(select(api_clients).where(api_clients.c.client_id == client_id)).first()
        ok = check_secret(secret, r.secret_hash if r is not None else _DUMMY)
        if r is None or not ok or r.revoked is not None:
            return None
        return Client(r.client_id, r.party_id, frozenset(r.scopes.split()), utc(r.created), None)

    def revoke(self, client_id: str, now: datetime) -> bool:
        """Revoke a client: its secret stops working and so do the tokens it was issued, at once."""
        with self.engine.begin() as conn:
            res = conn.execute(
                update(api_clients)
                .where(and_(api_clients.c.client_id == client_id, api_clients.c.revoked.is_(None)))
                .values(revoked=utc(now))
            )
        return res.rowcount == 1

    # -- access tokens --

    def issue_token(self, client: Client, scopes: frozenset[str], now: datetime, lifetime: timedelta) -> str:
        token = secrets.token_urlsafe(32)
        with self.engine.begin() as conn:
            conn.execute(
                api_access_tokens.insert().values(
                    digest=token_digest(token),
                    client_id=client.client_id,
                    scope=" ".join(sorted(scopes)),
                    issued=utc(now),
                    expires=utc(now + lifetime),
                )
            )
        return token

    def access_token(self, digest: str, now: datetime) -> AccessToken | None:
        """The token with this SHA-256 digest if it is unexpired and its client is not revoked."""
        t, c = api_access_tokens, api_clients
        with self.engine.connect() as conn:
            r = conn.execute(
                select(c.c.party_id, c.c.client_id, t.c.scope, t.c.expires)
                .join(c, c.c.client_id == t.c.client_id)
                .where(and_(t.c.digest == digest, c.c.revoked.is_(None)))
            ).first()
        if r is None:
            return None
        expires = utc(r.expires)
        assert expires is not None
        if not utc(now) < expires:
            return None
        return AccessToken(r.party_id, r.client_id, frozenset(r.scope.split()), expires)

    # -- certificate bindings (mutual TLS) --

    def bind_certificate(self, party_id: str, lfdi: str, serial: int, now: datetime) -> None:
        PartyRepository(self.engine).party(party_id)
        with self.engine.begin() as conn:
            conn.execute(
                party_certificates.insert().values(
                    lfdi=lfdi.upper(), party_id=party_id, serial=f"{serial:x}", bound=utc(now)
                )
            )

    def unbind_certificate(self, lfdi: str, now: datetime) -> CertificateBinding | None:
        """Stop accepting the certificate; the binding (with its serial, to revoke it at the CA too)."""
        b = self.certificate(lfdi)
        if b is None:
            return None
        with self.engine.begin() as conn:
            conn.execute(
                update(party_certificates)
                .where(and_(party_certificates.c.lfdi == b.lfdi, party_certificates.c.revoked.is_(None)))
                .values(revoked=utc(now))
            )
        return b

    def certificate(self, lfdi: str) -> CertificateBinding | None:
        with self.engine.connect() as conn:
            r = conn.execute(
                select(party_certificates).where(party_certificates.c.lfdi == lfdi.upper())
            ).first()
        if r is None:
            return None
        return CertificateBinding(r.lfdi, r.party_id, int(r.serial, 16), utc(r.bound), utc(r.revoked))
