"""Bodies of the commands on the hub itself and its meters: the mapping table, meter keys,
pairing and replacement, the network settings, diagnostics, PKI and firmware."""

from __future__ import annotations

import base64
import binascii
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

from smarthub.wan.contract.bodies.base import LFDI_HEX, CommandBody, Fields, NoFields, OnMeter

DEFAULT_FUEL = "electricity"


def _b64(f: Fields, key: str) -> bytes:
    text = f.text(key)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as err:
        raise f.bad(key, f"is not base64: {err}") from None


@dataclass(frozen=True, slots=True)
class MappingUpdate(CommandBody):
    """A new OBIS translation table; its entries are checked by the meters' own loader
    (``smarthub.meters.mapping.MappingTable.from_dict``), here only its frame."""

    TYPE: ClassVar[str] = "mapping.update"
    table: Mapping[str, Any]

    @classmethod
    def parse(cls, body: Mapping[str, object]) -> Self:
        f = Fields(cls.TYPE, body)
        table = f.mapping("table")
        if not isinstance(table.get("version"), str):
            raise f.bad("table", "has no string 'version'")
        if not isinstance(table.get("entries"), list):
            raise f.bad("table", "has no 'entries' list")
        return cls(table)

    def to_json(self) -> dict[str, Any]:
        return {"table": dict(self.table)}


@dataclass(frozen=True, slots=True)
class MeterKey(CommandBody):
    """A meter's new 16-byte key; ``pending`` stages it for the re-key repair to adopt."""

    TYPE: ClassVar[str] = "meter.key"
    meter: str
    key: bytes
    pending: bool = False

    @classmethod
    def parse(cls, body: Mapping[str, object]) -> Self:
        f = Fields(cls.TYPE, body)
        key = f.hex("key", length=32)
        return cls(f.text("meter", nonempty=True), bytes.fromhex(key), f.flag("pending", False))

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"meter": self.meter, "key": self.key.hex()}
        if self.pending:
            out["pending"] = True
        return out


@dataclass(frozen=True, slots=True)
class MeterAdd(CommandBody):
    TYPE: ClassVar[str] = "meter.add"
    meter: str
    protocol: str
    fuel: str = DEFAULT_FUEL

    @classmethod
    def parse(cls, body: Mapping[str, object]) -> Self:
        f = Fields(cls.TYPE, body)
        return cls(
            f.text("meter", nonempty=True), f.text("protocol", nonempty=True), f.text("fuel", DEFAULT_FUEL)
        )

    def to_json(self) -> dict[str, Any]:
        return {"meter": self.meter, "protocol": self.protocol, "fuel": self.fuel}


@dataclass(frozen=True, slots=True)
class MeterRemove(OnMeter):
    TYPE: ClassVar[str] = "meter.remove"


@dataclass(frozen=True, slots=True)
class MeterReplace(CommandBody):
    """Meter ``new`` (on ``protocol``) takes over from meter ``old``."""

    TYPE: ClassVar[str] = "meter.replace"
    old: str
    new: str
    protocol: str
    fuel: str = DEFAULT_FUEL

    @classmethod
    def parse(cls, body: Mapping[str, object]) -> Self:
        f = Fields(cls.TYPE, body)
        old, new = f.text("old", nonempty=True), f.text("new", nonempty=True)
        if old == new:
            raise f.bad("new", f"is the meter it replaces ({old!r:.40})")
        return cls(old, new, f.text("protocol", nonempty=True), f.text("fuel", DEFAULT_FUEL))

    def to_json(self) -> dict[str, Any]:
        return {"old": self.old, "new": self.new, "protocol": self.protocol, "fuel": self.fuel}


