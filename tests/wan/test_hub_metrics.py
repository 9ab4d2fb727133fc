"""The hub's Prometheus metrics on its WAN (``GET /metrics``): served to a GDSC collector's
certificate over mutual TLS, refused (403) to any other role, as ``/mgmt`` is."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from smarthub.gdsc.fleet.pki import CertificateAuthority, Role
from smarthub.han.ports import PortBatch
from smarthub.meters.errors import ChecksumError
from smarthub.sim.demo import DemoConfig, setup, teardown
from smarthub.wan.tls import client_context


async def test_hub_metrics_for_collectors_only(tmp_path: Path) -> None:
    cfg = DemoConfig(homes=1, days=1, seconds_per_day=48 * 2, seed=4, state=tmp_path)
    run = await setup(cfg)
    try:
        run.clock.rebase()
        await run.fleet.start_meters(until=cfg.sim_start + timedelta(hours=2))
        await run.fleet.meters_done()
        home = run.fleet.homes[0]
        # A frame that fails its check on the P1 port is counted under its protocol
        home.hub.accept(PortBatch(errors=[ChecksumError("dsmr", "CRC16 mismatch")]), port="p1")
        url = f"{home.url}/metrics"
        ca = tmp_path / "ca" / "ca.pem"
        collector = client_context(
            tmp_path / "gdsc" / "collector.pem", tmp_path / "gdsc" / "collector.key", ca
        )
        async with httpx.AsyncClient(verify=collector, timeout=10) as c:
            r = await c.get(url)
        assert r.status_code == 200, r.text
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(r.text)
            for s in f.samples
        }
        assert samples[("smarthub_hub_frames_total", (("result", "ok"),))] == home.hub.stats.frames_ok > 0
        assert samples[("smarthub_hub_readings_total", ())] == home.hub.stats.readings > 0
        # Per meter: every meter of the home that sent anything, adding up to the total, with the
        # time of its newest reading inside the two simulated hours the meters ran
        per_meter = {
            dict(labels)["meter"]: v
            for (n, labels), v in samples.items()
            if n == "smarthub_hub_meter_readings_total"
        }
        assert len(per_meter) >= 2 and sum(per_meter.values()) == home.hub.stats.readings, per_meter
        for meter in per_meter:
            newest = samples[("smarthub_hub_meter_last_reading_timestamp_seconds", (("meter", meter),))]
            start = cfg.sim_start.timestamp()
            assert start < newest <= start + 2 * 3600 + 60, (meter, newest)
        assert samples[("smarthub_hub_frame_errors_total", (("protocol", "dsmr"),))] == 1
        assert samples[("smarthub_hub_file_bytes", (("file", "history"),))] > 0
        assert any(n == "smarthub_hub_poll_failures_total" for n, _ in samples)
        # This scrape was a collector's request: the last pull is now (simulated clock)
        last = samples[("smarthub_hub_last_pull_timestamp_seconds", ())]
        assert abs(last - run.clock.now().timestamp()) < 3600
        authority = CertificateAuthority.load(tmp_path / "ca")
        for role in (Role.PARTY, Role.INSTALLER):
            authority.issue(role, "someone", datetime.now(UTC)).save(tmp_path, f"other-{role.value}")
            other = client_context(
                tmp_path / f"other-{role.value}.pem", tmp_path / f"other-{role.value}.key", ca
            )
            async with httpx.AsyncClient(verify=other, timeout=10) as c:
                refused = await c.get(url)
            assert refused.status_code == 403 and "for the GDSC" in refused.text
            assert "smarthub_hub" not in refused.text
    finally:
        await teardown(run)
