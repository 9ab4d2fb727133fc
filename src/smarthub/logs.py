"""Logging set-up for the long-running commands: plain text (the default) or JSON lines.

``--log-format json`` writes one JSON object per line: ``time`` (UTC, ISO 8601 with
milliseconds), ``level``, ``logger``, ``message``, the process's own fields (``hub_id`` for
``smarthub hub``, ``service`` for the GDSC's processes) and any of :data:`CONTEXT_FIELDS` a
call passes with ``extra=`` (``hub_id``, ``party``, ...), plus ``exception`` with the traceback.
Nothing else of the record is written: the message is the only free text, and the
no-secrets tests render every record through this formatter as well
(``tests/security/test_no_secrets_logged.py``).

The standard library's :class:`logging.Formatter` suffices; ``python-json-logger`` would add a
dependency for the same twenty lines.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

# Record attributes a log call may set with ``extra=`` and that the JSON line carries.
CONTEXT_FIELDS = ("hub_id", "party", "meter", "window", "collector", "job")


class LogFormat(StrEnum):
    text = "text"
    json = "json"


class JsonFormatter(logging.Formatter):
    """One JSON object per record (see the module docstring)."""

    def __init__(self, static: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.static = dict(static or {})

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **self.static,
        }
        for name in CONTEXT_FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                out[name] = value if isinstance(value, str | int | float | bool) else str(value)
        if record.exc_info and record.exc_info[1] is not None:
            out["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return json.dumps(out, ensure_ascii=False, default=str)


def setup_logging(level: int, fmt: LogFormat | str = LogFormat.text, **static: Any) -> None:
    """The root logger at ``level`` onto standard error, as text or as JSON lines carrying
    ``static`` fields (e.g. ``hub_id=...``); replaces handlers an earlier call installed."""
    handler = logging.StreamHandler(sys.stderr)
    if LogFormat(fmt) is LogFormat.json:
        handler.setFormatter(JsonFormatter({k: v for k, v in static.items() if v is not None}))
    else:
        handler.setFormatter(logging.Formatter("%(levelname)s:%(name)s:%(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_smarthub", False):
            root.removeHandler(old)
    handler._smarthub = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    if LogFormat(fmt) is LogFormat.json:
        # uvicorn and aiohttp install their own text handlers on their loggers: route them to ours
        for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
            lg = logging.getLogger(name)
            lg.handlers = []
            lg.propagate = True


__all__ = ["CONTEXT_FIELDS", "JsonFormatter", "LogFormat", "setup_logging"]
