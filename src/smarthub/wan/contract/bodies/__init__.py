"""One typed body per management command type, shared by the GDSC (which builds them) and the
hub (which parses them before it takes the command's counter, so a malformed body is refused,
named, and changes nothing). See :mod:`smarthub.wan.contract.bodies.base`."""

from __future__ import annotations

from collections.abc import Mapping

from smarthub.wan.contract.bodies.base import CommandBody, Fields
from smarthub.wan.contract.bodies.devices import (
    DiagnosticPing,
    FirmwareUpdate,
    HanScan,
    LinkTest,
    MappingUpdate,
    MeterAdd,
    MeterKey,
    MeterRemove,
    MeterReplace,
    NetworkConfigure,
    PkiCertificate,
    PkiCrl,
)
from smarthub.wan.contract.bodies.home import (
    ApplianceRun,
    DrlcEvent,
    DrlcResponses,
    FuelFigures,
    IhdAppliance,
    IhdBuilding,
    IhdComparison,
    IhdMessage,
    MessageDisplay,
)
from smarthub.wan.contract.bodies.privacy import ConsentScope, ConsentSet, Granularity, SupplierKeys
from smarthub.wan.contract.bodies.recovery import (
    HistoryRestore,
    PrepaymentRestore,
    RecoveryComplete,
    RecoverySnapshot,
)
from smarthub.wan.contract.bodies.services import IhdServices
from smarthub.wan.contract.bodies.supply import (
    PrepaymentTopup,
    SupplyDisconnect,
    SupplyLimit,
    SupplyReconnect,
    SupplyState,
    TariffUpdate,
)
from smarthub.wan.contract.bodies.transfer import TransferPolicy
from smarthub.wan.contract.commands import COMMAND_TYPES, MalformedCommand

BODIES: dict[str, type[CommandBody]] = {
    b.TYPE: b
    for b in (
        MappingUpdate,
        MeterKey,
        MeterAdd,
        MeterRemove,
        MeterReplace,
        ConsentSet,
        SupplierKeys,
        NetworkConfigure,
        SupplyDisconnect,
        SupplyReconnect,
        SupplyState,
        SupplyLimit,
        PrepaymentTopup,
        TariffUpdate,
        IhdMessage,
        IhdComparison,
        IhdBuilding,
        IhdAppliance,
        IhdServices,
        MessageDisplay,
        FirmwareUpdate,
        DiagnosticPing,
        HanScan,
        LinkTest,
        ApplianceRun,
        DrlcEvent,
        DrlcResponses,
        PkiCrl,
        PkiCertificate,
        TransferPolicy,
        RecoverySnapshot,
        HistoryRestore,
        PrepaymentRestore,
        RecoveryComplete,
    )
}
if set(BODIES) != set(COMMAND_TYPES):  # a new command type needs its body here (and a test)
    raise RuntimeError(
        f"command types without a body, or bodies without a type: {set(BODIES) ^ set(COMMAND_TYPES)}"
    )


def parse_body(command_type: str, body: Mapping[str, object]) -> CommandBody:
    """The typed body of a ``command_type`` command; :class:`MalformedCommand` naming the field."""
    cls = BODIES.get(command_type)
    if cls is None:
        raise MalformedCommand(f"unknown command type {command_type!r}")
    return cls.parse(body)


__all__ = [
    "BODIES",
    "ApplianceRun",
    "CommandBody",
    "ConsentScope",
    "ConsentSet",
    "DiagnosticPing",
    "DrlcEvent",
    "DrlcResponses",
    "Fields",
    "FirmwareUpdate",
    "FuelFigures",
    "Granularity",
    "HanScan",
    "HistoryRestore",
    "IhdAppliance",
    "IhdBuilding",
    "IhdComparison",
    "IhdMessage",
    "IhdServices",
    "LinkTest",
    "MappingUpdate",
    "MessageDisplay",
    "MeterAdd",
    "MeterKey",
    "MeterRemove",
    "MeterReplace",
    "NetworkConfigure",
    "PkiCertificate",
    "PkiCrl",
    "PrepaymentRestore",
    "PrepaymentTopup",
    "RecoveryComplete",
    "RecoverySnapshot",
    "SupplierKeys",
    "SupplyDisconnect",
    "SupplyLimit",
    "SupplyReconnect",
    "SupplyState",
    "TariffUpdate",
    "TransferPolicy",
    "parse_body",
]
