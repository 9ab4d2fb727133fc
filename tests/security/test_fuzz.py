"""The bench fuzzer (``bench/fuzz.py``) run small, so it cannot rot: every decoder it lists
takes 2,000 mutated and random inputs and raises nothing but its documented errors.

``make bench`` runs the same code with 1,000,000 inputs per decoder. Inputs that once crashed
a decoder are kept below as regression tests.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from smarthub.clock import ManualClock
from smarthub.gdsc.commands.signer import CommandSigner
from smarthub.gdsc.fleet.pki import CertificateAuthority, Role
from smarthub.hub.management import CommandRefused, ManagementInterface
from smarthub.wan.contract.commands import Command

BENCH = Path(__file__).resolve().parents[2] / "bench" / "fuzz.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("smarthub_bench_fuzz", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


fuzz = _load()

EXPECTED = {
    "dsmr.decode_telegram+data_points",
    "dsmr.TelegramStream.feed",
    "iec62056_21.decode_readout+data_points",
    "iec62056_21.identification/request/option",
    "mbus.decode_frame+data_points",
    "wmbus.data_points (format A, keys)",
    "wmbus.data_points (format B, keys)",
    "wmbus.data_points (real meters, ELL/compact/layouts)",
    "zigbee_se.decode_zcl+data_points",
    "zigbee_se.decode_on_off/default_response",
    "dlms.hdlc.decode_frame",
    "dlms.hdlc.HdlcFramer.feed",
    "dlms.wrapper.decode_wrapper",
    "dlms.apdu.decode_apdu",
    "dlms.axdr.decode_data",
    "dlms.security.decipher_apdu",
    "dlms.decode.frame_data_points",
    "sml.decode_file+data_points",
    "dlms.han.decode_push",
    "gdsc.interval_block.decode",
    "wan.bulk.BulkParser (2030.5 /mup)",
    "wan.pull.bulk_link (2030.5 /dcap)",
    "hub.management.verify (/mgmt envelope)",
    "wan.revocations.parse_requests (GET /crv)",
    "wan.revocations.parse_answers (PUT /crv)",
}


def test_every_decoder_is_listed() -> None:
    assert set(fuzz.names()) == EXPECTED


def test_the_corpus_is_real_frames_that_decode() -> None:
    """Unmutated, every corpus entry is accepted: the fuzzer starts from valid input."""
    for target in fuzz.targets():
        assert target.corpus, target.name
        for frame in target.corpus:
            target.run(frame)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_no_unexpected_exception(name: str) -> None:
    [stats] = fuzz.fuzz(2000, seed=8, only=[name])
    assert stats.name == name and stats.inputs == 2000
    detail = "\n".join(f"{u.error}\n{u.input_hex}\n{u.trace}" for u in stats.unexpected)
    assert stats.unexpected_count == 0, detail


def test_a_planted_crash_is_reported() -> None:
    """The harness itself: a decoder raising an undocumented error is counted, with its input."""
    target = fuzz.Target("planted", [b"\x00\x01"], lambda d: d[5], (ValueError,))
    fuzz.targets().append(target)
    try:
        [stats] = fuzz.fuzz(300, seed=1, only=["planted"])
    finally:
        fuzz.targets().remove(target)
    assert 0 < stats.unexpected_count < 300
    assert stats.unexpected[0].error.startswith("IndexError")


# --- regressions found by the fuzzer ------------------------------------------------------------


def test_mgmt_envelope_with_a_malformed_signer_certificate_is_refused_not_a_500(tmp_path: Path) -> None:
    """A PEM whose DER frames fine but whose issuer does not parse raised ValueError out of
    ``verify`` (cryptography parses fields lazily); the hub answered 500. Now: refused."""
    now = datetime(2026, 1, 1, tzinfo=UTC)
    ca = CertificateAuthority.create("fuzz CA", now)
    op = ca.issue(Role.OPERATOR, "ops", now)
    envelope = CommandSigner(op.private_key, op.cert_pem, lambda hub: 1).sign(
        Command("HUB1", 1, "diagnostic.ping", {"nonce": 5}, now.isoformat())
    )
    der = bytearray(op.certificate.public_bytes(Encoding.DER))
    # The issuer CN's UTF8String tag (0x0C) made tag 0: the DER still frames, and the
    # certificate loads, but its issuer is no longer a Name.
    issuer_cn = der.index(bytes.fromhex("3110300e0603550403")) + 9
    assert der[issuer_cn] == 0x0C
    der[issuer_cn] = 0x00
    pem = b"-----BEGIN CERTIFICATE-----\n" + base64.encodebytes(bytes(der)) + b"-----END CERTIFICATE-----\n"
    outer = json.loads(envelope.envelope())
    outer["signer"] = pem.decode()
    mgmt = ManagementInterface("HUB1", ca.certificate, ManualClock(now), tmp_path / "m.sqlite")
    try:
        with pytest.raises(CommandRefused) as refused:
            mgmt.verify(json.dumps(outer).encode())
    finally:
        mgmt.close()
    assert refused.value.code == "unknown_signer"


def test_mgmt_envelope_with_a_signer_certificate_of_unknown_version_is_refused(tmp_path: Path) -> None:
    """Found by the 1M-input run: x509.InvalidVersion (not a ValueError) escaped ``verify``."""
    now = datetime(2026, 1, 1, tzinfo=UTC)
    ca = CertificateAuthority.create("fuzz CA", now)
    op = ca.issue(Role.OPERATOR, "ops", now)
    envelope = CommandSigner(op.private_key, op.cert_pem, lambda hub: 1).sign(
        Command("HUB1", 1, "diagnostic.ping", {"nonce": 5}, now.isoformat())
    )
    der = bytearray(op.certificate.public_bytes(Encoding.DER))
    version = der.index(bytes.fromhex("a003020102"))  # [0] EXPLICIT INTEGER 2 (v3)
    der[version + 4] = 0x6A  # version 106
    pem = b"-----BEGIN CERTIFICATE-----\n" + base64.encodebytes(bytes(der)) + b"-----END CERTIFICATE-----\n"
    outer = json.loads(envelope.envelope())
    outer["signer"] = pem.decode()
    mgmt = ManagementInterface("HUB1", ca.certificate, ManualClock(now), tmp_path / "m.sqlite")
    try:
        with pytest.raises(CommandRefused) as refused:
            mgmt.verify(json.dumps(outer).encode())
    finally:
        mgmt.close()
    assert refused.value.code == "malformed" and "version" in refused.value.reason


def test_mgmt_envelope_whose_signer_name_holds_a_bit_string_is_refused(tmp_path: Path) -> None:
    """Found by the 1M-input run: a Name attribute of BIT STRING type under an OID that does not
    allow it made cryptography raise TypeError out of ``verify``. The envelope is the fuzzer's."""
    envelope = bytes.fromhex(
        (Path(__file__).parent / "data" / "mgmt_envelope_bitstring_name.hex").read_text()
    )
    now = datetime(2026, 1, 1, tzinfo=UTC)
    ca = CertificateAuthority.create("fuzz CA", now)
    mgmt = ManagementInterface("HUB1", ca.certificate, ManualClock(now), tmp_path / "m.sqlite")
    try:
        with pytest.raises(CommandRefused) as refused:
            mgmt.verify(envelope)
    finally:
        mgmt.close()
    assert refused.value.code == "unknown_signer" and "malformed" in refused.value.reason
