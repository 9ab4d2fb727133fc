"""What keeps the token endpoint from being used to stall the API: rate limits per client id and
per source address, and a small bounded pool for the slow secret check.

A client secret is checked with scrypt (:mod:`smarthub.gdsc.api_clients`): tens of milliseconds
and 32 MiB of memory on purpose. Run on the event loop, every bad-credential request held every
other request of the API for that long (issue 13: four loops of bad credentials raised the other
endpoints' median from 20 ms to 470 ms). So:

* **the check runs off the loop**, in :class:`CheckPool`: at most ``workers`` scrypt computations
  at once (``hashlib.scrypt`` releases the GIL, so threads run them in parallel with the loop),
  at most ``max_pending`` requests waiting or running; beyond that the endpoint answers 503 at
  once, costing nothing. CPU and memory spent on secrets are bounded whatever arrives;
* **rate limits** (:class:`KeyedBuckets`, token buckets) apply *before* the check, per source
  address (an IPv6 source by its /64, what one subscriber line usually gets) and per client id as
  presented, known or not: the limiter never looks the id up, and an unknown id goes through the
  same pool and the same scrypt against a dummy hash as a known one, so neither the answer nor
  its timing tells whether an id exists. Limited requests get 429 with ``Retry-After``.

Limiting by client id means a flood naming a real client's id delays that client's token
requests too; a client holds a token for 15 minutes, so the limits (below) leave it ample room,
and the flood costs the GDSC nothing but 429s. Behind a reverse proxy every request comes from
the proxy's address: the per-source limit then applies to the proxy, so the proxy should limit
per client address itself (the GDSC takes no forwarded-for header it cannot authenticate).

Buckets are kept for the ``max_keys`` most recently seen keys (least recently used dropped
first), so a flood of made-up ids or addresses cannot grow memory without bound; dropping a
bucket only forgets a key's history, and the pool still caps the work.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Limit:
    """A token bucket: ``burst`` requests at once, refilled at ``per_minute`` a minute."""

    burst: int
    per_minute: float

    def __post_init__(self) -> None:
        if self.burst < 1 or self.per_minute <= 0:
            raise ValueError(f"a rate limit needs burst >= 1 and a positive rate, not {self}")


# A client asks for a token every 15 minutes or so: 10 at once and one every 6 s is ample. One
# address may be a supplier's gateway for several clients: 30 at once and one every 2 s.
PER_CLIENT = Limit(burst=10, per_minute=10)
PER_SOURCE = Limit(burst=30, per_minute=30)


class KeyedBuckets:
    """A token bucket per key, for the ``max_keys`` keys seen last; ``monotonic`` is injectable."""

    def __init__(
        self, limit: Limit, max_keys: int = 100_000, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit = limit
        self.max_keys = max_keys
        self.monotonic = monotonic
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, key: str) -> float:
        """0 if a request under ``key`` may go ahead now (and count it), else the seconds to wait."""
        now = self.monotonic()
        rate = self.limit.per_minute / 60.0
        tokens, last = self._buckets.pop(key, (float(self.limit.burst), now))
        tokens = min(float(self.limit.burst), tokens + (now - last) * rate)
        wait = 0.0
        if tokens < 1.0:
            wait = (1.0 - tokens) / rate
        else:
            tokens -= 1.0
        self._buckets[key] = (tokens, now)  # most recently used last
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return wait

    def __len__(self) -> int:
        return len(self._buckets)


def source_key(host: str | None) -> str:
    """The rate-limit key of a peer address: IPv4 as is, IPv6 by its /64."""
    if not host:
        return "unknown"
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return host  # e.g. the test client's "testclient"
    if addr.version == 6:
        return str(ipaddress.ip_network(f"{addr}/64", strict=False))
    return str(addr)


class PoolBusy(Exception):
    """More secret checks are waiting than the pool takes: answer 503 now."""


class CheckPool:
    """At most ``workers`` checks run at once and ``max_pending`` wait or run; the rest are
    refused at once (:class:`PoolBusy`). Used from one event loop."""

    def __init__(self, workers: int = 2, max_pending: int = 16) -> None:
        if workers < 1 or max_pending < workers:
            raise ValueError(f"a check pool needs 1 <= workers <= max_pending, not {workers}, {max_pending}")
        self.workers = workers
        self.max_pending = max_pending
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="oauth-check")
        weakref.finalize(self, self._executor.shutdown, wait=False)
        self.pending = 0
        self.refused = 0

    async def run(self, fn: Callable[[], T]) -> T:
        if self.pending >= self.max_pending:
            self.refused += 1
            raise PoolBusy(f"{self.pending} token requests are being checked; try again shortly")
        self.pending += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn)
        finally:
            self.pending -= 1

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
