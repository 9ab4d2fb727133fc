"""``--log-format json``: one JSON object per line with time, level, logger, message, the
process's fields (hub id) and the context a call passes (party), tracebacks kept."""

from __future__ import annotations

import json
import logging
import sys

from smarthub.logs import JsonFormatter


def test_json_formatter_writes_one_object_with_the_agreed_fields() -> None:
    fmt = JsonFormatter({"service": "hub", "hub_id": "HUB7"})
    record = logging.LogRecord(
        "smarthub.hub.x", logging.WARNING, __file__, 1, "meter %s silent", ("M1",), None
    )
    record.party = "ACME"
    line = fmt.format(record)
    assert "\n" not in line
    obj = json.loads(line)
    assert (
        obj["level"] == "warning"
        and obj["logger"] == "smarthub.hub.x"
        and obj["message"] == "meter M1 silent"
    )
    assert (obj["hub_id"], obj["party"], obj["service"]) == ("HUB7", "ACME", "hub")
    assert obj["time"].endswith("+00:00")
    try:
        raise ValueError("bad\nthing")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    obj = json.loads(fmt.format(record))
    assert "ValueError: bad" in obj["exception"] and "\n" not in fmt.format(record)
