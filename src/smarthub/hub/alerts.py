"""The hub's side of the one push path: signed last-gasp and restoration datagrams to the GDSC.

Why UDP and how the datagram is authenticated and replay-protected: :mod:`smarthub.wan.contract.alerts`.
This module holds what the hub must get right:

* **Sequence numbers that never repeat, without writing at the last gasp.** The next number is
  kept in memory; the file only records a *reservation* (the highest number the hub may use
  before writing again). Reservations are taken in blocks of :data:`RESERVE` while mains is up,
  so the last gasp itself never waits for a disk write; after any restart the hub continues from
  the reservation, skipping at most a block (the GDSC only needs numbers to rise).
* **A rate limit at the source.** A token bucket (:data:`BURST` alerts, one more every
  :data:`REFILL`) on the hub's clock: a supply flapping on and off, or a fault in the hub, cannot
  make it flood the GDSC. A suppressed alert is still in the hub's diagnosis log, which the GDSC
  pulls.
* **Send and forget.** ``sendto`` on a non-blocking socket; nothing waits for an answer.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from smarthub.hub import sqlite_files
from smarthub.wan.contract.alerts import Alert, sign

log = logging.getLogger(__name__)

RESERVE = 1000  # sequence numbers reserved per write
BURST = 4  # alerts the hub may send at once (a last gasp and its restoration, twice)
REFILL = timedelta(minutes=5)  # one more alert allowed per this much hub time


class SequenceReservations:
    """Rising sequence numbers, reserved on disk in blocks ahead of use (module docstring); kept
    in the diagnosis log's file (its ``alert_sequence`` table), or a file of that schema."""

    def __init__(self, path_or_db: Path | str | sqlite_files.Database) -> None:
        from smarthub.hub.diagnostics import SCHEMA

        if isinstance(path_or_db, sqlite_files.Database):
            self.db, self._own = path_or_db, False
        else:
            self.db, self._own = sqlite_files.open_database(path_or_db, SCHEMA), True
        row = self.db.connection.execute("SELECT reserved FROM alert_sequence WHERE id = 1").fetchone()
        start = int(row[0]) if row else 0
        self.next = start  # numbers below the stored reservation may have been used: skip them
        self.reserved = start
        self.extend()

    def extend(self) -> None:
        """Reserve another block if fewer than half a block remain (call while mains is up)."""
        if self.reserved - self.next >= RESERVE // 2:
            return
        new = self.next + RESERVE
        with self.db.transaction() as c:
            c.execute(
                "INSERT INTO alert_sequence (id, reserved) VALUES (1, ?)"
                " ON CONFLICT(id) DO UPDATE SET reserved = excluded.reserved",
                (new,),
            )
        self.reserved = new

    def take(self) -> int:
        """The next number; never writes (a reservation always covers it, see :meth:`extend`)."""
        if self.next >= self.reserved:
            raise RuntimeError("alert sequence reservation exhausted (extend() not called)")
        n = self.next
        self.next += 1
        return n

    def close(self) -> None:
        if self._own:
            self.db.close()


class TokenBucket:
    """``burst`` tokens, one more every ``refill`` of the given clock's time."""

    def __init__(self, burst: int, refill: timedelta) -> None:
        self.burst = burst
        self.refill = refill.total_seconds()
        self.tokens = float(burst)
        self.at: datetime | None = None

    def take(self, now: datetime) -> bool:
        if self.at is not None and now > self.at:
            self.tokens = min(self.burst, self.tokens + (now - self.at).total_seconds() / self.refill)
        self.at = now if self.at is None else max(self.at, now)
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


Transport = Callable[[bytes], None]


def udp_transport(host: str, port: int) -> Transport:
    """A non-blocking UDP socket sending to the GDSC's alert endpoint."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.setblocking(False)
    target = (host, port)

    def send(datagram: bytes) -> None:
        try:
            sock.sendto(datagram, target)
        except OSError as err:  # no route, buffer full: the diagnosis log still has it
            log.warning("alert datagram to %s:%d not sent: %s", host, port, err)

    return send


class AlertSender:
    """Signs and sends this hub's alerts, rate-limited, with rising sequence numbers."""

    def __init__(
        self,
        hub_id: str,
        key: ec.EllipticCurvePrivateKey,
        transport: Transport,
        sequences: SequenceReservations,
        *,
        burst: int = BURST,
        refill: timedelta = REFILL,
    ) -> None:
        self.hub_id = hub_id
        self.key = key
        self.transport = transport
        self.sequences = sequences
        self.bucket = TokenBucket(burst, refill)
        self.sent: list[Alert] = []  # what went out (newest last, bounded), for the tests and /diag
        self.suppressed = 0

    @classmethod
    def from_files(
        cls,
        hub_id: str,
        private_key: Path,
        db: sqlite_files.Database,
        target: tuple[str, int],
        *,
        burst: int = BURST,
        refill: timedelta = REFILL,
    ) -> AlertSender:
        key = serialization.load_pem_private_key(private_key.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{private_key}: the hub's key is not an EC key")
        sequences = SequenceReservations(db)
        return cls(hub_id, key, udp_transport(*target), sequences, burst=burst, refill=refill)

    def send(self, alert_for: Callable[[int], Alert], now: datetime) -> Alert | None:
        """Build the alert with the next sequence number, sign it and send it; None if the rate
        limit held it back."""
        if not self.bucket.take(now):
            self.suppressed += 1
            log.warning("hub %s: alert suppressed by the hub's rate limit", self.hub_id)
            return None
        alert = alert_for(self.sequences.take())
        self.transport(sign(alert, self.key))
        log.debug("hub %s: %s %d sent (lost at %s)", self.hub_id, alert.kind.name, alert.seq, alert.lost_at)
        self.sent = [*self.sent[-99:], alert]
        return alert

    def replenish(self) -> None:
        """Reserve sequence numbers ahead (while mains is up: never at a last gasp)."""
        self.sequences.extend()

    def close(self) -> None:
        self.sequences.close()
