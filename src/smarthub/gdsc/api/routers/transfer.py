"""Transfer policies over the API (the GDSC operator's; :mod:`smarthub.gdsc.transfer.policies`):

* ``POST /v1/transfer-policies`` — set the policy of one scope (a hub, a premises class, a
  tariff group, a supplier, or the default): one row, whatever the number of hubs it covers. The
  answer says how many active hubs it is now in force for; the pull plan honours it from the
  next window it plans, and each hub gets its ``transfer.policy`` command riding on its next pull;
* ``GET /v1/transfer-policies`` — the policies, most specific scope first;
* ``PUT /v1/premises/{premises_id}/transfer-group`` — a premises' class and tariff group.
"""

from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field

from smarthub.gdsc.api.deps import Caller, Id, Services, require_premises
from smarthub.gdsc.api.schemas import ERRORS
from smarthub.gdsc.governance.access import Action
from smarthub.gdsc.transfer.policies import DEFAULT_KEY, Policy, ScopedPolicy, TransferPolicies

router = APIRouter()
GROUP_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    404: {"model": ERRORS[404]["model"], "description": "no such premises"},
}

Scope = Literal["hub", "premises-class", "tariff", "supplier", "default"]
Frequency = Literal["half-hourly", "daily", "monthly"]
Aggregation = Literal["half-hourly", "daily", "monthly", "tariff-registers"]
KEY = r"^[A-Za-z0-9._:-]+$"


class PolicyIn(BaseModel):
    scope: Scope
    key: str = Field(
        min_length=1,
        max_length=64,
        pattern=KEY,
        description="the hub id, premises class, tariff group or supplier id (ignored for the default)",
    )
    frequency: Frequency
    window_start: int = Field(
        default=0, ge=0, le=1410, multiple_of=30, description="minutes past UTC midnight"
    )
    window_length: int = Field(default=1440, ge=30, le=1440, multiple_of=30, description="minutes")
    aggregation: Aggregation = "half-hourly"
    priority: int = Field(default=5, ge=0, le=9, description="0 is pulled first in a window")

    @property
    def scope_key(self) -> str:
        return DEFAULT_KEY if self.scope == "default" else self.key


class PolicyOut(BaseModel):
    scope: Scope
    key: str
    frequency: Frequency
    window_start: int
    window_length: int
    aggregation: Aggregation
    priority: int
    version: int = Field(description="microseconds since the epoch of the change")
    set_by: str
    set_at: datetime


class PolicySet(PolicyOut):
    hubs: int = Field(description="active hubs the policy is now in force for")


class GroupIn(BaseModel):
    premises_class: str | None = Field(default=None, min_length=1, max_length=64, pattern=KEY)
    tariff: str | None = Field(default=None, min_length=1, max_length=64, pattern=KEY)


class GroupOut(GroupIn):
    premises_id: str


def _out(sp: ScopedPolicy) -> PolicyOut:
    p = sp.policy
    return PolicyOut(
        scope=sp.scope,  # type: ignore[arg-type]
        key=sp.key,
        frequency=p.frequency,  # type: ignore[arg-type]
        window_start=p.window_start,
        window_length=p.window_length,
        aggregation=p.aggregation,  # type: ignore[arg-type]
        priority=p.priority,
        version=sp.version,
        set_by=sp.set_by,
        set_at=sp.set_at,
    )


@router.post("/v1/transfer-policies", response_model=PolicySet, responses=ERRORS)
def set_transfer_policy(party: Caller, api: Services, body: PolicyIn) -> PolicySet:
    """Set the transfer policy of one scope: one statement, however many hubs it covers."""
    api.guard.require(party, Action.TRANSFER_POLICY, detail={"op": "set", **body.model_dump(mode="json")})
    now = api.guard.clock.now()
    policies = TransferPolicies(api.engine)
    policy = Policy(body.frequency, body.window_start, body.window_length, body.aggregation, body.priority)
    sp = policies.set(body.scope, body.scope_key, policy, party, now)
    return PolicySet(**_out(sp).model_dump(), hubs=policies.covered(sp.scope, sp.key, now))


@router.get("/v1/transfer-policies", response_model=list[PolicyOut], responses=ERRORS)
def list_transfer_policies(party: Caller, api: Services) -> list[PolicyOut]:
    """Every transfer policy, most specific scope first (hub, premises class, tariff, supplier, default)."""
    api.guard.require(party, Action.TRANSFER_POLICY, detail={"op": "list"})
    return [_out(sp) for sp in TransferPolicies(api.engine).policies()]


@router.put("/v1/premises/{premises_id}/transfer-group", response_model=GroupOut, responses=GROUP_ERRORS)
def set_transfer_group(party: Caller, api: Services, premises_id: Id, body: GroupIn) -> GroupOut:
    """Put a premises in a premises class and a tariff group (null: in none)."""
    api.guard.require(
        party,
        Action.TRANSFER_POLICY,
        premises_id=premises_id,
        detail={"op": "group", **body.model_dump(mode="json")},
    )
    require_premises(api, premises_id)
    TransferPolicies(api.engine).assign(premises_id, body.premises_class, body.tariff)
    return GroupOut(premises_id=premises_id, premises_class=body.premises_class, tariff=body.tariff)
