"""The bounded contexts depend on each other one way only (DESIGN.md §2).

``model ← meters ← han ← hub → wan ← gdsc``: the WAN is the contract between the hub and the
GDSC. Its ``wan.contract`` package (2030.5 documents, diagnosis codes, the command envelope and
types) is imported by both; ``wan.server`` is the hub's side (it imports the hub), ``wan.client``
the GDSC's. ``clock`` and ``security`` are usable by all; ``assembly`` (the hub's composition
root) sits above hub and wan, and ``sim`` / ``cli`` on top. A hub must never load the GDSC (it
would ship the centre's code into every home), and the GDSC reaches hubs only through the WAN
client: it never loads a hub, HAN or meter module.

Two checks: every module's direct imports against the table below, and the rule that matters,
transitively: each side imported whole in a fresh interpreter, and the modules it loaded listed.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "smarthub"
SHARED = {"clock", "security"}
# Keys are packages or sub-packages (the most specific key owning a module applies).
ALLOWED: dict[str, set[str]] = {
    "model": set(),
    "security": set(),
    "clock": set(),
    "meters": {"model"},
    "han": {"model", "meters"},
    # wan.httpd: the hub's one HTTP server (h11), which serves the in-home display as well.
    "hub": {"model", "meters", "han", "wan.contract", "wan.httpd"},
    "wan": set(),  # wan/__init__.py: a docstring
    "wan.tls": set(),  # mutual TLS contexts, both sides
    "wan.contract": {"model"},
    "wan.server": {"model", "hub", "wan.contract", "wan.tls", "wan.httpd"},
    "wan.httpd": set(),
    "wan.client": {"model", "wan.contract", "wan.tls"},
    "gdsc": {"model", "wan.contract", "wan.client", "wan.tls"},
    # The hub's composition root wires the hub core to its WAN server; only sim and cli use it.
    "assembly": {"model", "meters", "han", "hub", "wan"},
}


def _owner(module: str) -> str:
    """The ALLOWED key a dotted module name (without ``smarthub.``) falls under."""
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in ALLOWED or ".".join(parts[:n]) in SHARED:
            return ".".join(parts[:n])
    return parts[0]


def _module_of(path: Path) -> str:
    rel = path.relative_to(SRC).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("smarthub."):
            # `from smarthub.wan import tls` imports smarthub.wan.tls
            names = [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names if a.name.startswith("smarthub.")]
        found |= {_owner(n.removeprefix("smarthub.")) for n in names if n.count(".") >= 1}
    return found


def _may(owner: str, dep: str) -> bool:
    allowed = ALLOWED.get(owner, set()) | SHARED
    # A package allowed whole (``wan`` for the assembly) covers its sub-packages.
    return dep == owner or dep in allowed or any(dep.startswith(a + ".") for a in allowed)


@pytest.mark.parametrize("context", sorted(ALLOWED))
def test_context_imports_only_what_it_may(context: str) -> None:
    base = SRC / context.replace(".", "/")
    files = list(base.rglob("*.py")) if base.is_dir() else [base.with_suffix(".py")]
    files = [f for f in files if _owner(_module_of(f)) == context]
    assert files, context
    bad = {
        f"{f.relative_to(SRC)} imports smarthub.{dep}"
        for f in files
        for dep in _imports(f)
        if dep != context and not _may(context, dep)
    }
    assert not bad, sorted(bad)


_LOADED = """
import importlib, json, pkgutil, sys
import smarthub
roots = {roots!r}
for root in roots:
    mod = importlib.import_module(root)
    if hasattr(mod, "__path__"):
        for info in pkgutil.walk_packages(mod.__path__, root + "."):
            if ".migrations." in info.name:  # Alembic's env.py runs migrations when imported
                continue
            importlib.import_module(info.name)
print(json.dumps(sorted(m for m in sys.modules if m.startswith("smarthub."))))
"""


def _loaded_by(*roots: str) -> set[str]:
    """The smarthub modules a fresh interpreter holds after importing every module under ``roots``."""
    out = subprocess.run(
        [sys.executable, "-c", _LOADED.format(roots=list(roots))],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    ).stdout
    return set(json.loads(out.splitlines()[-1]))


def _under(modules: set[str], *packages: str) -> list[str]:
    return sorted(m for m in modules if any(m == p or m.startswith(p + ".") for p in packages))


def test_the_gdsc_loads_no_hub_han_or_meter_code() -> None:
    loaded = _loaded_by("smarthub.gdsc", "smarthub.wan.client", "smarthub.wan.contract")
    assert "smarthub.gdsc.pull.collector" in loaded and "smarthub.wan.client.pull" in loaded
    leaked = _under(
        loaded,
        "smarthub.hub",
        "smarthub.han",
        "smarthub.meters",
        "smarthub.assembly",
        "smarthub.sim",
        "smarthub.wan.server",
    )
    assert not leaked, leaked


def test_the_hub_loads_no_gdsc_code() -> None:
    loaded = _loaded_by("smarthub.hub", "smarthub.wan.server", "smarthub.assembly")
    assert "smarthub.hub.diagnostics" in loaded and "smarthub.wan.server.resources" in loaded
    leaked = _under(loaded, "smarthub.gdsc", "smarthub.sim", "smarthub.wan.client")
    assert not leaked, leaked


_HUB_PROCESS = """
import importlib, json, pkgutil, sys
from pathlib import Path
for root in ("smarthub.hub", "smarthub.wan.server", "smarthub.assembly"):
    for info in pkgutil.walk_packages(importlib.import_module(root).__path__, root + "."):
        importlib.import_module(info.name)
from smarthub.hub.ihd.home import supplies_from_json
from smarthub.model.tariff_calc import day_start
import datetime
tariff = json.loads(Path({tariff!r}).read_text())
supplies = supplies_from_json(json.dumps({{"electricity": {{"meter": "E1", "supplier": "S", "tariff": tariff}}}}))
supplies[0].accumulator.current_rate(day_start(datetime.date(2026, 7, 1)))
print(json.dumps(sorted({{m.split(".")[0] for m in sys.modules}})))
"""


def test_a_hub_that_prices_and_serves_its_display_loads_neither_pydantic_nor_aiohttp() -> None:
    """The hub's memory budget (issue 17): one HTTP stack (``wan.httpd``, h11), and the tariff
    model's own checks rather than pydantic (which the GDSC's API still builds its schema with)."""
    tariff = Path(__file__).resolve().parents[1] / "examples" / "tariffs" / "night-saver.json"
    out = subprocess.run(
        [sys.executable, "-c", _HUB_PROCESS.format(tariff=str(tariff))],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    ).stdout
    loaded = set(json.loads(out.splitlines()[-1]))
    assert "h11" in loaded and "smarthub" in loaded
    assert not loaded & {"pydantic", "pydantic_core", "aiohttp", "fastapi", "starlette"}, sorted(loaded)