@dataclass(frozen=True, slots=True)
class NetworkConfigure(CommandBody):
    """The hub's WAN listener, NTP servers and the LFDIs of the clients it admits."""

    TYPE: ClassVar[str] = "network.configure"
    listen: str = "0.0.0.0"
    port: int = 8443
    ntp: tuple[str, ...] = ()
    allowed_clients: tuple[str, ...] = field(default=())

    @classmethod
    def parse(cls, body: Mapping[str, object]) -> Self:
        f = Fields(cls.TYPE, body)
        listen = f.text("listen", "0.0.0.0")
        try:
            ipaddress.ip_address(listen)
        except ValueError:
            raise f.bad("listen", f"is not an IP address: {listen!r:.80}") from None
        port = f.integer("port", 8443, minimum=1)
        if port > 65535:
            raise f.bad("port", f"must be in 1..65535, got {port}")
        ntp = f.array("ntp", ())
        if not all(isinstance(h, str) and h for h in ntp):
            raise f.bad("ntp", "must list host names")
        allowed = f.array("allowed_clients", ())
        lfdis = tuple(str(x).upper() for x in allowed if isinstance(x, str))
        if len(lfdis) != len(allowed) or any(
            len(x) != LFDI_HEX or any(c not in "0123456789ABCDEF" for c in x) for x in lfdis
        ):
            raise f.bad("allowed_clients", "must list LFDIs (40 hex digits)")
        return cls(listen, port, tuple(str(h) for h in ntp), lfdis)

    def to_json(self) -> dict[str, Any]:
        return {
            "listen": self.listen,
            "port": self.port,
            "ntp": list(self.ntp),
            "allowed_clients": list(self.allowed_clients),
        }


@dataclass(frozen=True, slots=True)
class DiagnosticPing(CommandBody):
    """Answered ``{"pong": nonce}``."""

    TYPE: ClassVar[str] = "diagnostic.ping"
    nonce: object = None  # any JSON value, echoed

    @classmethod
    def parse(cls, body: Mapping[str, object]) -> Self:
        return cls(Fields(cls.TYPE, body).raw("nonce", None))

    def to_json(self) -> dict[str, Any]:
        return {} if self.nonce is None else {"nonce": self.nonce}


@dataclass(frozen=True, slots=True)
class HanScan(NoFields):
    """What the HAN hears (no fields)."""

    TYPE: ClassVar[str] = "diagnostic.han_scan"


@dataclass(frozen=True, slots=True)
class LinkTest(OnMeter):
    """Poll one meter now."""

    TYPE: ClassVar[str] = "diagnostic.link_test"


@dataclass(frozen=True, slots=True)
class PkiCrl(CommandBody):
    """The GDSC CA's CRL (DER or PEM), base64 on the wire."""

    TYPE: ClassVar[str] = "pki.crl"
    crl: bytes

    @classmethod
    def parse(cls, body: Mapping[str, object]) -> Self:
        return cls(_b64(Fields(cls.TYPE, body), "crl"))

    def to_json(self) -> dict[str, Any]:
        return {"crl": base64.b64encode(self.crl).decode()}


@dataclass(frozen=True, slots=True)
class PkiCertificate(CommandBody):
    """The hub's renewed certificate (PEM), and the serial of the one it replaces (for the log)."""

    TYPE: ClassVar[str] = "pki.certificate"
    certificate: str
    replaces_serial: str | None = None

    @classmethod
    def parse(cls, body: Mapping[str, object]) -> Self:
        f = Fields(cls.TYPE, body)
        pem = f.text("certificate", nonempty=True)
        if "-----BEGIN CERTIFICATE-----" not in pem:
            raise f.bad("certificate", "is not a PEM certificate")
        return cls(pem, f.opt_text("replaces_serial"))

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"certificate": self.certificate}
        if self.replaces_serial is not None:
            out["replaces_serial"] = self.replaces_serial
        return out


@dataclass(frozen=True, slots=True)
class FirmwareUpdate(CommandBody):
    """A signed firmware package (``smarthub.hub.firmware``), base64 on the wire."""

    TYPE: ClassVar[str] = "firmware.update"
    package: bytes

    @classmethod
    def parse(cls, body: Mapping[str, object]) -> Self:
        return cls(_b64(Fields(cls.TYPE, body), "package"))

    def to_json(self) -> dict[str, Any]:
        return {"package": base64.b64encode(self.package).decode()}


__all__ = [
    "DiagnosticPing",
    "FirmwareUpdate",
    "HanScan",
    "LinkTest",
    "MappingUpdate",
    "MeterAdd",
    "MeterKey",
    "MeterRemove",
    "MeterReplace",
    "NetworkConfigure",
    "PkiCertificate",
    "PkiCrl",
]
