"""The `smarthub` command. Parses options and calls into the packages; holds no logic."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
err = Console(stderr=True)


@app.command()
def demo(
    homes: Annotated[int, typer.Option(min=1, help="simulated homes, each with a Smart Hub")] = 20,
    days: Annotated[int, typer.Option(min=1, help="simulated days")] = 1,
    headless: Annotated[bool, typer.Option(help="no operator page; exit at the end, JSON last line")] = False,
    seconds_per_day: Annotated[float, typer.Option(min=1.0, help="wall seconds per simulated day")] = 60.0,
    seed: int = 1,
    db: Annotated[
        str | None, typer.Option(help="GDSC database URL (default: SQLite in the state dir)")
    ] = None,
    state: Annotated[Path | None, typer.Option(help="state directory (default: a temporary one)")] = None,
    port: Annotated[int, typer.Option(help="operator page port")] = 8080,
) -> None:
    """Run a GDSC and a fleet of simulated homes through an accelerated day."""
    from smarthub.sim.demo import DemoConfig

    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)
    tmp = None
    if state is None:
        tmp = tempfile.mkdtemp(prefix="smarthub-demo-")
        state = Path(tmp)
    cfg = DemoConfig(
        homes=homes, days=days, seconds_per_day=seconds_per_day, seed=seed, state=state, db_url=db
    )
    try:
        result = asyncio.run(_demo(cfg, headless, port))
    except KeyboardInterrupt:
        err.print("stopped")
        result = None
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    if result is not None:
        print(result.json_line())
        if result.missing or result.duplicates:
            raise typer.Exit(1)


@app.command()
def chaos(
    homes: Annotated[int, typer.Option(min=1, help="simulated homes")] = 200,
    days: Annotated[int, typer.Option(min=1, help="simulated days")] = 3,
    seed: Annotated[int, typer.Option(help="seeds the homes and the faults: same seed, same run")] = 1,
    seconds_per_day: Annotated[float, typer.Option(min=1.0, help="wall seconds per simulated day")] = 60.0,
    db: Annotated[
        str | None, typer.Option(help="GDSC database URL (default: SQLite in the state dir)")
    ] = None,
    state: Annotated[Path | None, typer.Option(help="state directory (default: a temporary one)")] = None,
) -> None:
    """Run a fleet with faults injected (WAN and cell outages, power cuts, HAN dropouts, collector
    and database restarts) and top-ups in flight; JSON last line with what was lost."""
    from smarthub.sim.chaos import run_chaos
    from smarthub.sim.demo import DemoConfig

    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)
    tmp = None
    if state is None:
        tmp = tempfile.mkdtemp(prefix="smarthub-chaos-")
        state = Path(tmp)
    cfg = DemoConfig(
        homes=homes, days=days, seconds_per_day=seconds_per_day, seed=seed, state=state, db_url=db
    )
    err.print(f"chaos: {homes} homes, {days} days, seed {seed}, {seconds_per_day:g} s per simulated day …")
    try:
        result = asyncio.run(run_chaos(cfg))
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    print(result.json_line())
    if result.lost or result.duplicates or result.topups_lost or result.topups_doubled:
        raise typer.Exit(1)


async def _demo(cfg, headless: bool, port: int):  # type: ignore[no-untyped-def]
    from aiohttp import web

    from smarthub.gdsc.console import console_app
    from smarthub.sim.demo import account, run_day, setup, teardown

    err.print(
        f"[bold]smarthub demo[/]: {cfg.homes} homes, {cfg.days} day(s), GDSC store "
        f"{cfg.db_url or 'SQLite'}, state in {cfg.state}"
    )
    run = await setup(cfg)
    runner = None
    if not headless:
        runner = web.AppRunner(
            console_app(run.store, lambda: run.scheduler.windows, run.error_log), access_log=None
        )
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        err.print(f"operator page: http://127.0.0.1:{port}/")
    total = (cfg.end + timedelta(minutes=30) - cfg.sim_start).total_seconds()
    try:
        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(),
            console=err,
            transient=False,
        ) as progress:
            task = progress.add_task("simulated day", total=total, status="starting")
            day = asyncio.create_task(run_day(run))
            while not day.done():
                now = run.clock.now()
                done = sum(w.done for w in run.scheduler.windows)
                status = (
                    f"sim {now:%a %H:%M} · pulls {done} · errors {run.scheduler.pull_errors} · "
                    f"stored {sum(w.inserted for w in run.scheduler.windows)}"
                )
                progress.update(
                    task, completed=min((now - cfg.sim_start).total_seconds(), total), status=status
                )
                await asyncio.sleep(0.25)
            progress.update(task, completed=total, status="done")
            result = day.result()
        err.print(
            f"stored {result.readings_stored}/{result.readings_expected} readings, missing {result.missing}, "
            f"duplicates {result.duplicates}, pull errors {result.pull_errors}, {result.seconds:.1f} s"
        )
        if not headless:
            err.print(f"fleet keeps running; operator page on http://127.0.0.1:{port}/ — Ctrl-C to stop")
            run.fleet.start_meters()
            with contextlib.suppress(asyncio.CancelledError):
                await run.scheduler.run(until=datetime.max.replace(tzinfo=UTC))
            result = await asyncio.to_thread(account, run, result.seconds)
        return result
    finally:
        if runner is not None:
            await runner.cleanup()
        await teardown(run)


@app.command()
def hub(
    state: Annotated[Path, typer.Option(help="hub directory holding hub.pem, hub.key, ca.pem")],
    hub_id: Annotated[str, typer.Option(help="this hub's id as registered at the GDSC")],
    serial: Annotated[str | None, typer.Option(help="P1 serial device, e.g. /dev/ttyUSB0")] = None,
    tcp: Annotated[str | None, typer.Option(help="P1 over TCP (ser2net, P1 dongle): HOST:PORT")] = None,
    listen: str = "0.0.0.0",
    port: int = 8443,
    dsmr2: Annotated[bool, typer.Option(help="DSMR 2/3 meter: 9600 baud 7E1")] = False,
    consumer: Annotated[
        Path | None,
        typer.Option(help="JSON per fuel: meter id, supplier, tariff versions, g CO2/kWh (serves the IHD)"),
    ] = None,
    ihd_listen: str = "0.0.0.0",
    ihd_port: int = 8080,
) -> None:
    """Run one Smart Hub against a real meter's P1 port, serving 2030.5 over mutual TLS and,
    with --consumer, the in-home display on the home network (plain HTTP, paired by code)."""
    from cryptography import x509

    from smarthub.clock import SystemClock
    from smarthub.han.p1 import P1Port
    from smarthub.han.tcp import TcpStreamTransport
    from smarthub.han.transport import SerialP1Transport
    from smarthub.hub.diagnostics import Diagnostics, DiagnosticsLog
    from smarthub.hub.firmware import FirmwareSlots, FirmwareUpdater, firmware_command
    from smarthub.hub.history import HistoryStore
    from smarthub.hub.hub import SmartHub
    from smarthub.hub.management import CrlStore, ManagementInterface
    from smarthub.hub.network import NetworkSettings, network_command
    from smarthub.hub.privacy import ConsentStore, HubPrivacy, privacy_commands
    from smarthub.hub.registry import MeterRegistry, registry_commands
    from smarthub.security.certificates import lfdi
    from smarthub.wan.ihd_resources import IhdResources
    from smarthub.wan.server import HubWanServer
    from smarthub.wan.tls import server_context

    if (serial is None) == (tcp is None):
        print("smarthub hub: give exactly one of --serial DEVICE or --tcp HOST:PORT", file=sys.stderr)
        raise typer.Exit(2)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)

    async def run_hub() -> None:
        clock = SystemClock()
        history = HistoryStore(state / "history.sqlite")
        events = DiagnosticsLog.beside(history.path)
        registry = MeterRegistry(state / "meters.sqlite", clock)
        smart_hub = SmartHub(hub_id, history, clock=clock, diagnostics=Diagnostics(events), registry=registry)
        smart_hub.attach(P1Port("p1"))
        cert = x509.load_pem_x509_certificate((state / "hub.pem").read_bytes())
        ca_cert = x509.load_pem_x509_certificate((state / "ca.pem").read_bytes())
        management = ManagementInterface(hub_id, ca_cert, clock, state / "management.sqlite")
        for ctype, handler in smart_hub.command_handlers().items():
            management.register(ctype, handler)
        consent = ConsentStore(state / "consent.sqlite", clock=clock)  # monthly for billing until opt-in
        privacy = HubPrivacy(consent, smart_hub.history, mirror=smart_hub.mirror)
        for ctype, handler in privacy_commands(privacy, clock).items():  # consent.set, supplier.keys
            management.register(ctype, handler)
        for ctype, handler in registry_commands(registry).items():
            management.register(ctype, handler)
        network = NetworkSettings(state / "network.json")
        management.register("network.configure", network_command(network))
        # The GDSC CA's CRL, pushed as pki.crl: checked for commands and on every WAN request.
        crls = CrlStore(state / "crl.pem", ca_cert, clock)
        management.use_crl_store(crls)

        async def healthy(version: str) -> bool:
            # The new version is kept only if the hub still reads its meter during probation.
            before = smart_hub.stats.frames_ok
            for _ in range(60):
                await asyncio.sleep(1)
                if smart_hub.stats.frames_ok > before:
                    return True
            return False

        updater = FirmwareUpdater(FirmwareSlots(state / "firmware"), ca_cert, clock, healthy)
        updater.recover()
        management.register("firmware.update", firmware_command(updater))
        server = HubWanServer(
            hub_id,
            lfdi(cert),
            smart_hub,
            lambda: int(clock.now().timestamp()),
            management,
            privacy,
            events,
            client_allowed=network.client_allowed,
            revoked=crls.is_revoked,
        )
        ctx = server_context(state / "hub.pem", state / "hub.key", state / "ca.pem")
        bound = await server.start(listen, port, ctx)
        err.print(f"hub {hub_id} serving IEEE 2030.5 on https://{listen}:{bound}/dcap (mutual TLS)")
        side = None
        if consumer is not None:
            from smarthub.hub.ihd.home import attach_consumer_side, supplies_from_json

            # A P1 port only reads: no breaker to switch, so no prepayment on this hub.
            side = attach_consumer_side(
                smart_hub,
                state / "ihd",
                clock,
                supplies_from_json(consumer.read_text()),
                management=management,
                consent=consent,
            )
            await side.serve(ihd_listen, ihd_port)
            # Third-party displays of this home (an ihd certificate) read pricing, messages, live demand.
            IhdResources(server, side.consumption, side.store, clock.now, live=side.ihd.live).install()
            code = side.store.pairing_code()
            err.print(f"in-home display on http://{ihd_listen}:{ihd_port}/ (pairing code {code})")

        def on_bytes(data: bytes) -> None:
            for e in smart_hub.receive("p1", data):
                err.print(f"[red]rejected frame[/]: {e}")

        if serial is not None:
            transport: SerialP1Transport | TcpStreamTransport = SerialP1Transport(
                serial, on_bytes, dsmr2=dsmr2
            )
        else:
            host, _, tcp_port = str(tcp).rpartition(":")
            transport = TcpStreamTransport(host, int(tcp_port), on_bytes)

        async def housekeeping() -> None:
            # Diagnoses that depend on time passing, the repairs they call for, and retention.
            while True:
                now = clock.now()
                smart_hub.diagnostics.tick(now)  # type: ignore[union-attr]
                await smart_hub.diagnostics.repair_pending(now)  # type: ignore[union-attr]
                await asyncio.to_thread(history.compact, now)
                await asyncio.sleep(300)

        chores = asyncio.create_task(housekeeping())
        try:
            await transport.run()
        finally:
            chores.cancel()
            transport.stop()
            await server.stop()
            if side is not None:
                await side.stop()
            management.close()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_hub())


@app.command()
def decode(
    protocol: Annotated[str, typer.Option(help="dlms, iec62056-21, mbus, wmbus, zigbee or dsmr")],
    source: Annotated[str, typer.Argument(help="file with the frame as hex, or - for standard input")] = "-",
    key: Annotated[str | None, typer.Option(help="AES-128 key as hex (wmbus, encrypted dlms)")] = None,
    auth_key: Annotated[
        str | None, typer.Option(help="dlms: authentication key AK as hex (default: the key)")
    ] = None,
    meter: Annotated[str | None, typer.Option(help="meter id when the frame does not carry one")] = None,
    device_type: Annotated[
        int | None, typer.Option(help="zigbee: MeteringDeviceType (0 electric, 1 gas, 2 water)")
    ] = None,
    multiplier: Annotated[int, typer.Option(help="zigbee: Multiplier attribute")] = 1,
    divisor: Annotated[int, typer.Option(help="zigbee: Divisor attribute")] = 1,
    unit_of_measure: Annotated[int, typer.Option(help="zigbee: UnitOfMeasure (0 kWh, 1 m3)")] = 0,
) -> None:
    """Decode one captured frame (hex) and print one JSON object per reading.

    Exit status 2, with one line on standard error saying what is wrong, on bad input.
    Points the mapping table does not translate are reported on standard error, not dropped.
    """
    import json
    from datetime import UTC

    from smarthub.meters.decode import decode_points, parse_hex
    from smarthub.meters.errors import DecodeError
    from smarthub.meters.mapping import MappingTable
    from smarthub.meters.zigbee_se import MeterFormatting

    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text()
        data = parse_hex(text)
        key_bytes = parse_hex(key) if key is not None else None
        if key_bytes is not None and len(key_bytes) != 16:
            raise DecodeError("input", f"an AES-128 key is 16 bytes, got {len(key_bytes)}")
        formatting = MeterFormatting(
            multiplier=multiplier, divisor=divisor, unit_of_measure=unit_of_measure, device_type=device_type
        )
        ak = parse_hex(auth_key) if auth_key is not None else None
        points = decode_points(
            protocol, data, key=key_bytes, meter=meter, zigbee_formatting=formatting, authentication_key=ak
        )
    except (DecodeError, OSError, UnicodeDecodeError) as err:
        err_line = str(err).splitlines()[0] if str(err) else type(err).__name__
        print(f"smarthub decode: {err_line}", file=sys.stderr)
        raise typer.Exit(2) from None
    translation = MappingTable.default().translate(points, datetime.now(UTC))
    for r in translation.readings:
        print(
            "{"
            f'"meter": {json.dumps(r.meter)}, "obis": {json.dumps(str(r.obis))}, "value": {r.value}, '
            f'"unit": {json.dumps(r.unit.value)}, "time": {json.dumps(r.time.isoformat())}'
            "}"
        )
    for u in translation.unmapped:
        print(
            f"unmapped: {u.point.protocol} {u.point.key}={u.point.value} {u.point.unit or ''} ({u.reason})",
            file=sys.stderr,
        )


gdsc_app = typer.Typer(
    add_completion=False,
    help="The GDSC. With --state (and no command): register the manifest's hubs and pull them every "
    "half-hour window. `api`: serve the data services API; `token`: issue a bearer token for it; "
    "`client`: register an OAuth2 client or bind a party certificate.",
)
app.add_typer(gdsc_app, name="gdsc")


def _gdsc_clock(state: Path):  # type: ignore[no-untyped-def]
    """The manifest's simulated clock (sim_start, speed, wall_start) if it has one, else real time."""
    import json

    from smarthub.clock import AcceleratedClock, Clock, SystemClock

    manifest_path = state / "fleet.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    clock: Clock = SystemClock()
    if "speed" in manifest:
        clock = AcceleratedClock(
            datetime.fromisoformat(manifest["sim_start"]),
            float(manifest["speed"]),
            float(manifest["wall_start"]),
        )
    return clock


