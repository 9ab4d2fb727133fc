"""A hub's life at the GDSC: commissioned by an installer, revoked, decommissioned, replaced.

* **Commissioning** (:meth:`HubLifecycle.commission`): an installer's signed request
  (:func:`smarthub.gdsc.fleet.commissioning.verify_request`) is checked first; only then does the CA
  issue the hub's certificate (role ``hub``), and one transaction binds premises ↔ hub ↔ meters,
  records who commissioned the hub and when (``hub_commissioning``), and queues a first read.
* **Revocation** (:meth:`HubLifecycle.revoke_hub`): the hub's status becomes ``revoked`` and its
  pending pulls and jobs are dropped in one transaction, ordered against ingests by
  :func:`smarthub.gdsc.fleet.registry.lock_hub_status`, so the store refuses anything of the hub from that
  instant (a pull already in flight included); then the CA revokes its certificate and a new CRL
  is published (:meth:`publish_crl`): written next to the CA and handed to the collectors, whose
  TLS contexts refuse the hub from then on and who offer the new CRL to every hub with its next
  bulk pull (``wan.crl_sync``: the hubs miss a revocation, so they take it).
* **Decommissioning**: the same, with status ``decommissioned`` and reason cessationOfOperation;
  the hub's stored readings stay and stay readable.
* **Replacement** (:meth:`HubLifecycle.replace_hub`): a new hub, commissioned by an installer's
  request naming the hub it ``replaces``, takes over the premises and its meters, and the old hub
  is decommissioned in the same transaction. :meth:`HubLifecycle.meter_series` reads a meter of a
  premises across every hub that has served it, so the series continues across the swap.
* **Renewal** (:meth:`HubLifecycle.renew_hub`): the CA renews the hub's certificate for the
  key the hub holds (:meth:`CertificateAuthority.renew`) and queues it as an urgent signed
  ``pki.certificate`` command; the hub checks and installs it (``hub.certificate``). Once the
  job comes back applied, :meth:`HubLifecycle.apply_renewals` moves ``hubs.lfdi`` (which the
  collectors pin) and the commissioning record to the new certificate in one transaction, then
  revokes the old one as superseded and publishes the CRL. Between the hub installing and the
  GDSC applying, a pull pinning the old LFDI fails and is retried.
  :meth:`HubLifecycle.renew_due` renews the hubs whose certificate expires within
  ``renew_before`` (30 days), once each. Hub certificates follow the 2030.5 device profile
  (:mod:`smarthub.gdsc.fleet.pki`): valid indefinitely, revocation being the control, so by default
  none is ever due; renewal by date applies to certificates issued with a finite validity
  (``certificate_days``, an operator's choice, or ones issued before the profile) and
  :meth:`HubLifecycle.renew_hub` re-issues any certificate on demand (e.g. a new MICA).
* **Keeping the CRL current** (:meth:`HubLifecycle.keep_crl`): the running GDSC re-publishes the
  CRL every ``crl_refresh`` (a day) although its nextUpdate is ``crl_next_update`` (a week) away,
  so the CRL in the collectors' TLS contexts never goes stale: OpenSSL fails closed on a CRL past
  its nextUpdate (RFC 5280 §5.1.2.5), which would stop every pull at once. The hubs get their
  CRL the same way, with the bulk pull: each pull offers the current CRL's number, and a hub
  takes it when it misses a revocation or the one it holds nears its nextUpdate
  (``wan.crl_sync``, ``hub.management``). No CRL is queued as a command per hub: at 30 million
  hubs that would be 30 million signed commands a day. ``publish_crl(push=True)`` still queues
  a signed ``pki.crl`` to every active hub, for an operator who wants it there before the next
  pull.

  OpenSSL checks a CRL's thisUpdate/nextUpdate against the host's real clock, whatever time a
  simulation runs on, so the CRL for TLS contexts is dated on the clock TLS uses (the GDSC
  service's ``tls_clock``, the system clock unless a test injects one).

Certificates, statuses and revocation reasons follow RFC 5280 §5.3.1 (keyCompromise for a
revoked hub, cessationOfOperation for a decommissioned one, superseded for a replaced one).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import Connection, delete, func, select, update
from sqlalchemy.exc import IntegrityError

from smarthub.gdsc.commands.signer import CommandSigner
from smarthub.gdsc.fleet.commissioning import (
    CommissioningRefused,
    CommissioningRequest,
    Installer,
    verify_request,
)
from smarthub.gdsc.fleet.meters import learn_meter_replacements, meter_series
from smarthub.gdsc.fleet.pki import (
    CertificateAuthority,
    CertificateRejected,
    IssuedCertificate,
    Role,
    _atomic_write,
    lfdi,
)
from smarthub.gdsc.fleet.registry import hub_commissioning, hubs, lock_hub_status, meters, premises
from smarthub.gdsc.outages.store import register_alert_key
from smarthub.gdsc.pull.log import last_answered
from smarthub.gdsc.pull.plan import PullPlan
from smarthub.gdsc.pull.tables import DONE, FAILED, PENDING, Priority, _aware, pull_plan, urgent_work
from smarthub.gdsc.readings.tables import StoredReading
from smarthub.gdsc.store import Store
from smarthub.wan.contract.bodies import PkiCertificate, PkiCrl

ACTIVE, REVOKED, DECOMMISSIONED = "active", "revoked", "decommissioned"
CRL_FILE = "crl.pem"
CLOCK_SKEW = timedelta(minutes=5)
RENEW_COMMAND = "pki.certificate"


def _refuse_second_hub(conn: Connection, req: CommissioningRequest) -> None:
    """A premises has one active hub: commands, vouchers and consent changes for it go to that
    hub, so a second one is refused (``premises_has_hub``) unless the request replaces it."""
    q = select(hubs.c.hub_id).where(
        hubs.c.premises_id == req.premises_id, hubs.c.status == ACTIVE, hubs.c.hub_id != req.hub_id
    )
    active = sorted(h for (h,) in conn.execute(q) if h != req.replaces)
    if active:
        raise CommissioningRefused(
            "premises_has_hub",
            f"premises {req.premises_id} already has active hub {', '.join(active)}; "
            "a new hub there must name the hub it replaces",
        )


class LifecycleRefused(ValueError):
    """A lifecycle step that cannot apply (unknown hub, hub not active)."""


@dataclass(frozen=True, slots=True)
class Commissioned:
    hub_id: str
    certificate: IssuedCertificate  # with the hub's key if the CA generated it
    installer: Installer
    replaced: str | None = None


def renew_spread_of(hub_id: str, spread: timedelta) -> timedelta:
    """A hub's fixed share of ``spread``: how much later than the lead time it is renewed.

    From a hash of the hub id, so it is the same in every GDSC process and after restarts, and
    hubs commissioned together are renewed spread evenly over ``spread`` instead of in one round."""
    if spread <= timedelta(0):
        return timedelta(0)
    share = int.from_bytes(hashlib.sha256(hub_id.encode()).digest()[:8], "big") / 2**64
    return spread * share


@dataclass
class HubLifecycle:
    """Commission, revoke, decommission and replace hubs; keep the CRL moving.

    ``crl_listeners`` are called with the path of every CRL published (e.g. a running
    collector's ``apply_crl``). ``signer`` signs the commands (renewals; ``pki.crl`` when a
    publication is pushed).
    """

    store: Store
    ca: CertificateAuthority
    plan: PullPlan
    signer: CommandSigner | None = None
    crl_dir: Path | None = None
    crl_next_update: timedelta = timedelta(days=7)
    crl_refresh: timedelta = timedelta(days=1)  # re-publish this often (keep_crl)
    crl_listeners: list[Callable[[Path], Any]] = field(default_factory=list)
    renew_before: timedelta = timedelta(days=30)  # renew_due: renew hubs expiring within this
    # renew_due spreads a fleet's renewals over this much of the lead time (renew_spread_of).
    renew_spread: timedelta = timedelta(0)
    # Validity of the hub certificates commissioning issues: None is 2030.5's indefinite one.
    certificate_days: int | None = None

    def __post_init__(self) -> None:
        if self.crl_dir is None:
            self.crl_dir = self.ca.directory
        if self.crl_dir is None:
            raise ValueError("the CRL needs a directory: save the CA or give crl_dir")

    @property
    def crl_path(self) -> Path:
        assert self.crl_dir is not None
        return self.crl_dir / CRL_FILE

    # -- commissioning ---------------------------------------------------------------------
    def commission(
        self, envelope: bytes, now: datetime, *, peer_certificate: x509.Certificate | None = None
    ) -> Commissioned:
        """Act on an installer's signed commissioning request (see ``commissioning.verify_request``).

        Refused requests raise :class:`CommissioningRefused` and write nothing. A request naming
        a hub it ``replaces`` is a replacement (:meth:`replace_hub`)."""
        request, installer = verify_request(envelope, self.ca, now, peer_certificate=peer_certificate)
        old_serial = None if request.replaces is None else self._cert_serial(request.replaces, None)
        return self._commission(request, installer, now, old_serial)

    def replace_hub(
        self, old_hub_id: str, envelope: bytes, now: datetime, *, old_serial: int | None = None
    ) -> Commissioned:
        """Put the hub of an installer's request in place of ``old_hub_id`` (which it must name).

        ``old_serial`` names the old hub's certificate if it was registered without
        commissioning (manifest); it is resolved before anything changes, so a replacement
        that could not revoke the old certificate changes nothing."""
        request, installer = verify_request(envelope, self.ca, now)
        if request.replaces != old_hub_id:
            raise CommissioningRefused(
                "malformed", f"request replaces {request.replaces!r}, not {old_hub_id!r}"
            )
        return self._commission(request, installer, now, self._cert_serial(old_hub_id, old_serial))

    def _commission(
        self, req: CommissioningRequest, installer: Installer, now: datetime, old_serial: int | None = None
    ) -> Commissioned:
        with self.store.engine.connect() as conn:
            known = conn.execute(select(hubs.c.status).where(hubs.c.hub_id == req.hub_id)).first()
            if known is not None:
                raise CommissioningRefused(
                    "hub_exists", f"hub {req.hub_id} is already registered ({known[0]})"
                )
            _refuse_second_hub(conn, req)
            if req.replaces is not None:
                old = conn.execute(
                    select(hubs.c.premises_id, hubs.c.status).where(hubs.c.hub_id == req.replaces)
                ).first()
                if old is None or old.status != ACTIVE:
                    raise CommissioningRefused("unknown_hub", f"hub {req.replaces} is not an active hub")
                if old.premises_id != req.premises_id:
                    raise CommissioningRefused(
                        "malformed",
                        f"hub {req.replaces} serves premises {old.premises_id}, not {req.premises_id}",
                    )
        public_key = None
        if req.hub_public_key_pem is not None:
            key = serialization.load_pem_public_key(req.hub_public_key_pem.encode())
            if not isinstance(key, ec.EllipticCurvePublicKey):
                raise CommissioningRefused("malformed", "the hub's public key must be an EC P-256 key")
            public_key = key
        try:
            cert = self.ca.issue(
                Role.HUB, req.hub_id, now, hosts=req.hosts, public_key=public_key, days=self.certificate_days
            )
        except ValueError as err:
            raise CommissioningRefused("malformed", str(err)) from None
        try:
            with self.store._write_lock, self.store.engine.begin() as conn:
                lock_hub_status(conn, exclusive=True)
                if req.replaces is not None:
                    ended = self._end(conn, req.replaces, DECOMMISSIONED, f"replaced by {req.hub_id}", now)
                    if not ended:
                        raise CommissioningRefused("unknown_hub", f"hub {req.replaces} is not an active hub")
                    conn.execute(delete(meters).where(meters.c.hub_id == req.replaces))
                # Again under the lock: two requests for one premises racing must not both pass.
                _refuse_second_hub(conn, req)
                self._register(conn, req, cert.lfdi)
                conn.execute(
                    hub_commissioning.insert().values(
                        hub_id=req.hub_id,
                        premises_id=req.premises_id,
                        installer=installer.name,
                        installer_lfdi=installer.lfdi,
                        installer_serial=str(installer.serial),
                        commissioned_at=now,
                        cert_serial=str(cert.certificate.serial_number),
                        cert_lfdi=cert.lfdi,
                        cert_pem=cert.cert_pem.decode(),
                        replaces=req.replaces,
                    )
                )
                # Its last gasps verify from now on, under the key of the certificate just issued.
                register_alert_key(self.store.engine, conn, req.hub_id, cert.cert_pem, cert.lfdi)
        except IntegrityError as err:  # a concurrent request for the same hub id won
            self.ca.revoke(cert.certificate.serial_number, now, x509.ReasonFlags.superseded)
            raise CommissioningRefused("hub_exists", f"hub {req.hub_id}: {err.orig}") from None
        except BaseException:
            self.ca.revoke(cert.certificate.serial_number, now, x509.ReasonFlags.superseded)
            raise
        # Scheduled from the next window on (the scheduler plans every active hub); a first read
        # now, ahead of bulk work, proves the hub answers with its new certificate.
        self.plan.enqueue_read(req.hub_id, now)
        if req.replaces is not None:
            # Resolved before anything changed (commission, replace_hub); published at once so
            # the old hub's certificate is refused from now, not from the next daily CRL.
            self.ca.revoke(self._cert_serial(req.replaces, old_serial), now, x509.ReasonFlags.superseded)
            self.publish_crl(now)
        return Commissioned(req.hub_id, cert, installer, req.replaces)

    def _register(self, conn: Connection, req: CommissioningRequest, lfdi: str) -> None:
        ins = self.store._insert(premises).values(
            premises_id=req.premises_id, address=req.address, mpan=req.mpan, mprn=req.mprn
        )
        conn.execute(
            ins.on_conflict_do_update(
                index_elements=["premises_id"],
                set_=dict(address=req.address, mpan=req.mpan, mprn=req.mprn),
            )
        )
        conn.execute(
            hubs.insert().values(
                hub_id=req.hub_id,
                premises_id=req.premises_id,
                url=req.url,
                lfdi=lfdi,
                status=ACTIVE,
                wan_link=req.wan_link,
            )
        )
        for meter_id, fuel in req.meters_by_fuel:
            conn.execute(meters.insert().values(hub_id=req.hub_id, meter_id=meter_id, fuel=fuel))

    # -- ending a hub ----------------------------------------------------------------------
    def revoke_hub(
        self,
        hub_id: str,
        now: datetime,
        reason: x509.ReasonFlags = x509.ReasonFlags.key_compromise,
        *,
        serial: int | None = None,
    ) -> x509.CertificateRevocationList:
        """Revoke a hub: no more pulls, its data refused from now, its certificate on the CRL.

        ``serial`` names the certificate for hubs registered without commissioning (manifest)."""
        return self._finish(hub_id, REVOKED, reason, now, serial)

    def decommission_hub(
        self, hub_id: str, now: datetime, *, serial: int | None = None
    ) -> x509.CertificateRevocationList:
        """Take a hub out of service; what it delivered stays stored and readable."""
        return self._finish(hub_id, DECOMMISSIONED, x509.ReasonFlags.cessation_of_operation, now, serial)

    def _finish(
        self, hub_id: str, status: str, reason: x509.ReasonFlags, now: datetime, serial: int | None
    ) -> x509.CertificateRevocationList:
        serial = self._cert_serial(hub_id, serial)  # before any change: refused means unchanged
        with self.store._write_lock, self.store.engine.begin() as conn:
            lock_hub_status(conn, exclusive=True)
            if not self._end(conn, hub_id, status, reason.value, now):
                raise LifecycleRefused(f"hub {hub_id} is not an active hub")
        self.ca.revoke(serial, now, reason)
        return self.publish_crl(now)

    def _end(self, conn: Connection, hub_id: str, status: str, why: str, now: datetime) -> bool:
        """Status change and dropped work of one hub, in the caller's (locked) transaction."""
        res = conn.execute(
            update(hubs).where(hubs.c.hub_id == hub_id, hubs.c.status == ACTIVE).values(status=status)
        )
        if res.rowcount != 1:
            return False
        # Pending work goes; a pull in flight finds its ingest refused and its row then finds no
        # active hub to pull (the plan marks it done, "hub gone").
        conn.execute(delete(pull_plan).where(pull_plan.c.hub_id == hub_id, pull_plan.c.state == PENDING))
        conn.execute(
            update(urgent_work)
            .where(urgent_work.c.hub_id == hub_id, urgent_work.c.state == PENDING)
            .values(state=FAILED, finished=now, last_error=f"hub {status}")
        )
        conn.execute(
            update(hub_commissioning)
            .where(hub_commissioning.c.hub_id == hub_id)
            .values(ended_at=now, end_status=status, end_reason=why)
        )
        return True

    def _cert_serial(self, hub_id: str, serial: int | None) -> int:
        """The serial of ``hub_id``'s certificate: given, or recorded at commissioning."""
        if serial is not None:
            return serial
        with self.store.engine.connect() as conn:
            found = conn.execute(
                select(hub_commissioning.c.cert_serial).where(hub_commissioning.c.hub_id == hub_id)
            ).scalar()
        if found is None:
            raise LifecycleRefused(
                f"hub {hub_id} was not commissioned here: pass the serial of its certificate"
            )
        return int(found)

    # -- renewal ---------------------------------------------------------------------------
    def renew_hub(self, hub_id: str, now: datetime, days: int | None = None) -> int:
        """Renew an active hub's certificate and queue it to the hub (urgent ``pki.certificate``);
        the job id. Nothing changes at the GDSC until the hub has applied it (:meth:`apply_renewals`).

        Refused (:class:`LifecycleRefused`, nothing issued) for a hub that is not active, was
        registered from the manifest (the GDSC holds no certificate of it to renew), or already
        has a renewal under way."""
        if self.signer is None:
            raise LifecycleRefused("renewing a hub needs a command signer (the operator certificate)")
        # Busy first, then settle finished renewals, then read: a renewal that finishes in
        # between is settled here, so the record read is the certificate the hub uses.
        with self.store.engine.connect() as conn:
            busy = self._renewal_pending(conn, hub_id)
        if busy:
            raise LifecycleRefused(f"hub {hub_id} already has a certificate renewal under way")
        self.apply_renewals(now, hub_id=hub_id)
        with self.store.engine.connect() as conn:
            status = conn.execute(select(hubs.c.status).where(hubs.c.hub_id == hub_id)).scalar()
            rec = conn.execute(
                select(hub_commissioning.c.cert_serial, hub_commissioning.c.cert_pem).where(
                    hub_commissioning.c.hub_id == hub_id
                )
            ).first()
        if status != ACTIVE:
            raise LifecycleRefused(f"hub {hub_id} is not an active hub")
        if rec is None or rec.cert_pem is None:
            raise LifecycleRefused(
                f"hub {hub_id} was registered from the manifest (or commissioned before certificates "
                "were kept): the GDSC holds no certificate of it to renew; re-commission or replace it"
            )
        old = x509.load_pem_x509_certificate(rec.cert_pem.encode())
        try:
            new = self.ca.renew(old, now, days)
        except (ValueError, CertificateRejected) as err:
            raise LifecycleRefused(f"hub {hub_id}: {err}") from None
        body = PkiCertificate(new.cert_pem.decode(), rec.cert_serial)
        return self.plan.queue_command(self.signer, hub_id, RENEW_COMMAND, body, now, Priority.URGENT)

    @staticmethod
    def _renewal_pending(conn: Connection, hub_id: str) -> bool:
        u = urgent_work
        return (
            conn.execute(
                select(u.c.id)
                .where(
                    u.c.hub_id == hub_id, u.c.command_type == RENEW_COMMAND, u.c.state.not_in((DONE, FAILED))
                )
                .limit(1)
            ).first()
            is not None
        )

    def apply_renewals(self, now: datetime, after_job: int = 0, *, hub_id: str | None = None) -> int:
        """Move the GDSC to the certificates hubs have applied (``pki.certificate`` jobs after
        ``after_job``): ``hubs.lfdi`` and the commissioning record in one transaction, then the
        old certificate revoked (superseded) and the CRL published (module docstring). A
        renewal the hub refused or that failed changes nothing (its certificate is left to
        expire: a lost answer may hide a hub that did install it). Idempotent: a job
        applies only while the record still holds the serial it replaces.
        Returns the job id up to which every renewal is settled (pass it back next time);
        ``hub_id`` settles only that hub's."""
        u = urgent_work
        query = select(u.c.id, u.c.hub_id, u.c.state, u.c.result, u.c.envelope).where(
            u.c.command_type == RENEW_COMMAND, u.c.id > after_job
        )
        if hub_id is not None:
            query = query.where(u.c.hub_id == hub_id)
        with self.store.engine.connect() as conn:
            jobs = conn.execute(query.order_by(u.c.id)).all()
        mark, changed = after_job, False
        for job in jobs:
            if job.state not in (DONE, FAILED):
                break
            mark = job.id
            try:
                body = json.loads(json.loads(job.envelope)["payload"])["body"]
                cert = x509.load_pem_x509_certificate(str(body["certificate"]).encode())
                old_serial = str(body["replaces_serial"])
            except (ValueError, KeyError, TypeError):
                continue
            verdict = json.loads(job.result) if job.state == DONE and job.result else {}
            if verdict.get("status") != "applied":
                continue
            if self._move_to(job.hub_id, cert, old_serial, now):
                changed = True
        if changed:
            self.publish_crl(now)
        return mark

    def adopt_renewed(self, presented: dict[str, str], now: datetime) -> list[str]:
        """Move to the renewed certificates hubs were seen presenting (``presented``: hub id ->
        the LFDI a pull's handshake found): a hub installs its renewal before it answers, and an
        answer lost or delayed (a link cut, a timeout) would otherwise leave the GDSC pinning a
        certificate the hub no longer presents, unable to pull it again. Only a certificate this
        CA issued the hub in a ``pki.certificate`` job, renewing the one on record, is adopted
        (the handshake has proved the hub holds its key); the hubs moved."""
        u = urgent_work
        moved: list[str] = []
        for hub_id, seen in sorted(presented.items()):
            with self.store.engine.connect() as conn:
                envelopes = conn.execute(
                    select(u.c.envelope)
                    .where(u.c.hub_id == hub_id, u.c.command_type == RENEW_COMMAND)
                    .order_by(u.c.id.desc())
                ).all()
            for (envelope,) in envelopes:
                try:
                    body = json.loads(json.loads(envelope)["payload"])["body"]
                    cert = x509.load_pem_x509_certificate(str(body["certificate"]).encode())
                    old_serial = str(body["replaces_serial"])
                except (ValueError, KeyError, TypeError):
                    continue
                if lfdi(cert) == seen.upper():
                    if self._move_to(hub_id, cert, old_serial, now):
                        moved.append(hub_id)
                    break
        if moved:
            self.publish_crl(now)
        return moved

    def _move_to(self, hub_id: str, cert: x509.Certificate, old_serial: str, now: datetime) -> bool:
        """``hubs.lfdi`` and the commissioning record to ``cert`` if the record still holds
        ``old_serial`` (or a certificate issued before ``cert``: see below), then the one on
        record revoked (superseded); whether it moved.

        A hub installs every renewal the CA issued it, whatever it replaces: when a renewal's
        answer was lost, its job failed and a second renewal of the same certificate was queued
        while the GDSC adopted the first from the hub's handshake, the hub installs the second
        too and presents it from then on. Its answer (or handshake) is the truth, so the record
        moves to a renewal issued after the certificate it holds, or the GDSC would pin a
        certificate the hub no longer presents and never reach it again."""
        new_lfdi = lfdi(cert)
        with self.store._write_lock, self.store.engine.begin() as conn:
            lock_hub_status(conn, exclusive=True)
            held = conn.execute(
                select(hub_commissioning.c.cert_serial, hub_commissioning.c.cert_pem).where(
                    hub_commissioning.c.hub_id == hub_id
                )
            ).first()
            if held is None or held.cert_serial == str(cert.serial_number):
                return False
            if held.cert_serial != old_serial:
                if held.cert_pem is None:
                    return False
                on_record = x509.load_pem_x509_certificate(held.cert_pem.encode())
                if on_record.not_valid_before_utc >= cert.not_valid_before_utc:
                    return False  # an older renewal's late answer: the record holds a newer one
                old_serial = str(held.cert_serial)
            moved = conn.execute(
                update(hub_commissioning)
                .where(
                    hub_commissioning.c.hub_id == hub_id,
                    hub_commissioning.c.cert_serial == old_serial,
                )
                .values(
                    cert_serial=str(cert.serial_number),
                    cert_lfdi=new_lfdi,
                    cert_pem=cert.public_bytes(serialization.Encoding.PEM).decode(),
                )
            ).rowcount
            if moved == 1:
                conn.execute(update(hubs).where(hubs.c.hub_id == hub_id).values(lfdi=new_lfdi))
                pem = cert.public_bytes(serialization.Encoding.PEM)
                register_alert_key(self.store.engine, conn, hub_id, pem, new_lfdi)
        if moved == 1:
            self.ca.revoke(int(old_serial), now, x509.ReasonFlags.superseded)
        return moved == 1

    def renew_due(self, now: datetime, days: int | None = None) -> list[str]:
        """Renew (:meth:`renew_hub`) every active commissioned hub whose certificate expires
        within :attr:`renew_before` of ``now`` (less the hub's share of :attr:`renew_spread`,
        :func:`renew_spread_of`) and has no renewal under way; the hubs renewed.

        Without a spread, hubs commissioned together fall due together: one upkeep run queues
        every one's ``pki.certificate`` at once, and each hub's later commands (its top-ups
        among them) wait behind its renewal in the plan's per-hub order."""
        with self.store.engine.connect() as conn:
            rows = conn.execute(
                select(hub_commissioning.c.hub_id, hub_commissioning.c.cert_pem)
                .select_from(hub_commissioning.join(hubs, hubs.c.hub_id == hub_commissioning.c.hub_id))
                .where(hubs.c.status == ACTIVE, hub_commissioning.c.cert_pem.is_not(None))
                .order_by(hub_commissioning.c.hub_id)
            ).all()
            due = [
                r.hub_id
                for r in rows
                if x509.load_pem_x509_certificate(r.cert_pem.encode()).not_valid_after_utc
                <= now + self.renew_before - renew_spread_of(r.hub_id, self.renew_spread)
                and not self._renewal_pending(conn, r.hub_id)
            ]
            away = self._renewal_undelivered(conn, due)
        renewed = []
        for hub_id in due:
            if hub_id in away:
                continue  # its last renewal never reached it: tried again once it is back
            try:
                self.renew_hub(hub_id, now, days)
            except LifecycleRefused:
                continue  # ended or renewed meanwhile: looked at again next time if still due
            renewed.append(hub_id)
        return renewed

    @staticmethod
    def _renewal_undelivered(conn: Connection, hub_ids: list[str]) -> set[str]:
        """The hubs among ``hub_ids`` whose latest renewal was given up undelivered (the plan's
        tries all failed on the transport: no verdict) and that have not answered a pull since.

        Renewing such a hub again at once would issue a new certificate every upkeep run for as
        long as it is away (a power cut of hours: dozens of certificates, each job failing its
        tries while holding the hub's queue); once it has answered a pull it is back, and the
        next run renews it (the same rule as the voucher and consent re-sends). A renewal the
        hub installed though its answer was lost is adopted from its handshake meanwhile
        (:meth:`adopt_renewed`), and is then no longer due."""
        if not hub_ids:
            return set()
        u = urgent_work
        latest = dict(
            conn.execute(
                select(u.c.hub_id, func.max(u.c.id))
                .where(u.c.hub_id.in_(sorted(hub_ids)), u.c.command_type == RENEW_COMMAND)
                .group_by(u.c.hub_id)
            ).all()
        )
        if not latest:
            return set()
        given_up = {
            r.hub_id: _aware(r.finished)
            for r in conn.execute(
                select(u.c.hub_id, u.c.finished).where(
                    u.c.id.in_(sorted(latest.values())), u.c.state == FAILED, u.c.result.is_(None)
                )
            )
            if r.finished is not None
        }
        answered = last_answered(conn, set(given_up))
        return {
            hub_id
            for hub_id, ended in given_up.items()
            if (back := answered.get(hub_id)) is None or back <= ended
        }

    # -- the CRL ---------------------------------------------------------------------------
    def revoke_certificate(
        self, serial: int, now: datetime, reason: x509.ReasonFlags = x509.ReasonFlags.key_compromise
    ) -> x509.CertificateRevocationList:
        """Revoke any certificate (a collector's, a party's, an operator's) and publish the CRL."""
        self.ca.revoke(serial, now, reason)
        return self.publish_crl(now)

    def publish_crl(self, now: datetime, *, push: bool = False) -> x509.CertificateRevocationList:
        """Write the CA's current CRL and tell the listeners (the hubs take it with their next
        bulk pull); with ``push``, also queue it to every active hub as an urgent ``pki.crl``.

        The CRL's thisUpdate is ``now``: verifiers use the newest CRL that is not dated ahead of
        their clock (see :func:`smarthub.wan.tls.apply_crl`)."""
        crl = self.ca.crl(now, next_update=self.crl_next_update)
        pem = crl.public_bytes(serialization.Encoding.PEM)
        _atomic_write(self.crl_path, pem, 0o644)
        for listener in self.crl_listeners:
            listener(self.crl_path)
        if self.signer is not None and push:
            body = PkiCrl(crl.public_bytes(serialization.Encoding.DER))
            for hub in self.store.active_hubs():
                self.plan.queue_command(self.signer, hub.hub_id, "pki.crl", body, now, Priority.URGENT)
        return crl

    def published_crl(self) -> x509.CertificateRevocationList | None:
        """The CRL last written to :attr:`crl_path`, if it is this CA's (signature checked)."""
        try:
            crl = x509.load_pem_x509_crl(self.crl_path.read_bytes())
        except (FileNotFoundError, ValueError):
            return None
        key = self.ca.certificate.public_key()
        if crl.issuer != self.ca.certificate.subject or not isinstance(key, ec.EllipticCurvePublicKey):
            return None
        return crl if crl.is_signature_valid(key) else None

    def crl_due(self, crl: x509.CertificateRevocationList | None, now: datetime) -> datetime:
        """When ``crl`` (the published one) must be replaced: ``crl_refresh`` after its
        thisUpdate, and at the latest ``crl_refresh`` before its nextUpdate; ``now`` if there is
        none, it lists another revoked set than the CA's, or it is dated ahead of ``now``."""
        if crl is None or {r.serial_number for r in crl} != self.ca.revoked_serials:
            return now
        this = crl.last_update_utc
        if this > now + CLOCK_SKEW:  # dated by a clock ahead of ours: verifiers would not use it yet
            return now
        due = this + self.crl_refresh
        if crl.next_update_utc is not None:
            due = min(due, crl.next_update_utc - self.crl_refresh)
        return due

    def keep_crl(self, now: datetime) -> x509.CertificateRevocationList | None:
        """Re-publish the CRL if it is due (:meth:`crl_due`); the new CRL, or None if the
        published one stays. The hubs take it with their pulls (module docstring)."""
        held = self.published_crl()
        if self.crl_due(held, now) > now:
            return None
        return self.publish_crl(now)

    # -- reading across hubs ---------------------------------------------------------------
    def meter_series(
        self, premises_id: str, meter_id: str, obis: str, start: int | None = None, end: int | None = None
    ) -> list[StoredReading]:
        """One meter's readings at a premises from every hub that has served it
        (:func:`smarthub.gdsc.fleet.meters.meter_series`)."""
        return meter_series(self.store, premises_id, meter_id, obis, start, end)

    def learn_meter_replacements(self, after_job: int = 0) -> int:
        """Register at the GDSC the meters that signed ``meter.replace`` commands put in place.

        For every ``meter.replace`` job after ``after_job`` the hub applied, the new meter joins
        the hub's meters (the command's fuel, else the old meter's); the old meter stays, so its
        history, stored under its own id, stays readable. Idempotent. Returns the job id up to
        which every ``meter.replace`` job is settled (pass it back next time)."""
        return learn_meter_replacements(self.store, after_job)

    def commissioning_record(self, hub_id: str) -> dict[str, Any] | None:
        with self.store.engine.connect() as conn:
            row = conn.execute(select(hub_commissioning).where(hub_commissioning.c.hub_id == hub_id)).first()
        return None if row is None else dict(row._mapping)


__all__ = [
    "ACTIVE",
    "CRL_FILE",
    "DECOMMISSIONED",
    "RENEW_COMMAND",
    "REVOKED",
    "Commissioned",
    "HubLifecycle",
    "LifecycleRefused",
]
