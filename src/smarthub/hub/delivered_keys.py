"""Meter keys the GDSC delivered with the signed ``meter.key`` command, kept across restarts.

The GDSC sends a meter's new key once (it clears the delivered command's envelope,
``gdsc.pull.tables.SECRET_COMMANDS``), so a hub that held it in memory only would, after a
restart, be back on the key in its configuration file and no longer decrypt that meter's frames.
The hub therefore writes each delivered key to ``meter_keys.sqlite`` before it uses it, and
installs the stored keys again at start.

At rest a key is sealed with AES-256-GCM under a key derived (HKDF-SHA256, its own ``info``) from
the hub master key (:func:`smarthub.hub.keys.load_or_create_master_key`: the secure element's
key, or the 0600 ``master.key`` file), so the file alone (a copied SD card without the master
key file) gives no key away; the associated data binds each sealed key to its meter, whether it
is staged and its place in the delivery order, so a row moved to another meter or reordered does
not open. The file is a hub SQLite file (:mod:`smarthub.hub.sqlite_files`: 0600,
``secure_delete``), so a replaced key does not linger in its free pages.

Precedence (applied by :meth:`smarthub.hub.hub.SmartHub.restore_delivered_keys`): the stored
keys are installed after the configured ones, in the order they were delivered, exactly as the
command installed them, so the newest ``meter.key`` for a meter wins over the configuration
file and over older commands; the configured key it replaces stays an alternative the re-key
repair may fall back to (:class:`~smarthub.hub.keys.KeyRing`). A key staged with
``"pending": true`` is staged again. To go back to the configured key, the GDSC sends it with a
new ``meter.key``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from smarthub.hub import sqlite_files
from smarthub.hub.keys import KeyUnwrapError

FILE_NAME = "meter_keys.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS delivered_keys (
    meter TEXT NOT NULL,
    pending INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    nonce BLOB NOT NULL,
    sealed BLOB NOT NULL,
    PRIMARY KEY (meter, pending)
) WITHOUT ROWID;
"""

SCHEMA = sqlite_files.Schema("meter_keys", [_SCHEMA])
_INFO = b"smarthub hub: meter keys delivered by meter.key"


@dataclass(frozen=True, slots=True)
class DeliveredKey:
    meter: str
    key: bytes
    pending: bool

    def __repr__(self) -> str:  # never the key itself (logs, tracebacks)
        return f"DeliveredKey(meter={self.meter!r}, pending={self.pending})"


class DeliveredKeys:
    """The last key delivered for each meter (and the last one staged), sealed at rest."""

    def __init__(self, path: Path | str, master_key: bytes) -> None:
        self.path = str(path)
        sealing = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(master_key)
        self._aead = AESGCM(sealing)
        self._file = sqlite_files.open_database(self.path, SCHEMA)

    @staticmethod
    def _aad(meter: str, pending: bool, seq: int) -> bytes:
        return f"meter.key|{meter}|{int(pending)}|{seq}".encode()

    def record(self, meter: str, key: bytes, pending: bool) -> None:
        """Keep ``key`` as the meter's newest delivered key (or staged key), replacing the one
        before it; durable (``synchronous=FULL``) when this returns."""
        with self._file.transaction() as db:
            seq = int(db.execute("SELECT coalesce(max(seq), 0) + 1 FROM delivered_keys").fetchone()[0])
            nonce = os.urandom(12)
            sealed = self._aead.encrypt(nonce, key, self._aad(meter, pending, seq))
            db.execute(
                "INSERT OR REPLACE INTO delivered_keys VALUES (?, ?, ?, ?, ?)",
                (meter, int(pending), seq, nonce, sealed),
            )

    def load(self) -> list[DeliveredKey]:
        """Every stored key, in the order they were delivered."""
        with self._file.lock:
            rows = self._file.connection.execute(
                "SELECT meter, pending, seq, nonce, sealed FROM delivered_keys ORDER BY seq"
            ).fetchall()
        out = []
        for meter, pending, seq, nonce, sealed in rows:
            try:
                key = self._aead.decrypt(nonce, sealed, self._aad(meter, bool(pending), seq))
            except InvalidTag:
                raise KeyUnwrapError(
                    f"{self.path}: the key delivered for meter {meter!r} does not open under the hub"
                    " master key (another hub's file, a replaced master key, or tampering)"
                ) from None
            out.append(DeliveredKey(meter, key, bool(pending)))
        return out

    def close(self) -> None:
        self._file.close()
