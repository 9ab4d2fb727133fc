"""Benchmark: a city's hubs reconnecting their channels at once (issue 26).

``--hubs`` hubs behind NATs each keep ``--links`` channels parked at the GDSC's channel endpoint
(:mod:`smarthub.wan.contract.channel`): the hubs are the real :class:`ChannelSite` (the hub's
outbound channel with its jittered back-off, TCP keep-alives and TLS server protocol waiting for
the GDSC's ClientHello), all in this process; the endpoint is the real :class:`ChannelEndpoint`
(what ``smarthub gdsc --channel`` runs) in a process of its own, so its memory is its own.

Three measurements:

1. **Memory per open channel** at the GDSC: the endpoint's resident set before any hub connects
   and with every channel parked, divided by the channels parked. Reference, same run: a bare
   asyncio server (``asyncio.start_server``, one ``readuntil`` of the line, the socket held) in a
   process of its own, the same number of connections held.
2. **Reconnect storm**: the endpoint stopped (every parked channel dropped at once, a GDSC
   redeploy), down ``--down`` seconds while the hubs' attempts are refused and back off, then
   started again: seconds until every hub has a channel open again, and until every channel is
   back; channels accepted per second over that time and the busiest second.
3. **Accept capacity** (the rate the endpoint can take, whatever the hubs' back-off): as many
   connections as the fleet holds, opened at once by a plain client sending the line, until all
   are parked: accepts/s. Reference, same run: the bare asyncio server above, the same burst.

Kernel socket buffers are not in a process's resident set; the figures are user space.

    .venv/bin/python bench/channel_storm.py [--hubs 2000] [--links 2] [--down 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import socket
import ssl
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from smarthub.gdsc.fleet.pki import CertificateAuthority, Role
from smarthub.wan import httpd as web
from smarthub.wan.client.channel import ChannelEndpoint
from smarthub.wan.contract.channel import encode_preamble
from smarthub.wan.server.channel import ChannelSite
from smarthub.wan.tls import server_context

GUARD = 600.0  # seconds any one phase may take before the benchmark gives up


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def raise_fd_limit() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# -- the endpoint process ------------------------------------------------------------------------


async def endpoint_main(kind: str) -> None:
    """``kind`` "channel": the GDSC's ChannelEndpoint; "bare": the reference server. Answers one
    JSON line per command read on stdin: status, restart SECONDS, quit."""
    raise_fd_limit()
    loop = asyncio.get_running_loop()
    held: list[asyncio.StreamWriter] = []
    accepted = 0
    endpoint: ChannelEndpoint | None = None
    server: asyncio.AbstractServer | None = None
    if kind == "channel":
        endpoint = ChannelEndpoint(known=None)
        port = await endpoint.start("127.0.0.1", 0, backlog=4096)
    else:

        async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal accepted
            try:
                await asyncio.wait_for(reader.readuntil(b"\r\n"), 5.0)
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, OSError):
                writer.transport.abort()
                return
            accepted += 1
            held.append(writer)

        server = await asyncio.start_server(hold, "127.0.0.1", 0, backlog=4096)
        port = int(server.sockets[0].getsockname()[1])
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    def say(**fields: Any) -> None:
        sys.stdout.write(json.dumps(fields) + "\n")
        sys.stdout.flush()

    say(port=port, rss_kib=rss_kib())
    while line := (await reader.readline()).decode().split():
        if line[0] == "status":
            if endpoint is not None:
                say(
                    t=time.time(),
                    open=endpoint.open_channels(),
                    hubs=len(endpoint.hubs()),
                    accepted=endpoint.stats.accepted,
                    rss_kib=rss_kib(),
                )
            else:
                say(t=time.time(), open=len(held), hubs=0, accepted=accepted, rss_kib=rss_kib())
        elif line[0] == "restart" and endpoint is not None:
            await endpoint.stop()
            await asyncio.sleep(float(line[1]))
            await endpoint.start("127.0.0.1", port, backlog=4096)
            say(t=time.time())
        elif line[0] == "quit":
            break


class Endpoint:
    """The driver's handle on an endpoint process."""

    def __init__(self, proc: asyncio.subprocess.Process, port: int, rss: int) -> None:
        self.proc, self.port, self.rss_start = proc, port, rss

    @classmethod
    async def start(cls, kind: str) -> Endpoint:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            "--endpoint",
            kind,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        first = await cls._read(proc)
        return cls(proc, first["port"], first["rss_kib"])

    @staticmethod
    async def _read(proc: asyncio.subprocess.Process) -> dict[str, Any]:
        assert proc.stdout is not None
        line = await proc.stdout.readline()
        if not line:
            raise RuntimeError("the endpoint process ended")
        out: dict[str, Any] = json.loads(line)
        return out

    async def ask(self, command: str) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command.encode() + b"\n")
        await self.proc.stdin.drain()
        return await self._read(self.proc)

    async def until(self, done: Any, every: float = 0.05) -> list[dict[str, Any]]:
        """Status samples until ``done(sample)``; all of them."""
        samples: list[dict[str, Any]] = []
        async with asyncio.timeout(GUARD):
            while True:
                s = await self.ask("status")
                samples.append(s)
                if done(s):
                    return samples
                await asyncio.sleep(every)

    async def quit(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"quit\n")
        await self.proc.stdin.drain()
        await self.proc.wait()


# -- the driver ------------------------------------------------------------------------------------


