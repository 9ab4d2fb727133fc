"""The systemd units in ``packaging/systemd/`` pass ``systemd-analyze verify`` (no warning either),
carry the hardening the README promises, score as well exposed as ``systemd-analyze security``
allows, and start commands whose options ``smarthub`` accepts."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNITS = Path(__file__).resolve().parents[2] / "packaging" / "systemd"
INSTALLED = "/opt/smarthub/bin/smarthub"  # where the units expect the command (README "Deploying")
HARDENING = {
    "ProtectSystem": "strict",
    "NoNewPrivileges": "yes",
    "DynamicUser": "yes",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
}
ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(
    ANALYZE is None, reason="systemd-analyze is not installed (Debian package systemd)"
)


def units() -> list[Path]:
    found = sorted(UNITS.glob("*.service"))
    assert {p.name for p in found} >= {
        "smarthub-hub.service",
        "smarthub-gdsc-collector.service",
        "smarthub-gdsc-api.service",
    }
    return found


def directives(unit: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in unit.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


def smarthub() -> str:
    return str(Path(sys.executable).parent / "smarthub")


def local_copy(unit: Path, into: Path) -> Path:
    """The unit with its ExecStart pointing at this checkout's ``smarthub`` (verify checks the
    binary exists)."""
    copy = into / unit.name
    copy.write_text(unit.read_text().replace(INSTALLED, smarthub()))
    return copy


def verify(path: Path) -> subprocess.CompletedProcess[str]:
    assert ANALYZE is not None
    return subprocess.run([ANALYZE, "verify", str(path)], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("unit", units(), ids=lambda p: p.name)
def test_unit_carries_the_hardening(unit: Path) -> None:
    d = directives(unit)
    for key, value in HARDENING.items():
        assert d.get(key) == value, f"{unit.name}: {key}={d.get(key)}"
    assert d.get("StateDirectory", "").startswith("smarthub-")
    assert d.get("Restart") in ("on-failure", "always")
    assert "--log-format json" in d["ExecStart"] and d["ExecStart"].startswith(INSTALLED)


@needs_analyze
@pytest.mark.parametrize("unit", units(), ids=lambda p: p.name)
def test_systemd_analyze_verify_passes_without_a_warning(unit: Path, tmp_path: Path) -> None:
    result = verify(local_copy(unit, tmp_path))
    assert result.returncode == 0 and result.stderr.strip() == "", result.stderr


@needs_analyze
def test_verify_catches_a_bad_unit(tmp_path: Path) -> None:
    """The check above can fail: a misspelt value and a missing binary are reported."""
    bad = tmp_path / "bad.service"
    bad.write_text("[Service]\nExecStart=/nonexistent/smarthub hub\nProtectSystem=strictt\n")
    result = verify(bad)
    assert "strictt" in result.stderr and "/nonexistent/smarthub" in result.stderr


@needs_analyze
@pytest.mark.parametrize("unit", units(), ids=lambda p: p.name)
def test_exposure_is_low(unit: Path, tmp_path: Path) -> None:
    assert ANALYZE is not None
    result = subprocess.run(
        [ANALYZE, "security", "--offline=true", str(local_copy(unit, tmp_path))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    m = re.search(r"Overall exposure level for \S+: ([0-9.]+)", result.stdout)
    assert m is not None, result.stdout[-2000:] + result.stderr
    assert float(m.group(1)) <= 3.0, result.stdout[-3000:]


@pytest.mark.parametrize("unit", units(), ids=lambda p: p.name)
def test_exec_start_options_are_accepted(unit: Path) -> None:
    """Every option of the unit's command line is one ``smarthub`` knows (``--help`` last: click
    rejects an unknown option before it gets there)."""
    argv = shlex.split(directives(unit)["ExecStart"].replace("${GDSC_DB}", "sqlite://"))
    result = subprocess.run([smarthub(), *argv[1:], "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