@gdsc_app.callback(invoke_without_command=True)
def gdsc(
    ctx: typer.Context,
    state: Annotated[Path | None, typer.Option(help="state directory with ca/, gdsc/ and fleet.json")] = None,
    db: Annotated[str | None, typer.Option(help="database URL (default: SQLite in the state dir)")] = None,
    until: Annotated[str | None, typer.Option(help="stop at this simulated time (ISO 8601)")] = None,
) -> None:
    """Run the GDSC: register the hubs in the manifest and pull them every half-hour window.

    Simulated time follows the manifest's clock (sim_start, speed, wall_start) when it has
    one, so a GDSC process and a fleet process agree; otherwise real time.
    """
    if ctx.invoked_subcommand is not None:
        return
    if state is None:
        raise typer.BadParameter("--state is required to run the GDSC", param_hint="--state")
    from smarthub.gdsc.service import GdscService

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    clock = _gdsc_clock(state)
    end = datetime.fromisoformat(until) if until else datetime.max.replace(tzinfo=UTC)
    service = GdscService.from_state(state, clock, db)
    err.print(f"GDSC pulling {len(service.store.active_hubs())} hubs into {service.store.url}")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(service.run(end))


def _require_state(state: Path, db: str | None) -> None:
    if db is None and not (state / "gdsc").is_dir():
        print(
            f"smarthub gdsc: {state} has no gdsc/ directory (make one with `smarthub demo --state`)",
            file=sys.stderr,
        )
        raise typer.Exit(2)


