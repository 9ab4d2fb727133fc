"""``smarthub gdsc``: run the GDSC (its composition root, :mod:`smarthub.gdsc.service`), serve
its API, and administer it (API clients and party certificates, bearer tokens, certificate
renewal, the audit chain, aggregation groups, the PostgreSQL application role). A hub's life
(installers, commissioning, revocation) is in :mod:`smarthub.cli.lifecycle`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from smarthub.cli.app import LogFormatOption, app, err, fail
from smarthub.logs import LogFormat, setup_logging

if TYPE_CHECKING:
    from smarthub.clock import Clock
    from smarthub.gdsc.service import GdscService

gdsc_app = typer.Typer(
    add_completion=False,
    help="The GDSC. With --state (and no command): register the manifest's hubs and pull them every "
    "half-hour window. `api`: serve the data services API; `token`: issue a bearer token for it; "
    "`client`: register an OAuth2 client or bind a party certificate. A hub's life: `installer` (an "
    "installer certificate), `installer-request` (the installer's signed request), `commission`, "
    "`replace`, `revoke`, `decommission`, `renew` (a party's or collector's certificate). `audit verify` "
    "and `audit anchor`: the audit chain and its signed anchors; `db-role`: the PostgreSQL application role; "
    "`migrate`: bring a database to the newest schema (`--citus`: and spread it over a Citus cluster); "
    "`group`: put premises in an aggregation group; `data-quality`: the VEE gate's figures; "
    "`meter-model`: a meter's model for the gate; `transfer-policy`: how often, when and how finely hubs "
    "are pulled, per hub or group; `meter-shipment`, `pending-meters`: meters registered from the field; "
    "`service`: third-party data services' applications "
    "and the operator's decisions.",
)
app.add_typer(gdsc_app, name="gdsc")

StateDir = Annotated[Path, typer.Option(help="GDSC state directory")]
Db = Annotated[str | None, typer.Option(help="database URL (default: SQLite in the state dir)")]


def require_state(state: Path, db: str | None) -> None:
    if db is None and not (state / "gdsc").is_dir():
        raise fail("smarthub gdsc", f"{state} has no gdsc/ directory (make one with `smarthub demo --state`)")


def now_at(state: Path) -> datetime:
    """The state's time: its manifest's simulated clock, else real time."""
    from smarthub.gdsc.service import clock_from_manifest

    return clock_from_manifest(state).now()


def build_service(
    state: Path,
    db: str | None,
    seed: int = 0,
    clock: Clock | None = None,
    *,
    alerts: str | None = None,
    topology: Path | None = None,
    channel: str | None = None,
) -> GdscService:
    """The GDSC ``smarthub gdsc --state`` runs (the demo and the chaos run build the same one), on
    the state's clock unless ``clock`` is given."""
    from smarthub.gdsc.service import GdscConfig, GdscService, clock_from_manifest

    config = GdscConfig(
        state, db, window=timedelta(minutes=30), seed=seed, alerts=alerts, topology=topology, channel=channel
    )
    return GdscService.build(config, clock or clock_from_manifest(state))


