"""The tariff advisor's pricing (re-implemented from the published tariff JSON, importing nothing of
the platform) agrees to the penny with the platform's own bill (``smarthub.model.tariff_calc``,
which the hub's IHD and the GDSC's bills use) on the same tariffs and data: a month across the
autumn clock change with irregular consumption, for every pricing structure."""

from __future__ import annotations

import json
import random
from datetime import date, timedelta
from decimal import Decimal

import pytest

from services.test_tariff_advisor import tariffs
from services.world import midnight
from smarthub.model.tariff import TariffSchedule, tariff_from_json
from smarthub.model.tariff_calc import IntervalConsumption, settle, totals_for
from smarthub.model.tariff_carbon import FixedIntensity
from smarthub_services.tariff_pricing import BadTariff, HalfHour, catalogue

FIRST, END = date(2025, 10, 10), date(2025, 11, 12)  # 26 October: the hour repeats


def consumption() -> list[HalfHour]:
    rng = random.Random(25)
    t, stop, out = midnight(FIRST), midnight(END), []
    while t < stop:
        out.append(HalfHour(t, Decimal(rng.randrange(0, 4000)).scaleb(-3)))  # 0..3.999 kWh, Wh resolution
        t += timedelta(minutes=30)
    return out


@pytest.mark.parametrize(
    "doc", [d for d in tariffs() if d["tariff_id"] != "DYN-NEW"], ids=lambda d: d["tariff_id"]
)
def test_pricing_agrees_with_the_platform_bill(doc: dict[str, object]) -> None:
    data = consumption()
    mine = catalogue(json.dumps([doc]))[0].price(data, FIRST, END)
    tariff = tariff_from_json(json.dumps({**doc, "effective_from": "2025-01-01"}))
    intervals = [IntervalConsumption(h.start, timedelta(minutes=30), h.kwh) for h in data]
    schedule = TariffSchedule([tariff])
    bill = settle(schedule, totals_for(schedule, FixedIntensity(g_per_kwh=Decimal(0)), intervals), FIRST, END)
    assert mine.total == bill.total, (mine, bill)
    assert {r: Decimal(p).scaleb(-2) for r, (_, p) in mine.energy.items()} == {
        line.description.removeprefix("Energy, "): line.amount for line in bill.energy
    }


@pytest.mark.parametrize(
    ("doc", "says"),
    [
        ("[]", "non-empty JSON array"),
        ("{", "not JSON"),
        (
            '[{"tariff_id": "X", "standing_charge_p_per_day": 45, "pricing": {}}]',
            "X.standing_charge_p_per_day",
        ),
        (
            '[{"tariff_id": "X", "standing_charge_p_per_day": "1", "pricing": {"type": "gold"}}]',
            "X.pricing.type",
        ),
    ],
)
def test_a_catalogue_it_cannot_read_is_refused_with_the_field(doc: str, says: str) -> None:
    with pytest.raises(BadTariff, match=says.replace(".", r"\.")):
        catalogue(doc)
