"""Hub key management: the keys for data at rest, and the keys the hub holds for its meters.

Data at rest: one AES-128 key per meter, wrapped by a master key. Each meter's history is
sealed with its own key (AES-GCM), so a key change for one meter or
resident (change of tenancy) touches only that meter's rows, and leaking one meter key
exposes one meter. Meter keys are stored wrapped with the hub master key (AES key wrap,
RFC 3394) next to the data they protect. The master key itself belongs in the hub's secure
element; without one (the simulator, a test bench, a Raspberry Pi) it is a 0600 file.

The meters' own keys (the OMS key of a wM-Bus meter, the suite 0 keys of a DLMS meter): a
:class:`KeyRing` holds the key in use for each meter and the others the hub knows for it, the
one it replaced and one staged by a key change that the meter has not taken yet, so that a
hub out of step with its meter can find the key that fits again (the re-key repair).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Generic, TypeVar

from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

K = TypeVar("K")

MASTER_KEY_BYTES = 32  # AES-256 KEK
METER_KEY_BYTES = 16  # AES-128-GCM, as DLMS suite 0 and OMS use


class KeyUnwrapError(Exception):
    """A wrapped key that does not unwrap under this master key (wrong key or tampering)."""


def load_or_create_master_key(path: Path) -> bytes:
    """Read the master key file, creating it (mode 0600, atomically) on first start."""
    if path.exists():
        key = path.read_bytes()
        if len(key) != MASTER_KEY_BYTES:
            raise KeyUnwrapError(
                f"master key file {path} holds {len(key)} bytes, expected {MASTER_KEY_BYTES}"
            )
        return key
    key = secrets.token_bytes(MASTER_KEY_BYTES)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, key)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return key


def new_meter_key() -> bytes:
    return secrets.token_bytes(METER_KEY_BYTES)


def wrap(master_key: bytes, key: bytes) -> bytes:
    return aes_key_wrap(master_key, key)


def unwrap(master_key: bytes, wrapped: bytes) -> bytes:
    try:
        return aes_key_unwrap(master_key, wrapped)
    except InvalidUnwrap:
        raise KeyUnwrapError("a meter key does not unwrap under the hub master key") from None


class KeyRing(MutableMapping[str, K], Generic[K]):
    """The key in use per meter (the mapping ports decrypt with), and its alternatives.

    Setting a meter's key keeps the one it replaces as an alternative (a key change the meter
    has not made yet leaves the old key the right one); :meth:`stage` adds a key to try without
    using it (a key change announced before the meter switches). :meth:`promote` makes an
    alternative the key in use once it has been shown to fit. At most ``keep`` alternatives
    are kept per meter, the newest first. In memory: whoever installs keys installs them again
    after a restart (commissioning from the configuration, then the keys the ``meter.key``
    command delivered, from :mod:`smarthub.hub.delivered_keys`).
    """

    def __init__(self, keep: int = 2) -> None:
        self.keep = keep
        self._current: dict[str, K] = {}
        self._others: dict[str, list[K]] = {}

    def __getitem__(self, meter: str) -> K:
        return self._current[meter]

    def __setitem__(self, meter: str, key: K) -> None:
        old = self._current.get(meter)
        self._current[meter] = key
        others = [k for k in self._others.get(meter, []) if k != key]
        if old is not None and old != key:
            others.insert(0, old)
        self._others[meter] = others[: self.keep]

    def __delitem__(self, meter: str) -> None:
        del self._current[meter]
        self._others.pop(meter, None)

    def __iter__(self) -> Iterator[str]:
        return iter(self._current)

    def __len__(self) -> int:
        return len(self._current)

    def stage(self, meter: str, key: K) -> None:
        """A key to try for ``meter`` (newest first) without using it yet."""
        if self._current.get(meter) == key:
            return
        others = [k for k in self._others.get(meter, []) if k != key]
        self._others[meter] = [key, *others][: self.keep]

    def candidates(self, meter: str) -> list[K]:
        """The alternatives to the key in use, newest first."""
        return list(self._others.get(meter, []))

    def promote(self, meter: str, key: K) -> None:
        """Use ``key`` for ``meter`` from now on (the one it replaces stays an alternative)."""
        self[meter] = key
