"""Keys are never logged (issue 8, identity and authority).

Realistic flows run with the root logger, every ``smarthub`` logger and the HTTP libraries'
loggers at DEBUG, into one handler on the root that keeps each record's message, arguments and
traceback, with the process's stdout/stderr captured at the file descriptors. Every secret the
flow used is then searched for (hex lower/upper, base64 and URL-safe base64 with and without
padding, raw bytes in binary files; private keys also by scalar, PKCS#8 DER and PEM lines) in
the log records, in stderr/stdout, in every file the hubs wrote and in every table of the GDSC
database.

The places that are *meant* to hold keys, and are skipped by name:

* ``*.key`` PEM files (CA, collector, operator, hub TLS keys; mode 0600) and each hub's
  ``master.key`` (the key-wrapping key; 0600). Per-meter data-at-rest keys sit in
  ``history.sqlite`` / ``diagnostics.sqlite`` only AES-key-wrapped, and the meter keys the
  ``meter.key`` command delivered sit in ``meter_keys.sqlite`` only AES-GCM-sealed under a key
  derived from the master key, so those files are scanned.
* Nothing of the GDSC database: a ``meter.key`` command carries the new meter key in its signed
  payload (``urgent_work.envelope``) only until the job is finished, then the plan clears it
  (``plan.SECRET_COMMANDS``); every job here is finished before the scan. Every table and column
  is scanned: ``urgent_work.envelope``, ``pull_log``, ``hub_errors``, ``hub_events``, ``incidents``,
  ``work_orders``, ``repair_commands``, ``audit_log``, ``api_jobs``, ``api_tokens``,
  ``vouchers``, ``urgent_work.result`` / ``last_error`` among them.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import shutil
import subprocess
import sys
import time
import traceback
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from gdsc.api_world import build, tariff_json

from security.secrets_scan import Everything, Secrets, capture_everything, release, scan_sqlite
from smarthub.gdsc.api.auth.tokens import issue_token
from smarthub.gdsc.commands.desk import CommandDesk
from smarthub.gdsc.commands.signer import CommandSigner
from smarthub.gdsc.fleet.pki import CertificateAuthority, Role
from smarthub.gdsc.pull.plan import PullPlan
from smarthub.gdsc.readings import queries as dataservices
from smarthub.gdsc.service import send_command
from smarthub.gdsc.store import Store
from smarthub.hub.delivered_keys import FILE_NAME as DELIVERED_KEYS_FILE
from smarthub.hub.delivered_keys import DeliveredKeys
from smarthub.hub.hub import SmartHub
from smarthub.hub.keys import KeyUnwrapError, load_or_create_master_key, unwrap, wrap
from smarthub.meters import wmbus
from smarthub.meters.dlms.security import SecurityKeys, decipher_apdu
from smarthub.meters.errors import DecodeError
from smarthub.sim.demo import DemoConfig, DemoRun, run_day, setup, teardown
from smarthub.sim.dlms_meter import DlmsMeterSimulator
from smarthub.sim.fleet import _meter_key
from smarthub.sim.load_profile import HouseholdProfile
from smarthub.sim.wmbus_meter import WMBusMeterSimulator

METER_KEY_SLOTS = (1, 2, 3, 10, 11, 20, 21, 99)  # every slot sim.fleet derives a meter key for
KEY_FILES = {"master.key"}  # and every *.key


@pytest.fixture
def everything() -> Iterator[Everything]:
    handler, saved = capture_everything()
    try:
        yield handler
    finally:
        release(handler, saved)


def _private_keys(state: Path, secrets: Secrets) -> int:
    n = 0
    for path in sorted(state.rglob("*.key")):
        if path.name in ("master.key", "escrow.key"):  # raw AES keys: a hub's master key, the GDSC's KEK
            secrets.add_bytes(f"{path.stem} key {path.parent.name}", path.read_bytes())
        else:
            secrets.add_private_key_pem(str(path.relative_to(state)), path.read_bytes())
        n += 1
    return n


def _data_keys(state: Path, secrets: Secrets) -> int:
    """The hubs' per-meter data-at-rest keys, unwrapped (they must appear nowhere in clear)."""
    import sqlite3

    n = 0
    for master_path in state.rglob("master.key"):
        master = master_path.read_bytes()
        for name, query in (
            ("history.sqlite", "SELECT meter, wrapped FROM meter_keys"),
            ("diagnostics.sqlite", "SELECT id, wrapped FROM diagnostic_key"),
        ):
            db = sqlite3.connect(master_path.with_name(name))
            try:
                for label, wrapped in db.execute(query):
                    secrets.add_bytes(f"data key {master_path.parent.name}/{label}", unwrap(master, wrapped))
                    n += 1
            finally:
                db.close()
    return n


