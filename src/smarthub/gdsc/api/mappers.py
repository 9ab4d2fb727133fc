"""From the services' values (buckets, consents, audit entries, jobs) to the API's response
models, and the sums the portfolio view builds on the way."""

from datetime import datetime, tzinfo
from typing import Any

from fastapi import HTTPException

from smarthub.gdsc.api.schemas import (
    AccessLogEntry,
    AggregateOut,
    ConsentOut,
    JobOut,
    ReadingOut,
    ServiceOffer,
    ServiceRead,
    SiteReading,
)
from smarthub.gdsc.commands.desk import Job
from smarthub.gdsc.governance.aggregates import AggregateBucket
from smarthub.gdsc.governance.audit import AuditEntry
from smarthub.gdsc.governance.parties import Consent
from smarthub.gdsc.governance.service_activity import HouseholdService
from smarthub.gdsc.readings.queries import Bucket


def reading_out(b: Bucket, tz: tzinfo | None) -> ReadingOut:
    return ReadingOut(
        start=datetime.fromtimestamp(b.start, tz),
        duration=b.duration,
        value=b.value,
        power_of_ten=b.power_of_ten,
        uom=b.uom,
        quality=b.quality,
        intervals=b.intervals,
    )


def aggregate_out(b: AggregateBucket, tz: tzinfo | None) -> AggregateOut:
    return AggregateOut(
        start=datetime.fromtimestamp(b.start, tz),
        duration=b.duration,
        value=b.value,
        power_of_ten=b.power_of_ten,
        uom=b.uom,
        premises=b.premises,
    )


def access_log_entry(e: AuditEntry) -> AccessLogEntry:
    return AccessLogEntry(
        seq=e.seq, at=e.at, actor=e.actor, role=e.role, action=e.action, allow=e.allow, reason=e.reason
    )


def consent_out(c: Consent) -> ConsentOut:
    return ConsentOut(
        consent_id=c.consent_id,
        party_id=c.party_id,
        premises_id=c.premises_id,
        data_kinds=sorted(c.data_kinds),
        granularity=c.granularity,
        purpose=c.purpose,
        granted_at=c.granted_at,
        expires_at=c.expires_at,
        revoked_at=c.revoked_at,
        meters=None if c.meters is None else sorted(c.meters),
    )


def job_out(j: Job) -> JobOut:
    return JobOut(
        job_id=j.job_id,
        state=j.state,  # type: ignore[arg-type]
        action=j.action,
        command_type=j.command_type,
        premises_id=j.premises_id,
        meter_id=j.meter_id,
        hub_id=j.hub_id,
        queued=j.queued,
        finished=j.finished,
        tries=j.tries,
        result=j.result,
        error=j.error,
        voucher_id=j.voucher_id,
        voucher_status=j.voucher_status,
    )


def add(acc: dict[int, list[int]], start: int, duration: int, value: int, p10: int, uom: int, n: int) -> None:
    """Add a bucket into per-start sums [duration, value, power_of_ten, uom, buckets], exactly."""
    a = acc.get(start)
    if a is None:
        acc[start] = [duration, value, p10, uom, n]
        return
    if a[3] != uom:
        raise HTTPException(400, f"cannot sum readings in unit {a[3]} and {uom}: ask for one OBIS code")
    if p10 < a[2]:  # rescale to the finer power of ten so the sum stays exact
        a[1] *= 10 ** (a[2] - p10)
        a[2] = p10
    a[1] += value * 10 ** (p10 - a[2])
    a[4] += n


def site_readings(acc: dict[int, list[int]], tz: Any) -> list[SiteReading]:
    return [
        SiteReading(
            start=datetime.fromtimestamp(s, tz), duration=d, value=v, power_of_ten=p10, uom=uom, meters=n
        )
        for s, (d, v, p10, uom, n) in sorted(acc.items())
    ]


def service_offer(s: HouseholdService, now: datetime) -> ServiceOffer:
    return ServiceOffer(
        service_id=s.party_id,
        organisation=s.organisation,
        purpose=s.purpose,
        status=s.status,
        data_kinds=sorted(s.data_kinds),
        granularity=s.granularity,
        retention_days=s.retention_days,
        consents=[c.consent_id for c in s.live_consents(now)],
        reads=[
            ServiceRead(
                seq=r.seq,
                at=r.at,
                data_kind=r.data_kind,
                action=r.action,
                meter_id=r.meter_id,
                granularity=r.granularity,
                periods=list(r.ranges),
            )
            for r in s.reads
        ],
        reads_total=s.reads_total,
        refused_total=s.refused_total,
        last_read_at=s.last_read_at,
        messages_total=s.messages_total,
        last_message_at=s.last_message_at,
    )
