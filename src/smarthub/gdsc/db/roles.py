"""The PostgreSQL role the GDSC application connects as, kept from rewriting the audit log.

The audit log's append-only trigger (migrations 0002 and 0008: UPDATE, DELETE and TRUNCATE
refused) binds everyone, the table's owner included — but an owner may ``ALTER TABLE audit_log
DISABLE TRIGGER`` or drop it, and a superuser may also set ``session_replication_role``. So the
application must not be the table's owner, nor a superuser:

* the **owner role** (the one that runs the migrations: ``smarthub gdsc --db`` on first start,
  or ``python -m smarthub.gdsc.db.migrations``) owns ``audit_log``, its trigger function and
  ``alembic_version``;
* the **application role** made here owns every *other* GDSC table — the store creates a day
  partition of ``interval_blocks`` on demand, and PostgreSQL lets only the parent table's owner
  do that — and may only SELECT and INSERT on ``audit_log`` and SELECT ``alembic_version``.

Connected as the application role, TRUNCATE and DELETE of the audit log fail for want of the
privilege, UPDATE too, and ALTER TABLE ... DISABLE TRIGGER fails because it is not the owner.
Run :func:`grant_application_role` (``smarthub gdsc db-role``) as the owner role after creating
or upgrading the schema (a migration's new tables belong to whoever ran it), then give the GDSC
processes the application role's URL. What remains possible to the owner role and to superusers
is what the signed anchors (:mod:`smarthub.gdsc.governance.audit_anchors`) are for.
"""

from __future__ import annotations

import re
from pathlib import Path

from sqlalchemy import Engine, text

KEPT_BY_OWNER = ("audit_log", "alembic_version")
_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def _ident(name: str) -> str:
    if not _NAME.match(name):
        raise ValueError(f"role name {name!r}: use lower-case letters, digits and _ (at most 63)")
    return f'"{name}"'


def grant_application_role(engine: Engine, role: str, password: str | None = None) -> list[str]:
    """Create ``role`` (LOGIN, no superuser, no role or database creation) if it does not exist
    and give it the GDSC schema as described above; run as the owner of the schema's tables.
    The tables now owned by ``role``."""
    if engine.dialect.name != "postgresql":
        raise ValueError("application roles are a PostgreSQL matter (SQLite has no roles)")
    who = _ident(role)
    with engine.begin() as conn:
        exists = conn.execute(text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role}).first()
        if exists is None:
            conn.execute(text(f"CREATE ROLE {who} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS"))
        else:
            flags = conn.execute(
                text("SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = :r"), {"r": role}
            ).scalar_one()
            if flags:
                raise ValueError(f"role {role} is a superuser or bypasses row security: it cannot be held")
        if password is not None:
            conn.execute(text(f"ALTER ROLE {who} PASSWORD :p"), {"p": password})
        schema = conn.execute(text("SELECT current_schema()")).scalar_one()
        owner = conn.execute(
            text("SELECT tableowner FROM pg_tables WHERE schemaname = :s AND tablename = 'audit_log'"),
            {"s": schema},
        ).scalar()
        if owner is None:
            raise ValueError(f"schema {schema} has no audit_log: create the GDSC schema first")
        if owner == role:
            raise ValueError(f"role {role} owns audit_log: it cannot be the application role")
        conn.execute(text(f'GRANT USAGE, CREATE ON SCHEMA "{schema}" TO {who}'))
        tables = [
            r[0]
            for r in conn.execute(
                text(
                    "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE n.nspname = :s AND c.relkind IN ('r', 'p') ORDER BY c.relname"
                ),
                {"s": schema},
            )
        ]
        moved = [t for t in tables if t not in KEPT_BY_OWNER]
        for t in moved:  # their sequences (serial columns) follow the table
            conn.execute(text(f'ALTER TABLE "{schema}"."{t}" OWNER TO {who}'))
        conn.execute(text(f'REVOKE ALL ON "{schema}".audit_log FROM {who}'))
        conn.execute(text(f'GRANT SELECT, INSERT ON "{schema}".audit_log TO {who}'))
        if "alembic_version" in tables:
            conn.execute(text(f'GRANT SELECT ON "{schema}".alembic_version TO {who}'))
    return moved


def grant_application_role_at(url: str, role: str, password_file: Path | None = None) -> list[str]:
    """:func:`grant_application_role` on the database at ``url`` (the password, if any, read
    from ``password_file``)."""
    from sqlalchemy import create_engine

    engine = create_engine(url, hide_parameters=True)
    try:
        password = password_file.read_text().strip() if password_file else None
        return grant_application_role(engine, role, password)
    finally:
        engine.dispose()