@gdsc_app.callback(invoke_without_command=True)
def gdsc(
    ctx: typer.Context,
    state: Annotated[Path | None, typer.Option(help="state directory with ca/, gdsc/ and fleet.json")] = None,
    db: Db = None,
    until: Annotated[str | None, typer.Option(help="stop at this simulated time (ISO 8601)")] = None,
    seed: Annotated[int, typer.Option(help="spreads the pulls within each window")] = 0,
    alerts: Annotated[
        str | None,
        typer.Option(
            help="HOST:PORT (or PORT) of the UDP endpoint for hubs' last-gasp and restoration alerts "
            "(hubs' hub.toml: [wan] alerts); correlated into outages over the topology"
        ),
    ] = None,
    topology: Annotated[
        Path | None,
        typer.Option(
            help="network topology to load (CSV or GeoJSON; default gdsc/topology.csv or .geojson "
            "in the state, if there); with --alerts"
        ),
    ] = None,
    channel: Annotated[
        str | None,
        typer.Option(
            help="HOST:PORT (or PORT) of the TCP endpoint where hubs that cannot be dialled (behind a "
            "NAT) keep a channel open (hubs' hub.toml: [wan] channel; registered as channel://HUB-ID)"
        ),
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(min=0, max=65535, help="serve Prometheus /metrics on this port (0: any free port)"),
    ] = None,
    metrics_host: Annotated[str, typer.Option(help="address for --metrics-port")] = "127.0.0.1",
    log_format: LogFormatOption = LogFormat.text,
) -> None:
    """Run the GDSC: register the hubs in the manifest and pull them every half-hour window, with
    its upkeep (CRL, renewals, vouchers, opening reads, consent expiries, comparisons, audit
    anchors) and the error log's repairs.

    Simulated time follows the manifest's clock (sim_start, speed, wall_start) when it has
    one, so a GDSC process and a fleet process agree; otherwise real time.
    """
    if ctx.invoked_subcommand is not None:
        return
    if state is None:
        raise typer.BadParameter("--state is required to run the GDSC", param_hint="--state")
    setup_logging(logging.WARNING, log_format, service="gdsc-collector")
    end = datetime.fromisoformat(until) if until else datetime.max.replace(tzinfo=UTC)
    if topology is not None and alerts is None:
        raise typer.BadParameter(
            "the topology is for the alert endpoint: give --alerts too", param_hint="--topology"
        )
    try:
        service = build_service(state, db, seed, alerts=alerts, topology=topology, channel=channel)
    except (ValueError, OSError) as e:
        raise fail("smarthub gdsc", str(e)) from None
    err.print(f"GDSC pulling {len(service.store.active_hubs())} hubs into {service.store.display_url}")
    if metrics_port is not None:
        try:
            bound = service.serve_metrics(metrics_port, metrics_host)
        except OSError as e:
            raise fail("smarthub gdsc", f"--metrics-port {metrics_port}: {e}") from None
        err.print(f"metrics on http://{metrics_host}:{bound}/metrics")
    if service.outages is not None:
        mapped = len(service.outages.correlator.topology.places)
        err.print(f"last-gasp alerts on UDP {alerts}, {mapped} premises on the map")
    if service.channels is not None:
        err.print(f"hubs' channels accepted on TCP {channel}")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(service.run(end))


@gdsc_app.command("api")
def gdsc_api(
    state: Annotated[Path, typer.Option(help="GDSC state directory (gdsc/gdsc.sqlite, gdsc/operator.*)")],
    db: Db = None,
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="TCP port")] = 8600,
    tls: Annotated[
        bool,
        typer.Option(
            "--tls",
            help="serve HTTPS with a GDSC-CA server certificate (gdsc/api-server.pem, issued on first use), "
            "requiring a party client certificate checked against the CA and its CRL",
        ),
    ] = False,
    client_cert_optional: Annotated[
        bool,
        typer.Option(
            "--client-cert-optional",
            help="with --tls: ask for a client certificate but also serve callers without one "
            "(OAuth2 or bearer tokens)",
        ),
    ] = False,
    log_format: LogFormatOption = LogFormat.text,
) -> None:
    """Serve the data services API (OpenAPI at /docs, OAuth2 token endpoint at /oauth/token) against
    the state directory's store.

    Commands are queued in the store's shared plan for a running `smarthub gdsc` to deliver.
    """
    from smarthub.gdsc.api.serve import serve_api

    require_state(state, db)
    if client_cert_optional and not tls:
        raise typer.BadParameter("needs --tls", param_hint="--client-cert-optional")
    try:
        if log_format is LogFormat.json:
            setup_logging(logging.INFO, log_format, service="gdsc-api")
        serve_api(
            state, db, host, port, tls=tls, client_cert_optional=client_cert_optional,
            uvicorn_logging=log_format is LogFormat.text,
        )  # fmt: skip
    except FileNotFoundError as e:
        raise fail("smarthub gdsc api", str(e)) from None


