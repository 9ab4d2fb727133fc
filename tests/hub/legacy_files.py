"""Hub SQLite files as releases before versioned migrations left them, with data in them.

Each builder writes, with the plain ``sqlite3`` module, what the store's code on main at commit
ef0dbf5 (the last before ``sqlite_files.open_database``) executed when it opened a new file --
the DDL copied verbatim from that code, ``user_version`` left at 0 -- and then a few rows as
that code wrote them. For the two stores whose tables changed shape before then (consents, the
IHD), the older shapes are here too, from the commits named beside them.

Sealed values (history, diagnostics) are sealed here as the stores documented it (AES-GCM under a
key wrapped by the master key; the row's identity as associated data), so reading them back
after the upgrade also checks that the on-disk format is still understood.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from smarthub.hub.keys import new_meter_key, wrap

MASTER = bytes(range(32))
T = 1_780_000_000  # 2026-05-28, epoch seconds


def _write(path: Path, script: str, rows: list[tuple[str, tuple[object, ...]]]) -> None:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript(script)
    for sql, params in rows:
        db.execute(sql, params)
    assert db.execute("PRAGMA user_version").fetchone()[0] == 0
    db.close()


# -- history (src/smarthub/hub/history.py at ef0dbf5) --------------------------------------------
HISTORY_DDL = """
CREATE TABLE IF NOT EXISTS intervals (
    meter TEXT NOT NULL,
    obis TEXT NOT NULL,
    start INTEGER NOT NULL,
    duration INTEGER NOT NULL,
    nonce BLOB NOT NULL,
    sealed BLOB NOT NULL,
    PRIMARY KEY (meter, obis, start)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS daily (
    meter TEXT NOT NULL,
    obis TEXT NOT NULL,
    start INTEGER NOT NULL,
    duration INTEGER NOT NULL,
    nonce BLOB NOT NULL,
    sealed BLOB NOT NULL,
    PRIMARY KEY (meter, obis, start)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meter_keys (
    meter TEXT PRIMARY KEY,
    wrapped BLOB NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS raw_points (
    received INTEGER NOT NULL,
    meter TEXT NOT NULL,
    protocol TEXT NOT NULL,
    key TEXT NOT NULL,
    nonce BLOB NOT NULL,
    sealed BLOB NOT NULL,
    unit TEXT,
    time INTEGER,
    reason TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meters (
    meter TEXT PRIMARY KEY,
    fuel TEXT NOT NULL
) WITHOUT ROWID;
"""

# One half-hour of meter E1: 412 Wh, register at 1234567 Wh (10^0), quality 0.
HISTORY_INTERVAL = ("E1", "1-0:1.8.0", T, 1800, 412, 1_234_567, 0, 0)


def history(path: Path) -> None:
    key = new_meter_key()
    meter, obis, start, duration, value, register, p10, quality = HISTORY_INTERVAL
    nonce = os.urandom(12)
    plain = struct.pack(">qqbH", value, register, p10, quality)
    sealed = AESGCM(key).encrypt(nonce, plain, f"{meter}|{obis}|{start}|{duration}".encode())
    _write(
        path,
        HISTORY_DDL,
        [
            ("INSERT INTO meters VALUES (?, ?)", ("E1", "electricity")),
            ("INSERT INTO meter_keys VALUES (?, ?)", ("E1", wrap(MASTER, key))),
            (
                "INSERT INTO intervals VALUES (?, ?, ?, ?, ?, ?)",
                (meter, obis, start, duration, nonce, sealed),
            ),
        ],
    )


# -- diagnostics (src/smarthub/hub/diagnostics.py at ef0dbf5) ------------------------------------
DIAGNOSTICS_DDL = """
CREATE TABLE IF NOT EXISTS diagnostic_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    code INTEGER NOT NULL,
    device TEXT NOT NULL,
    device_kind TEXT NOT NULL,
    severity TEXT NOT NULL,
    recommendation TEXT NOT NULL,
    first_seen INTEGER NOT NULL,
    last_seen INTEGER NOT NULL,
    count INTEGER NOT NULL,
    attempts TEXT NOT NULL,
    closed INTEGER,
    resolution TEXT,
    seq INTEGER NOT NULL,
    nonce BLOB NOT NULL,
    sealed BLOB NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS diagnostic_open ON diagnostic_events(code, device) WHERE closed IS NULL;
CREATE INDEX IF NOT EXISTS diagnostic_seq ON diagnostic_events(seq);
CREATE TABLE IF NOT EXISTS diagnostic_key (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    wrapped BLOB NOT NULL
);
"""

DIAGNOSIS = {"evidence": "no reading for 3 intervals", "numbers": {"missing": 3}}


def diagnostics(path: Path) -> None:
    key = new_meter_key()
    nonce = os.urandom(12)
    plain = json.dumps(DIAGNOSIS, sort_keys=True).encode()
    sealed = AESGCM(key).encrypt(nonce, plain, f"diag|1|E1|{T}".encode())
    _write(
        path,
        DIAGNOSTICS_DDL,
        [
            ("INSERT INTO diagnostic_key VALUES (1, ?)", (wrap(MASTER, key),)),
            (
                "INSERT INTO diagnostic_events VALUES (1, 1, 'E1', 'meter', 'warning', 're-poll', ?, ?, 2,"
                " '[]', NULL, NULL, 1, ?, ?)",
                (T, T + 1800, nonce, sealed),
            ),
        ],
    )


# -- meter registry (src/smarthub/hub/registry.py at ef0dbf5) ------------------------------------
REGISTRY_DDL = """
CREATE TABLE IF NOT EXISTS meters (meter TEXT PRIMARY KEY, protocol TEXT NOT NULL, fuel TEXT NOT NULL, added INTEGER NOT NULL, removed INTEGER, replaced_by TEXT)
"""


def registry(path: Path) -> None:
    _write(
        path,
        REGISTRY_DDL,
        [
            ("INSERT INTO meters VALUES ('W1', 'wmbus', 'water', ?, NULL, NULL)", (T,)),
            ("INSERT INTO meters VALUES ('W0', 'wmbus', 'water', ?, ?, 'W1')", (T - 86400, T)),
        ],
    )


# -- supply holds (src/smarthub/hub/prepayment_bridge.py at ef0dbf5; it kept the rollback journal)
def supply_holds(path: Path) -> None:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("CREATE TABLE IF NOT EXISTS supply_holds (fuel TEXT PRIMARY KEY, since INTEGER NOT NULL)")
    db.execute("INSERT INTO supply_holds VALUES ('gas', ?)", (T,))
    db.close()


# -- consents (src/smarthub/hub/privacy.py) -------------------------------------------------------
CONSENT_V1 = (  # 5d7da25: granularity per recipient
    "CREATE TABLE IF NOT EXISTS consent (recipient TEXT PRIMARY KEY, granularity TEXT NOT NULL, "
    "changed INTEGER NOT NULL);"
)
CONSENT_V2 = (  # bda86f3: consent versions, supplier entries per fuel
    CONSENT_V1
    + "ALTER TABLE consent ADD COLUMN version INTEGER NOT NULL DEFAULT 0;"
    + "CREATE TABLE IF NOT EXISTS supplier_keys (fuel TEXT NOT NULL, effective INTEGER NOT NULL, "
    "supplier_id TEXT NOT NULL, lfdi TEXT NOT NULL, PRIMARY KEY (fuel, effective));"
)
CONSENT_MAIN = (  # 5c0552c .. ef0dbf5: scopes (the code ran both ALTERs before supplier_keys)
    CONSENT_V1
    + "ALTER TABLE consent ADD COLUMN version INTEGER NOT NULL DEFAULT 0;"
    + "ALTER TABLE consent ADD COLUMN scope TEXT;"
    + "CREATE TABLE IF NOT EXISTS supplier_keys (fuel TEXT NOT NULL, effective INTEGER NOT NULL, "
    "supplier_id TEXT NOT NULL, lfdi TEXT NOT NULL, PRIMARY KEY (fuel, effective));"
)


def consent_v1(path: Path) -> None:
    _write(path, CONSENT_V1, [("INSERT INTO consent VALUES ('TP1', 'daily', ?)", (T,))])


def consent_v2(path: Path) -> None:
    _write(
        path,
        CONSENT_V2,
        [
            ("INSERT INTO consent VALUES ('TP1', 'daily', ?, 4)", (T,)),
            ("INSERT INTO supplier_keys VALUES ('electricity', ?, 'gdsc', ?)", (T - 86400, "A" * 40)),
        ],
    )


def consent_main(path: Path) -> None:
    scope = json.dumps({"meters": {"E1": "daily"}})
    _write(
        path,
        CONSENT_MAIN,
        [
            ("INSERT INTO consent VALUES ('TP1', 'daily', ?, 4, ?)", (T, scope)),
            ("INSERT INTO supplier_keys VALUES ('electricity', ?, 'gdsc', ?)", (T - 86400, "A" * 40)),
        ],
    )


# -- the IHD's store (src/smarthub/hub/ihd/store.py) ----------------------------------------------
IHD_V1 = """
CREATE TABLE IF NOT EXISTS messages (
    sender TEXT NOT NULL,
    message_id TEXT NOT NULL,
    text TEXT NOT NULL,
    priority INTEGER NOT NULL,
    received INTEGER NOT NULL,
    expires INTEGER,
    acknowledged INTEGER,
    PRIMARY KEY (sender, message_id)
);
CREATE TABLE IF NOT EXISTS comparison (id INTEGER PRIMARY KEY CHECK (id = 1), body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS pairing (id INTEGER PRIMARY KEY CHECK (id = 1), code TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS appliances (meter TEXT PRIMARY KEY, name TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (token_hash TEXT PRIMARY KEY, created INTEGER NOT NULL);
"""  # 8593df9
IHD_V2 = IHD_V1 + "ALTER TABLE messages ADD COLUMN start INTEGER;"  # 31a5f87: a message's start time
IHD_MAIN = """
CREATE TABLE IF NOT EXISTS messages (
    sender TEXT NOT NULL,
    message_id TEXT NOT NULL,
    text TEXT NOT NULL,
    priority INTEGER NOT NULL,
    received INTEGER NOT NULL,
    expires INTEGER,
    acknowledged INTEGER,
    start INTEGER,
    PRIMARY KEY (sender, message_id)
);
CREATE TABLE IF NOT EXISTS comparison (id INTEGER PRIMARY KEY CHECK (id = 1), body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS appliances (meter TEXT PRIMARY KEY, name TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (token_hash TEXT PRIMARY KEY, created INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS pairing_code (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    salt BLOB,
    digest BLOB,              -- scrypt(code, salt); NULL once used, voided or expired
    issued INTEGER NOT NULL,
    expires INTEGER NOT NULL,
    failures INTEGER NOT NULL, -- wrong codes since this one was made
    next_try INTEGER NOT NULL  -- no attempt before this (epoch s): the back-off
);
ALTER TABLE sessions ADD COLUMN name TEXT NOT NULL DEFAULT 'screen';
ALTER TABLE sessions ADD COLUMN last_seen INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN expires INTEGER NOT NULL DEFAULT 0;
UPDATE sessions SET last_seen = created, expires = created + 31536000;
DROP TABLE IF EXISTS pairing;
"""  # f3675c9 .. ef0dbf5: what IhdStore.__init__ executed on a new file

IHD_TOKEN = "legacy-screen-token"


def _ihd_rows(with_start: bool, session_columns: int) -> list[tuple[str, tuple[object, ...]]]:
    digest = hashlib.sha256(IHD_TOKEN.encode()).hexdigest()
    message = ("gdsc", "m1", "Meter visit on Tuesday", 1, T, None, None) + ((T,) if with_start else ())
    session = (digest, T) + (("kitchen", T + 60, T + 31536000) if session_columns == 5 else ())
    return [
        (f"INSERT INTO messages VALUES ({', '.join('?' * len(message))})", message),
        ("INSERT INTO appliances VALUES ('P1', 'kettle')", ()),
        (f"INSERT INTO sessions VALUES ({', '.join('?' * len(session))})", session),
    ]


def ihd_v1(path: Path) -> None:
    _write(path, IHD_V1, [*_ihd_rows(False, 2), ("INSERT INTO pairing VALUES (1, '123456')", ())])


def ihd_v2(path: Path) -> None:
    _write(path, IHD_V2, [*_ihd_rows(True, 2), ("INSERT INTO pairing VALUES (1, '123456')", ())])


def ihd_main(path: Path) -> None:
    _write(path, IHD_MAIN, _ihd_rows(True, 5))


# -- management log (src/smarthub/hub/management.py at ef0dbf5) ----------------------------------
MANAGEMENT_DDL = """
CREATE TABLE IF NOT EXISTS mgmt_counter (id INTEGER PRIMARY KEY CHECK (id = 1), counter INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS mgmt_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    received INTEGER NOT NULL,
    counter INTEGER,
    type TEXT,
    outcome TEXT NOT NULL,
    reason TEXT NOT NULL
);
"""


def management(path: Path) -> None:
    _write(
        path,
        MANAGEMENT_DDL,
        [
            ("INSERT INTO mgmt_counter VALUES (1, 41)", ()),
            ("INSERT INTO mgmt_log VALUES (1, ?, 41, 'consent.set', 'done', '')", (T,)),
        ],
    )


# -- tariffs (src/smarthub/hub/tariffs.py at ef0dbf5) --------------------------------------------
TARIFFS_DDL = """
CREATE TABLE IF NOT EXISTS tariff_versions (
    fuel TEXT NOT NULL,
    tariff_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    effective INTEGER NOT NULL,
    body TEXT NOT NULL,
    received INTEGER NOT NULL,
    PRIMARY KEY (fuel, tariff_id, version)
);
"""


def tariffs(path: Path) -> None:
    _write(
        path,
        TARIFFS_DDL,
        [("INSERT INTO tariff_versions VALUES ('electricity', 'T1', 2, ?, '{}', ?)", (T, T))],
    )


# -- prepayment ledger (src/smarthub/hub/prepayment.py at ef0dbf5) -------------------------------
PREPAYMENT_DDL = """
CREATE TABLE IF NOT EXISTS accounts (
    fuel TEXT PRIMARY KEY,
    credit TEXT NOT NULL,
    debt TEXT NOT NULL,
    emergency_active INTEGER NOT NULL,
    supply TEXT NOT NULL,           -- on / off
    reconnect_confirmed INTEGER NOT NULL,
    low_alerted INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS topups (
    voucher_id TEXT PRIMARY KEY,
    fuel TEXT NOT NULL,
    amount TEXT NOT NULL,
    to_debt TEXT NOT NULL,
    to_credit TEXT NOT NULL,
    issued TEXT NOT NULL,
    applied INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS charges (
    key TEXT PRIMARY KEY,
    fuel TEXT NOT NULL,
    amount TEXT NOT NULL,
    from_credit TEXT NOT NULL,
    to_debt TEXT NOT NULL,
    at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS prepayment_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at INTEGER NOT NULL,
    fuel TEXT NOT NULL,
    kind TEXT NOT NULL,
    detail TEXT NOT NULL
);
"""


def prepayment(path: Path) -> None:
    _write(
        path,
        PREPAYMENT_DDL,
        [
            ("INSERT INTO accounts VALUES ('electricity', '12.34', '1.00', 0, 'on', 0, 0)", ()),
            ("INSERT INTO accounts VALUES ('gas', '0.00', '0.00', 0, 'on', 0, 0)", ()),
            ("INSERT INTO charges VALUES ('hh/electricity/1', 'electricity', '0.12', '0.12', '0', ?)", (T,)),
            ("INSERT INTO prepayment_events VALUES (1, ?, 'electricity', 'topup', 'V1 10.00')", (T,)),
        ],
    )


# -- DRLC events (src/smarthub/hub/drlc.py at ef0dbf5) -------------------------------------------
DRLC_DDL = """
CREATE TABLE IF NOT EXISTS drlc_events (
    mrid TEXT PRIMARY KEY,
    xml BLOB NOT NULL,
    effective_start INTEGER NOT NULL,
    effective_end INTEGER NOT NULL,
    state TEXT NOT NULL,
    opted_out INTEGER,
    superseded INTEGER NOT NULL DEFAULT 0,
    cancelled INTEGER NOT NULL DEFAULT 0,
    limited INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS drlc_responses (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    mrid TEXT NOT NULL,
    status INTEGER NOT NULL,
    at INTEGER NOT NULL,
    required INTEGER NOT NULL
);
"""


def drlc(path: Path) -> None:
    _write(path, DRLC_DDL, [("INSERT INTO drlc_responses VALUES (1, 'AB01', 1, ?, 1)", (T,))])


# -- appliance controller (src/smarthub/hub/appliances.py at ef0dbf5) ----------------------------
APPLIANCES_DDL = """
CREATE TABLE IF NOT EXISTS appliances (
    name TEXT PRIMARY KEY,
    plug TEXT NOT NULL UNIQUE,
    category INTEGER NOT NULL,
    interruptible INTEGER NOT NULL,
    dr_enabled INTEGER NOT NULL,
    min_duty_percent INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    appliance TEXT NOT NULL REFERENCES appliances(name),
    profile TEXT NOT NULL,          -- JSON list of kWh per step, as Decimal strings
    step INTEGER NOT NULL,          -- seconds
    earliest INTEGER NOT NULL,
    deadline INTEGER NOT NULL,
    start INTEGER,
    cost_p TEXT,
    state TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS switchings (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at INTEGER NOT NULL,
    plug TEXT NOT NULL,
    on_ INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS controller_tariff (id INTEGER PRIMARY KEY CHECK (id = 1), schedule TEXT NOT NULL);
"""


def appliances(path: Path) -> None:
    _write(
        path,
        APPLIANCES_DDL,
        [
            ("INSERT INTO appliances VALUES ('washer', 'plug-1', 8, 0, 1, 0)", ()),
            ("INSERT INTO switchings VALUES (1, ?, 'plug-1', 1)", (T,)),
        ],
    )


@dataclass(frozen=True)
class Legacy:
    """A legacy file: the name the hub gives it, and its builder."""

    file: str
    build: Callable[[Path], None]


LEGACY: dict[str, Legacy] = {
    "history": Legacy("history.sqlite", history),
    "diagnostics": Legacy("diagnostics.sqlite", diagnostics),
    "registry": Legacy("meters.sqlite", registry),
    "supply_holds": Legacy("supply_holds.sqlite", supply_holds),
    "consent_v1": Legacy("consent.sqlite", consent_v1),
    "consent_v2": Legacy("consent.sqlite", consent_v2),
    "consent_main": Legacy("consent.sqlite", consent_main),
    "ihd_v1": Legacy("ihd.sqlite", ihd_v1),
    "ihd_v2": Legacy("ihd.sqlite", ihd_v2),
    "ihd_main": Legacy("ihd.sqlite", ihd_main),
    "management": Legacy("management.sqlite", management),
    "tariffs": Legacy("tariffs.sqlite", tariffs),
    "prepayment": Legacy("prepayment.sqlite", prepayment),
    "drlc": Legacy("drlc.sqlite", drlc),
    "appliances": Legacy("appliances.sqlite", appliances),
}
