"""The diagnosis codes a hub reports and the GDSC acts on, with their labels.

The hub diagnoses (:mod:`smarthub.hub.diagnostics`), the GDSC correlates and dispatches
(:mod:`smarthub.gdsc.incidents`); both read the code table from here, so a code added for the
hub is known to the GDSC the moment it exists (a copied table once lacked ``STORAGE_FULL`` at
the GDSC, which then showed a full disk as "code 15" and dispatched it as an unknown code).
"""

from __future__ import annotations

import enum


class DiagnosisCode(enum.IntEnum):
    """What was diagnosed. The values are stable: they are the 2030.5 ``logEventCode`` (UInt8)
    of our vendor-defined profile, and the GDSC keys work orders on them. Never renumber."""

    MISSING_INTERVALS = 1
    STALE_METER = 2
    HAN_DECODE_ERRORS = 3
    HAN_POLL_FAILURES = 4
    HAN_WEAK_SIGNAL = 5
    DECRYPTION_FAILURES = 6
    REGISTER_BACKWARDS = 7
    CONSUMPTION_SPIKE = 8
    REVERSE_FLOW = 9
    TAMPER = 10
    METER_ERROR = 11
    LOW_BATTERY = 12
    POWER_FAILURE = 13
    CLOCK_DRIFT = 14
    STORAGE_FULL = 15


class Severity(enum.StrEnum):
    INFO = "info"
    WARNING = "warning"
    MAJOR = "major"
    CRITICAL = "critical"


class RepairAction(enum.StrEnum):
    """A local repair the hub tried (the event detail's ``repair``)."""

    NONE = "none"  # no local repair fits the diagnosis
    REPOLL = "repoll"
    RESYNC_CLOCK = "resync_clock"
    REKEY = "rekey"
    FALLBACK_TRANSPORT = "fallback_transport"


class RepairOutcome(enum.StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    UNSUPPORTED = "unsupported"


# Short labels: the LogEvent's String32 details ("<label> <device>") and the operator console.
LABELS: dict[DiagnosisCode, str] = {
    DiagnosisCode.MISSING_INTERVALS: "missing intervals",
    DiagnosisCode.STALE_METER: "meter silent",
    DiagnosisCode.HAN_DECODE_ERRORS: "HAN decode errors",
    DiagnosisCode.HAN_POLL_FAILURES: "HAN poll failures",
    DiagnosisCode.HAN_WEAK_SIGNAL: "weak HAN signal",
    DiagnosisCode.DECRYPTION_FAILURES: "decryption failures",
    DiagnosisCode.REGISTER_BACKWARDS: "register backwards",
    DiagnosisCode.CONSUMPTION_SPIKE: "consumption spike",
    DiagnosisCode.REVERSE_FLOW: "reverse flow",
    DiagnosisCode.TAMPER: "tamper flag",
    DiagnosisCode.METER_ERROR: "meter error flag",
    DiagnosisCode.LOW_BATTERY: "low battery",
    DiagnosisCode.POWER_FAILURE: "power failure",
    DiagnosisCode.CLOCK_DRIFT: "clock drift",
    DiagnosisCode.STORAGE_FULL: "storage full",
}


def label(code: int) -> str:
    """The label of a diagnosis code; a code newer than this table is named by its number."""
    try:
        return LABELS[DiagnosisCode(code)]
    except ValueError:
        return f"code {code}"


__all__ = ["LABELS", "DiagnosisCode", "RepairAction", "RepairOutcome", "Severity", "label"]
