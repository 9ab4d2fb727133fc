"""Bodies of the supplier's commands on a supply: switching and limiting it, prepayment top-ups
and tariff versions."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Self

from smarthub.wan.contract.bodies.base import CommandBody, Fields, OnMeter

if TYPE_CHECKING:
    from smarthub.model.tariff import Tariff

TARIFF_FUELS = ("electricity", "gas")


@dataclass(frozen=True, slots=True)
class SupplyDisconnect(OnMeter):
    TYPE: ClassVar[str] = "supply.disconnect"


@dataclass(frozen=True, slots=True)
class SupplyReconnect(OnMeter):
    TYPE: ClassVar[str] = "supply.reconnect"


@dataclass(frozen=True, slots=True)
class SupplyState(OnMeter):
    TYPE: ClassVar[str] = "supply.state"


@dataclass(frozen=True, slots=True)
class SupplyLimit(CommandBody):
    """The meter's power limit in watts (0: none)."""

    TYPE: ClassVar[str] = "supply.limit"
    meter: str
    watts: int

    @classmethod
    def parse(cls, body: Mapping[str, object]) -> Self:
        f = Fields(cls.TYPE, body)
        return cls(f.text("meter", nonempty=True), f.integer("watts", minimum=0))

    def to_json(self) -> dict[str, Any]:
        return {"meter": self.meter, "watts": self.watts}


@dataclass(frozen=True, slots=True)
class PrepaymentTopup(CommandBody):
    """A signed single-use voucher (``smarthub.model.prepayment.voucher_envelope``): the canonical
    voucher, its signature (base64) and the signer's certificate (PEM). The hub verifies them
    and answers a voucher it will never credit with ``credited: false`` and the reason."""

    TYPE: ClassVar[str] = "prepayment.topup"
    voucher: str
    signature: str
    signer: str

    @classmethod
    def parse(cls, body: Mapping[str, object]) -> Self:
        f = Fields(cls.TYPE, body)
        return cls(f.text("voucher"), f.text("signature"), f.text("signer"))

    def to_json(self) -> dict[str, Any]:
        return {"voucher": self.voucher, "signature": self.signature, "signer": self.signer}


@dataclass(frozen=True, slots=True)
class TariffUpdate(CommandBody):
    """A new version of a supply's tariff, taking effect at ``effective``: local (Europe/London)
    midnight of the tariff's ``effective_from`` (on the wire an ISO 8601 time with that offset,
    or the local date alone); ``version`` on the wire repeats the tariff's own."""

    TYPE: ClassVar[str] = "tariff.update"
    fuel: str
    tariff: Tariff
    effective: datetime  # UTC
    # ``effective`` as the sender wrote it (an equal instant, its own offset), sent on as it came
    as_sent: str = field(default="", compare=False, repr=False)

    @classmethod
    def parse(cls, body: Mapping[str, object]) -> Self:
        # Imported here: a hub without the consumer side never parses a tariff (issue 17).
        from smarthub.model.tariff import InvalidTariff, tariff_from_json
        from smarthub.model.tariff_calc import day_start

        f = Fields(cls.TYPE, body)
        fuel = f.choice("fuel", TARIFF_FUELS)
        raw = f.raw("tariff")
        try:
            tariff = tariff_from_json(raw if isinstance(raw, str | bytes) else json.dumps(raw))
        except InvalidTariff as err:
            raise f.bad("tariff", f"is not a tariff: {err}") from None
        except (TypeError, ValueError) as err:  # not JSON-serialisable, not JSON
            raise f.bad("tariff", f"is not a tariff: {err}") from None
        version = f.integer("version")
        if version != tariff.version:
            raise f.bad("version", f"{version} does not match the tariff's own version {tariff.version}")
        text = f.text("effective")
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise f.bad("effective", f"is not an ISO 8601 time: {text!r:.80}") from None
        midnight = day_start(tariff.effective_from)
        if parsed.tzinfo is None:
            if parsed.time() != datetime.min.time() or len(text) != 10:
                raise f.bad("effective", f"{text!r:.80} needs a UTC offset (or give the local date alone)")
            parsed = day_start(parsed.date())
        if parsed != midnight:
            raise f.bad(
                "effective",
                f"{text!r:.80} is not local midnight of the tariff's effective_from {tariff.effective_from}"
                f" ({midnight.isoformat()}): tariff versions take effect at local midnight",
            )
        return cls(fuel, tariff, midnight, text)

    def to_json(self) -> dict[str, Any]:
        return {
            "tariff": self.tariff.to_json_dict(),
            "effective": self.as_sent or self.effective.isoformat(),
            "version": self.tariff.version,
            "fuel": self.fuel,
        }


__all__ = [
    "TARIFF_FUELS",
    "PrepaymentTopup",
    "SupplyDisconnect",
    "SupplyLimit",
    "SupplyReconnect",
    "SupplyState",
    "TariffUpdate",
]
