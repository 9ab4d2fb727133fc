"""Typed errors of the DLMS/COSEM stack.

Decoding errors (bad bytes, failed authentication, replayed counters) are
:class:`~smarthub.meters.errors.DecodeError` subclasses like every other codec's, so a caller that
handles ``DecodeError`` handles them all. Session errors (an operation in the wrong state, a
rejected association, a data-access-result other than success) are :class:`DlmsSessionError`:
they are not about malformed input but about what the meter said or what the caller did.
"""

from __future__ import annotations

from smarthub.meters.errors import (
    ChecksumError,
    DecodeError,
    KeyMissing,
    MalformedFrame,
    TruncatedFrame,
    WrongKey,
)

__all__ = [
    "PROTOCOL",
    "AssociationRejected",
    "ChecksumError",
    "DataAccessError",
    "DecodeError",
    "DecryptionError",
    "DlmsSessionError",
    "DlmsStateError",
    "MalformedFrame",
    "NoKeyError",
    "ReplayError",
    "TruncatedFrame",
]

PROTOCOL = "dlms"


class DecryptionError(WrongKey):
    """A ciphered APDU whose GCM authentication tag does not verify (wrong key or tampered bytes),
    or, for encryption-only APDUs (no tag), whose plaintext is not an APDU."""


class NoKeyError(DecryptionError, KeyMissing):
    """A ciphered APDU for which no key is configured."""


class ReplayError(DecodeError):
    """A ciphered APDU whose invocation counter is not above the last one accepted from its sender."""


class DlmsSessionError(Exception):
    """The DLMS session cannot go on as asked (see the subclasses)."""


class DlmsStateError(DlmsSessionError):
    """An operation the session's state does not allow (``get`` before ``connect``, ...), or a
    response that does not answer the request in flight."""


class AssociationRejected(DlmsSessionError):
    """The AARE refused the association: ``result`` and ``diagnostic`` as the AARE carries them."""

    def __init__(self, result: int, diagnostic: int | None, detail: str = "") -> None:
        self.result = result
        self.diagnostic = diagnostic
        extra = f": {detail}" if detail else ""
        super().__init__(f"dlms: association rejected (result {result}, diagnostic {diagnostic}){extra}")


class DataAccessError(DlmsSessionError):
    """A GET answered with a data-access-result other than success (IEC 62056-5-3, Data-Access-Result)."""

    def __init__(self, result: int, what: str = "") -> None:
        self.result = result
        name = DATA_ACCESS_RESULTS.get(result, "unknown")
        super().__init__(f"dlms: data-access-result {result} ({name}){' for ' + what if what else ''}")


DATA_ACCESS_RESULTS = {
    0: "success",
    1: "hardware-fault",
    2: "temporary-failure",
    3: "read-write-denied",
    4: "object-undefined",
    9: "object-class-inconsistent",
    11: "object-unavailable",
    12: "type-unmatched",
    13: "scope-of-access-violated",
    14: "data-block-unavailable",
    15: "long-get-aborted",
    16: "no-long-get-in-progress",
    17: "long-set-aborted",
    18: "no-long-set-in-progress",
    19: "data-block-number-invalid",
    250: "other-reason",
}