@gdsc_app.command("api")
def gdsc_api(
    state: Annotated[Path, typer.Option(help="GDSC state directory (gdsc/gdsc.sqlite, gdsc/operator.*)")],
    db: Annotated[str | None, typer.Option(help="database URL (default: SQLite in the state dir)")] = None,
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
) -> None:
    """Serve the data services API (OpenAPI at /docs, OAuth2 token endpoint at /oauth/token) against
    the state directory's store.

    Commands are queued in the store's shared plan for a running `smarthub gdsc` to deliver.
    """
    import uvicorn

    from smarthub.gdsc.api import app_from_state
    from smarthub.gdsc.http_guard import BodyGuard, HeadDeadlineH11Protocol

    _require_state(state, db)
    if client_cert_optional and not tls:
        raise typer.BadParameter("needs --tls", param_hint="--client-cert-optional")
    clock = _gdsc_clock(state)
    # Slow and oversized clients (smarthub.gdsc.http_guard): a deadline on each request head,
    # bodies bounded in size and time, at most 1,000 connections (then 503), idle ones closed.
    api = BodyGuard(app_from_state(state, clock, db))
    guarded: dict[str, Any] = dict(
        log_level="warning",
        h11_max_incomplete_event_size=16 * 1024,
        timeout_keep_alive=5,
        limit_concurrency=1000,
    )
    if not tls:
        uvicorn.run(api, host=host, port=port, http=HeadDeadlineH11Protocol, **guarded)
        return
    from smarthub.gdsc.api_tls import server_credentials, uvicorn_config

    if not (state / "ca" / "ca.pem").exists():
        print(f"smarthub gdsc api: {state} has no ca/ (the GDSC CA) to serve TLS with", file=sys.stderr)
        raise typer.Exit(2)
    hosts = sorted({host, "127.0.0.1", "localhost"} - {"0.0.0.0", "::"})
    context = server_credentials(state, clock.now(), hosts, client_cert_optional)
    uvicorn.Server(uvicorn_config(api, host, port, context, **guarded)).run()  # head deadline too


