"""Benchmark: the hub's own CPU time to answer one GDSC pull (issue 17, goal 4: ≤ 5 ms resumed).

One hub (a real :class:`~smarthub.wan.server.resources.HubWanServer` with its GDSC-issued
certificate and mutual TLS, holding a day of electricity + gas half-hourly readings: 96) runs in
a process of its own (``bench/pull.py --serve``), so its CPU time is its own. This process pulls
it with the collector's real :class:`~smarthub.wan.client.pull.PullClient`, one pull at a time,
as a collector does every day: connect (full handshake, or resumed from the session of the
pull before), GET the bulk resource for the whole day, close; 16 pulls a second (under the hub's
per-client rate limit). ``--pulls`` of each kind; the hub's CPU time (user + system, from /proc)
over them, divided by their number (the idle event loop between pulls included).

Reference measured in the same run: the server side alone of a bare mutual-TLS handshake, full
and resumed, with the same hub certificate and contexts (both ends in this process on memory
BIOs, only the server's calls timed): the cryptographic floor of a pull for the hub.

    .venv/bin/python bench/hub_pull.py [--pulls 300]

``bench/hub.py`` prints the same figures after its memory run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import ssl
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

GOAL_RESUMED_MS = 5.0


@dataclass(frozen=True)
class HubPullCpu:
    full_ms: float  # the hub's CPU per pull with a full handshake
    resumed_ms: float  # ... with a resumed TLS session
    readings: int  # per pull
    body_bytes: int  # per pull
    ref_full_ms: float  # the server side of a bare full mutual-TLS handshake
    ref_resumed_ms: float  # ... resumed
    pulls: int
    tls: str

    def lines(self) -> list[str]:
        ok = "met" if self.resumed_ms <= GOAL_RESUMED_MS else "NOT met"
        return [
            f"hub CPU per GDSC pull (a day of elec+gas: {self.readings} readings, "
            f"{self.body_bytes:,} body bytes, mutual TLS {self.tls}, {self.pulls} pulls of each kind):",
            f"  resumed session: {self.resumed_ms:.2f} ms   (goal ≤ {GOAL_RESUMED_MS:g} ms: {ok}); "
            f"reference: server side of a bare resumed handshake {self.ref_resumed_ms:.2f} ms "
            f"(pull = {self.resumed_ms / self.ref_resumed_ms:.1f}× it)",
            f"  full handshake:  {self.full_ms:.2f} ms; reference: server side of a bare full "
            f"handshake {self.ref_full_ms:.2f} ms (pull = {self.full_ms / self.ref_full_ms:.1f}× it)",
        ]


def _proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _server_handshake_cpu(
    client_ctx: ssl.SSLContext, server_ctx: ssl.SSLContext, n: int
) -> tuple[float, float]:
    """Seconds of this process's CPU in the server's calls per handshake: (full, resumed)."""

    def once(session: ssl.SSLSession | None) -> tuple[ssl.SSLObject, float]:
        c_in, c_out, s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
        client = client_ctx.wrap_bio(c_in, c_out, server_hostname="127.0.0.1", session=session)
        spent = 0.0
        t = time.process_time()
        server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
        spent += time.process_time() - t
        done_c = done_s = False
        while not (done_c and done_s):
            if not done_c:
                try:
                    client.do_handshake()
                    done_c = True
                except ssl.SSLWantReadError:
                    pass
            s_in.write(c_out.read())
            if not done_s:
                t = time.process_time()
                try:
                    server.do_handshake()
                    done_s = True
                except ssl.SSLWantReadError:
                    pass
                spent += time.process_time() - t
            c_in.write(s_out.read())
        client.write(b"x")  # TLS 1.3: the tickets come with the first application data
        s_in.write(c_out.read())
        t = time.process_time()
        server.read(1)
        server.write(b"y")
        spent += time.process_time() - t
        c_in.write(s_out.read())
        client.read(1)
        return client, spent

    first, _ = once(None)
    session = first.session
    out = []
    for resume in (False, True):
        total = 0.0
        for _ in range(n):
            c, spent = once(session if resume else None)
            if resume and not c.session_reused:
                raise RuntimeError("the reference handshake did not resume")
            total += spent
        out.append(total / n)
    return out[0], out[1]


def measure(pulls: int = 300, state: Path | None = None) -> HubPullCpu:
    from cryptography import x509
    from pull import meters_of  # bench/pull.py: the hub processes and their day of readings

    from smarthub.gdsc.fleet.pki import lfdi
    from smarthub.sim.fleet import home_specs, provision
    from smarthub.wan.client.pull import PullClient, SessionCache
    from smarthub.wan.tls import server_context

    tmp = None
    if state is None:
        tmp = tempfile.TemporaryDirectory(prefix="smarthub-hub-pull-")
        state = Path(tmp.name)
    spec = home_specs(1, seed=5)[0]
    creds = provision(state, [spec], datetime.now(UTC))
    hub_dir = state / "hubs" / spec.hub_id
    hub_lfdi = lfdi(x509.load_pem_x509_certificate((hub_dir / "hub.pem").read_bytes()))
    assert len(meters_of(spec.hub_id)) == 2
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).parent / "pull.py"), "--serve", str(state), spec.hub_id],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        import json

        port = json.loads(proc.stdout.readline())[spec.hub_id]
        url = f"https://127.0.0.1:{port}"
        client = PullClient(creds.collector_context())

        version = ["?"]

        async def one(resume: bool, href: str | None) -> tuple[str, int, int, bool]:
            if not resume:
                client.sessions = SessionCache()
            conn = await client.connect(url, hub_lfdi)
            try:
                if href is None:
                    href = await client.discover(conn)
                    assert href, "the hub advertises no bulk resource"
                readings = 0
                async for intervals, _cursors in client.pages(conn, href, {}):
                    readings += len(intervals)
                client.remember(conn)
                version[0] = str(conn.ssl_object.version())
                return href, readings, conn.stats.body_bytes, conn.stats.resumed
            finally:
                conn.close()

        async def run_all() -> tuple[float, float, int, int, str]:
            href, readings, body, _ = await one(False, None)  # discovery, warm-up
            await one(True, href)
            times = []
            for resume in (False, True):
                c0 = _proc_cpu(proc.pid)
                for _ in range(pulls):
                    # The hub limits each client to 20 requests/s (HubWanServer.limiter): a
                    # collector pulls a hub once a day, this bench 16 times a second.
                    await asyncio.sleep(1 / 16)
                    _, n, body, resumed = await one(resume, href)
                    if n != readings or resumed != resume:
                        raise RuntimeError(f"pull served {n} readings, resumed={resumed}")
                await asyncio.sleep(0.05)  # the hub closes its side
                times.append((_proc_cpu(proc.pid) - c0) / pulls)
            return times[0], times[1], readings, body, href

        full, resumed, readings, body, _ = asyncio.run(run_all())
        server_ctx = server_context(hub_dir / "hub.pem", hub_dir / "hub.key", creds.ca_pem)
        client_ctx = creds.collector_context()
        ref_full, ref_resumed = _server_handshake_cpu(client_ctx, server_ctx, max(pulls, 200))
        return HubPullCpu(
            full * 1000,
            resumed * 1000,
            readings,
            body,
            ref_full * 1000,
            ref_resumed * 1000,
            pulls,
            version[0],
        )
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        if tmp is not None:
            tmp.cleanup()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--pulls", type=int, default=200, help="pulls of each kind (full, resumed)")
    a = ap.parse_args()
    for line in measure(a.pulls).lines():
        print(line)


if __name__ == "__main__":
    main()
