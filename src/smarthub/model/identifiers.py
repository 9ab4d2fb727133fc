"""GB supply-point identifiers: MPAN (electricity) and MPRN (gas).

MPAN core: 13 digits, the first two the distributor id, the last a check digit computed
with the prime weights 3,5,7,13,17,19,23,29,31,37,41,43 over the first 12 digits,
sum mod 11 mod 10 (MRA Data Transfer Catalogue, J0003).
MPRN: 6 to 10 digits (Xoserve). Its internal check digit scheme is not public, so only
the form is checked here.
"""

from __future__ import annotations

_MPAN_WEIGHTS = (3, 5, 7, 13, 17, 19, 23, 29, 31, 37, 41, 43)

# Distributor ids (first two digits of the MPAN core) of GB's distribution areas.
GB_DISTRIBUTOR_IDS = frozenset(range(10, 24 + 1))


class InvalidIdentifier(ValueError):
    """An MPAN or MPRN that is malformed or fails its check digit."""


def mpan_check_digit(first12: str) -> int:
    if len(first12) != 12 or not first12.isdigit():
        raise InvalidIdentifier(f"MPAN check digit needs 12 digits, got {first12!r}")
    return sum(int(d) * w for d, w in zip(first12, _MPAN_WEIGHTS, strict=True)) % 11 % 10


def validate_mpan(mpan: str) -> str:
    """Return the 13-digit MPAN core (spaces removed) or raise :class:`InvalidIdentifier`."""
    core = mpan.replace(" ", "")
    if len(core) != 13 or not core.isdigit():
        raise InvalidIdentifier(f"MPAN core must be 13 digits, got {mpan!r}")
    expected = mpan_check_digit(core[:12])
    if int(core[12]) != expected:
        raise InvalidIdentifier(f"MPAN {core} fails its check digit (expected {expected}, got {core[12]})")
    return core


def make_mpan(distributor: int, unique: int) -> str:
    """Build a valid MPAN core from a distributor id and an 10-digit unique number."""
    if not 0 <= distributor <= 99 or not 0 <= unique < 10**10:
        raise InvalidIdentifier("distributor is 2 digits, unique part 10 digits")
    first12 = f"{distributor:02d}{unique:010d}"
    return first12 + str(mpan_check_digit(first12))


def validate_mprn(mprn: str) -> str:
    """Return the MPRN (spaces removed) or raise :class:`InvalidIdentifier`."""
    core = mprn.replace(" ", "")
    if not (6 <= len(core) <= 10 and core.isdigit()) or core[0] == "0":
        raise InvalidIdentifier(f"MPRN must be 6 to 10 digits without a leading zero, got {mprn!r}")
    return core
