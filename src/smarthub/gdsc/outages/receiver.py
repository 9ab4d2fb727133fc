"""The GDSC's alert endpoint: a UDP socket taking hubs' last-gasp and restoration datagrams.

Why UDP, and the datagram's format and signature: :mod:`smarthub.wan.contract.alerts`. What the
endpoint does with a datagram, cheapest check first, so a flood costs as little as possible:

1. on arrival (in the reader thread, no crypto, no I/O): :func:`~smarthub.wan.contract.alerts.peek`
   the hub id, then the hub's **token bucket** (``burst`` alerts, one more per ``refill`` of GDSC
   time): a hub flooding alerts is throttled there, once its tokens are spent — and only alerts
   that verify spend them (step 2), so datagrams forged or replayed in a hub's name cannot use up
   its allowance and have its real last gasp refused; the datagram joins a bounded queue
   (``queue_max``; beyond it the endpoint sheds load and counts it, the pulled diagnosis log
   still carries every power failure);
2. in batches — by the reader itself while the queue is short (one thread hand-over fewer: on a
   loaded machine the wait to be scheduled, not the verification, is an alert's latency), by the
   verifier thread in a storm: decode strictly, find the hub's key (registered from the
   certificate whose fingerprint is its LFDI; a revoked or unknown hub has none), **verify the
   signature**, check the send time within :data:`~smarthub.wan.contract.alerts.MAX_SKEW` and
   the **replay window** (sequence numbers once, RFC 4303 §3.4.3), then correlate (the sink,
   :mod:`.correlate`): the outage is open the moment its alerts are verified;
3. in the writer thread: store what was accepted, each alert **once** (primary key hub +
   sequence number: a duplicate that got past the window is refused as a replay here), in one
   statement for everything pending, then the outages' changes the sink handed over.

**No database on the alert path.** Steps 1-2 read nothing from the database once the endpoint
has started: every active hub's key and every hub's highest stored sequence number are read at
start (the keys again every few minutes, by the writer), and every write is the writer's. A
chaos run measured why: a last gasp waited for the key and sequence reads of its batch and the
writes of the batch before it (SQLite's write lock, held by the pulls' ingest), tens of
milliseconds, so the alert that tipped a feeder outage was correlated 30-50 s (simulated, at
1,440×) after it arrived. A revoked hub's key goes at the next refresh (:class:`AlertKeys`).

Every refusal is counted per (hub, reason) — ``malformed``, ``unknown_hub``, ``forged``,
``stale``, ``replayed``, ``throttled``, ``overload`` — logged (the first few per hub and reason),
and written to ``alert_refusals`` with each batch, so a forged, replayed or unsigned alert leaves
a trace without a flood turning into as many log lines or rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from smarthub.clock import Clock
from smarthub.gdsc.outages.store import AlertKeys, OutageStore, StoredAlert
from smarthub.wan.contract.alerts import (
    MAX_SKEW,
    Alert,
    BadAlert,
    ReplayWindow,
    decode,
    peek,
    verify,
)

log = logging.getLogger(__name__)

BURST = 6  # alerts a hub may send at once
REFILL = timedelta(seconds=30)  # one more per this much GDSC time
QUEUE_MAX = 200_000
BATCH = 5000
BURST_READ = 256  # datagrams read at once after the first
INLINE_MAX = 64  # queued datagrams the reader verifies itself (beyond: the verifier, a storm)
PENDING_MAX = 50  # verified batches waiting for the writer before the verifier waits for it
TRACKED_HUBS = 2_000_000  # token buckets and replay windows kept (LRU beyond)
LOGGED_PER_KEY = 3  # log lines per (hub, reason) per process


def _raise_priority() -> None:
    """Ask the OS to run this thread (the reader) before the process's others: a datagram waiting
    in the socket buffer waits for the thread to be scheduled, which on a loaded machine is the
    larger part of an alert's latency. Best effort: without the privilege (CAP_SYS_NICE) the
    thread keeps the process's priority."""
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), -10)


@dataclass
class _Bucket:
    tokens: float
    at: float  # GDSC time, seconds


@dataclass
class ReceiverStats:
    received: int = 0
    accepted: int = 0
    refused: dict[str, int] = field(default_factory=dict)
    batches: int = 0

    def refuse(self, reason: str) -> None:
        self.refused[reason] = self.refused.get(reason, 0) + 1


# Correlates verified alerts (on the alert path) and returns what the writer must save after
# storing them (the outages' changes), or None; the writer hands everything pending to Commit
# at once, in order (one transaction for many batches when the database is behind).
Sink = Callable[[Sequence[StoredAlert]], Any]
Commit = Callable[[list[Any]], None]


