"""The ``smarthub`` command: thin commands over the packages, one module per command group.

Each command parses its options, calls one library function and prints what it returns; the
logic lives in the packages (the GDSC's composition root and its services, the hub's assembly,
the simulators, the codecs).

* :mod:`.demo` — ``demo``, ``chaos``;
* :mod:`.hub` — ``hub``, ``listen``, ``ihd-code``; :mod:`.decode` — ``decode``;
* :mod:`.plan` — ``plan-han``; :mod:`.heat` — ``heat-bill``;
* :mod:`.gdsc` — ``gdsc`` (run the GDSC) and ``gdsc api|client|renew|token|audit|group|db-role``;
  :mod:`.services` — ``gdsc service apply|approve|refuse|suspend|resume|revoke|list``;
  :mod:`.lifecycle` — ``gdsc installer|installer-request|commission|replace|revoke|decommission``;
* :mod:`.command` — ``command`` (one signed management command, delivered now).
"""

import importlib

from smarthub.cli.app import app

# Each group module adds its commands to ``app`` when imported; this order is the help's order.
for _group in ("demo", "hub", "decode", "plan", "heat", "gdsc", "services", "lifecycle", "command"):
    importlib.import_module(f"smarthub.cli.{_group}")


def main() -> None:
    app()


__all__ = ["app", "main"]
