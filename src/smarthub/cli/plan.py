"""``smarthub plan-han``: which HAN media reach which meters of a home layout, with the loss."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from smarthub.cli.app import app, fail, first_line


@app.command("plan-han")
def plan_han(
    layout: Annotated[
        Path, typer.Argument(help="home layout (TOML): [[meters]] id, distance_m, walls, floors")
    ],
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object instead of the table")] = False,
) -> None:
    """Plan a home's HAN: every medium of the source document's Table 1 against the meters'
    placements (distance, walls, floors, wiring), best first."""
    from smarthub.han.planning import LayoutError, load_layout, plan

    try:
        name, meters = load_layout(layout.read_text())
    except (OSError, LayoutError) as err:
        raise fail("smarthub plan-han", first_line(err)) from None
    plans = plan(meters)
    if as_json:
        print(json.dumps({"home": name, "meters": len(meters), "media": [p.as_dict() for p in plans]}))
        return
    table = Table(title=f"HAN plan for {name}: {len(meters)} meters")
    table.add_column("medium")
    table.add_column("reaches", justify="right")
    table.add_column("misses")
    table.add_column("worst loss", justify="right")
    table.add_column("RX power", justify="right")
    for p in plans:
        table.add_row(
            p.name,
            f"{len(p.reaches)}/{len(meters)}" + ("" if p.nodes_ok else " (too many nodes)"),
            ", ".join(p.misses) or "-",
            f"{100 * p.worst_loss:.1f} %",
            f"{p.rx_on_power_w:g} W",
        )
    Console().print(table)
