"""One hub as the operator console's detail page shows it: the hub and its premises, its meters
and their channels, its pulls (paged), its diagnoses, the incidents and work orders it is in,
the repairs sent to it, its certificates and the outages its premises was in.

Read-only, from the tables their own packages keep (registry, pull log, error log, outages);
nothing here writes. A hub's pull log grows by one row per window (48 a day), so it is paged
here, newest first; every other list is bounded by what a hub can have.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from sqlalchemy import Engine, func, select

from smarthub.gdsc.fleet.registry import hub_commissioning, hubs, meters, premises
from smarthub.gdsc.incidents.policy import HUB_UNREACHABLE
from smarthub.gdsc.incidents.tables import hub_events, incident_hubs, incidents, repair_commands, work_orders
from smarthub.gdsc.outages.store import alert_keys, outage_premises, outages
from smarthub.gdsc.outages.topology import premises_topology, topology_nodes
from smarthub.gdsc.pull.log import pull_log
from smarthub.gdsc.pull.tables import hub_errors
from smarthub.gdsc.readings.tables import interval_blocks, interval_channels
from smarthub.wan.contract.diagnosis import label

PULLS_PAGE = 50
MAX_PULLS_PAGE = 500


def code_label(code: int) -> str:
    """A diagnosis code's label from the WAN contract (and the GDSC's own unreachable code)."""
    return "hub unreachable" if code == HUB_UNREACHABLE else label(code)


def _aware(t: datetime | None) -> datetime | None:
    if t is None:
        return None
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def _row(r: Any) -> dict[str, Any]:
    return {k: _aware(v) if isinstance(v, datetime) else v for k, v in r._mapping.items()}


def certificate_facts(pem: str | None, now: datetime) -> dict[str, Any]:
    """Subject, issuer, validity and days left of a PEM certificate (empty if none or unreadable:
    the console shows what it has, it does not refuse a page for a bad record)."""
    if not pem:
        return {}
    try:
        cert = x509.load_pem_x509_certificate(pem.encode())
    except ValueError as err:
        return {"unreadable": str(err)}
    not_after = cert.not_valid_after_utc
    return {
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "serial": str(cert.serial_number),
        "not_before": cert.not_valid_before_utc,
        "not_after": not_after,
        "days_left": (not_after - now).days,
        "expired": not_after <= now,
    }


def hub_view(
    engine: Engine, hub_id: str, now: datetime, *, pulls_offset: int = 0, pulls_limit: int = PULLS_PAGE
) -> dict[str, Any] | None:
    """Everything the detail page shows of ``hub_id`` (``None``: no such hub)."""
    pulls_limit = min(max(pulls_limit, 1), MAX_PULLS_PAGE)
    pulls_offset = max(pulls_offset, 0)
    with engine.connect() as conn:
        hub = conn.execute(select(hubs).where(hubs.c.hub_id == hub_id)).first()
        if hub is None:
            return None
        prem = conn.execute(select(premises).where(premises.c.premises_id == hub.premises_id)).first()
        place = conn.execute(
            select(premises_topology).where(premises_topology.c.premises_id == hub.premises_id)
        ).first()
        network: list[dict[str, Any]] = []
        node_id = place.feeder_id if place is not None else None
        while node_id is not None and len(network) < 8:
            node = conn.execute(select(topology_nodes).where(topology_nodes.c.node_id == node_id)).first()
            if node is None:
                break
            network.append({"node_id": node.node_id, "kind": node.kind, "name": node.name})
            node_id = node.parent_id

        # Meters and, per meter, the channels stored and how many readings each holds.
        channels: dict[str, list[dict[str, Any]]] = {}
        counts = {
            r.channel_no: (int(r.n or 0), r.last_day)
            for r in conn.execute(
                select(
                    interval_blocks.c.channel_no,
                    func.sum(interval_blocks.c.n).label("n"),
                    func.max(interval_blocks.c.day).label("last_day"),
                )
                .where(interval_blocks.c.hub_id == hub_id)
                .group_by(interval_blocks.c.channel_no)
            )
        }
        for c in conn.execute(
            select(interval_channels)
            .where(interval_channels.c.hub_id == hub_id)
            .order_by(interval_channels.c.channel_no)
        ):
            n, last_day = counts.get(c.channel_no, (0, None))
            channels.setdefault(c.meter_id, []).append(
                {
                    "obis": c.obis,
                    "duration": c.duration,
                    "readings": n,
                    "last_day": (
                        datetime.fromtimestamp(last_day * 86400, UTC).date().isoformat()
                        if last_day is not None
                        else None
                    ),
                }
            )
        meter_rows = [
            {"meter_id": m.meter_id, "fuel": m.fuel, "channels": channels.pop(m.meter_id, [])}
            for m in conn.execute(select(meters).where(meters.c.hub_id == hub_id).order_by(meters.c.meter_id))
        ]
        # Channels of a meter the registry does not (yet) list: shown, not hidden.
        meter_rows += [{"meter_id": m, "fuel": "", "channels": cs} for m, cs in sorted(channels.items())]

        totals = conn.execute(
            select(func.count(), func.coalesce(func.sum(pull_log.c.ok), 0)).where(pull_log.c.hub_id == hub_id)
        ).one()
        pulls = [
            _row(r)
            for r in conn.execute(
                select(pull_log)
                .where(pull_log.c.hub_id == hub_id)
                .order_by(pull_log.c.seq.desc())
                .offset(pulls_offset)
                .limit(pulls_limit)
            )
        ]
        errors = [
            _row(r)
            for r in conn.execute(
                select(hub_errors)
                .where(hub_errors.c.hub_id == hub_id)
                .order_by(hub_errors.c.id.desc())
                .limit(50)
            )
        ]

        diagnoses = [
            {**_row(r), "label": code_label(r.code)}
            for r in conn.execute(
                select(hub_events)
                .where(hub_events.c.hub_id == hub_id)
                .order_by(hub_events.c.open.desc(), hub_events.c.last_seen.desc())
            )
        ]

        member = {
            r.incident_id: r
            for r in conn.execute(select(incident_hubs).where(incident_hubs.c.hub_id == hub_id))
        }
        incident_rows = []
        if member:
            orders = {
                r.incident_id: r
                for r in conn.execute(select(work_orders).where(work_orders.c.incident_id.in_(list(member))))
            }
            for r in conn.execute(
                select(incidents)
                .where(incidents.c.incident_id.in_(list(member)))
                .order_by(incidents.c.incident_id.desc())
            ):
                wo = orders.get(r.incident_id)
                m = member[r.incident_id]
                incident_rows.append(
                    {
                        **_row(r),
                        "label": code_label(r.code),
                        "open_here": bool(m.open),
                        "since": _aware(m.since),
                        "detail": m.detail,
                        "work_order": None
                        if wo is None
                        else {
                            "work_order_id": wo.work_order_id,
                            "party": wo.party,
                            "assignee": wo.assignee,
                            "status": wo.status,
                            "reason": wo.reason,
                            "created": _aware(wo.created),
                            "closed": _aware(wo.closed),
                        },
                    }
                )
        repairs = [
            {**_row(r), "verdict": json.loads(r.verdict) if r.verdict else None}
            for r in conn.execute(
                select(
                    repair_commands.c.repair_id,
                    repair_commands.c.incident_id,
                    repair_commands.c.command,
                    repair_commands.c.created,
                    repair_commands.c.status,
                    repair_commands.c.sent,
                    repair_commands.c.verdict,
                )
                .where(repair_commands.c.hub_id == hub_id)
                .order_by(repair_commands.c.repair_id.desc())
            )
        ]

        # The commissioning record of this hub and of the hubs it replaced, newest first.
        certificates = []
        seen: set[str] = set()
        cur: str | None = hub_id
        while cur is not None and cur not in seen:
            seen.add(cur)
            rec = conn.execute(select(hub_commissioning).where(hub_commissioning.c.hub_id == cur)).first()
            if rec is None:
                break
            certificates.append(
                {
                    "hub_id": rec.hub_id,
                    "installer": rec.installer,
                    "commissioned_at": _aware(rec.commissioned_at),
                    "cert_serial": rec.cert_serial,
                    "cert_lfdi": rec.cert_lfdi,
                    "current": rec.hub_id == hub_id and rec.cert_lfdi == hub.lfdi,
                    "replaces": rec.replaces,
                    "ended_at": _aware(rec.ended_at),
                    "end_status": rec.end_status,
                    "end_reason": rec.end_reason,
                    **certificate_facts(rec.cert_pem, now),
                }
            )
            cur = rec.replaces
        alert_lfdi = conn.execute(select(alert_keys.c.lfdi).where(alert_keys.c.hub_id == hub_id)).scalar()

        hub_outages = [
            _row(r)
            for r in conn.execute(
                select(
                    outages.c.outage_id,
                    outages.c.level,
                    outages.c.location,
                    outages.c.closed,
                    outage_premises.c.lost_at,
                    outage_premises.c.restored_at,
                    outage_premises.c.duration_s,
                )
                .join(outages, outages.c.outage_id == outage_premises.c.outage_id)
                .where(outage_premises.c.premises_id == hub.premises_id, outages.c.merged_into.is_(None))
                .order_by(outage_premises.c.lost_at.desc())
                .limit(50)
            )
        ]

    return {
        "hub": {
            "hub_id": hub.hub_id,
            "status": hub.status,
            "url": hub.url,
            "lfdi": hub.lfdi,
            "wan_link": hub.wan_link,
            "premises_id": hub.premises_id,
            "address": prem.address if prem is not None else "",
            "mpan": prem.mpan if prem is not None else None,
            "mprn": prem.mprn if prem is not None else None,
            "phase": place.phase if place is not None else None,
            "network": network,
            "alert_key_lfdi": alert_lfdi,
        },
        "meters": meter_rows,
        "pulls": {
            "total": int(totals[0]),
            "ok": int(totals[1]),
            "offset": pulls_offset,
            "limit": pulls_limit,
            "rows": pulls,
        },
        "pull_errors": errors,
        "diagnoses": diagnoses,
        "incidents": incident_rows,
        "repairs": repairs,
        "certificates": certificates,
        "outages": hub_outages,
    }


__all__ = ["PULLS_PAGE", "certificate_facts", "code_label", "hub_view"]
