"""Finding secrets where they must not be: the forms a key takes in text and where to look.

A secret is searched for in every form it is likely to be written in: hex (lower and upper),
base64 (standard and URL-safe, with and without padding) and, for binary files, its raw bytes.
A PEM private key also by its private scalar (those forms) and by each PEM body line that
carries part of that scalar (its first two lines; later lines are the public key, which is
public and also sits in certificates).
"""

from __future__ import annotations

import base64
import logging
import sqlite3
import traceback
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from smarthub.logs import JsonFormatter


@dataclass
class Secrets:
    """Named secrets, each with the text forms and raw bytes it is searched for by."""

    text: dict[str, set[str]] = field(default_factory=dict)
    raw: dict[str, set[bytes]] = field(default_factory=dict)

    def add_bytes(self, name: str, secret: bytes) -> None:
        assert len(secret) >= 16, f"{name}: too short to search for without chance hits"
        forms = {secret.hex(), secret.hex().upper()}
        for enc in (base64.b64encode, base64.urlsafe_b64encode):
            b64 = enc(secret).decode()
            forms |= {b64, b64.rstrip("=")}
        self.text.setdefault(name, set()).update(forms)
        self.raw.setdefault(name, set()).add(secret)

    def add_text(self, name: str, secret: str) -> None:
        assert len(secret) >= 16
        self.text.setdefault(name, set()).add(secret)

    def add_private_key_pem(self, name: str, pem: bytes) -> None:
        key = serialization.load_pem_private_key(pem, password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        scalar = key.private_numbers().private_value.to_bytes(32, "big")
        self.add_bytes(f"{name} (private scalar)", scalar)
        der = key.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        self.add_bytes(f"{name} (PKCS#8 DER)", der)
        body = [ln for ln in pem.decode().splitlines() if ln and not ln.startswith("-----")]
        for line in body[:2]:
            self.add_text(f"{name} (PEM line)", line)
        self.add_text(f"{name} (PEM body)", "".join(body))

    def __len__(self) -> int:
        return len(self.text)

    def found_in_text(self, haystack: str) -> list[str]:
        return sorted(name for name, forms in self.text.items() if any(f in haystack for f in forms))

    def found_in_bytes(self, haystack: bytes) -> list[str]:
        hits = {n for n, forms in self.text.items() if any(f.encode() in haystack for f in forms)}
        hits |= {n for n, forms in self.raw.items() if any(f in haystack for f in forms)}
        return sorted(hits)


_JSON = JsonFormatter({"service": "test"})


class Everything(logging.Handler):
    """A handler on the root logger keeping every record's full rendering (message, arguments,
    traceback, stack): what any configured formatter could write."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1
        parts = [record.name, record.getMessage(), repr(record.args)]
        if record.exc_info and record.exc_info[1] is not None:
            parts.append("".join(traceback.format_exception(*record.exc_info)))
        if record.stack_info:
            parts.append(record.stack_info)
        parts.append(_JSON.format(record))  # what --log-format json writes of it
        self.lines.append(" | ".join(parts))


def capture_everything() -> tuple[Everything, list[tuple[logging.Logger, int]]]:
    """Root and every ``smarthub`` logger (and the libraries we use) at DEBUG, into one handler.
    Returns the handler and what to restore."""
    handler = Everything()
    root = logging.getLogger()
    saved = [(root, root.level)]
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    names = [n for n in logging.root.manager.loggerDict if n.split(".")[0] in _LOUD]
    for name in {*names, *_LOUD}:
        lg = logging.getLogger(name)
        saved.append((lg, lg.level))
        lg.setLevel(logging.DEBUG)
    return handler, saved


# Not sqlalchemy: its engine logger at INFO writes every statement's parameters (a debugging
# facility the operator turns on knowingly, see the report); it stays at its own default (WARN).
_LOUD = ("smarthub", "aiohttp", "asyncio", "httpx", "httpcore", "uvicorn", "fastapi")


def release(handler: Everything, saved: Iterable[tuple[logging.Logger, int]]) -> None:
    logging.getLogger().removeHandler(handler)
    for lg, level in saved:
        lg.setLevel(level)


def sqlite_columns(path: Path, skip: set[tuple[str, str]] = frozenset()) -> dict[str, str | bytes]:  # type: ignore[assignment]
    """Every text or blob value of every table in a SQLite file, keyed ``table.column#rowid``,
    except the (table, column) pairs in ``skip``."""
    out: dict[str, str | bytes] = {}
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            cols = [r[1] for r in db.execute(f'PRAGMA table_info("{table}")')]
            for col in cols:
                if (table, col) in skip:
                    continue
                for i, (value,) in enumerate(db.execute(f'SELECT "{col}" FROM "{table}"')):
                    if isinstance(value, str | bytes):
                        out[f"{table}.{col}#{i}"] = value
    finally:
        db.close()
    return out


def scan_sqlite(secrets: Secrets, path: Path, skip: set[tuple[str, str]] = frozenset()) -> list[str]:  # type: ignore[assignment]
    """``where: secret`` for each secret found in a value of the database."""
    hits = []
    for where, value in sqlite_columns(path, skip).items():
        found = secrets.found_in_text(value) if isinstance(value, str) else secrets.found_in_bytes(value)
        hits += [f"{path.name}:{where}: {name}" for name in found]
    return hits
