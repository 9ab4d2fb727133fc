"""DLMS/COSEM: HDLC and wrapper framing, A-XDR, APDUs, security suite 0, COSEM interface
classes and a sans-I/O client (see each module's docstring for the standard it follows and why
we wrote it rather than use the reference library)."""

from smarthub.meters.dlms.client import (
    Connected,
    Disconnected,
    DlmsClient,
    GetResult,
    PushReceiver,
    Released,
    drive,
    poll_meter,
)
from smarthub.meters.dlms.errors import (
    AssociationRejected,
    DataAccessError,
    DecryptionError,
    DlmsSessionError,
    DlmsStateError,
    ReplayError,
)
from smarthub.meters.dlms.security import InvocationCounterGuard, SecurityKeys
from smarthub.meters.dlms.state import ClientState

__all__ = [
    "AssociationRejected",
    "ClientState",
    "Connected",
    "DataAccessError",
    "DecryptionError",
    "Disconnected",
    "DlmsClient",
    "DlmsSessionError",
    "DlmsStateError",
    "GetResult",
    "InvocationCounterGuard",
    "PushReceiver",
    "Released",
    "ReplayError",
    "SecurityKeys",
    "drive",
    "poll_meter",
]
