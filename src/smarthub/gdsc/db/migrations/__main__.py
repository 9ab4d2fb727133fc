"""``python -m smarthub.gdsc.db.migrations revision "message"``: autogenerate the next revision.

Runs against a throw-away SQLite database migrated to the current head, so the revision holds
exactly the difference between the migrations and ``smarthub.gdsc.db.database.metadata``.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine

from smarthub.gdsc.db.database import alembic_config


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] != "revision":
        print('usage: python -m smarthub.gdsc.db.migrations revision "message"', file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        engine = create_engine(f"sqlite:///{Path(tmp) / 'head.sqlite'}")
        with engine.begin() as conn:
            cfg = alembic_config(conn)
            command.upgrade(cfg, "head")
            head = ScriptDirectory.from_config(cfg).get_current_head()
            rev_id = f"{int(head or '0') + 1:04d}"
            command.revision(cfg, message=argv[1], autogenerate=True, rev_id=rev_id)
        engine.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