class AlertReceiver:
    """The endpoint (module docstring). ``sink`` gets the alerts verified, in arrival order;
    ``commit`` what it returned, once the alerts are stored."""

    def __init__(
        self,
        store: OutageStore,
        keys: AlertKeys,
        clock: Clock,
        sink: Sink | None = None,
        commit: Commit | None = None,
        *,
        burst: int = BURST,
        refill: timedelta = REFILL,
        queue_max: int = QUEUE_MAX,
        batch: int = BATCH,
        max_skew: timedelta = MAX_SKEW,
    ) -> None:
        self.store = store
        self.keys = keys
        self.clock = clock
        self.sink = sink
        self.commit = commit
        self.burst = burst
        self.refill_s = refill.total_seconds()
        self.queue_max = queue_max
        self.batch = batch
        self.max_skew = max_skew
        self.stats = ReceiverStats()
        self._queue: deque[tuple[bytes, datetime, str]] = deque()
        self._pending: deque[tuple[list[StoredAlert], Any]] = deque()  # (alerts, sink's) for the writer
        self._written = threading.Event()
        self._windows_complete = False  # every hub with a stored alert has a window (start)
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._windows: OrderedDict[str, ReplayWindow] = OrderedDict()
        self._refusals: dict[tuple[str, str], tuple[int, datetime, datetime, str]] = {}
        self._logged: dict[tuple[str, str], int] = {}
        self._bucket_lock = threading.Lock()
        self._refusal_lock = threading.Lock()  # refusals come from the loop and the worker thread
        self._wake = threading.Event()
        self._write_wake = threading.Event()
        self._stop = threading.Event()
        self._sock: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        self._busy = False
        self._process_lock = threading.Lock()  # one batch verified at a time, in arrival order
        self._writing = False
        self.process_seconds = 0.0  # the verifier's busy time
        self.write_seconds = 0.0  # the writer's
        self.key_refresh_s = keys.ttl_s / 2
        self._keys_read_at = 0.0

    # -- the socket ------------------------------------------------------------------------
    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Read the keys and replay windows, bind and start the reader, verifier and writer
        threads; the port.

        Threads, not the event loop: the endpoint must keep reading while the GDSC's loop is
        busy with pulls (a datagram not read is lost once the socket buffer is full), and an
        alert's latency must not wait for the loop's other work."""
        await asyncio.to_thread(self._warm)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = self._sock = socket.socket(family, socket.SOCK_DGRAM)
        with contextlib.suppress(OSError):  # a storm arrives faster than a batch is processed
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024 * 1024)
        sock.bind((host, port))
        # Blocking, no timeout: a socket with a timeout polls before each read, and each of the
        # two system calls gives up the GIL, which a busy thread then holds for up to its switch
        # interval (5 ms: 7 simulated seconds at the chaos run's speed). close() wakes the read.
        sock.setblocking(True)
        self._stop.clear()
        self._threads = [
            threading.Thread(target=self._read, name="alert-reader", daemon=True),
            threading.Thread(target=self._work, name="alert-verifier", daemon=True),
            threading.Thread(target=self._write, name="alert-writer", daemon=True),
        ]
        for t in self._threads:
            t.start()
        return int(sock.getsockname()[1])

    async def close(self) -> None:
        await self.drain()
        self._stop.set()
        self._wake.set()
        self._write_wake.set()
        if self._sock is not None:  # an empty datagram to itself ends the reader's blocking read
            with socket.socket(self._sock.family, socket.SOCK_DGRAM) as poke:
                poke.sendto(b"", self._sock.getsockname()[:2])
        for t in self._threads:
            await asyncio.to_thread(t.join)
        if self._sock is not None:
            self._sock.close()
        self._flush_refusals()

    async def drain(self) -> None:
        """Wait until every datagram received so far is processed, stored and its refusals
        recorded."""
        while self._queue or self._busy or self._pending or self._writing:
            await asyncio.sleep(0.005)
        await asyncio.to_thread(self._flush_refusals)

    def _warm(self) -> None:
        """Every active hub's key and every hub's highest stored sequence number, so nothing on
        the alert path reads the database (module docstring)."""
        self.keys.refresh_all(TRACKED_HUBS)
        self._keys_read_at = time.monotonic()
        highest = self.store.highest_seqs(TRACKED_HUBS + 1)
        for hub, seq in highest.items():
            if hub not in self._windows:
                self._windows[hub] = ReplayWindow.after(seq)
        self._windows_complete = len(highest) <= TRACKED_HUBS

    def _read(self) -> None:
        assert self._sock is not None
        _raise_priority()
        while not self._stop.is_set():
            try:
                data, addr = self._sock.recvfrom(2048)
            except OSError:
                continue
            if self._stop.is_set():
                return
            self.offer(data, f"{addr[0]}:{addr[1]}")
            # Whatever else is waiting, read now without blocking: a burst (a feeder's last
            # gasps arrive together) is read in one tenure of the GIL instead of one hand-over
            # per datagram, each of which waits for the thread that holds it to be scheduled.
            for _ in range(BURST_READ):
                try:
                    data, addr = self._sock.recvfrom(2048, socket.MSG_DONTWAIT)
                except OSError:  # BlockingIOError: nothing more
                    break
                self.offer(data, f"{addr[0]}:{addr[1]}")
            # (Not while the writer is behind: the verifier waits for it, the reader must not.)
            if self._queue and len(self._queue) <= INLINE_MAX and len(self._pending) < PENDING_MAX:
                self._verify_queued(inline=True)

    def offer(self, data: bytes, source: str = "") -> bool:
        """Step 1 (module docstring); whether the datagram was queued."""
        now = self.clock.now()
        self.stats.received += 1
        try:
            hub, _ = peek(data)
        except BadAlert:
            self._refuse("", "malformed", now, source)
            return False
        if not self._take(hub, now, charge=False):
            self._refuse(hub, "throttled", now, source)
            return False
        if len(self._queue) >= self.queue_max:
            self._refuse(hub, "overload", now, source)
            return False
        self._queue.append((data, now, source))
        self._wake.set()
        return True

    def _take(self, hub: str, now: datetime, *, charge: bool) -> bool:
        """Whether the hub's bucket holds a token (refilled to ``now``); ``charge`` takes it."""
        t = now.timestamp()
        with self._bucket_lock:  # the reader checks, the verifier charges
            b = self._buckets.get(hub)
            if b is None:
                b = self._buckets[hub] = _Bucket(float(self.burst), t)
                if len(self._buckets) > TRACKED_HUBS:
                    self._buckets.popitem(last=False)
            else:
                self._buckets.move_to_end(hub)
                if t > b.at:
                    b.tokens = min(float(self.burst), b.tokens + (t - b.at) / self.refill_s)
                    b.at = t
            if b.tokens < 1:
                return False
            if charge:
                b.tokens -= 1
            return True

    def _refuse(self, hub: str, reason: str, now: datetime, source: str) -> None:
        key = (hub, reason)
        with self._refusal_lock:
            self.stats.refuse(reason)
            n, first, _, _ = self._refusals.get(key, (0, now, now, source))
            self._refusals[key] = (n + 1, first, now, source)
            logged = self._logged.get(key, 0)
        if logged < LOGGED_PER_KEY:
            self._logged[key] = logged + 1
            log.warning("alert refused (%s) from hub %r at %s", reason, hub, source or "?")

    # -- the verifier ----------------------------------------------------------------------
    def _work(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(0.1)
            self._wake.clear()
            while self._queue:
                self._verify_queued(inline=False)

    def _verify_queued(self, *, inline: bool) -> None:
        """Take a batch off the queue and verify it. The reader does so itself when the queue is
        short and the verifier idle (``inline``): one thread hand-over fewer on the alert path,
        which on a loaded machine costs more than the verification (module docstring)."""
        if not self._process_lock.acquire(blocking=not inline):
            return  # the verifier is at work: it takes this one next
        try:
            n = min(self.batch, len(self._queue))
            if not n:
                return
            self._busy = True
            batch = [self._queue.popleft() for _ in range(n)]
            try:
                self._process(batch, wait=not inline)
            except Exception:
                log.exception("alert batch of %d failed (the hubs' pulled diagnosis logs keep them)", n)
        finally:
            self._busy = False
            self._process_lock.release()

    def _process(self, batch: list[tuple[bytes, datetime, str]], *, wait: bool = True) -> None:
        """Step 2 for one batch: nothing here waits for the database unless a hub is new to the
        endpoint since it started; ``wait``: hold here while the writer is behind (the verifier
        does, the reader must not stop reading)."""
        t0 = time.perf_counter()
        decoded: list[tuple[Alert, bytes, bytes, datetime, str]] = []
        for data, received, source in batch:
            try:
                alert, body, sig = decode(data)
            except BadAlert as err:
                hub = ""
                with contextlib.suppress(BadAlert):
                    hub = peek(data)[0]
                self._refuse(hub, "malformed", received, source)
                log.debug("malformed alert: %s", err)
                continue
            decoded.append((alert, body, sig, received, source))
        keys = self.keys.load(a.hub_id for a, *_ in decoded)
        if not self._windows_complete:  # hubs beyond the windows kept: their numbers from the store
            fresh = [a.hub_id for a, *_ in decoded if a.hub_id not in self._windows]
            for hub, highest in self.store.highest_seq(sorted(set(fresh))).items():
                self._windows[hub] = ReplayWindow.after(highest)
        ok: list[StoredAlert] = []
        for alert, body, sig, received, source in decoded:
            key = keys.get(alert.hub_id)
            if key is None:
                self._refuse(alert.hub_id, "unknown_hub", received, source)
                continue
            if not verify(body, sig, key):
                self._refuse(alert.hub_id, "forged", received, source)
                continue
            if abs(alert.sent - received) > self.max_skew:
                log.debug("alert %s/%d sent %s, received %s", alert.hub_id, alert.seq, alert.sent, received)
                self._refuse(alert.hub_id, "stale", received, source)
                continue
            window = self._windows.get(alert.hub_id)
            if window is None:
                window = self._windows[alert.hub_id] = ReplayWindow()
                if len(self._windows) > TRACKED_HUBS:
                    self._windows.popitem(last=False)
                    self._windows_complete = False  # an evicted hub's numbers are in the store only
            if not window.check(alert.seq):
                self._refuse(alert.hub_id, "replayed", received, source)
                continue
            # Only an alert that verified, fresh and new spends the hub's token: a forger or a
            # replayer naming the hub cannot use up its allowance and silence its last gasp.
            if not self._take(alert.hub_id, received, charge=True):
                self._refuse(alert.hub_id, "throttled", received, source)
                continue
            window.accept(alert.seq)
            ok.append(StoredAlert(alert, received))
        # Correlated at once (the outage is known the moment its alerts are verified), stored by
        # the writer; correlation ignores a repeated alert of a premises already out or restored.
        decided = self.sink(ok) if self.sink is not None and ok else None
        self.stats.batches += 1
        self.process_seconds += time.perf_counter() - t0
        if ok or decided is not None or self._refusals:
            while wait and len(self._pending) >= PENDING_MAX and not self._stop.is_set():
                self._written.wait(0.1)  # the database is behind: hold the queue here, bounded
                self._written.clear()
            self._pending.append((ok, decided))
            self._write_wake.set()

    # -- the writer ------------------------------------------------------------------------
    def _write(self) -> None:
        while not (self._stop.is_set() and not self._pending):
            self._write_wake.wait(min(1.0, self.key_refresh_s))
            self._write_wake.clear()
            if time.monotonic() - self._keys_read_at >= self.key_refresh_s:
                try:
                    self.keys.refresh_all(TRACKED_HUBS)
                    self._keys_read_at = time.monotonic()
                except Exception:  # the cached keys stay until they expire; load() reads the rest
                    log.exception("could not re-read the hubs' alert keys")
            if self._refusals and not self._pending:
                self._flush_refusals()
            while self._pending:
                self._writing = True
                items = [self._pending.popleft() for _ in range(len(self._pending))]
                self._written.set()
                try:
                    self._commit(items)
                except Exception:
                    log.exception("storing %d alert batches failed", len(items))
                finally:
                    self._writing = False

    def _commit(self, items: list[tuple[list[StoredAlert], Any]]) -> None:
        """Step 3 for everything pending: the alerts in one statement, then what the sink decided."""
        t0 = time.perf_counter()
        ok = [s for alerts, _ in items for s in alerts]
        stored = self._store(ok)
        kept = 0
        for s in ok:
            if (s.alert.hub_id, s.alert.seq) in stored:
                kept += 1
            else:  # in the table already: sent again after this process's window was made
                self._refuse(s.alert.hub_id, "replayed", s.received, "")
        self.stats.accepted += kept
        decided = [d for _, d in items if d is not None]
        if decided and self.commit is not None:
            for attempt in range(5):
                try:
                    self.commit(decided)
                    break
                except Exception:
                    if attempt == 4:
                        log.exception("saving outage changes failed (the alerts are stored)")
                    else:
                        time.sleep(0.05 * 2**attempt)
        self._flush_refusals()
        self.write_seconds += time.perf_counter() - t0

    def _store(self, ok: list[StoredAlert]) -> set[tuple[str, int]]:
        # The replay windows already took these numbers: a database blip must not lose them.
        for attempt in range(5):
            try:
                return self.store.store_alerts(ok)
            except Exception:
                if attempt == 4:
                    raise
                log.warning("storing %d alerts failed; trying again", len(ok), exc_info=True)
                time.sleep(0.05 * 2**attempt)
        raise AssertionError("unreachable")

    def _flush_refusals(self) -> None:
        with self._refusal_lock:
            counts, self._refusals = self._refusals, {}
        try:
            self.store.refused(counts)
        except Exception:
            log.exception("could not record %d alert refusal counts", len(counts))
