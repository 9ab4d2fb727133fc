"""Tariff distribution: a new tariff version queued for many hubs through the pull plan.

Tariffs are versioned and distributed by the GDSC through the pull channel (issue 7): each hub
gets the signed management command ``tariff.update`` with body ``{"tariff": <Tariff JSON as
smarthub.model.tariff dumps it>, "effective": <ISO 8601>, "version": <int>, "fuel":
"electricity" | "gas"}``; the hub checks and applies it (`smarthub.hub.tariffs`). ``effective``
is local (Europe/London) midnight of the version's ``effective_from``: tariff versions take
effect at local midnight, and the hub refuses any other instant.

Each command is signed with its own per-hub counter and queued in the shared plan at
on-demand priority, so every running collector delivers it at its next tick, ahead of bulk pulls.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from smarthub.gdsc.commands.signer import CommandSigner
from smarthub.gdsc.commands.tariff_catalogue import TariffCatalogue
from smarthub.gdsc.pull.plan import PullPlan
from smarthub.gdsc.store import Store
from smarthub.model.tariff import Tariff
from smarthub.model.tariff_calc import day_start
from smarthub.wan.contract.bodies import TariffUpdate

FUELS = ("electricity", "gas")


@dataclass(frozen=True, slots=True)
class Queued:
    hub_id: str
    premises_id: str
    job_id: int


def tariff_update_body(tariff: Tariff, fuel: str, effective: datetime | None = None) -> dict[str, Any]:
    """The ``tariff.update`` body's JSON (:func:`tariff_update`)."""
    return tariff_update(tariff, fuel, effective).to_json()


def tariff_update(tariff: Tariff, fuel: str, effective: datetime | None = None) -> TariffUpdate:
    """The ``tariff.update`` body for ``tariff``; ``effective`` defaults to (and must be) local
    midnight of its ``effective_from``."""
    if fuel not in FUELS:
        raise ValueError(f"fuel must be one of {', '.join(FUELS)}, not {fuel!r}")
    midnight = day_start(tariff.effective_from)
    if effective is None:
        effective = midnight
    if effective.tzinfo is None:
        raise ValueError("effective must be timezone-aware")
    if effective != midnight:
        raise ValueError(
            f"effective {effective.isoformat()} is not local midnight of the tariff's effective_from "
            f"{tariff.effective_from} ({midnight.isoformat()})"
        )
    return TariffUpdate(fuel, tariff, midnight, effective.isoformat())


def distribute_tariff(
    store: Store,
    plan: PullPlan,
    signer: CommandSigner,
    tariff: Tariff,
    fuel: str,
    now: datetime,
    *,
    hubs: Iterable[str] = (),
    premises: Iterable[str] = (),
    effective: datetime | None = None,
) -> list[Queued]:
    """Sign and queue ``tariff.update`` for every active hub named in ``hubs`` or serving one of
    ``premises``; what was queued, in hub order. Raises `LookupError` naming any hub or premises
    not active at this GDSC (nothing is queued then)."""
    body = tariff_update(tariff, fuel, effective)
    want_hubs, want_premises = set(hubs), set(premises)
    if not want_hubs and not want_premises:
        raise ValueError("name at least one hub or premises to distribute the tariff to")
    active = store.active_hubs()
    targets = sorted(
        (h for h in active if h.hub_id in want_hubs or h.premises_id in want_premises), key=lambda h: h.hub_id
    )
    unknown = sorted(want_hubs - {h.hub_id for h in active}) + sorted(
        want_premises - {h.premises_id for h in active}
    )
    if unknown:
        raise LookupError(f"not active at this GDSC: {', '.join(unknown)}")
    out = []
    for h in targets:
        signed = signer.command(h.hub_id, "tariff.update", body, now)
        out.append(Queued(h.hub_id, h.premises_id, plan.enqueue_command(signed, now)))
    if out:  # the catalogue of tariffs distributed (GET /v1/tariffs): sent by the GDSC itself
        TariffCatalogue(store.engine).record(tariff, fuel, None, now)
    return out
