"""Every table of the GDSC database, in one metadata: what the Alembic migrations must build.

Tables live beside the code that owns them (the store, the error log, vouchers, parties and
consents, the audit log, the shared pull plan) but share :data:`smarthub.gdsc.store.metadata`. A table
only joins that metadata when its module is imported, so the migration environment and the
migration test import this module, never ``store`` alone.
"""

from __future__ import annotations

from smarthub.gdsc import (
    aggregates,
    api_clients,
    api_commands,
    api_tokens,
    audit,
    comparisons,
    error_log,
    hub_lifecycle,
    parties,
    plan,
    store,
    supplier_change,
    vouchers,
)
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
