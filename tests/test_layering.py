"""The bounded contexts depend on each other one way only (DESIGN.md §2).

``model ← meters ← han ← hub → wan ← gdsc``, with ``clock`` and ``security`` usable by all,
``assembly`` (the hub's composition root) above hub and wan, and ``sim`` / ``cli`` on top. A hub must never import the GDSC (it would ship the centre's
code into every home), and the GDSC reaches hubs only through the WAN layer.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "smarthub"
SHARED = {"clock", "security"}
ALLOWED: dict[str, set[str]] = {
    "model": set(),
    "security": set(),
    "clock": set(),
    "meters": {"model"},
    "han": {"model", "meters"},
    "hub": {"model", "meters", "han"},
    "wan": {"model", "hub"},
    "gdsc": {"model", "wan"},
    # The hub's composition root wires the hub core to its WAN server; only sim and cli use it.
    "assembly": {"model", "meters", "han", "hub", "wan"},
}


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        found |= {n.split(".")[1] for n in names if n.startswith("smarthub.") and n.count(".") >= 1}
    return found


@pytest.mark.parametrize("context", sorted(ALLOWED))
def test_context_imports_only_what_it_may(context: str) -> None:
    files = list((SRC / context).rglob("*.py")) if (SRC / context).is_dir() else [SRC / f"{context}.py"]
    assert files, context
    bad = {
        f"{f.relative_to(SRC)} imports smarthub.{dep}"
        for f in files
        for dep in _imports(f)
        if dep != context and dep not in ALLOWED[context] | SHARED
    }
    assert not bad, sorted(bad)