@gdsc_app.command("client")
def gdsc_client(
    state: Annotated[Path, typer.Option(help="GDSC state directory")],
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
    db: Annotated[str | None, typer.Option(help="database URL (default: SQLite in the state dir)")] = None,
) -> None:
    """Register an OAuth2 client for a party (prints client_id and client_secret: the secret is shown
    once, only a salted scrypt hash is kept), bind a party certificate, or revoke either."""
    from cryptography import x509

    from smarthub.gdsc.api_clients import ClientRegistry
    from smarthub.gdsc.oauth import ALL_SCOPES, SCOPES
    from smarthub.gdsc.pki import CertificateAuthority, CertificateRejected, Role, verify_certificate
    from smarthub.gdsc.store import Store

    _require_state(state, db)
    now = _gdsc_clock(state).now()
    modes = sum(x is not None for x in (certificate, bind, revoke))
    if modes > 1:
        raise typer.BadParameter("give one of --certificate, --bind or --revoke")
    if revoke is None and party is None:
        raise typer.BadParameter("--party is required", param_hint="--party")
    store = Store(db or f"sqlite:///{(state / 'gdsc' / 'gdsc.sqlite').resolve()}")
    try:
        store.create_schema()
        registry = ClientRegistry(store.engine)
        if revoke is not None:
            if registry.revoke(revoke, now):
                print(f"revoked client {revoke}")
                return
            binding = registry.unbind_certificate(revoke, now)
            if binding is None:
                raise LookupError(f"no live client or bound certificate {revoke!r}")
            ca_dir = state / "ca"
            if (ca_dir / "ca.pem").exists():
                CertificateAuthority.load(ca_dir).revoke(binding.serial, now)
            print(f"revoked certificate {binding.lfdi} of party {binding.party_id}")
            return
        assert party is not None
        if certificate is not None or bind is not None:
            ca = CertificateAuthority.load(state / "ca")
            if certificate is not None:
                issued = ca.issue(Role.PARTY, party, now)
                registry.bind_certificate(party, issued.lfdi, issued.certificate.serial_number, now)
                pem, key = issued.save(certificate, party)
                print(f"lfdi: {issued.lfdi}\ncertificate: {pem}\nkey: {key}")
                return
            assert bind is not None
            cert = x509.load_pem_x509_certificate(bind.read_bytes())
            verify_certificate(cert, ca.certificate, now, ca.crl(now), expected_role=Role.PARTY)
            from smarthub.gdsc.pki import lfdi

            registry.bind_certificate(party, lfdi(cert), cert.serial_number, now)
            print(f"lfdi: {lfdi(cert)}")
            return
        scopes = frozenset(scope) if scope else ALL_SCOPES
        if scopes - ALL_SCOPES:
            raise ValueError(
                f"unknown scope {' '.join(sorted(scopes - ALL_SCOPES))}; scopes: {' '.join(SCOPES)}"
            )
        client_id, secret = registry.register(party, scopes, now)
        print(f"client_id: {client_id}\nclient_secret: {secret}\nscope: {' '.join(sorted(scopes))}")
    except (LookupError, ValueError, CertificateRejected, OSError) as e:
        print(f"smarthub gdsc client: {e}", file=sys.stderr)
        raise typer.Exit(2) from None
    finally:
        store.close()


