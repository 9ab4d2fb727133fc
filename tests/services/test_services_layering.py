"""The third-party services are outside programs (issue 25 item 2): ``smarthub_services`` imports
nothing of the GDSC, the hub or the simulator (nothing of ``smarthub`` at all), nor any library
the platform uses for its API; only the Python standard library and itself. Checked on the
source (every import statement) and by importing every module in a fresh interpreter."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "smarthub_services"


def modules() -> list[str]:
    return sorted(
        "smarthub_services" + ("" if p.stem == "__init__" else f".{p.stem}") for p in PACKAGE.glob("*.py")
    )


def test_sources_import_only_the_standard_library_and_themselves() -> None:
    bad = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                assert node.level == 0, f"{path.name}: relative import"
                names = [node.module or ""]
            for name in names:
                top = name.split(".")[0]
                if top != "smarthub_services" and top not in sys.stdlib_module_names:
                    bad.append(f"{path.name}: {name}")
    assert not bad, bad
    assert len(modules()) >= 3  # the check found the package


def test_importing_every_service_loads_no_platform_code() -> None:
    code = (
        "import importlib, json, sys\n"
        f"for m in {modules()!r}: importlib.import_module(m)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(PACKAGE.parent)},
        timeout=120,
    )
    loaded = json.loads(done.stdout)
    platform = [
        m for m in loaded if m.split(".")[0] in {"smarthub", "fastapi", "pydantic", "sqlalchemy", "httpx"}
    ]
    assert not platform, platform
