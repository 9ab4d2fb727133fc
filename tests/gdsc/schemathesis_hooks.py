"""Schemathesis hooks for the data services API run (tests/gdsc/test_api_schemathesis.py), loaded by
the ``schemathesis run`` process through ``SCHEMATHESIS_HOOKS``.

* Every request carries the bearer token of a party drawn (seeded) from ``SMARTHUB_API_TOKENS``
  (party id -> token), so one run exercises every role; Schemathesis' ``ignored_auth`` check
  still removes and spoils it to see that the API refuses.
* Half the cases whose path parameters (or body) were generated *valid* are pointed at the
  world's premises P1 and its meters, so they get past "no such meter" to the policy and the
  handlers. Components generated invalid are never touched: a negative case stays negative.
"""

from __future__ import annotations

import json
import os
import random
from typing import Any

import schemathesis
from schemathesis.core.parameters import ParameterLocation
from schemathesis.generation.modes import GenerationMode

TOKENS: dict[str, str] = json.loads(os.environ.get("SMARTHUB_API_TOKENS", "{}"))
DRAW = random.Random(int(os.environ.get("SMARTHUB_API_SEED", "0")))
PARTIES = sorted(TOKENS)


@schemathesis.auth(refresh_interval=None, retry_on=[])
class EveryRole:
    def get(self, case: Any, ctx: Any) -> str:
        return TOKENS[DRAW.choice(PARTIES)]

    def set(self, case: Any, data: str, ctx: Any) -> None:
        case.headers = case.headers or {}
        case.headers["Authorization"] = f"Bearer {data}"


def _valid(case: Any, where: ParameterLocation) -> bool:
    meta = case.meta
    if meta is None:
        return False
    info = meta.components.get(where)
    return info is not None and info.mode is GenerationMode.POSITIVE


@schemathesis.hook
def map_case(context: Any, case: Any) -> Any:
    path, body = case.path_parameters or {}, case.body
    if "premises_id" in path and _valid(case, ParameterLocation.PATH) and DRAW.random() < 0.5:
        path["premises_id"] = "P1"
    if (
        isinstance(body, dict)
        and "meter_id" in body
        and _valid(case, ParameterLocation.BODY)
        and DRAW.random() < 0.5
    ):
        body["meter_id"] = DRAW.choice(["E1", "G1"])
    return case