@gdsc_app.command("token")
def gdsc_token(
    state: Annotated[Path, typer.Option(help="GDSC state directory")],
    party: Annotated[str, typer.Option(help="the party the token authenticates")],
    role: Annotated[
        str | None, typer.Option(help="create the party with this role first if it does not exist")
    ] = None,
    name: Annotated[str, typer.Option(help="the party's name, when it is created")] = "",
    db: Annotated[str | None, typer.Option(help="database URL (default: SQLite in the state dir)")] = None,
) -> None:
    """Issue a bearer token for a party and print it (only its SHA-256 is stored: keep it now)."""
    from smarthub.gdsc.api_tokens import issue_token

    _require_state(state, db)
    try:
        token = issue_token(
            db or f"sqlite:///{(state / 'gdsc' / 'gdsc.sqlite').resolve()}",
            party,
            _gdsc_clock(state).now(),
            role,
            name,
        )
    except (LookupError, ValueError) as e:
        print(f"smarthub gdsc token: {e}", file=sys.stderr)
        raise typer.Exit(2) from None
    print(token)


@app.command()
def command(
    state: Annotated[Path, typer.Option(help="GDSC state directory (ca/, gdsc/ with operator.pem)")],
    hub: Annotated[str, typer.Option(help="hub id")],
    type: Annotated[str, typer.Option(help="mapping.update, meter.key or diagnostic.ping")],
    body: Annotated[str, typer.Option(help="command body as JSON")] = "{}",
    mapping: Annotated[Path | None, typer.Option(help="mapping.update: the new table (JSON or YAML)")] = None,
    db: Annotated[str | None, typer.Option(help="GDSC database URL")] = None,
) -> None:
    """Sign a management command and deliver it to one hub; prints the hub's verdict as JSON."""
    import json

    from smarthub.gdsc.service import send_command
    from smarthub.meters.mapping import MappingError, MappingTable

    try:
        payload = json.loads(body)
        if mapping is not None:
            payload = {"table": MappingTable.load(mapping).to_dict()}  # validated before it is sent
        verdict = asyncio.run(send_command(state, hub, type, payload, datetime.now(UTC), db))
    except (ValueError, MappingError, LookupError, OSError) as err:
        print(f"smarthub command: {err}", file=sys.stderr)
        raise typer.Exit(2) from None
    print(json.dumps(verdict))
    if verdict.get("status") != "applied":
        raise typer.Exit(1)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
