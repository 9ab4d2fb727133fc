"""The transfer policies' tables (:mod:`smarthub.gdsc.transfer.policies` keeps them).

``transfer_policies``
    One row per scope: a hub, a group of hubs (a supplier, a tariff, a premises class) or the
    default. Changing a group's policy changes one row, however many hubs are in the group.
``premises_groups``
    Which premises class and tariff group a premises belongs to (the supplier comes from its
    supply period).
``hub_transfer_policy``
    Per hub, the policy version last queued for it as a ``transfer.policy`` command, and the
    job: the command rides on the hub's next pull instead of 100,000 commands at the change.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, DateTime, ForeignKey, Integer, SmallInteger, String, Table

from smarthub.gdsc.db.database import metadata

_T = DateTime(timezone=True)

transfer_policies = Table(
    "transfer_policies",
    metadata,
    Column("scope", String(16), primary_key=True),  # hub, premises-class, tariff, supplier, default
    Column("scope_key", String(64), primary_key=True),  # the hub, class, tariff or supplier ("*": default)
    Column("frequency", String(16), nullable=False),
    Column("window_start", Integer, nullable=False),  # minutes past UTC midnight
    Column("window_length", Integer, nullable=False),  # minutes
    Column("aggregation", String(16), nullable=False),
    Column("priority", SmallInteger, nullable=False),
    Column("version", BigInteger, nullable=False),  # microseconds since the epoch of the change
    Column("set_by", String(64), nullable=False),
    Column("set_at", _T, nullable=False),
)

premises_groups = Table(
    "premises_groups",
    metadata,
    Column("premises_id", String(64), ForeignKey("premises.premises_id"), primary_key=True),
    Column("premises_class", String(64)),
    Column("tariff", String(64)),
)

hub_transfer_policy = Table(
    "hub_transfer_policy",
    metadata,
    Column("hub_id", String(64), primary_key=True),
    Column("version", BigInteger, nullable=False),  # the version queued for the hub
    Column("source", String(160), nullable=False),  # the policy row it came from (scope:key:version)
    Column("job_id", BigInteger().with_variant(Integer, "sqlite"), nullable=False),  # its urgent_work job
    Column("queued_at", _T, nullable=False),
)

__all__ = ["hub_transfer_policy", "premises_groups", "transfer_policies"]
