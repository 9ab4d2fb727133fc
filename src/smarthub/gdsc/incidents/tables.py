"""The error log's tables: the hubs' diagnosed events, the incidents they are correlated into
(and the hubs in each), the work orders and the remote repair commands
(:mod:`smarthub.gdsc.incidents.error_log` keeps them)."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, DateTime, Integer, String, Table, Text, UniqueConstraint

from smarthub.gdsc.db.database import metadata
from smarthub.gdsc.incidents.policy import Action

_ID = BigInteger().with_variant(Integer, "sqlite")

hub_events = Table(
    "hub_events",
    metadata,
    Column("hub_id", String(64), primary_key=True),
    Column("event_id", BigInteger, primary_key=True),
    Column("code", Integer, nullable=False),
    Column("kind", String(64), nullable=False),
    Column("device", String(64), nullable=False),
    Column("device_kind", String(32), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("evidence", Text, nullable=False),
    Column("recommendation", Text, nullable=False),
    Column("first_seen", DateTime(timezone=True), nullable=False),
    Column("last_seen", DateTime(timezone=True), nullable=False),
    Column("count", Integer, nullable=False),
    Column("repair", String(32), nullable=False),
    Column("outcome", String(16)),
    Column("open", Integer, nullable=False),
    Column("closed", DateTime(timezone=True)),
    Column("resolution", String(32)),
    Column("incident_id", BigInteger, nullable=False, index=True),
    Column("received", DateTime(timezone=True), nullable=False),
)

incidents = Table(
    "incidents",
    metadata,
    Column("incident_id", _ID, primary_key=True, autoincrement=True),
    Column("scope", String(16), nullable=False),  # "device" or "wan_link"
    Column("key", String(200), nullable=False),
    Column("code", Integer, nullable=False),
    Column("wan_link", String(64)),
    Column("opened", DateTime(timezone=True), nullable=False),
    Column("last_seen", DateTime(timezone=True), nullable=False),
    Column("closed", DateTime(timezone=True)),
    Column("action", String(16), nullable=False, default=Action.MONITOR.value),
    Column("reason", Text, nullable=False, default=""),
    Column("remote_repair_tried", Integer, nullable=False, default=0),
)

# Which hubs an incident covers and whether the condition is still open at each.
incident_hubs = Table(
    "incident_hubs",
    metadata,
    Column("incident_id", BigInteger, primary_key=True),
    Column("hub_id", String(64), primary_key=True),
    Column("open", Integer, nullable=False),
    Column("since", DateTime(timezone=True), nullable=False),
    Column("detail", Text, nullable=False, default=""),
)

work_orders = Table(
    "work_orders",
    metadata,
    Column("work_order_id", _ID, primary_key=True, autoincrement=True),
    Column("incident_id", BigInteger, nullable=False),
    Column("party", String(32), nullable=False),  # Party
    Column("assignee", String(128), nullable=False),  # the responsible party's id
    Column("hub_id", String(64)),  # None for an area incident
    Column("reason", Text, nullable=False),
    Column("diagnosis", Text, nullable=False),  # JSON: the hubs' own diagnoses
    Column("created", DateTime(timezone=True), nullable=False),
    Column("status", String(16), nullable=False),  # open / resolved
    Column("closed", DateTime(timezone=True)),
    UniqueConstraint("incident_id", name="one_work_order_per_incident"),
)

repair_commands = Table(
    "repair_commands",
    metadata,
    Column("repair_id", _ID, primary_key=True, autoincrement=True),
    Column("incident_id", BigInteger, nullable=False),
    Column("hub_id", String(64), nullable=False),
    Column("command", String(64), nullable=False),
    Column("body", Text, nullable=False),
    Column("created", DateTime(timezone=True), nullable=False),
    Column("status", String(16), nullable=False),  # queued / sent / failed
    Column("sent", DateTime(timezone=True)),
    Column("verdict", Text),
    UniqueConstraint("incident_id", "hub_id", "command", name="one_repair_per_incident_hub"),
)


__all__ = ["hub_events", "incident_hubs", "incidents", "repair_commands", "work_orders"]