def hub_tls(tmp: Path) -> ssl.SSLContext:
    """One hub certificate for the whole simulated fleet: the storm never gets to TLS (a pull
    would), but the channel's protocol is the real TLS server one waiting for a ClientHello."""
    now = datetime.now(UTC)
    ca = CertificateAuthority.create("bench CA", now)
    ca.save(tmp / "ca")
    ca.issue(Role.HUB, "HUB000000", now, hosts=("hub000000",)).save(tmp, "hub")
    return server_context(tmp / "hub.pem", tmp / "hub.key", tmp / "ca" / "ca.pem")


async def burst(port: int, n: int) -> list[socket.socket]:
    """``n`` connections opened at once, each sending a channel line; held open."""
    loop = asyncio.get_running_loop()
    sem = asyncio.Semaphore(512)  # connects in flight (the listener's backlog is 4096)

    async def one(i: int) -> socket.socket:
        async with sem:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            await loop.sock_connect(s, ("127.0.0.1", port))
            await loop.sock_sendall(s, encode_preamble(f"HUB{i:06d}"))
            return s

    return list(await asyncio.gather(*(one(i) for i in range(n))))


async def accept_capacity(kind: str, n: int) -> tuple[float, float]:
    """(accepts/s, KiB per held connection) of a fresh endpoint of ``kind`` under a burst of ``n``."""
    ep = await Endpoint.start(kind)
    try:
        t0 = time.monotonic()
        socks = await burst(ep.port, n)
        samples = await ep.until(lambda s: s["open"] >= n, every=0.02)
        seconds = time.monotonic() - t0
        per = (samples[-1]["rss_kib"] - ep.rss_start) / n
        for s in socks:
            s.close()
        return n / seconds, per
    finally:
        await ep.quit()


async def main(args: argparse.Namespace) -> None:
    raise_fd_limit()
    hubs, links = args.hubs, args.links
    channels = hubs * links
    with tempfile.TemporaryDirectory() as tmp:
        ctx = hub_tls(Path(tmp))
        app = web.Application()
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        ep = await Endpoint.start("channel")
        rng = random.Random(args.seed)
        sites = [
            ChannelSite(
                runner,
                f"HUB{i:06d}",
                "127.0.0.1",
                ep.port,
                ssl_context=ctx,
                links=links,
                rng=random.Random(rng.randrange(2**32)),
            )
            for i in range(hubs)
        ]
        try:
            # The fleet's first connection: every hub starts at once (a cold start).
            t0 = time.monotonic()
            for site in sites:
                await site.start()
            await ep.until(lambda s: s["open"] >= channels)
            cold = time.monotonic() - t0
            await asyncio.sleep(1.0)
            parked = await ep.ask("status")
            per_channel = (parked["rss_kib"] - ep.rss_start) / parked["open"]
            print(
                f"{hubs} hubs x {links} channels parked from a cold start in {cold:.1f} s; endpoint "
                f"resident set {ep.rss_start / 1024:.1f} MiB -> {parked['rss_kib'] / 1024:.1f} MiB: "
                f"{per_channel:.2f} KiB per open channel"
            )

            # The storm: the endpoint drops every channel and refuses connections for --down s.
            before = parked["accepted"]
            up = (await ep.ask(f"restart {args.down}"))["t"]
            samples = await ep.until(lambda s: s["hubs"] >= hubs)
            all_hubs = samples[-1]["t"] - up
            samples += await ep.until(lambda s: s["open"] >= channels)
            last = samples[-1]
            every = last["t"] - up
            accepted = last["accepted"] - before
            # The busiest stretch of at least a second between two status samples (a loaded
            # machine does not sample every 50 ms), as a rate.
            busiest = 0.0
            for i, a in enumerate(samples):
                b = next((b for b in samples[i + 1 :] if b["t"] >= a["t"] + 1.0), None)
                if b is not None:
                    busiest = max(busiest, (b["accepted"] - a["accepted"]) / (b["t"] - a["t"]))
            failures = sum(s.stats.failures + s.stats.dropped for s in sites)
            print(
                f"storm: endpoint down {args.down:g} s, then every hub back in {all_hubs:.1f} s, every "
                f"channel in {every:.1f} s; {accepted} channels accepted, {accepted / every:,.0f}/s "
                f"on average, {busiest:,.0f}/s in the busiest second; {failures:,} attempts refused "
                f"or cut, backed off (exponential, full jitter, 1 s doubling)"
            )
        finally:
            for site in sites:
                await site.stop()
            await ep.quit()
            await runner.cleanup()

    rate, _ = await accept_capacity("channel", channels)
    ref_rate, ref_per = await accept_capacity("bare", channels)
    print(
        f"accept capacity: {channels} connections at once: ChannelEndpoint {rate:,.0f}/s; reference "
        f"(bare asyncio server, readuntil, same burst) {ref_rate:,.0f}/s; ratio {rate / ref_rate:.2f}"
    )
    print(
        f"memory per open channel {per_channel:.2f} KiB; reference (bare asyncio server holding "
        f"the connection) {ref_per:.2f} KiB; ratio {per_channel / ref_per:.2f}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hubs", type=int, default=2000)
    parser.add_argument("--links", type=int, default=2, help="channels each hub keeps parked")
    parser.add_argument("--down", type=float, default=5.0, help="seconds the endpoint is down")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--endpoint", choices=("channel", "bare"), help=argparse.SUPPRESS)
    a = parser.parse_args()
    if a.endpoint:
        asyncio.run(endpoint_main(a.endpoint))
    else:
        asyncio.run(main(a))
