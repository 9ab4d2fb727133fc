"""The collector: pulls one hub over mutual TLS and ingests what it got, idempotently.

Two ways to pull a hub (IEEE 2030.5 over HTTPS either way):

- **bulk**: one request per page of readings (a home's day is one page) through
  :class:`smarthub.wan.client.pull.PullClient` (TLS session resumption, h11, streaming lxml
  parse), from the MirrorUsagePointList this scheme's hubs serve at ``/mup``. A hub is asked
  there straight away, even the first time: one request per hub per pull. Only a hub that does
  not answer there (older firmware) is asked its /dcap, the 2030.5 entry point, and pulled from
  the ``MirrorUsagePointListLink`` it advertises, or walked if it advertises none. What was
  found is remembered per hub.
- **walk**, otherwise: :class:`smarthub.wan.client.hub_client.HubClient` through dcap → upt → mr → rt/rs → r.

Both yield the same readings and cursors (a channel's cursor key is its MeterReading href).

The GDSC CA's CRL rides along with the bulk pull (:mod:`smarthub.wan.contract.crl_sync`): every bulk
request offers the number of the CRL the collector holds (:meth:`Collector.offer_crl`, and
:meth:`Collector.apply_crl` for each newer one), and a hub that asks for it gets it PUT on the
same connection once its pages are in. A failure there is logged and does not fail the pull
(the hub asks again at its next pull). The hub's answers also carry its storage state
(:mod:`smarthub.wan.contract.storage`): kept per hub in ``storage_reports`` for the upkeep,
which restores a hub that came up blank (:mod:`smarthub.gdsc.fleet.recovery`). An answer that
says consent revocations wait at the hub (asked at its display: :mod:`smarthub.wan.contract.revocations`)
has them read on the same connection, decided by :attr:`Collector.revocations` (the GDSC's
governance, :mod:`smarthub.gdsc.governance.hub_revocations`) and answered there; a failure there
is logged and does not fail the pull either (the requests wait for the next pull).

Storage writes of concurrent pulls are grouped: while one group is being written in a worker
thread, the next accumulates, so the event loop hops to a thread once per group rather than
once per pull. Each pull's ingest is still its own ``Store.ingest`` transaction;
``_ingest_all`` hands every batch to ``Store.ingest_many``: one transaction for many pulls.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from smarthub.clock import Clock
from smarthub.gdsc.fleet.registry import HubRecord
from smarthub.gdsc.incidents.error_log import ErrorLog
from smarthub.gdsc.incidents.event_pull import pull_events
from smarthub.gdsc.readings.appliances import ApplianceRegistry
from smarthub.gdsc.readings.tables import IngestResult, ReadingRow, Readings
from smarthub.gdsc.store import Store
from smarthub.wan.client.channel import ChannelEndpoint
from smarthub.wan.client.hub_client import HubClient, PulledInterval, PullError
from smarthub.wan.client.pull import HttpStatusError, HubConnection, PullClient, SessionCache
from smarthub.wan.contract import crl_sync
from smarthub.wan.contract import revocations as consent_revocations
from smarthub.wan.contract.crl_sync import CrlOffer
from smarthub.wan.contract.events import LOG_EVENT_POLL_RATE
from smarthub.wan.contract.sep2_xml import MUP_LIST_HREF
from smarthub.wan.tls import PeerMismatch, apply_crl

log = logging.getLogger(__name__)

WALK = ""  # remembered "bulk link" of a hub whose dcap advertises none


@dataclass(frozen=True, slots=True)
class PullOutcome:
    hub_id: str
    ok: bool
    readings: int = 0
    inserted: int = 0
    requests: int = 0
    error: str | None = None
    bulk: bool = False
    resumed: bool = False  # the TLS session was resumed (bulk path only)
    body_bytes: int = 0


@dataclass(frozen=True, slots=True)
class Ingest:
    """One ingest as ``Store.ingest`` takes it (and a future ``Store.ingest_many`` item)."""

    hub_id: str
    rows: Readings
    cursors: dict[str, int]


@dataclass(frozen=True, slots=True)
class PullLogEntry:
    """One pull's row for the store's pull log (``Store.log_pull`` keyword arguments)."""

    fields: dict[str, Any]


#: What the write worker takes: an ingest, a pull-log row, or any other write.
WriteJob = Ingest | PullLogEntry | Callable[[], Any]


class WriteBatcher:
    """Runs storage jobs of concurrent pulls in one worker-thread hop per group.

    A job is an :class:`Ingest`, a :class:`PullLogEntry` or any zero-argument callable.
    ``write_ingests`` receives every ingest of a group at once and returns their results in
    order; ``write_logs`` every pull-log row of the group.
    """

    def __init__(
        self,
        write_ingests: Callable[[list[Ingest]], list[IngestResult]],
        write_logs: Callable[[list[dict[str, Any]]], None],
        max_group: int = 256,
    ) -> None:
        self.write_ingests = write_ingests
        self.write_logs = write_logs
        self.max_group = max_group
        self._queue: list[tuple[WriteJob, asyncio.Future[Any]]] = []
        self._task: asyncio.Task[None] | None = None
        self.groups = 0
        self.busy_seconds = 0.0  # time the worker thread spent writing (the store's serial part)

    async def run(self, job: WriteJob) -> Any:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append((job, fut))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._drain())
        return await fut

    async def _drain(self) -> None:
        while self._queue:
            group, self._queue = self._queue[: self.max_group], self._queue[self.max_group :]
            self.groups += 1
            try:
                results = await asyncio.to_thread(self._write, [job for job, _ in group])
            except Exception as err:  # a database failure fails every pull of the group
                for _, fut in group:
                    if not fut.done():
                        fut.set_exception(err)
                continue
            for (_, fut), result in zip(group, results, strict=True):
                if not fut.done():
                    if isinstance(result, BaseException):
                        fut.set_exception(result)
                    else:
                        fut.set_result(result)

    def _write(self, jobs: list[WriteJob]) -> list[Any]:
        t0 = time.perf_counter()
        try:
            return self._write_group(jobs)
        finally:
            self.busy_seconds += time.perf_counter() - t0

    def _write_group(self, jobs: list[WriteJob]) -> list[Any]:
        out: list[Any] = [None] * len(jobs)
        ingests = [(i, j) for i, j in enumerate(jobs) if isinstance(j, Ingest)]
        if ingests:
            for (i, _), result in zip(ingests, self.write_ingests([j for _, j in ingests]), strict=True):
                out[i] = result
        logs = [(i, j) for i, j in enumerate(jobs) if isinstance(j, PullLogEntry)]
        if logs:
            # Every pull of the group logged in one transaction (one per pull would cap the rate).
            try:
                self.write_logs([j.fields for _, j in logs])
            except Exception as err:
                for i, _ in logs:
                    out[i] = err
        for i, job in enumerate(jobs):
            if isinstance(job, PullLogEntry):
                continue
            if not isinstance(job, Ingest):
                try:
                    out[i] = job()
                except Exception as err:  # only this job's pull fails
                    out[i] = err
        return out


class CursorReader:
    """Reads the pull cursors of concurrent pulls in one query per group (``Store.cursors_many``).

    A pull's cursors are read when it starts; with hundreds of pulls in flight, one query and
    one worker-thread hop per hub would cost the collector more than the pull itself. While one
    group is read, the next accumulates. A read, so it need not wait behind the writes."""

    def __init__(self, read: Callable[[list[str]], dict[str, dict[str, int]]], max_group: int = 512) -> None:
        self.read = read
        self.max_group = max_group
        self._queue: list[tuple[str, asyncio.Future[dict[str, int]]]] = []
        self._task: asyncio.Task[None] | None = None

    async def get(self, hub_id: str) -> dict[str, int]:
        fut: asyncio.Future[dict[str, int]] = asyncio.get_running_loop().create_future()
        self._queue.append((hub_id, fut))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._drain())
        return await fut

    async def _drain(self) -> None:
        while self._queue:
            group, self._queue = self._queue[: self.max_group], self._queue[self.max_group :]
            try:
                found = await asyncio.to_thread(self.read, sorted({h for h, _ in group}))
            except Exception as err:  # a database failure fails every pull of the group
                for _, fut in group:
                    if not fut.done():
                        fut.set_exception(err)
                continue
            for hub_id, fut in group:
                if not fut.done():
                    fut.set_result(dict(found.get(hub_id, {})))


def _stored(hub_id: str, intervals: Sequence[PulledInterval]) -> list[ReadingRow]:
    """The store's rows: each pulled interval (a tuple in the row's order) after the hub id."""
    # In C (tuple concatenation mapped over the list); a PulledInterval is the row after its hub.
    return list(map((hub_id,).__add__, intervals))  # type: ignore[arg-type]


class Collector:
    def __init__(
        self,
        store: Store,
        ssl_context: ssl.SSLContext,
        clock: Clock,
        *,
        bulk: bool = True,
        error_log: ErrorLog | None = None,
        events_every: timedelta = timedelta(seconds=LOG_EVENT_POLL_RATE),
        channels: ChannelEndpoint | None = None,
    ) -> None:
        """``bulk=False`` always walks (for comparison and for hubs known to misbehave).
        ``channels``: where hubs registered as ``channel://<hub id>`` park their connections.

        With an ``error_log``, a successful pull also tells it the hub answered, and at most
        every ``events_every`` (the 2030.5 LogEventList pollRate) pulls the hub's diagnosed
        events into it."""
        self.error_log = error_log
        self.events_every = events_every
        self._events_pulled: dict[str, datetime] = {}
        # hub -> the LFDI its handshake presented when it was not the one registered: the upkeep
        # adopts a renewed certificate whose answer was lost (HubLifecycle.adopt_renewed).
        self.presented: dict[str, str] = {}
        self._event_tasks: dict[str, asyncio.Task[None]] = {}
        self._event_slots = asyncio.Semaphore(8)  # event pulls in flight (they are background work)
        self._closed = False
        self.event_pull_errors = 0
        self.store = store
        self.ssl_context = ssl_context
        self.clock = clock
        self.bulk = bulk
        self.channels = channels
        self.puller = PullClient(ssl_context, channels=channels)
        self.writes = WriteBatcher(self._ingest_all, store.log_pulls)
        self.cursor_reads = CursorReader(store.cursors_many)
        self._clients: dict[str, HubClient] = {}
        self._links: dict[str, str] = {}  # hub id → bulk href, or WALK
        self.pulls = 0
        self.failures = 0
        self.conflicts = 0
        self.crl_offer: CrlOffer | None = None
        self.crls_sent = 0
        # The storage state each hub gave with its last bulk pull (wan.contract.storage): the
        # upkeep's recovery step takes them (smarthub.gdsc.fleet.recovery).
        self.storage_reports: dict[str, str] = {}
        # Decides the consent revocations a hub's display asked for (wan.contract.revocations):
        # (hub id, its requests) -> the answers; run in a worker thread. None: not read.
        self.revocations: (
            Callable[
                [str, list[consent_revocations.RevocationRequest]], list[consent_revocations.RevocationAnswer]
            ]
            | None
        ) = None
        self.revocations_answered = 0
        # The appliance sub-meters each hub listed at its last pull that recorded them (issue 25):
        # the table is written when a hub's list differs from this, not at every pull.
        self._appliances: dict[str, dict[str, str]] = {}
        # Told every pull's outcome with its wall seconds, and every ingest transaction's
        # (pulls, rows, wall seconds), the latter from the writer's thread: the metrics hook in.
        self.observers: list[Callable[[PullOutcome, float], None]] = []
        self.ingest_observers: list[Callable[[int, int, float], None]] = []

    def _ingest_all(self, batch: list[Ingest]) -> list[IngestResult]:
        """The pulls that finished while the writer was busy, in one store transaction."""
        t0 = time.perf_counter()
        results = self.store.ingest_many([(b.hub_id, b.rows, b.cursors) for b in batch])
        seconds = time.perf_counter() - t0
        for observe in self.ingest_observers:
            observe(len(batch), sum(len(b.rows) for b in batch), seconds)
        return results

    async def _client(self, hub: HubRecord) -> HubClient:
        if self._closed:  # a pull still under way when the collector shut down
            raise PullError(f"collector closed: pull of {hub.hub_id} abandoned")
        client = self._clients.get(hub.hub_id)
        if client is None or client.base_url != hub.url.rstrip("/") or client.expected_lfdi != hub.lfdi:
            if client is not None:  # moved or renewed: the old session is closed, not left to the GC
                await client.close()
            client = self._clients[hub.hub_id] = HubClient(
                hub.url, self.ssl_context, hub.lfdi, channels=self.channels
            )
        return client

    async def pull(self, hub: HubRecord, window_start: datetime) -> PullOutcome:
        t0 = time.perf_counter()
        started = self.clock.now()
        self.pulls += 1
        try:
            cursors = await self.cursor_reads.get(hub.hub_id)
            outcome = await self._pull(hub, cursors)
        except PullError as err:
            self.failures += 1
            outcome = PullOutcome(hub.hub_id, False, error=str(err))
            log.warning("pull of %s failed: %s", hub.hub_id, err)
            found = PeerMismatch.found_in(str(err))
            if found is not None:  # perhaps its renewed certificate (HubLifecycle.adopt_renewed)
                self.presented[hub.hub_id] = found
        if outcome.ok and self.error_log is not None:
            await self._errors(hub)
        await self.writes.run(
            PullLogEntry(
                dict(
                    hub_id=hub.hub_id,
                    window_start=window_start,
                    started=started,
                    finished=self.clock.now(),
                    ok=outcome.ok,
                    readings=outcome.readings,
                    inserted=outcome.inserted,
                    error=outcome.error,
                )
            )
        )
        seconds = time.perf_counter() - t0
        for observe in self.observers:
            try:
                observe(outcome, seconds)
            except Exception:  # an observer's bug must not fail a pull that stored its readings
                log.exception("pull observer failed")
        return outcome

    async def _errors(self, hub: HubRecord) -> None:
        """The hub answered: end any unreachable record; start pulling its diagnoses when due.

        The event pull runs beside the scheduler's pull, not inside it: a hub with many events
        must not hold a slot of its WAN link (and of the collector) while they come in."""
        assert self.error_log is not None
        now = self.clock.now()
        try:
            await asyncio.to_thread(self.error_log.record_reachable, hub.hub_id, now)
        except Exception as err:  # the readings are in: nothing here may fail the pull
            log.warning("error log: %s answered but could not be recorded: %s", hub.hub_id, err)
        last = self._events_pulled.get(hub.hub_id)
        if (last is not None and now - last < self.events_every) or hub.hub_id in self._event_tasks:
            return
        self._events_pulled[hub.hub_id] = now
        task = asyncio.create_task(self._pull_events(hub, now))
        self._event_tasks[hub.hub_id] = task
        hub_id = hub.hub_id
        task.add_done_callback(lambda _t: self._event_tasks.pop(hub_id, None))

    async def _pull_events(self, hub: HubRecord, now: datetime) -> None:
        assert self.error_log is not None
        try:
            async with self._event_slots:
                await pull_events(await self._client(hub), self.error_log, hub.hub_id, now)
        except Exception as err:
            self.event_pull_errors += 1
            self._events_pulled.pop(hub.hub_id, None)  # try again at the next pull
            log.warning("event pull of %s failed: %s: %s", hub.hub_id, type(err).__name__, err)

    async def _pull(self, hub: HubRecord, cursors: dict[str, int]) -> PullOutcome:
        link = self._links.get(hub.hub_id) if self.bulk else WALK
        if link == WALK:
            return await self._walk(hub, cursors)
        conn = await self.puller.connect(hub.url, hub.lfdi)
        offer = self.crl_offer
        if offer is not None:
            conn.extra_headers = [(crl_sync.OFFER, offer.header)]
        ok = False
        pulled = [0, 0, 0]  # readings, inserted, pages answered
        try:
            if link is None:
                # A hub not pulled yet by this collector: its bulk resource where this scheme's
                # hubs serve it, with no /dcap first (one request per pull). A hub that does not
                # answer there (older firmware: 404; a refusal) is discovered as 2030.5 has it.
                try:
                    await self._bulk(conn, hub, MUP_LIST_HREF, cursors, pulled)
                    link = MUP_LIST_HREF
                except HttpStatusError:
                    if pulled[2]:
                        raise  # a later page failed: a failed pull, not a missing resource
                    link = await self.puller.discover(conn)
                    if link:
                        await self._bulk(conn, hub, link, cursors, pulled)
                self._links[hub.hub_id] = link or WALK
                if not link:
                    ok = True
                    return await self._walk(hub, cursors)
            else:
                await self._bulk(conn, hub, link, cursors, pulled)
            self.puller.remember(conn)
            if conn.appliances and self._appliances.get(hub.hub_id) != conn.appliances:
                found = dict(conn.appliances)
                registry = ApplianceRegistry(self.store.engine)
                await asyncio.to_thread(registry.record, hub.hub_id, found, self.clock.now())
                self._appliances[hub.hub_id] = found
            if conn.storage is not None:
                self.storage_reports[hub.hub_id] = conn.storage
            if conn.revocations_waiting and self.revocations is not None:
                await self._revocations(conn, hub)
            if offer is not None and conn.crl_wanted:
                await self._send_crl(conn, hub, offer)
            ok = True
        finally:
            if ok:
                conn.close()
            else:
                self._links.pop(hub.hub_id, None)  # rediscover next time: the hub may have changed
                conn.abort()
        return self._done(conn, hub, pulled[0], pulled[1])

    async def _bulk(
        self, conn: HubConnection, hub: HubRecord, link: str, cursors: dict[str, int], pulled: list[int]
    ) -> None:
        """Every page of ``link`` after ``cursors`` into the store; ``pulled`` counts readings
        and inserted ones as they are stored, and the pages answered."""
        async for intervals, page_cursors in self.puller.pages(conn, link, cursors):
            pulled[2] += 1
            if not intervals and not page_cursors:
                continue  # nothing new: no transaction
            # Each page is stored with the cursors it advances: a pull cut short resumes there.
            result = await self._ingest(Ingest(hub.hub_id, _stored(hub.hub_id, intervals), page_cursors))
            pulled[0] += len(intervals)
            pulled[1] += result.inserted

    async def _send_crl(self, conn: HubConnection, hub: HubRecord, offer: CrlOffer) -> None:
        """The hub asked for the CRL: PUT it on the pull's connection (``wan.crl_sync``)."""
        try:
            await conn.put(crl_sync.CRL_PATH, offer.der, crl_sync.CRL_MEDIA_TYPE)
        except PullError as err:  # the readings are in; the hub asks again at its next pull
            log.warning("CRL %d not delivered to %s: %s", offer.number, hub.hub_id, err)
            return
        self.crls_sent += 1

    async def _revocations(self, conn: HubConnection, hub: HubRecord) -> None:
        """Read the hub's waiting revocation requests, have them decided, answer them, all on the
        pull's connection (``wan.contract.revocations``). A failure leaves them waiting at the
        hub for the next pull; what the GDSC applied stays applied (answered alike then)."""
        assert self.revocations is not None
        try:
            requests = consent_revocations.parse_requests(await conn.get_json(consent_revocations.PATH))
            if not requests:
                return
            answers = await asyncio.to_thread(self.revocations, hub.hub_id, requests)
            await conn.put(
                consent_revocations.PATH,
                consent_revocations.answers_json(answers),
                consent_revocations.MEDIA_TYPE,
            )
        except (PullError, consent_revocations.BadRevocations) as err:
            log.warning("consent revocations of %s not exchanged: %s", hub.hub_id, err)
            return
        except Exception:  # the readings are in: a bug deciding must not fail the pull
            log.exception("consent revocations of %s not decided", hub.hub_id)
            return
        self.revocations_answered += len(answers)

    def offer_crl(self, crl_pem_path: str | Path) -> None:
        """Offer the CRL in ``crl_pem_path`` to the hubs pulled from now on (``wan.crl_sync``)."""
        self.crl_offer = CrlOffer.after(self.crl_offer, Path(crl_pem_path).read_bytes())

    def _done(self, conn: HubConnection, hub: HubRecord, readings: int, inserted: int) -> PullOutcome:
        s = conn.stats
        return PullOutcome(
            hub.hub_id, True, readings, inserted, s.requests, None, True, s.resumed, s.body_bytes
        )

    async def _walk(self, hub: HubRecord, cursors: dict[str, int]) -> PullOutcome:
        result = await (await self._client(hub)).pull_intervals(cursors)
        rows = _stored(hub.hub_id, result.intervals)
        ingest = await self._ingest(Ingest(hub.hub_id, rows, result.cursors))
        return PullOutcome(hub.hub_id, True, len(rows), ingest.inserted, result.requests)

    async def _ingest(self, job: Ingest) -> IngestResult:
        result: IngestResult = await self.writes.run(job)
        if result.refused is not None:  # revoked or decommissioned while the pull was under way
            self._links.pop(job.hub_id, None)
            raise PullError(result.refused)
        if result.conflicts:
            self.conflicts += result.conflicts
            log.error(
                "hub %s re-sent %d readings with different values; kept the stored ones",
                job.hub_id,
                result.conflicts,
            )
        return result

    async def apply_crl(self, crl_pem_path: str | Path) -> None:
        """Check hubs against a newer CRL from now on (:func:`smarthub.wan.tls.apply_crl`), and
        offer it to them with their pulls.

        Cached TLS sessions and kept-alive connections are dropped: a resumed session skips
        certificate verification, so a revoked hub could otherwise still be talked to."""
        apply_crl(self.ssl_context, crl_pem_path)
        self.offer_crl(crl_pem_path)  # and the hubs get it with their next pull
        self.puller.sessions = SessionCache()
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.close()

    async def close(self) -> None:
        self._closed = True
        for task in list(self._event_tasks.values()):
            task.cancel()
        await asyncio.gather(*self._event_tasks.values(), return_exceptions=True)
        for client in self._clients.values():
            await client.close()
        self._clients.clear()
