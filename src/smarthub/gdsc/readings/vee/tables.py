"""The VEE tables (migration 0011).

* ``register_reads`` — meters' cumulative register readings (rows of duration 0 in a pull),
  the good ones only: the reference of the interval-sum check and of estimation.
* ``vee_findings`` — every reading a rule objected to: quarantined (held out of the store with
  the rule and the evidence, until an operator releases or rejects it) or flagged (stored,
  marked questionable). The source of the data-quality figures.
* ``vee_estimates`` — every interval the GDSC estimated, with its method; ``replaced_at`` and
  ``actual`` are set when the hub's actual reading arrives and replaces it.
* ``vee_day_versions`` — the earlier versions of an edited channel-day (the block as it was),
  with who edited it, when and why: what was billed on version k can be shown again.
* ``meter_models`` — the model of a meter (its physical limits are configured per model).

Hub first in every key or index, as in the other per-hub tables.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Integer, LargeBinary, SmallInteger, String, Table, Text

from smarthub.gdsc.db.database import metadata

register_reads = Table(
    "register_reads",
    metadata,
    Column("hub_id", String(64), primary_key=True),
    Column("meter_id", String(64), primary_key=True),
    Column("obis", String(32), primary_key=True),
    Column("read_at", BigInteger, primary_key=True, autoincrement=False),  # unix s
    Column("value", BigInteger, nullable=False),
    Column("power_of_ten", SmallInteger, nullable=False),
    Column("uom", SmallInteger, nullable=False),
    Column("quality", Integer, nullable=False),
)

vee_findings = Table(
    "vee_findings",
    metadata,
    # One row per (reading, rule, value): a hub re-sending the same bad reading adds nothing.
    Column("hub_id", String(64), primary_key=True),
    Column("meter_id", String(64), primary_key=True),
    Column("obis", String(32), primary_key=True),
    Column("duration", Integer, primary_key=True, autoincrement=False),  # 0: a register reading
    Column("interval_start", BigInteger, primary_key=True, autoincrement=False),
    Column("rule", String(32), primary_key=True),
    Column("value", BigInteger, primary_key=True, autoincrement=False),
    Column("power_of_ten", SmallInteger, nullable=False),
    Column("uom", SmallInteger, nullable=False),
    Column("quality", Integer, nullable=False),
    Column("action", String(16), nullable=False),  # quarantine | flag
    Column("evidence", Text, nullable=False),
    Column("found_at", BigInteger, nullable=False),  # unix s
    Column("status", String(16), nullable=False),  # held | released | rejected (quarantine); noted (flag)
    Column("resolved_by", String(255)),
    Column("resolved_reason", Text),
    Index("ix_vee_findings_status", "hub_id", "status"),
)

vee_estimates = Table(
    "vee_estimates",
    metadata,
    Column("hub_id", String(64), primary_key=True),
    Column("meter_id", String(64), primary_key=True),
    Column("obis", String(32), primary_key=True),
    Column("duration", Integer, primary_key=True, autoincrement=False),
    Column("interval_start", BigInteger, primary_key=True, autoincrement=False),
    Column("value", BigInteger, nullable=False),
    Column("method", String(16), nullable=False),  # linear | profile
    Column("estimated_at", BigInteger, nullable=False),
    Column("replaced_at", BigInteger),
    Column("actual", BigInteger),
)

vee_day_versions = Table(
    "vee_day_versions",
    metadata,
    Column("hub_id", String(64), primary_key=True),
    Column("meter_id", String(64), primary_key=True),
    Column("obis", String(32), primary_key=True),
    Column("duration", Integer, primary_key=True, autoincrement=False),
    Column("day", Integer, primary_key=True, autoincrement=False),
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("block", LargeBinary),  # the interval block of this version (None: the day was empty)
    Column("superseded_at", BigInteger, nullable=False),
    Column("edited_by", String(255), nullable=False),  # who made the next version
    Column("reason", Text, nullable=False),
)

meter_models = Table(
    "meter_models",
    metadata,
    Column("hub_id", String(64), primary_key=True),
    Column("meter_id", String(64), primary_key=True),
    Column("model", String(64), nullable=False),
)

__all__ = ["meter_models", "register_reads", "vee_day_versions", "vee_estimates", "vee_findings"]
