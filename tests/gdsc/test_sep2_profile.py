"""The GDSC's certificates are 2030.5 certificates as the 2030.5 ecosystem's own tools judge
them: sep2cert (the certificate validator of the SEP2-Tools family, run in its own Python
>= 3.12 venv, ``make install``) accepts the hub's, the GDSC collector's, a party's, a display's
and an installer's certificate, and derives the same LFDI and SFDI; py20305 accepts the CA
chain (SERCA → MCA → MICA); sep2tools computes the same RoleFlags and quality flags the hub
serves; OpenSSL reads the hardwareModuleName as RFC 4108 has it."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from smarthub.gdsc.pki import HARDWARE_MODULE_NAME, HW_TYPE_SMARTHUB, CertificateAuthority, Role
from smarthub.wan.contract import sep2_xml

VENV = Path(__file__).resolve().parents[2] / ".venv-sep2" / "bin" / "python"

if not VENV.exists():
    if os.environ.get("SMARTHUB_REQUIRE_SEP2CERT"):
        raise RuntimeError(f"{VENV} is missing: `make install` builds it (needs Python >= 3.12)")
    pytest.skip("sep2cert needs Python >= 3.12: `make install` builds .venv-sep2", allow_module_level=True)

# Run by sep2cert's interpreter: its validator's verdict and every message it logged.
VALIDATE = """
import json, logging, sys
from pathlib import Path
from sep2cert.cert_validate import validate_certificate
from sep2cert.cert_id import get_certificate_lfdi, get_sfdi
logged = []
class Keep(logging.Handler):
    def emit(self, record): logged.append(f"{record.levelname}: {record.getMessage()}")
logging.getLogger().addHandler(Keep())
logging.getLogger().setLevel(logging.INFO)
out = {}
for path in sys.argv[1:]:
    logged.clear()
    valid = validate_certificate(Path(path))
    lfdi = get_certificate_lfdi(Path(path), group=False)
    out[path] = {"valid": valid, "logged": list(logged), "lfdi": lfdi, "sfdi": get_sfdi(lfdi, group=False)}
print(json.dumps(out))
"""

FLAGS = """
import json
from sep2tools.hexmaps import get_role_flag, get_quality_flag
print(json.dumps({
    "main": get_role_flag(is_premise=1, is_revenue=1)[1],
    "mirror": get_role_flag(is_mirror=1, is_premise=1, is_revenue=1)[1],
    "valid": get_quality_flag(valid=1)[1],
}))
"""


def sep2cert(*paths: Path) -> dict[str, dict[str, object]]:
    done = subprocess.run(
        [str(VENV), "-c", VALIDATE, *map(str, paths)], capture_output=True, text=True, timeout=60, check=True
    )
    return json.loads(done.stdout)  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def issued(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, object]]:
    d = tmp_path_factory.mktemp("sep2")
    now = datetime.now(UTC)
    ca = CertificateAuthority.create("GDSC CA", now)
    ca.save(d / "ca")
    out = {}
    for who, role, name, hosts in (
        ("hub", Role.HUB, "HUB000001", ("127.0.0.1", "hub-1.example")),
        ("gdsc", Role.COLLECTOR, "collector-1", ()),
        ("party", Role.PARTY, "Octopus Energy Ltd — Supplier Operations Department", ()),
        ("ihd", Role.IHD, "HUB000001/kitchen", ()),
        ("installer", Role.INSTALLER, "Ann Installer", ()),
    ):
        cert = ca.issue(role, name, now, hosts=hosts)
        path, _ = cert.save(d, who)
        out[who] = (path, cert)
    finite = ca.issue(Role.COLLECTOR, "short-lived", now, days=30)  # outside the profile: a control
    out["finite"] = (finite.save(d, "finite")[0], finite)
    out["ca"] = (d / "ca" / "ca.pem", ca)
    return out


def test_sep2cert_accepts_the_hub_gdsc_party_display_and_installer_certificates(
    issued: dict[str, tuple[Path, object]],
) -> None:
    who = ("hub", "gdsc", "party", "ihd", "installer")
    verdicts = sep2cert(*(issued[w][0] for w in who))
    for w in who:
        path, cert = issued[w]
        v = verdicts[str(path)]
        assert v["valid"] is True and v["logged"] == [], (w, v)  # not even a warning
        assert v["lfdi"] == cert.lfdi, w  # type: ignore[attr-defined]
        assert int(str(v["sfdi"])) == cert.sfdi, w  # type: ignore[attr-defined]


def test_sep2cert_refuses_a_certificate_outside_the_profile(issued: dict[str, tuple[Path, object]]) -> None:
    """The control: the same validator says no to a finite validity (2030.5 asks 99991231235959Z)."""
    path, _ = issued["finite"]
    v = sep2cert(path)[str(path)]
    assert v["valid"] is False and any("expiry" in str(m) for m in v["logged"]), v  # type: ignore[attr-defined]


def test_py20305_accepts_the_ca_chain_as_2030_5(issued: dict[str, tuple[Path, object]]) -> None:
    from py20305.client.tls import verify_ieee2030_5_chain

    _, ca = issued["ca"]
    _, hub = issued["hub"]
    assert isinstance(ca, CertificateAuthority)
    chain = [hub.certificate, ca.certificate, *ca.chain]  # type: ignore[attr-defined]
    verify_ieee2030_5_chain([c.public_bytes(serialization.Encoding.DER) for c in chain])
    for lower, upper in itertools.pairwise(chain):
        lower.verify_directly_issued_by(upper)  # leaf ← MICA ← MCA ← SERCA
    assert chain[-1].issuer == chain[-1].subject


@pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl command")
def test_hardware_module_name_is_rfc_4108(issued: dict[str, tuple[Path, object]], tmp_path: Path) -> None:
    _, hub = issued["hub"]
    san = hub.certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value  # type: ignore[attr-defined]
    (other,) = [n for n in san if isinstance(n, x509.OtherName)]
    assert other.type_id == HARDWARE_MODULE_NAME
    (tmp_path / "hmn.der").write_bytes(other.value)
    parsed = subprocess.run(
        ["openssl", "asn1parse", "-inform", "DER", "-in", str(tmp_path / "hmn.der")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "SEQUENCE" in parsed and f":{HW_TYPE_SMARTHUB}" in parsed
    assert "OCTET STRING      :HUB000001" in parsed  # hwSerialNum: the hub id


def test_sep2tools_computes_the_flags_the_hub_serves() -> None:
    done = subprocess.run([str(VENV), "-c", FLAGS], capture_output=True, text=True, timeout=60, check=True)
    flags = json.loads(done.stdout)
    assert flags["main"] == sep2_xml.hex16(sep2_xml.MAIN_METER_ROLES)
    assert flags["mirror"] == sep2_xml.hex16(sep2_xml.MIRROR_ROLES)
    assert int(flags["valid"], 16) == sep2_xml.QUALITY_VALID
