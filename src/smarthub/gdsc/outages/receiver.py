"""The GDSC's alert endpoint: a UDP socket taking hubs' last-gasp and restoration datagrams.

Why UDP, and the datagram's format and signature: :mod:`smarthub.wan.contract.alerts`. What the
endpoint does with a datagram, cheapest check first, so a flood costs as little as possible:

1. on arrival (in the reader thread, no crypto, no I/O): :func:`~smarthub.wan.contract.alerts.peek`
   the hub id, then the hub's **token bucket** (``burst`` alerts, one more per ``refill`` of GDSC
   time): a hub flooding alerts is throttled there; the datagram joins a bounded queue
   (``queue_max``; beyond it the endpoint sheds load and counts it, the pulled diagnosis log
   still carries every power failure);
2. in batches, in the worker thread: decode strictly, find the hub's key (registered from the
   certificate whose fingerprint is its LFDI; a revoked or unknown hub has none), **verify the
   signature**, check the send time within :data:`~smarthub.wan.contract.alerts.MAX_SKEW` and
   the **replay window** (sequence numbers once, RFC 4303 §3.4.3);
3. store the batch in one statement, each alert **once** (primary key hub + sequence number: a
   duplicate that got past the window, e.g. after a restart, is refused as a replay here);
4. correlate what was stored (:mod:`.correlate`) and save the outages' changes.

Every refusal is counted per (hub, reason) — ``malformed``, ``unknown_hub``, ``forged``,
``stale``, ``replayed``, ``throttled``, ``overload`` — logged (the first few per hub and reason),
and written to ``alert_refusals`` with each batch, so a forged, replayed or unsigned alert leaves
a trace without a flood turning into as many log lines or rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

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
TRACKED_HUBS = 2_000_000  # token buckets and replay windows kept (LRU beyond)
LOGGED_PER_KEY = 3  # log lines per (hub, reason) per process


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


Sink = Callable[[Sequence[StoredAlert]], None]


class AlertReceiver:
    """The endpoint (module docstring). ``sink`` gets the alerts stored, in arrival order."""

    def __init__(
        self,
        store: OutageStore,
        keys: AlertKeys,
        clock: Clock,
        sink: Sink | None = None,
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
        self.burst = burst
        self.refill_s = refill.total_seconds()
        self.queue_max = queue_max
        self.batch = batch
        self.max_skew = max_skew
        self.stats = ReceiverStats()
        self._queue: deque[tuple[bytes, datetime, str]] = deque()
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._windows: OrderedDict[str, ReplayWindow] = OrderedDict()
        self._refusals: dict[tuple[str, str], tuple[int, datetime, datetime, str]] = {}
        self._logged: dict[tuple[str, str], int] = {}
        self._refusal_lock = threading.Lock()  # refusals come from the loop and the worker thread
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._sock: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        self._busy = False
        self.process_seconds = 0.0

    # -- the socket ------------------------------------------------------------------------
    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Bind and start the reader and worker threads; the port.

        Threads, not the event loop: the endpoint must keep reading while the GDSC's loop is
        busy with pulls (a datagram not read is lost once the socket buffer is full), and an
        alert's latency must not wait for the loop's other work."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = self._sock = socket.socket(family, socket.SOCK_DGRAM)
        with contextlib.suppress(OSError):  # a storm arrives faster than a batch is processed
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024 * 1024)
        sock.bind((host, port))
        sock.settimeout(0.1)
        self._stop.clear()
        self._threads = [
            threading.Thread(target=self._read, name="alert-reader", daemon=True),
            threading.Thread(target=self._work, name="alert-worker", daemon=True),
        ]
        for t in self._threads:
            t.start()
        return int(sock.getsockname()[1])

    async def close(self) -> None:
        await self.drain()
        self._stop.set()
        self._wake.set()
        for t in self._threads:
            await asyncio.to_thread(t.join)
        if self._sock is not None:
            self._sock.close()
        self._flush_refusals()

    async def drain(self) -> None:
        """Wait until every datagram received so far is processed and its refusals recorded."""
        while self._queue or self._busy:
            await asyncio.sleep(0.005)
        await asyncio.to_thread(self._flush_refusals)

    def _read(self) -> None:
        assert self._sock is not None
        while not self._stop.is_set():
            try:
                data, addr = self._sock.recvfrom(2048)
            except TimeoutError:
                continue
            except OSError:
                if self._stop.is_set():
                    return
                continue
            self.offer(data, f"{addr[0]}:{addr[1]}")

    def offer(self, data: bytes, source: str = "") -> bool:
        """Step 1 (module docstring); whether the datagram was queued."""
        now = self.clock.now()
        self.stats.received += 1
        try:
            hub, _ = peek(data)
        except BadAlert:
            self._refuse("", "malformed", now, source)
            return False
        if not self._take(hub, now):
            self._refuse(hub, "throttled", now, source)
            return False
        if len(self._queue) >= self.queue_max:
            self._refuse(hub, "overload", now, source)
            return False
        self._queue.append((data, now, source))
        self._wake.set()
        return True

    def _take(self, hub: str, now: datetime) -> bool:
        t = now.timestamp()
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
        if b.tokens >= 1:
            b.tokens -= 1
            return True
        return False

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

    # -- the worker ------------------------------------------------------------------------
    def _work(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(0.1)
            self._wake.clear()
            while self._queue:
                self._busy = True
                n = min(self.batch, len(self._queue))
                batch = [self._queue.popleft() for _ in range(n)]
                try:
                    self._process(batch)
                except Exception:
                    log.exception("alert batch of %d failed (the hubs' pulled diagnosis logs keep them)", n)
                finally:
                    self._busy = False

    def _process(self, batch: list[tuple[bytes, datetime, str]]) -> None:
        """Steps 2-4 for one batch (in a worker thread)."""
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
        fresh = [a.hub_id for a, *_ in decoded if a.hub_id not in self._windows]
        for hub, highest in self.store.highest_seq(sorted(set(fresh))).items():
            self._windows[hub] = ReplayWindow(highest)
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
            if not window.accept(alert.seq):
                self._refuse(alert.hub_id, "replayed", received, source)
                continue
            ok.append(StoredAlert(alert, received))
        # Correlated first (the outage is known the moment its alerts are verified), then
        # stored; correlation ignores a repeated alert of a premises already out or restored.
        if self.sink is not None and ok:
            self.sink(ok)
        stored = self._store(ok)
        kept = 0
        for s in ok:
            if (s.alert.hub_id, s.alert.seq) in stored:
                kept += 1
            else:  # in the table already: sent again after this process's window was made
                self._refuse(s.alert.hub_id, "replayed", s.received, "")
        self.stats.accepted += kept
        self.stats.batches += 1
        self._flush_refusals()
        self.process_seconds += time.perf_counter() - t0

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
