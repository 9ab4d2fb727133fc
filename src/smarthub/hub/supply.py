"""The ``supply.*`` management commands: the GDSC (for a supplier) switching or limiting the
breaker of a meter the hub controls (:class:`smarthub.han.dlms_control.SupplyControl`). Prepaid
meters go through :func:`smarthub.hub.prepayment_bridge.supply_commands` instead."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from smarthub.han.dlms_control import SupplyControl
from smarthub.wan.contract.bodies import SupplyDisconnect, SupplyLimit, SupplyReconnect, SupplyState


def supply_commands(
    supplies: Mapping[str, SupplyControl],
) -> dict[str, Callable[[Any], Awaitable[dict[str, Any]]]]:
    """Handlers by command type for the meters in ``supplies`` (meter id -> its control)."""

    def pick(meter: str) -> SupplyControl:
        if meter not in supplies:
            raise ValueError(f"{meter!r} has no breaker this hub controls")
        return supplies[meter]

    async def disconnect_(body: SupplyDisconnect) -> dict[str, Any]:
        return await pick(body.meter).disconnect()

    async def reconnect_(body: SupplyReconnect) -> dict[str, Any]:
        return await pick(body.meter).reconnect()

    async def state_(body: SupplyState) -> dict[str, Any]:
        return await pick(body.meter).state()

    async def limit_(body: SupplyLimit) -> dict[str, Any]:
        return await pick(body.meter).limit(body.watts)

    return {
        "supply.disconnect": disconnect_,
        "supply.reconnect": reconnect_,
        "supply.state": state_,
        "supply.limit": limit_,
    }


__all__ = ["supply_commands"]
