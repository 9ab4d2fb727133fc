"""Bearer tokens for the data services API: issued by the GDSC to a party, only their SHA-256 kept.

A token is 32 random bytes (URL-safe base64) shown once, when it is issued; the table holds its
SHA-256 hex digest, the party it authenticates and when it was issued or revoked, so a leaked
database does not hand out working tokens. :class:`TokenStore` is the ``tokens`` mapping
:func:`smarthub.gdsc.api.app.create_app` looks callers up in (digest -> party id), read per request so
a token issued or revoked while the API runs takes effect at once.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterator, Mapping
from datetime import datetime

from sqlalchemy import Column, DateTime, Engine, ForeignKey, String, Table, and_, func, select, update

from smarthub.gdsc.db.database import metadata
from smarthub.gdsc.governance.parties import Party, PartyRepository, Role, UnknownParty, utc
from smarthub.gdsc.store import Store

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("digest", String(64), primary_key=True),  # SHA-256 hex of the token
    Column("party_id", String(64), ForeignKey("parties.party_id"), nullable=False, index=True),
    Column("issued", DateTime(timezone=True), nullable=False),
    Column("revoked", DateTime(timezone=True)),
)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenStore(Mapping[str, str]):
    """Live tokens: digest -> party id."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def issue(self, party_id: str, now: datetime) -> str:
        """A new token for an existing party (else
        :class:`~smarthub.gdsc.governance.parties.UnknownParty`)."""
        PartyRepository(self.engine).party(party_id)
        token = secrets.token_urlsafe(32)
        with self.engine.begin() as conn:
            conn.execute(
                api_tokens.insert().values(digest=token_digest(token), party_id=party_id, issued=utc(now))
            )
        return token

    def revoke(self, token: str, now: datetime) -> bool:
        with self.engine.begin() as conn:
            res = conn.execute(
                update(api_tokens)
                .where(and_(api_tokens.c.digest == token_digest(token), api_tokens.c.revoked.is_(None)))
                .values(revoked=utc(now))
            )
        return res.rowcount == 1

    def _live(self):
        return api_tokens.c.revoked.is_(None)

    def __getitem__(self, digest: str) -> str:
        with self.engine.connect() as conn:
            party = conn.execute(
                select(api_tokens.c.party_id).where(and_(api_tokens.c.digest == digest, self._live()))
            ).scalar()
        if party is None:
            raise KeyError(digest)
        return str(party)

    def __iter__(self) -> Iterator[str]:
        with self.engine.connect() as conn:
            return iter([r[0] for r in conn.execute(select(api_tokens.c.digest).where(self._live()))])

    def __len__(self) -> int:
        with self.engine.connect() as conn:
            return int(
                conn.execute(select(func.count()).select_from(api_tokens).where(self._live())).scalar_one()
            )


def issue_token(db_url: str, party_id: str, now: datetime, role: str | None = None, name: str = "") -> str:
    """A new token for ``party_id`` in the GDSC database at ``db_url``; the party is created with
    ``role`` first if it does not exist (:class:`UnknownParty` if it does not and no role is given,
    ``ValueError`` for an unknown role)."""
    store = Store(db_url)
    try:
        store.create_schema()
        repo = PartyRepository(store.engine)
        try:
            repo.party(party_id)
        except UnknownParty:
            if role is None:
                raise UnknownParty(f"no party {party_id!r}; give --role to create it") from None
            try:
                kind = Role(role)
            except ValueError:
                raise ValueError(f"no role {role!r}; roles: {', '.join(r.value for r in Role)}") from None
            repo.add_party(Party(party_id, kind, name))
        return TokenStore(store.engine).issue(party_id, now)
    finally:
        store.close()
