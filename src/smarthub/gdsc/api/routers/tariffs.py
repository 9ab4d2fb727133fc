"""``/v1/tariffs``: the catalogue of tariffs the GDSC distributes (the latest version of each),
as the hubs get them (:mod:`smarthub.gdsc.commands.tariff_catalogue`)."""

from typing import Annotated, Literal

from fastapi import APIRouter, Query

from smarthub.gdsc.api.deps import Caller, Services
from smarthub.gdsc.api.schemas import ERRORS, CatalogueTariff
from smarthub.gdsc.commands.tariff_catalogue import TariffCatalogue
from smarthub.gdsc.governance.access import Action

router = APIRouter()


@router.get("/v1/tariffs", response_model=list[CatalogueTariff], responses=ERRORS)
def list_tariffs(
    party: Caller,
    api: Services,
    fuel: Annotated[Literal["electricity", "gas"] | None, Query(description="only this fuel's")] = None,
) -> list[CatalogueTariff]:
    """The latest version of every tariff the GDSC has sent to a hub, by fuel and tariff id: what a
    tariff comparison prices a household's consumption under (no premises, hub or meter in it)."""
    api.guard.require(party, Action.TARIFF_CATALOGUE, detail={"fuel": fuel})
    return [
        CatalogueTariff(tariff=e.tariff, fuel=e.fuel, supplier_id=e.supplier_id, first_sent=e.first_sent)  # type: ignore[arg-type]
        for e in TariffCatalogue(api.engine).latest(fuel)
    ]