@gdsc_app.command("client")
def gdsc_client(
    state: StateDir,
    party: Annotated[str | None, typer.Option(help="the party the client or certificate acts for")] = None,
    scope: Annotated[
        list[str] | None, typer.Option(help="a scope the client may ask for (repeat; default: every scope)")
    ] = None,
    certificate: Annotated[
        Path | None,
        typer.Option(
            help="instead of an OAuth2 client: issue a party certificate from the state's CA into this "
            "directory (<party>.pem, <party>.key) and bind its LFDI to the party for mutual TLS"
        ),
    ] = None,
    bind: Annotated[
        Path | None, typer.Option(help="bind an existing GDSC-issued party certificate (PEM) to the party")
    ] = None,
    revoke: Annotated[
        str | None,
        typer.Option(
            help="revoke a client id (its tokens stop working), or a certificate by LFDI (at the CA too)"
        ),
    ] = None,
    db: Db = None,
) -> None:
    """Register an OAuth2 client for a party (prints client_id and client_secret: the secret is shown
    once, only a salted scrypt hash is kept), bind a party certificate, or revoke either."""
    from smarthub.gdsc.api.auth import admin
    from smarthub.gdsc.api.auth.clients import ClientRegistry
    from smarthub.gdsc.fleet.pki import CertificateAuthority, CertificateRejected
    from smarthub.gdsc.service import open_store

    require_state(state, db)
    now = now_at(state)
    if sum(x is not None for x in (certificate, bind, revoke)) > 1:
        raise typer.BadParameter("give one of --certificate, --bind or --revoke")
    if revoke is None and party is None:
        raise typer.BadParameter("--party is required", param_hint="--party")
    store = open_store(state, db)
    try:
        registry = ClientRegistry(store.engine)
        if revoke is not None:
            lines = admin.revoke_caller(registry, state / "ca", revoke, now)
        elif certificate is not None:
            ca = CertificateAuthority.load(state / "ca")
            lines = admin.issue_party_certificate(registry, ca, str(party), certificate, now)
        elif bind is not None:
            ca = CertificateAuthority.load(state / "ca")
            lines = admin.bind_party_certificate(registry, ca, str(party), bind.read_bytes(), now)
        else:
            lines = admin.register_client(registry, str(party), scope or (), now)
    except (LookupError, ValueError, CertificateRejected, OSError) as e:
        raise fail("smarthub gdsc client", str(e)) from None
    finally:
        store.close()
    print("\n".join(lines))


@gdsc_app.command("renew")
def gdsc_renew(
    state: Annotated[Path, typer.Option(help="GDSC state directory (ca/ with ca.key)")],
    cert: Annotated[Path, typer.Option(help="the certificate to renew (PEM): a party's or a collector's")],
    out: Annotated[Path, typer.Option(help="directory for the renewed certificate (same file name)")],
    days: Annotated[int | None, typer.Option(help="validity in days (default: as the old one)")] = None,
    db: Db = None,
) -> None:
    """Renew a certificate for the same key, subject, role and SANs; prints its path and new LFDI.

    The holder keeps its private key. A renewed certificate has a new LFDI (IEEE 2030.5-2018
    §6.3.4 hashes the whole certificate): a party certificate bound for mutual TLS is bound anew
    to the same party and the old binding revoked (at the CA too, superseded). A collector's old
    certificate stays valid until revoked, so the collector can switch first. Hubs are renewed
    by the GDSC itself (upkeep, ``HubLifecycle.renew_hub``), which sends them the certificate."""
    from smarthub.gdsc.api.auth import admin
    from smarthub.gdsc.api.auth.clients import ClientRegistry
    from smarthub.gdsc.fleet.pki import CertificateAuthority, CertificateRejected, Role
    from smarthub.gdsc.service import open_store

    now = now_at(state)
    try:
        ca = CertificateAuthority.load(state / "ca")
        old, renewed, path = admin.renew_certificate(ca, cert.read_bytes(), out, cert.stem, now, days)
    except (ValueError, CertificateRejected, OSError) as e:
        raise fail("smarthub gdsc renew", str(e)) from None
    print(f"certificate: {path}\nlfdi: {renewed.lfdi}")
    if renewed.role is not Role.PARTY or (db is None and not (state / "gdsc").is_dir()):
        return
    store = open_store(state, db)
    try:
        lines = admin.rebind_renewed(ClientRegistry(store.engine), ca, old, renewed, now)
    finally:
        store.close()
    if lines:
        print("\n".join(lines))


