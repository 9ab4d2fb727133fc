"""The one data model every layer speaks: readings keyed by OBIS code, GB supply identifiers.

This package imports nothing else of ours (see DESIGN.md, bounded contexts).
"""

from smarthub.model.identifiers import InvalidIdentifier, validate_mpan, validate_mprn
from smarthub.model.obis import ObisCode
from smarthub.model.reading import Quality, Reading, Unit

__all__ = [
    "InvalidIdentifier",
    "ObisCode",
    "Quality",
    "Reading",
    "Unit",
    "validate_mpan",
    "validate_mprn",
]