def _delivered_keys(state: Path) -> set[bytes]:
    """The meter keys the hubs keep from ``meter.key`` commands, opened with each hub's master key."""
    out: set[bytes] = set()
    for path in state.rglob(DELIVERED_KEYS_FILE):
        store = DeliveredKeys(path, path.with_name("master.key").read_bytes())
        try:
            out |= {d.key for d in store.load()}
        finally:
            store.close()
    return out


def _scan_files(state: Path, secrets: Secrets) -> list[str]:
    hits = []
    for path in sorted(p for p in state.rglob("*") if p.is_file()):
        if path.suffix == ".key" or path.name in KEY_FILES:
            continue
        if path.name == "gdsc.sqlite":
            hits += scan_sqlite(secrets, path)
            continue
        if path.name.startswith("gdsc.sqlite-"):
            continue  # its WAL/journal (the queue's envelopes pass through it); checkpointed at close
        hits += [f"{path.relative_to(state)}: {name}" for name in secrets.found_in_bytes(path.read_bytes())]
    return hits


async def _queue_and_deliver(run: DemoRun, hub_id: str, ctype: str, body: dict[str, object]) -> int:
    """A command through the plan, as the API and the operations loop queue them, delivered by
    the demo's scheduler in its next (accelerated) window."""
    assert run.scheduler.plan is not None and run.signer is not None
    job = run.scheduler.plan.queue_command(run.signer, hub_id, ctype, body, run.clock.now())
    start = run.clock.now()
    await run.scheduler.run(until=start + timedelta(minutes=30), first_window=start)
    await run.scheduler.drain()
    return job