@gdsc_app.command("token")
def gdsc_token(
    state: StateDir,
    party: Annotated[str, typer.Option(help="the party the token authenticates")],
    role: Annotated[
        str | None, typer.Option(help="create the party with this role first if it does not exist")
    ] = None,
    name: Annotated[str, typer.Option(help="the party's name, when it is created")] = "",
    db: Db = None,
) -> None:
    """Issue a bearer token for a party and print it (only its SHA-256 is stored: keep it now)."""
    from smarthub.gdsc.api.auth.tokens import issue_token
    from smarthub.gdsc.service import store_url

    require_state(state, db)
    try:
        token = issue_token(store_url(state, db), party, now_at(state), role, name)
    except (LookupError, ValueError) as e:
        raise fail("smarthub gdsc token", str(e)) from None
    print(token)


audit_app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="The audit chain: `verify` it against every signed anchor; `anchor` it now.",
)
gdsc_app.add_typer(audit_app, name="audit")
Anchors = Annotated[Path | None, typer.Option(help="signed anchor file (default: gdsc/audit-anchors.jsonl)")]


@audit_app.command("verify")
def gdsc_audit_verify(
    state: Annotated[Path, typer.Option(help="GDSC state directory (ca/ca.pem, gdsc/)")],
    db: Db = None,
    anchors: Anchors = None,
) -> None:
    """Walk the audit chain and check it against every signed anchor; one JSON line, exit
    status 2 if anything is altered, missing or rewritten since it was anchored."""
    from smarthub.gdsc.governance.audit_anchors import AnchorError, verify_state

    require_state(state, db)
    try:
        report = verify_state(state, db, anchors)
    except (AnchorError, OSError) as e:
        raise fail("smarthub gdsc audit verify", str(e)) from None
    print(json.dumps(report))
    if not report["ok"]:
        raise typer.Exit(2)


@audit_app.command("anchor")
def gdsc_audit_anchor(
    state: Annotated[Path, typer.Option(help="GDSC state directory (gdsc/operator.{pem,key})")],
    db: Db = None,
    anchors: Anchors = None,
) -> None:
    """Sign the chain's head with the operator key and append it to the anchor file now."""
    from smarthub.gdsc.governance.audit_anchors import anchor_state

    require_state(state, db)
    try:
        a = anchor_state(state, datetime.now(UTC), db, anchors)
    except (OSError, ValueError) as e:
        raise fail("smarthub gdsc audit anchor", str(e)) from None
    print(json.dumps(None if a is None else {"seq": a.seq, "hash": a.hash, "at": a.at.isoformat()}))


@gdsc_app.command("group")
def gdsc_group(
    state: StateDir,
    group: Annotated[str, typer.Option(help="the aggregation group (e.g. an LV feeder's id)")],
    premises: Annotated[list[str], typer.Option(help="a premises to put in the group (repeat)")],
    description: Annotated[str, typer.Option(help="what the group is, when it is created")] = "",
    start: Annotated[
        str | None,
        typer.Option(
            "--from", help="ISO 8601: membership from (default now; earlier only for premises in no group)"
        ),
    ] = None,
    db: Db = None,
) -> None:
    """Put premises in an aggregation group: aggregates are served over such groups only (a
    premises is in one group at a time; what covers past data never changes)."""
    from smarthub.gdsc.governance.aggregates import MembershipRefused, UnknownGroup, assign_group
    from smarthub.gdsc.service import open_store

    require_state(state, db)
    store = open_store(state, db)
    try:
        when = datetime.fromisoformat(start) if start else None
        done = assign_group(store.engine, group, description, premises, now_at(state), when)
    except (MembershipRefused, UnknownGroup, ValueError) as e:
        raise fail("smarthub gdsc group", str(e)) from None
    finally:
        store.close()
    print(json.dumps({"group": group, "premises": done}))


