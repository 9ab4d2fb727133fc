"""Commissioning: binding premises ↔ hub ↔ meters in the registry, so the hub gets scheduled.

The input is a commissioning manifest (JSON), as an installer's tool or a fleet simulator
writes it: for each hub its id, URL, LFDI (from the certificate the GDSC CA issued it),
premises (address, MPAN, MPRN), meters and the WAN link (cell) it sits behind. MPAN and MPRN
are validated before anything is written; a bad manifest changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from smarthub.gdsc.store import Store
from smarthub.model.identifiers import validate_mpan, validate_mprn


class CommissioningError(ValueError):
    pass


def register_manifest(store: Store, manifest: Mapping[str, Any]) -> int:
    hubs = manifest.get("hubs")
    if not isinstance(hubs, list):
        raise CommissioningError("manifest has no 'hubs' list")
    checked = []
    for i, h in enumerate(hubs):
        try:
            lfdi = str(h["lfdi"]).upper()
            if len(lfdi) != 40 or any(c not in "0123456789ABCDEF" for c in lfdi):
                raise CommissioningError(f"hub {i}: LFDI must be 40 hex digits")
            checked.append(
                dict(
                    hub_id=str(h["hub_id"]),
                    premises_id=str(h["premises_id"]),
                    url=str(h["url"]),
                    lfdi=lfdi,
                    meters_by_fuel=[(str(m), str(f)) for m, f in h["meters"]],
                    address=str(h.get("address", "")),
                    mpan=validate_mpan(h["mpan"]) if h.get("mpan") else None,
                    mprn=validate_mprn(h["mprn"]) if h.get("mprn") else None,
                    wan_link=str(h["wan_link"]) if h.get("wan_link") else None,
                )
            )
        except (KeyError, TypeError, ValueError) as err:
            raise CommissioningError(f"hub {i} in manifest: {err}") from None
    for entry in checked:
        store.register_hub(**entry)
    return len(checked)
