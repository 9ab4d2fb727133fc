"""The hub's network configuration, set remotely by the GDSC (a ``network.configure`` command).

What takes effect at once: the WAN client allowlist (LFDIs of the GDSC collectors and parties
allowed to connect, on top of holding a GDSC-CA certificate: a stolen collector certificate is
shut out by removing its LFDI). What takes effect at the next start: the WAN listen address
and port, and the NTP servers (the hub's own clock discipline). The file is replaced
atomically, so a power cut leaves the old or the new configuration, never a torn one.
"""

from __future__ import annotations

import ipaddress
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from smarthub.wan.contract.bodies import NetworkConfigure


class NetworkConfigError(ValueError):
    pass


@dataclass(frozen=True)
class NetworkConfig:
    listen: str = "0.0.0.0"
    port: int = 8443
    ntp: tuple[str, ...] = ()
    allowed_clients: tuple[str, ...] = field(default=())  # LFDIs; empty: any GDSC-CA certificate

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NetworkConfig:
        try:
            listen = str(data.get("listen", "0.0.0.0"))
            ipaddress.ip_address(listen)
            port = int(data.get("port", 8443))
            if not 1 <= port <= 65535:
                raise NetworkConfigError(f"port {port} is outside 1..65535")
            ntp = tuple(str(h) for h in data.get("ntp", ()))
            allowed = tuple(str(x).upper() for x in data.get("allowed_clients", ()))
        except (TypeError, ValueError) as err:
            raise NetworkConfigError(f"bad network configuration: {err}") from None
        for lfdi in allowed:
            if len(lfdi) != 40 or any(c not in "0123456789ABCDEF" for c in lfdi):
                raise NetworkConfigError(f"allowed client {lfdi!r} is not an LFDI (40 hex digits)")
        return cls(listen, port, ntp, allowed)


class NetworkSettings:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.config = (
            NetworkConfig.from_dict(json.loads(path.read_text())) if path.exists() else NetworkConfig()
        )

    def apply(self, new: NetworkConfig) -> dict[str, Any]:
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w") as f:
            json.dump({**asdict(new), "ntp": list(new.ntp), "allowed_clients": list(new.allowed_clients)}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        restart = (new.listen, new.port, new.ntp) != (self.config.listen, self.config.port, self.config.ntp)
        self.config = new
        return {"applied": ["allowed_clients"], "restart_required": restart}

    def client_allowed(self, lfdi: str) -> bool:
        return not self.config.allowed_clients or lfdi.upper() in self.config.allowed_clients


def network_command(settings: NetworkSettings):
    def handle(body: NetworkConfigure) -> dict[str, Any]:
        return settings.apply(NetworkConfig(body.listen, body.port, body.ntp, body.allowed_clients))

    return handle