@gdsc_app.command("meter-model")
def gdsc_meter_model(
    state: StateDir,
    hub: Annotated[str, typer.Option(help="the hub serving the meter")],
    meter: Annotated[str, typer.Option(help="the meter id")],
    model: Annotated[
        str, typer.Option(help="the meter model (its physical limits are configured per model)")
    ],
    db: Db = None,
) -> None:
    """Record a meter's model for the VEE gate (spike limits, register digits, export)."""
    from smarthub.gdsc.service import open_store

    require_state(state, db)
    store = open_store(state, db)
    try:
        store.set_meter_models([(hub, meter, model)])
    finally:
        store.close()
    print(json.dumps({"hub": hub, "meter": meter, "model": model}))


@gdsc_app.command("transfer-policy")
def gdsc_transfer_policy(
    state: StateDir,
    scope: Annotated[
        str | None, typer.Option(help="hub, premises-class, tariff, supplier or default (none: list them)")
    ] = None,
    key: Annotated[str, typer.Option(help="the hub id, class, tariff group or supplier id")] = "*",
    frequency: Annotated[str, typer.Option(help="half-hourly, daily or monthly")] = "daily",
    window_start: Annotated[int, typer.Option(help="minutes past UTC midnight (a multiple of 30)")] = 0,
    window_length: Annotated[int, typer.Option(help="minutes (a multiple of 30, at most 1440)")] = 1440,
    aggregation: Annotated[str, typer.Option(help="half-hourly, daily, monthly or tariff-registers")] = (
        "half-hourly"
    ),
    priority: Annotated[int, typer.Option(help="0 (pulled first in a window) to 9")] = 5,
    db: Db = None,
) -> None:
    """Set the transfer policy of a hub or a group (one row, however many hubs), or list them:
    the pull plan honours it from its next window, each hub gets it riding on its next pull."""
    from smarthub.gdsc.service import open_store
    from smarthub.gdsc.transfer.policies import Policy, TransferPolicies

    require_state(state, db)
    store = open_store(state, db)
    try:
        policies = TransferPolicies(store.engine)
        if scope is None:
            for sp in policies.policies():
                print(
                    json.dumps(
                        {"scope": sp.scope, "key": sp.key, **sp.policy.fields(), "version": sp.version}
                    )
                )
            return
        now = now_at(state)
        try:
            policy = Policy(frequency, window_start, window_length, aggregation, priority)
            sp = policies.set(scope, key, policy, "operator-cli", now)
        except ValueError as e:  # MalformedCommand is one: it names the field
            raise fail("smarthub gdsc transfer-policy", str(e)) from None
        hubs = policies.covered(sp.scope, sp.key, now)
    finally:
        store.close()
    print(
        json.dumps(
            {"scope": sp.scope, "key": sp.key, **sp.policy.fields(), "version": sp.version, "hubs": hubs}
        )
    )


@gdsc_app.command("meter-shipment")
def gdsc_meter_shipment(
    state: StateDir,
    file: Annotated[Path, typer.Option(help="the manufacturer's shipment file (CSV)")],
    db: Db = None,
) -> None:
    """Import a manufacturer's shipment file (meter_id,manufacturer,protocol,fuel,key): the meters a
    hub reports hearing are registered from it once an installer's job confirms them."""
    from smarthub.gdsc.fleet.field_meters import FieldMeters, ShipmentRefused
    from smarthub.gdsc.fleet.key_escrow import EscrowUnavailable
    from smarthub.gdsc.service import open_store

    require_state(state, db)
    store = open_store(state, db)
    try:
        field = FieldMeters(store.engine, escrow=store.key_escrow)
        n = field.import_shipment(file.read_text(), file.name, now_at(state))
    except (OSError, ShipmentRefused, EscrowUnavailable, UnicodeDecodeError) as e:
        raise fail("smarthub gdsc meter-shipment", str(e)) from None
    finally:
        store.close()
    print(json.dumps({"shipment": file.name, "meters": n}))


