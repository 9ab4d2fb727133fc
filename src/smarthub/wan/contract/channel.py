"""The hub-initiated channel: how a hub that cannot be dialled is still pulled by the GDSC.

A hub behind a NAT router, a router firewall that blocks inbound IPv6, or a carrier-grade NAT
cannot accept the GDSC's connection. Such a hub opens a TCP connection *out* to the GDSC's
channel endpoint and sends one line naming itself; the GDSC parks the socket until its plan
decides to pull that hub, and then uses it exactly as a connection it had opened itself: the
GDSC is the TLS client (it verifies the hub's certificate and pins its registered LFDI), the hub
the TLS server (it requires the GDSC's client certificate), and the GDSC sends its HTTP requests.
The hub still never sends data unasked: before the GDSC's ClientHello it has sent only the line.

The line is an unauthenticated *claim*: the TLS handshake on the socket is what proves it, with
the same LFDI pinning as a direct pull, so an impostor claiming a hub's id fails the pull like a
hub presenting another's certificate does. What a claim can do is take a parking place: the GDSC
keeps a few sockets per hub (newest first) and drops one that fails the handshake.

Wire format (ASCII, at most :data:`MAX_PREAMBLE` bytes)::

    SMARTHUB-CHANNEL/1 <hub id>\\r\\n

Registry: a hub reached this way is registered with the URL ``channel://<hub id>``
(:data:`SCHEME`); its certificate carries the hub id, lower-cased, as a DNS name (commissioning
puts the URL's host there), so the GDSC's hostname check holds on the channel too.

Reconnection (:func:`reconnect_delay`): exponential back-off with full jitter, so a city's hubs
coming back after a power cut spread their reconnects over the back-off window instead of
arriving together ("Exponential Backoff And Jitter", AWS Architecture Blog, 2015).

Own code, not a library: the line and the back-off are a few lines each; a WebSocket or HTTP/2
tunnel would put a second HTTP stack on the hub (which the memory goal rules out) for what one
socket hand-over does.
"""

from __future__ import annotations

import random
import re

SCHEME = "channel"
MAGIC = b"SMARTHUB-CHANNEL/1 "
MAX_PREAMBLE = 96  # bytes, CRLF included
_HUB_ID = re.compile(rb"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")

__all__ = [
    "MAGIC",
    "MAX_PREAMBLE",
    "SCHEME",
    "ChannelRefused",
    "channel_url",
    "encode_preamble",
    "hub_of_url",
    "parse_preamble",
    "reconnect_delay",
]


class ChannelRefused(ValueError):
    """A channel opening the GDSC will not park; the message says why."""


def encode_preamble(hub_id: str) -> bytes:
    raw = hub_id.encode("ascii", "strict")
    if not _HUB_ID.fullmatch(raw):
        raise ChannelRefused(f"hub id {hub_id!r} is not 1-64 letters, digits, '.', '_' or '-'")
    return MAGIC + raw + b"\r\n"


def parse_preamble(line: bytes) -> str:
    """The hub id a channel's first line claims; :class:`ChannelRefused` if it is not one."""
    if len(line) > MAX_PREAMBLE:
        raise ChannelRefused(f"channel line of {len(line)} bytes exceeds {MAX_PREAMBLE}")
    if not line.endswith(b"\r\n"):
        raise ChannelRefused("channel line does not end in CRLF")
    if not line.startswith(MAGIC):
        raise ChannelRefused(f"channel line does not start with {MAGIC.decode().strip()!r}")
    raw = line[len(MAGIC) : -2]
    if not _HUB_ID.fullmatch(raw):
        raise ChannelRefused("channel line names no valid hub id")
    return raw.decode("ascii")


def channel_url(hub_id: str) -> str:
    """The registry URL of a hub reached through its channel."""
    encode_preamble(hub_id)  # the same rule for the id
    return f"{SCHEME}://{hub_id}"


def hub_of_url(url: str) -> str | None:
    """The hub id of a ``channel://`` URL, or None for a URL the GDSC dials (``https://``)."""
    prefix = f"{SCHEME}://"
    if not url.startswith(prefix):
        return None
    hub_id = url[len(prefix) :].rstrip("/")
    encode_preamble(hub_id)
    return hub_id


def reconnect_delay(failures: int, rng: random.Random, *, base: float = 1.0, cap: float = 300.0) -> float:
    """Seconds to wait before the next attempt after ``failures`` failed ones in a row (0: the
    channel was used or expired normally; reconnect within ``base``): full jitter, uniform in
    ``[0, min(cap, base * 2**failures)]``."""
    if failures < 0:
        raise ValueError("failures is not negative")
    return rng.uniform(0.0, min(cap, base * 2.0 ** min(failures, 32)))
