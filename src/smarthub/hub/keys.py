"""Hub key management for data at rest: one AES-128 key per meter, wrapped by a master key.

Each meter's history is sealed with its own key (AES-GCM), so a key change for one meter or
resident (change of tenancy) touches only that meter's rows, and leaking one meter key
exposes one meter. Meter keys are stored wrapped with the hub master key (AES key wrap,
RFC 3394) next to the data they protect. The master key itself belongs in the hub's secure
element; without one (the simulator, a test bench, a Raspberry Pi) it is a 0600 file.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

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
