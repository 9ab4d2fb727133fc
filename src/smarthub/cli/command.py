"""``smarthub command``: one signed management command, delivered to one hub now."""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from smarthub.cli.app import app


@app.command()
def command(
    state: Annotated[Path, typer.Option(help="GDSC state directory (ca/, gdsc/ with operator.pem)")],
    hub: Annotated[str, typer.Option(help="hub id")],
    type: Annotated[str, typer.Option(help="command type, e.g. meter.key, supply.state")],
    body: Annotated[str, typer.Option(help="command body as JSON")] = "{}",
    mapping: Annotated[Path | None, typer.Option(help="mapping.update: the new table (JSON or YAML)")] = None,
    db: Annotated[str | None, typer.Option(help="GDSC database URL")] = None,
) -> None:
    """Sign a management command and deliver it to one hub; prints the hub's verdict as JSON."""
    from smarthub.gdsc.service import send_command
    from smarthub.meters.mapping import MappingError, MappingTable
    from smarthub.wan.contract.bodies import BODIES, parse_body

    try:
        payload = json.loads(body)
        if mapping is not None:
            payload = {"table": MappingTable.load(mapping).to_dict()}  # validated before it is sent
        # Checked as the hub will check it: a malformed body is named here, not sent.
        typed = parse_body(type, payload) if type in BODIES else payload
        verdict = asyncio.run(send_command(state, hub, type, typed, datetime.now(UTC), db))
    except (ValueError, MappingError, LookupError, OSError) as err:
        print(f"smarthub command: {err}", file=sys.stderr)
        raise typer.Exit(2) from None
    print(json.dumps(verdict))
    if verdict.get("status") != "applied":
        raise typer.Exit(1)
