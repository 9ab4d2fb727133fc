"""Management commands for the IHD, sent by the GDSC through the pull channel.

* ``ihd.message``: a supplier's text message (2030.5 Messaging, TextMessage: ``sender``,
  ``id``, ``text``, ``priority`` 0-3, optional ``expires`` ISO time), shown until acknowledged;
* ``ihd.comparison``: the aggregate of similar homes (``start``, ``end`` local dates, ``homes``,
  ``description``, and per fuel ``average_kwh`` / ``efficient_kwh``);
* ``ihd.services``: the household's data services as the GDSC's records show them (which hold a
  consent, what each read and when; :mod:`smarthub.wan.contract.bodies.services`), shown on the
  "Data services" page;
* ``ihd.building``: the flat's building's average use per m² of a month and the billing's prices
  (issue 21: the tenant's monthly heating and water information, :mod:`.submeter_info`);
* ``ihd.appliance``: name the appliance a sub-meter or smart plug measures (``meter``, ``name``);
* ``message.display``: a supplier's text with a display window (see :mod:`smarthub.hub.messages`);
* ``tariff.update``: a new version of a supply's tariff (see :mod:`smarthub.hub.tariffs`), when a
  `TariffStore` is given.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from smarthub.clock import Clock
from smarthub.hub.consumption import HomeConsumption
from smarthub.hub.ihd.store import Comparison, IhdStore
from smarthub.hub.messages import display_command
from smarthub.hub.tariffs import TariffStore, TariffUpdateRefused
from smarthub.wan.contract.bodies import (
    IhdAppliance,
    IhdBuilding,
    IhdComparison,
    IhdMessage,
    IhdServices,
    TariffUpdate,
)


def ihd_commands(
    store: IhdStore, consumption: HomeConsumption, clock: Clock, tariffs: TariffStore | None = None
) -> dict[str, Callable[[Any], dict[str, Any]]]:
    def message(body: IhdMessage) -> dict[str, Any]:
        m, new = store.add_message(body, clock.now())
        return {"sender": m.sender, "id": m.message_id, "new": new}

    def comparison(body: IhdComparison) -> dict[str, Any]:
        c = Comparison.from_command(body)
        store.set_comparison(c)
        return {"start": c.start.isoformat(), "end": c.end.isoformat(), "fuels": sorted(c.fuels)}

    def building(body: IhdBuilding) -> dict[str, Any]:
        kept = store.set_building(body)
        return {"month": body.month.isoformat(), "flats": body.flats, "kept": kept}

    def services(body: IhdServices) -> dict[str, Any]:
        kept = store.set_services(body)
        return {"as_of": body.as_of.isoformat(), "services": len(body.services), "kept": kept}

    def appliance(body: IhdAppliance) -> dict[str, Any]:
        meter, name = body.meter, body.name
        consumption.set_appliance(meter, name)
        store.set_appliance(meter, name)
        return {"meter": meter, "name": name}

    def tariff_update(update: TariffUpdate) -> dict[str, Any]:
        supply = consumption.supplies.get(update.fuel)
        if supply is None:
            raise TariffUpdateRefused(f"tariff.update: this home has no {update.fuel} supply")
        assert tariffs is not None
        tariffs.apply(supply.accumulator, update, clock.now())
        repriced = consumption.reprice(update.fuel, update.effective)
        t = update.tariff
        return {
            "fuel": update.fuel,
            "tariff_id": t.tariff_id,
            "version": t.version,
            "effective": update.effective.isoformat(),
            "repriced": repriced,
        }

    handlers: dict[str, Callable[[Any], dict[str, Any]]] = {
        "ihd.message": message,
        "ihd.comparison": comparison,
        "ihd.building": building,
        "ihd.appliance": appliance,
        "ihd.services": services,
        "message.display": display_command(store, clock),
    }
    if tariffs is not None:
        handlers["tariff.update"] = tariff_update
    return handlers