@gdsc_app.command("pending-meters")
def gdsc_pending_meters(
    state: StateDir,
    hub: Annotated[str | None, typer.Option(help="one hub's only")] = None,
    db: Db = None,
) -> None:
    """The meters hubs heard but were not told of, and where their registration stands (JSON lines)."""
    from smarthub.gdsc.fleet.field_meters import FieldMeters
    from smarthub.gdsc.service import open_store

    require_state(state, db)
    store = open_store(state, db)
    try:
        rows = FieldMeters(store.engine).pending(hub)
    finally:
        store.close()
    for row in rows:
        print(json.dumps(row, default=str))


@gdsc_app.command("data-quality")
def gdsc_data_quality(
    state: StateDir,
    by: Annotated[str, typer.Option(help="hub, model or supplier")] = "hub",
    db: Db = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per line, not a table")] = False,
) -> None:
    """Data-quality figures of the VEE gate: readings quarantined and flagged (by rule), gaps
    estimated and estimates since replaced by actual readings, per hub, meter model or supplier."""
    from rich.console import Console
    from rich.table import Table

    from smarthub.gdsc.service import open_store

    require_state(state, db)
    store = open_store(state, db)
    try:
        rows = store.quality_figures(by)
    except ValueError as e:
        raise fail("smarthub gdsc data-quality", str(e)) from None
    finally:
        store.close()
    if as_json:
        for row in rows:
            print(json.dumps(row))
        return
    table = Table(title=f"data quality by {by}")
    for col in (by, "quarantined", "flagged", "estimated", "replaced", "rules"):
        table.add_column(col, justify="left" if col in (by, "rules") else "right")
    for row in rows:
        rules = ", ".join(f"{k} {v}" for k, v in sorted(row["rules"].items()))
        table.add_row(
            row[by], str(row["quarantined"]), str(row["flagged"]), str(row["estimated"]),
            str(row["estimates_replaced"]), rules,
        )  # fmt: skip
    Console().print(table)


@gdsc_app.command("db-role")
def gdsc_db_role(
    db: Annotated[str, typer.Option(help="PostgreSQL URL of the role owning the GDSC schema")],
    role: Annotated[str, typer.Option(help="the application role to create or fix")] = "smarthub_app",
    password_file: Annotated[Path | None, typer.Option(help="file holding the role's password")] = None,
) -> None:
    """Give the GDSC processes a PostgreSQL role that cannot rewrite the audit log (it owns every
    table but audit_log; see smarthub.gdsc.db.roles); run after each schema upgrade."""
    from smarthub.gdsc.db.roles import grant_application_role_at

    try:
        moved = grant_application_role_at(db, role, password_file)
    except (OSError, ValueError) as e:
        raise fail("smarthub gdsc db-role", str(e)) from None
    print(json.dumps({"role": role, "owns": moved, "audit_log": "SELECT, INSERT"}))


@gdsc_app.command("migrate")
def gdsc_migrate(
    db: Annotated[str | None, typer.Option(help="database URL (the coordinator's, with --citus)")] = None,
    citus: Annotated[
        bool, typer.Option("--citus", help="then create the reference and distributed tables (Citus)")
    ] = False,
    print_ddl: Annotated[
        bool,
        typer.Option("--print-ddl", help="print the Citus DDL (made from the table placements) and stop"),
    ] = False,
) -> None:
    """Bring the database to the newest migration; with --citus, then place every table on the
    Citus cluster as smarthub.gdsc.db.placement declares (reference tables, distributed tables
    by hub in colocation groups, foreign keys after distribution). Idempotent: run it after
    every upgrade."""
    from smarthub.gdsc.db.citus import CitusMissing, apply_citus, citus_ddl, require_citus
    from smarthub.gdsc.db.schema import metadata

    if print_ddl:
        print(citus_ddl(metadata), end="")
        return
    if db is None:
        raise typer.BadParameter("--db is required (or --print-ddl)", param_hint="--db")
    from smarthub.gdsc.store import Store

    store = Store(db)
    try:
        if citus:  # refused before anything is changed
            require_citus(store.engine)
        store.create_schema()
        steps = apply_citus(store.engine, metadata) if citus else []
    except CitusMissing as e:
        raise fail("smarthub gdsc migrate", str(e)) from None
    finally:
        store.close()
    print(json.dumps({"migrated": True, "citus_steps": len(steps)}))
