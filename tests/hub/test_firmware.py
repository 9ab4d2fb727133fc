"""Firmware updates: signed packages, staged apply, health check, automatic and crash-time rollback."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import json
import multiprocessing
import os
import random
import signal
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from smarthub.clock import ManualClock
from smarthub.gdsc.commands.signer import CommandSigner
from smarthub.gdsc.fleet.pki import CertificateAuthority, IssuedCertificate, Role
from smarthub.hub.firmware import (
    FirmwareError,
    FirmwareSlots,
    FirmwareUpdater,
    HealthCheck,
    PackageRejected,
    build_package,
    firmware_command,
    open_package,
)
from smarthub.hub.management import ManagementInterface
from smarthub.wan.contract.commands import Command

T0 = datetime(2027, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return CertificateAuthority.create("test GDSC CA", T0 - timedelta(days=1))


@pytest.fixture(scope="module")
def operator(ca: CertificateAuthority) -> IssuedCertificate:
    return ca.issue(Role.OPERATOR, "gdsc-release", T0 - timedelta(days=1))


def package(issued: IssuedCertificate, version: str, payload: bytes | None = None) -> bytes:
    assert issued.private_key is not None
    body = payload if payload is not None else f"hub code {version}".encode() * 100
    fields = {"name": "smarthub-hub", "version": version, "created": T0}
    return build_package(fields, body, issued.private_key, issued.cert_pem)


class Health:
    """A scripted health check: answers per version, records what it was asked."""

    def __init__(self, verdicts: dict[str, bool | Exception] | None = None) -> None:
        self.verdicts = verdicts or {}
        self.asked: list[str] = []

    async def __call__(self, version: str) -> bool:
        self.asked.append(version)
        verdict = self.verdicts.get(version, True)
        if isinstance(verdict, Exception):
            raise verdict
        return verdict


def updater(root: Path, ca: CertificateAuthority, health: HealthCheck) -> FirmwareUpdater:
    return FirmwareUpdater(FirmwareSlots(root), ca.certificate, ManualClock(T0), health)


def assert_current_is_sound(slots: FirmwareSlots) -> None:
    """``current`` names a complete slot whose payload has the hash its signed manifest states."""
    current = slots.current_version()
    assert current is not None  # these tests start from an installed 1.0, never the factory image
    manifest = json.loads((slots.slot_path(current) / "manifest.json").read_bytes())
    assert hashlib.sha256(slots.payload_path(current).read_bytes()).hexdigest() == manifest["sha256"]
    assert manifest["version"] == current


# --- packages -----------------------------------------------------------------------------------


def test_a_good_package_opens_with_its_manifest(
    ca: CertificateAuthority, operator: IssuedCertificate
) -> None:
    pkg = open_package(package(operator, "1.2.10", b"abc"), ca.certificate, T0)
    assert (pkg.manifest.name, pkg.version, pkg.payload, pkg.manifest.size) == (
        "smarthub-hub",
        "1.2.10",
        b"abc",
        3,
    )
    assert pkg.manifest.created == T0 and pkg.manifest.sha256 == hashlib.sha256(b"abc").hexdigest()


def _tamper(blob: bytes, **changes: object) -> bytes:
    doc = json.loads(blob)
    doc.update(changes)
    return json.dumps(doc).encode()


def test_tampered_or_foreign_packages_are_rejected_with_specific_codes(
    ca: CertificateAuthority, operator: IssuedCertificate
) -> None:
    good = package(operator, "2.0", b"\x00" * 1000)
    doc = json.loads(good)
    payload = bytearray(base64.b64decode(doc["payload"]))
    payload[500] ^= 0x01
    manifest = json.loads(doc["manifest"])
    foreign_ca = CertificateAuthority.create("test GDSC CA", T0 - timedelta(days=1))  # same name, other key
    expired = ca.issue(Role.OPERATOR, "old-release", T0 - timedelta(days=400), days=30)
    cases = [
        (_tamper(good, payload=base64.b64encode(payload).decode()), "hash_mismatch"),
        (_tamper(good, payload=base64.b64encode(bytes(payload) + b"x").decode()), "hash_mismatch"),
        (
            _tamper(
                good,
                manifest=json.dumps({**manifest, "version": "2.1"}, sort_keys=True, separators=(",", ":")),
            ),
            "bad_signature",
        ),
        (_tamper(good, manifest=doc["manifest"].replace('"size":1000', '"size":1001')), "bad_signature"),
        (_tamper(good, signature=""), "bad_signature"),
        (package(foreign_ca.issue(Role.OPERATOR, "gdsc-release", T0), "2.0"), "unknown_signer"),
        (package(ca.issue(Role.COLLECTOR, "collector", T0 - timedelta(days=1)), "2.0"), "unknown_signer"),
        (package(expired, "2.0"), "unknown_signer"),
        (b"{not json", "malformed"),
        (_tamper(good, payload=None), "malformed"),
        (json.dumps({"manifest": doc["manifest"]}).encode(), "malformed"),
    ]
    for blob, code in cases:
        with pytest.raises(PackageRejected) as err:
            open_package(blob, ca.certificate, T0)
        assert err.value.code == code, (code, err.value)


def test_size_limits_and_malformed_manifests(ca: CertificateAuthority, operator: IssuedCertificate) -> None:
    blob = package(operator, "3.0", b"y" * 5000)
    with pytest.raises(PackageRejected, match="too_large"):
        open_package(blob, ca.certificate, T0, max_size=4999)
    with pytest.raises(PackageRejected, match="too_large"):
        open_package(blob, ca.certificate, T0, max_size=10)  # refused before even parsing
    assert open_package(blob, ca.certificate, T0, max_size=5000).manifest.size == 5000
    assert operator.private_key is not None
    for bad in (
        {"version": "1.01"},
        {"version": "1.x"},
        {"created": "yesterday"},
        {"name": ""},
        {"extra": 1},
    ):
        fields = {"name": "smarthub-hub", "version": "1.0", "created": T0.isoformat(), **bad}
        with pytest.raises(PackageRejected, match="malformed"):
            build_package(fields, b"p", operator.private_key, operator.cert_pem)
    with pytest.raises(ValueError, match="do not describe"):
        build_package(
            {"name": "n", "version": "1", "created": T0, "size": 9},
            b"p",
            operator.private_key,
            operator.cert_pem,
        )


# --- updater ------------------------------------------------------------------------------------


async def test_good_package_is_staged_activated_checked_and_becomes_current(
    tmp_path: Path, ca: CertificateAuthority, operator: IssuedCertificate
) -> None:
    health = Health()
    up = updater(tmp_path, ca, health)
    assert up.slots.current_version() is None  # the factory image
    assert await up.apply(package(operator, "1.0")) == {
        "status": "active",
        "version": "1.0",
        "previous": None,
    }
    result = await up.apply(package(operator, "1.1", b"new code"))
    assert result == {"status": "active", "version": "1.1", "previous": "1.0"}
    assert health.asked == ["1.0", "1.1"]
    assert up.slots.current_version() == "1.1" and up.slots.previous_version() == "1.0"
    assert up.slots.pending() is None
    assert up.slots.payload_path("1.1").read_bytes() == b"new code"
    assert oct(up.slots.payload_path("1.1").stat().st_mode & 0o777) == "0o600"
    assert [e["event"] for e in up.events()][-3:] == ["staged", "activated", "confirmed"]
    assert up.recover() is None  # a clean restart changes nothing


async def test_failing_health_check_rolls_back_automatically_and_logs_it(
    tmp_path: Path, ca: CertificateAuthority, operator: IssuedCertificate
) -> None:
    up = updater(tmp_path, ca, Health({"1.1": False}))
    await up.apply(package(operator, "1.0"))
    result = await up.apply(package(operator, "1.1"))
    assert result["status"] == "rolled_back" and result["version"] == "1.0" and result["rejected"] == "1.1"
    assert "reported failure" in result["reason"]
    assert up.slots.current_version() == "1.0" and up.slots.pending() is None
    assert up.slots.versions() == ["1.0"]  # the failed slot is gone
    events = [(e["event"], e.get("version")) for e in up.events()]
    assert events[-4:] == [
        ("staged", "1.1"),
        ("activated", "1.1"),
        ("health_failed", "1.1"),
        ("rolled_back", "1.0"),
    ]
    # The same version may be retried (a transient failure), and the retry can succeed.
    up.health_check = Health()
    assert (await up.apply(package(operator, "1.1")))["status"] == "active"


async def test_health_check_raising_or_timing_out_rolls_back(
    tmp_path: Path, ca: CertificateAuthority, operator: IssuedCertificate
) -> None:
    up = updater(tmp_path, ca, Health({"2.0": RuntimeError("meters silent")}))
    await up.apply(package(operator, "1.0"))
    result = await up.apply(package(operator, "2.0"))
    assert result["status"] == "rolled_back" and "RuntimeError: meters silent" in result["reason"]
    assert up.slots.current_version() == "1.0"

    started = asyncio.Event()

    async def hangs(version: str) -> bool:
        started.set()
        await asyncio.Event().wait()
        return True

    up.health_check = hangs
    task = asyncio.create_task(up.apply(package(operator, "2.1")))
    await started.wait()
    assert up.slots.current_version() == "2.1"  # on probation
    clock = up.clock
    assert isinstance(clock, ManualClock)
    clock.advance(timedelta(minutes=5))
    result = await task
    assert result["status"] == "rolled_back" and "probation" in result["reason"]
    assert up.slots.current_version() == "1.0"


async def test_first_update_failing_returns_to_the_factory_image(
    tmp_path: Path, ca: CertificateAuthority, operator: IssuedCertificate
) -> None:
    up = updater(tmp_path, ca, Health({"1.0": False}))
    result = await up.apply(package(operator, "1.0"))
    assert result["status"] == "rolled_back" and result["version"] is None
    assert up.slots.current_version() is None and up.slots.versions() == []


async def test_downgrade_and_rejected_packages_change_nothing(
    tmp_path: Path, ca: CertificateAuthority, operator: IssuedCertificate
) -> None:
    up = updater(tmp_path, ca, Health())
    await up.apply(package(operator, "1.10"))
    for version in ("1.9", "1.10", "0.99"):
        with pytest.raises(PackageRejected, match="downgrade"):
            await up.apply(package(operator, version))
    with pytest.raises(PackageRejected, match="hash_mismatch"):
        bad = json.loads(package(operator, "2.0"))
        bad["payload"] = base64.b64encode(b"evil").decode()
        await up.apply(json.dumps(bad).encode())
    assert up.slots.current_version() == "1.10" and up.slots.versions() == ["1.10"]
    assert [e["code"] for e in up.events() if e["event"] == "rejected"] == ["downgrade"] * 3 + [
        "hash_mismatch"
    ]
    # Rollback is the only way back, and only one step: 1.10 -> 1.11 -> back to 1.10.
    await up.apply(package(operator, "1.11"))
    assert up.slots.rollback() == "1.10"
    with pytest.raises(FirmwareError, match="no previous"):
        up.slots.rollback()


async def test_crash_between_activate_and_confirmation_is_rolled_back_on_next_start(
    tmp_path: Path, ca: CertificateAuthority, operator: IssuedCertificate
) -> None:
    first = updater(tmp_path, ca, Health())
    await first.apply(package(operator, "1.0"))
    # The process dies after the switch, before the health check passes: simulated by doing
    # the steps of apply() by hand and never confirming.
    slots = first.slots
    slots.stage(open_package(package(operator, "1.1"), ca.certificate, T0))
    slots.activate("1.1", T0)
    assert slots.current_version() == "1.1" and slots.pending() is not None

    restarted = updater(tmp_path, ca, Health())
    with pytest.raises(FirmwareError, match="recover"):
        await restarted.apply(package(operator, "1.2"))
    result = restarted.recover()
    assert result is not None and (result["status"], result["version"], result["rejected"]) == (
        "rolled_back",
        "1.0",
        "1.1",
    )
    assert restarted.slots.current_version() == "1.0" and restarted.slots.pending() is None
    assert restarted.events()[-1]["event"] == "recovered"
    assert restarted.recover() is None
    assert (await restarted.apply(package(operator, "1.2")))["status"] == "active"


def test_cleanup_keeps_current_previous_and_drops_leftovers(
    tmp_path: Path, ca: CertificateAuthority, operator: IssuedCertificate
) -> None:
    slots = FirmwareSlots(tmp_path)
    for version in ("1", "2", "3", "4"):
        slots.stage(open_package(package(operator, version), ca.certificate, T0))
        slots.activate(version, T0)
        slots.confirm()
    slots.stage(open_package(package(operator, "5"), ca.certificate, T0))  # staged, never activated
    (slots.slots_dir / ".staging-6-deadbeef").mkdir()  # left by a crash mid-stage
    assert slots.cleanup(keep=3) == ["1", "5"]
    assert slots.versions() == ["2", "3", "4"] and sorted(os.listdir(slots.slots_dir)) == ["2", "3", "4"]
    assert slots.cleanup(keep=2) == ["2"]


# --- crash safety -------------------------------------------------------------------------------


def _updating_child(root: str, ca_pem: bytes, key_pem: bytes, cert_pem: bytes, ready: str) -> None:
    """Update forever (1.1, 1.2, ...; every third fails its health check and is rolled back) until killed."""
    key = serialization.load_pem_private_key(key_pem, password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    ca_cert = x509.load_pem_x509_certificate(ca_pem)
    up = FirmwareUpdater(FirmwareSlots(Path(root)), ca_cert, ManualClock(T0), _every_third_fails)

    async def run() -> None:
        Path(ready).touch()
        for i in itertools.count(1):
            fields = {"name": "smarthub-hub", "version": f"1.{i}", "created": T0}
            await up.apply(build_package(fields, os.urandom(64 * 1024), key, cert_pem))
            Path(ready).write_text(str(i))  # progress, so the parent kills after real work, not a delay

    asyncio.run(run())


def _progress(path: Path) -> int:
    try:
        return int(path.read_text() or 0)
    except (FileNotFoundError, ValueError):
        return 0


async def _every_third_fails(version: str) -> bool:
    return int(version.split(".")[1]) % 3 != 0


def test_sigkill_during_stage_or_activate_leaves_a_complete_current_slot(
    tmp_path: Path, ca: CertificateAuthority, operator: IssuedCertificate
) -> None:
    rng = random.Random(46)
    ctx = multiprocessing.get_context("spawn")
    assert operator.key_pem is not None
    updates = 0
    for attempt in range(15):
        root, ready = tmp_path / f"r{attempt}", tmp_path / f"ready{attempt}"
        setup = FirmwareSlots(root)
        setup.stage(open_package(package(operator, "1.0"), ca.certificate, T0))
        setup.activate("1.0", T0)
        setup.confirm()
        p = ctx.Process(
            target=_updating_child, args=(str(root), ca.pem, operator.key_pem, operator.cert_pem, str(ready))
        )
        p.start()
        # Kill after a random number of completed updates (however loaded the machine), at a
        # random instant inside the next one.
        target = rng.randint(1, 4)
        while p.is_alive() and _progress(ready) < target:
            p.join(0.005)
        time.sleep(rng.uniform(0.0, 0.05))
        assert p.is_alive(), "the updating child died on its own"
        os.kill(p.pid, signal.SIGKILL)  # type: ignore[arg-type]
        p.join()

        slots = FirmwareSlots(root)
        assert_current_is_sound(slots)
        up = FirmwareUpdater(slots, ca.certificate, ManualClock(T0), Health())
        up.recover()  # whatever the kill interrupted, the next start settles it
        assert_current_is_sound(slots)
        assert slots.pending() is None
        assert [e for e in os.listdir(slots.slots_dir) if e.startswith(".")] == []
        updates += sum(e["event"] == "activated" for e in up.events())
    assert updates > 15, "the child was killed before it did much: the test exercises too little"


# --- through the management interface -----------------------------------------------------------


async def test_firmware_update_command_end_to_end(
    tmp_path: Path, ca: CertificateAuthority, operator: IssuedCertificate
) -> None:
    clock = ManualClock(T0)
    mgmt = ManagementInterface("HUB1", ca.certificate, clock, tmp_path / "management.sqlite")
    up = FirmwareUpdater(FirmwareSlots(tmp_path / "fw"), ca.certificate, clock, Health({"1.1": False}))
    mgmt.register("firmware.update", firmware_command(up))
    counter = iter(range(1, 100))
    assert operator.private_key is not None
    key: ec.EllipticCurvePrivateKey = operator.private_key
    signer = CommandSigner(key, operator.cert_pem, lambda hub: next(counter))

    async def send(body: dict[str, object]) -> dict[str, object]:
        cmd = signer.sign(
            Command("HUB1", signer.next_counter("HUB1"), "firmware.update", body, T0.isoformat())
        )
        return json.loads((await mgmt.handle(cmd.envelope())).to_json())

    def wrapped(blob: bytes) -> dict[str, object]:
        return {"package": base64.b64encode(blob).decode()}

    verdict = await send(wrapped(package(operator, "1.0")))
    assert verdict["status"] == "applied" and verdict["result"] == {
        "status": "active",
        "version": "1.0",
        "previous": None,
    }
    verdict = await send(wrapped(package(operator, "1.1")))
    assert verdict["status"] == "applied"
    assert isinstance(verdict["result"], dict) and verdict["result"]["status"] == "rolled_back"
    verdict = await send(wrapped(package(operator, "0.9")))
    assert verdict["status"] == "failed" and "downgrade" in str(verdict["detail"])
    verdict = await send({"package": "***"})
    # A body that is not one: refused before the counter, naming the field.
    assert verdict["status"] == "refused" and verdict["code"] == "malformed", verdict
    assert "firmware.update: 'package' is not base64" in str(verdict["detail"])
    assert up.slots.current_version() == "1.0"
    mgmt.close()
