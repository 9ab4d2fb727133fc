"""Every table of the GDSC database, in one metadata: what the Alembic migrations must build.

Tables live beside the code that owns them (the store, the error log, vouchers, parties and
consents, the audit log, the shared pull plan) but share :data:`smarthub.gdsc.store.metadata`. A table
only joins that metadata when its module is imported, so the migration environment and the
migration test import this module, never ``store`` alone.
"""

from __future__ import annotations

from smarthub.gdsc import store
from smarthub.gdsc.api.auth import clients as api_clients
from smarthub.gdsc.api.auth import tokens as api_tokens
from smarthub.gdsc.commands import desk as api_commands
from smarthub.gdsc.commands import vouchers
from smarthub.gdsc.fleet import lifecycle as hub_lifecycle
from smarthub.gdsc.governance import aggregates, audit, parties, supplier_change
from smarthub.gdsc.incidents import error_log
from smarthub.gdsc.pull import plan
from smarthub.gdsc.readings import comparisons
from smarthub.gdsc.store import metadata

TABLE_MODULES = (
    store,
    error_log,
    vouchers,
    parties,
    audit,
    plan,
    supplier_change,
    hub_lifecycle,
    api_commands,
    api_tokens,
    api_clients,
    aggregates,
    comparisons,
)

__all__ = ["TABLE_MODULES", "metadata"]