async def test_a_fleet_day_with_rekeys_and_top_ups_logs_no_key(
    tmp_path: Path, everything: Everything, capfd: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state"
    cfg = DemoConfig(homes=2, days=1, seconds_per_day=8, seed=11, state=state)
    run = await setup(cfg)
    secrets = Secrets()
    try:
        result = await run_day(run)
        assert result.missing == 0
        home = run.fleet.homes[1]  # dlms+wmbus: DLMS suite 0 ciphering, OMS mode 5, prepayment
        assert home.spec.kind == "dlms+wmbus" and home.consumer.ledger is not None
        for h in run.fleet.homes:
            for slot in METER_KEY_SLOTS:
                secrets.add_bytes(f"{h.spec.hub_id} meter key slot {slot}", _meter_key(h.spec, slot))
        wmbus_meters = [m for rig in home.rigs if rig.protocol == "wmbus" for m, _ in rig.meters]
        dlms_meter = next(m for rig in home.rigs if rig.protocol == "dlms" for m, _ in rig.meters)
        hub_id, now = home.spec.hub_id, datetime.now(UTC)

        # A new OMS key through the signed command path: staged, and at once (the meter keeps
        # its old key, so its next frames fail to decrypt: a wrong-key path, logged).
        staged, fresh = os.urandom(16), os.urandom(16)
        secrets.add_bytes("meter.key staged", staged)
        secrets.add_bytes("meter.key fresh", fresh)
        verdict = await send_command(
            state, hub_id, "meter.key", {"meter": wmbus_meters[0], "key": staged.hex(), "pending": True}, now
        )
        assert verdict["status"] == "applied", verdict
        await _queue_and_deliver(run, hub_id, "meter.key", {"meter": wmbus_meters[1], "key": fresh.hex()})
        # Keys the hub refuses: 17 bytes, and not hex (a key pasted with a stray character).
        long_key, bad_hex = os.urandom(17), os.urandom(16).hex().upper()[:-1] + "G"
        secrets.add_bytes("meter.key 17 bytes", long_key)
        secrets.add_text("meter.key not hex", bad_hex)
        for bad in (long_key.hex(), bad_hex):
            verdict = await send_command(state, hub_id, "meter.key", {"meter": dlms_meter, "key": bad}, now)
            assert verdict["status"] == "refused" and verdict["code"] == "malformed", verdict
        await _queue_and_deliver(run, hub_id, "meter.key", {"meter": dlms_meter, "key": long_key.hex()})

        # A prepayment top-up: a voucher signed with the operator key, queued and delivered.
        desk = CommandDesk.from_state(state, run.store)
        meter = dataservices.find_meter(run.store.engine, home.spec.premises_id, dlms_meter)
        job, voucher = desk.top_up(
            "SUP", home.spec.premises_id, meter, "top_up", Decimal("5.00"), run.clock.now()
        )
        start = run.clock.now()
        await run.scheduler.run(until=start + timedelta(minutes=30), first_window=start)
        await run.scheduler.drain()
        done = desk.job(job)
        assert done is not None and done.state == "done", done
        assert done.result is not None and done.result["result"]["voucher_id"] == voucher, done.result
        await run.fleet.meters_done()
    finally:
        await teardown(run)

    # CA, collector, operator, the key escrow's KEK; 2 hubs: TLS, master
    assert _private_keys(state, secrets) == 4 + 2 + 2
    assert _data_keys(state, secrets) >= 2
    # The delivered keys are kept for the hub's next start (sealed: the file scan below covers it).
    assert _delivered_keys(state) >= {staged, fresh}
    # Delivered meter.key commands no longer hold their key in the queue (plan.SECRET_COMMANDS)...
    gdsc_db = state / "gdsc" / "gdsc.sqlite"
    assert scan_sqlite(secrets, gdsc_db) == []
    # ...while one still waiting does, and the scanner sees it there (it finds what it looks for;
    # on a copy, so the files scanned below are the run's own).
    shutil.copy(gdsc_db, tmp_path / "control.sqlite")
    gdsc_db = tmp_path / "control.sqlite"
    store = Store(f"sqlite:///{gdsc_db}")
    try:
        signer = CommandSigner.from_files(
            str(state / "gdsc" / "operator.pem"),
            str(state / "gdsc" / "operator.key"),
            store.next_command_counter,
        )
        PullPlan(store).queue_command(signer, hub_id, "meter.key", {"meter": "M", "key": fresh.hex()}, now)
    finally:
        store.close()
    assert "meter.key fresh" in {h.split(": ")[-1] for h in scan_sqlite(secrets, gdsc_db)}
    assert everything.count > 0  # the flow did log (pulls, decrypt failures, repairs...)

    in_logs = {name for line in everything.lines for name in secrets.found_in_text(line)}
    out, err = capfd.readouterr()
    assert in_logs == set(), [ln for ln in everything.lines if secrets.found_in_text(ln)][:5]
    assert secrets.found_in_text(out + err) == []
    assert _scan_files(state, secrets) == []


# --- the GDSC API: bearer tokens, good and bad ------------------------------------------------


async def test_api_requests_and_failed_logins_log_no_token(
    tmp_path: Path, everything: Everything, capfd: pytest.CaptureFixture[str]
) -> None:
    world = build(f"sqlite:///{tmp_path / 'gdsc.sqlite'}", tmp_path / "state")
    secrets = Secrets()
    for party, token in world.tokens.items():
        secrets.add_text(f"token {party}", token)
    _private_keys(world.state, secrets)
    wrong = [
        world.tokens["S1"][:-2] + "xx",
        "A" * 43,
        world.tokens["S1"] + "=",
        base64.b64encode(b"S1:pw" * 4),
    ]
    for w in wrong:
        secrets.add_text(f"wrong token {w[:6]}", w if isinstance(w, str) else w.decode())
    with world.client() as client:
        r = client.get("/v1/premises/P1/readings", params=_period(), headers=world.auth("C1"))
        assert r.status_code == 200
        r = client.post(
            "/v1/premises/P1/commands/tariff-update",
            json={"meter_id": "E1", "tariff": tariff_json(), "effective": "2026-09-01T00:00:00+01:00"},
            headers=world.auth("S1"),
        )
        assert r.status_code == 202, r.text
        r = client.post(
            "/v1/premises/P1/commands/top-up",
            json={"meter_id": "E1", "amount": "10.00"},
            headers=world.auth("S1"),
        )
        assert r.status_code == 202, r.text
        r = client.get("/v1/portfolio", headers=world.auth("C1"))
        assert r.status_code == 200
        # Denied: a real token for the wrong party (403, audited) ...
        r = client.post(
            "/v1/premises/P1/commands/top-up",
            json={"meter_id": "E1", "amount": "10.00"},
            headers=world.auth("TP"),
        )
        assert r.status_code == 403
        # ... and tokens that authenticate nobody, in every header shape.
        for w in wrong:
            for header in (f"Bearer {w if isinstance(w, str) else w.decode()}", f"Basic {w!s}", str(w)):
                r = client.get("/v1/portfolio", headers={"Authorization": header})
                assert r.status_code == 401
                assert secrets.found_in_text(r.text) == []
    world.store.close()

    assert everything.count > 0
    assert [ln for ln in everything.lines if secrets.found_in_text(ln)] == []
    out, err = capfd.readouterr()
    assert secrets.found_in_text(out + err) == []
    hits = scan_sqlite(secrets, tmp_path / "gdsc.sqlite", skip={("urgent_work", "envelope")})
    assert hits == []
    # The scanner would see a token: api_tokens holds each one's SHA-256 only, not the token.
    assert secrets.found_in_text(json.dumps(world.tokens)) != []


def _period() -> dict[str, str]:
    return {
        "meter_id": "E1",
        "start": "2026-08-10T00:00:00+01:00",
        "end": "2026-08-11T00:00:00+01:00",
        "granularity": "half-hourly",
    }


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_uvicorn_served_api_writes_no_token_to_its_output(tmp_path: Path, log_format: str) -> None:
    """The real process (``smarthub gdsc api``): its stdout and stderr, at its configured log
    level, hold neither the tokens it accepted nor the ones it refused."""
    from smarthub.sim.fleet import provision

    state = tmp_path / "state"
    provision(state, [], datetime.now(UTC) - timedelta(minutes=5))
    url = f"sqlite:///{(state / 'gdsc' / 'gdsc.sqlite').resolve()}"
    good = issue_token(url, "ACME", datetime.now(UTC), "consumer", "")
    bad = good[:-3] + "abc"
    port = _free_port()
    proc = subprocess.Popen(
        [*API, "--state", str(state), "--port", str(port), "--log-format", log_format],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_listening(base, proc)
        assert (
            httpx.get(f"{base}/v1/portfolio", headers={"Authorization": f"Bearer {good}"}).status_code == 200
        )
        for header in (f"Bearer {bad}", f"Token {good}", bad):
            assert httpx.get(f"{base}/v1/portfolio", headers={"Authorization": header}).status_code == 401
        assert httpx.get(f"{base}/v1/portfolio?token={bad}").status_code == 401
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=10)
    text = (out + err).decode(errors="replace")
    assert good not in text and bad not in text, text[-2000:]
    if log_format == "json":  # every line an object with the agreed fields (the migrations' at INFO)
        lines = [json.loads(line) for line in err.decode().splitlines() if line.strip()]
        assert lines and all({"time", "level", "logger", "message"} <= set(o) for o in lines), lines
        assert all(o["service"] == "gdsc-api" for o in lines)


API = [sys.executable, "-m", "smarthub.cli", "gdsc", "api"]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_listening(base: str, proc: subprocess.Popen[bytes]) -> None:
    for _ in range(300):
        try:
            httpx.get(f"{base}/openapi.json", timeout=2)
            return
        except httpx.TransportError:
            assert proc.poll() is None, "the API process exited"
            time.sleep(0.1)
    raise AssertionError("the API did not start listening")


# --- PKI operations -----------------------------------------------------------------------------


def test_pki_operations_log_no_private_key(
    tmp_path: Path, everything: Everything, capfd: pytest.CaptureFixture[str]
) -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    ca = CertificateAuthority.create("CA", now)
    ca.save(tmp_path / "ca")
    issued = [
        ca.issue(Role.HUB, "HUB1", now, hosts=("127.0.0.1",)),
        ca.issue(Role.COLLECTOR, "c", now),
        ca.issue(Role.OPERATOR, "ops", now),
    ]
    for i, cert in enumerate(issued):
        cert.save(tmp_path, f"leaf{i}")
    ca.revoke(issued[1].certificate.serial_number, now)
    crl = ca.crl(now)
    again = CertificateAuthority.load(tmp_path / "ca")
    again.issue(Role.HUB, "HUB2", now).save(tmp_path, "leaf3")
    secrets = Secrets()
    assert _private_keys(tmp_path, secrets) == 5
    # What is public must not hold them either: certificates, the CRL, reprs of the objects.
    public = [p.read_bytes() for p in tmp_path.rglob("*.pem")]
    public.append(crl.public_bytes(serialization.Encoding.PEM) if hasattr(crl, "public_bytes") else b"")
    texts = [repr(ca), repr(again), *(repr(c) for c in issued), *(str(c) for c in issued)]
    assert [secrets.found_in_bytes(b) for b in public] == [[]] * len(public)
    assert [secrets.found_in_text(t) for t in texts] == [[]] * len(texts)
    # A tampered key file: the error says what is wrong, not what the key is.
    key_path = tmp_path / "ca" / "ca.key"
    pem = key_path.read_bytes()
    lines = pem.splitlines()
    lines[2] = lines[2][:-4] + b"!!!!"
    key_path.write_bytes(b"\n".join(lines))
    with pytest.raises(Exception) as bad:
        CertificateAuthority.load(tmp_path / "ca")
    rendered = "".join(traceback.format_exception(bad.value))
    assert secrets.found_in_text(rendered) == []
    assert [ln for ln in everything.lines if secrets.found_in_text(ln)] == []
    out, err = capfd.readouterr()
    assert secrets.found_in_text(out + err) == []


# --- exceptions raised on bad keys --------------------------------------------------------------


def _rendered(err: BaseException) -> str:
    return str(err) + repr(err) + "".join(traceback.format_exception(err))


def test_errors_about_bad_keys_do_not_quote_the_key(tmp_path: Path) -> None:
    secrets = Secrets()
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    right, wrong = os.urandom(16), os.urandom(16)
    secrets.add_bytes("right", right)
    secrets.add_bytes("wrong", wrong)
    errors: list[BaseException] = []

    # wM-Bus: a frame decrypted with the wrong key (modes 5 and 7); a key of the wrong length;
    # a key given as text that is not hex.
    for mode in (5, 7):
        sim = WMBusMeterSimulator(12345600 + mode, "KAM", "water", right, HouseholdProfile(mode), t0, mode)
        frame = sim.frame_at(t0 + timedelta(minutes=5))
        wmbus.data_points(frame, {sim.meter_id: right})  # the right key decodes
        for keys in (
            {sim.meter_id: wrong},
            {sim.meter_id: wrong + right[:1]},
            {sim.meter_id: wrong.hex() + "zz"},
        ):
            with pytest.raises(DecodeError) as e:
                wmbus.data_points(frame, keys)  # type: ignore[arg-type]
            errors.append(e.value)
    # DLMS suite 0: a push ciphered under one key deciphered under another; keys of bad length.
    title = b"LGZ\x00\x00\x00\x00\x01"
    apdu = DlmsMeterSimulator(title, "1", HouseholdProfile(1), t0, SecurityKeys(right, right)).push_apdu_at(
        t0
    )
    with pytest.raises(DecodeError) as e:
        decipher_apdu(apdu, SecurityKeys(wrong, wrong), system_title=title)
    errors.append(e.value)
    with pytest.raises(ValueError) as e:
        SecurityKeys(wrong + b"\x00", right)
    errors.append(e.value)
    assert secrets.found_in_text(repr(SecurityKeys(right, wrong))) == []
    # Data at rest: a wrapped key under the wrong master key; a master key file of bad length.
    master, other = os.urandom(32), os.urandom(32)
    secrets.add_bytes("master", master)
    secrets.add_bytes("other master", other)
    with pytest.raises(KeyUnwrapError) as e:
        unwrap(other, wrap(master, right))
    errors.append(e.value)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "master.key").write_bytes(master + b"\n")
    with pytest.raises(KeyUnwrapError) as e:
        load_or_create_master_key(tmp_path / "bad" / "master.key")
    errors.append(e.value)
    # The hub's meter.key handler refusing a key (the verdict's detail goes to the GDSC).
    from smarthub.han.wmbus_port import WMBusPort
    from smarthub.hub.history import HistoryStore
    from smarthub.hub.keys import KeyRing

    hub = SmartHub("HUB1", HistoryStore(tmp_path / "h.sqlite"))
    hub.attach(WMBusPort("wmbus", KeyRing()))
    from smarthub.wan.contract.bodies import MeterKey

    for bad in ((wrong + b"\x01").hex(), wrong.hex()[:-1] + "g", wrong.hex()[:-1]):
        with pytest.raises(ValueError) as e:  # the body's check, before the handler
            MeterKey.parse({"meter": "M1", "key": bad})
        errors.append(e.value)
    hub.history.close()

    assert len(errors) == 13
    leaks = [(type(err).__name__, secrets.found_in_text(_rendered(err))) for err in errors]
    assert [leak for leak in leaks if leak[1]] == []
    logging.getLogger(__name__).debug("checked %d errors", len(errors))
