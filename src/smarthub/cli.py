"""The `smarthub` command. Parses options and calls into the packages; holds no logic."""

from __future__ import annotations

import asyncio
import contextlib
import json
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


async def _demo(cfg, headless: bool, port: int):
    from aiohttp import web

    from smarthub.gdsc.incidents.console import console_app
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
            await run.fleet.start_meters()
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
    config: Annotated[
        Path | None,
        typer.Option(help="hub.toml: the hub's identity, certificates, WAN, IHD, MQTT and its meters"),
    ] = None,
    check: Annotated[
        bool, typer.Option("--check", help="with --config: validate it, print what it builds, and exit")
    ] = False,
    replay: Annotated[
        Path | None,
        typer.Option(
            help="a capture log (TIME PROTOCOL HEX per line, as `smarthub decode --log` reads) to replay "
            "into the hub's history with its original times, then exit"
        ),
    ] = None,
    state: Annotated[Path | None, typer.Option(help="hub directory holding hub.pem, hub.key, ca.pem")] = None,
    hub_id: Annotated[str | None, typer.Option(help="this hub's id as registered at the GDSC")] = None,
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
    """Run one Smart Hub: its meters on their real transports (serial, TCP, wM-Bus sticks, pipes),
    2030.5 over mutual TLS to the GDSC, and the in-home display on the home network.

    With --config, everything comes from the file (README: "Run a hub against your real meters").
    Without it, --state/--hub-id and --serial or --tcp run a hub on one DSMR P1 port, as before.
    Exit status 2 with one line naming the file, line and field on a configuration mistake.
    """
    from smarthub.assembly.config import ConfigError, load_config

    try:
        if config is not None:
            if serial or tcp or state or hub_id or consumer:
                raise ConfigError(
                    "give either --config or the P1 options (--state, --hub-id, --serial/--tcp)"
                )
            cfg = load_config(config)
        else:
            cfg = _p1_config(state, hub_id, serial, tcp, dsmr2, listen, port, consumer, ihd_listen, ihd_port)
    except ConfigError as e:
        print(f"smarthub hub: {e}", file=sys.stderr)
        raise typer.Exit(2) from None
    if check:
        _print_check(cfg)
        return
    if replay is not None:
        logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
        _replay(cfg, replay)
        return
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    try:
        asyncio.run(_run_hub(cfg))
    except (OSError, ValueError) as e:  # a certificate missing, a port taken, a device refused
        print(f"smarthub hub: {e}", file=sys.stderr)
        raise typer.Exit(1) from None


def _p1_config(state, hub_id, serial, tcp, dsmr2, listen, port, consumer, ihd_listen, ihd_port):
    """The configuration the P1 options stand for: one DSMR meter on a serial port or TCP."""
    from smarthub.assembly.config import (
        ConfigError,
        ConsumerConfig,
        MeterConfig,
        ServeConfig,
        TransportConfig,
        consumer_json,
        hub_config,
    )

    if state is None or hub_id is None:
        raise ConfigError("give --config hub.toml, or --state and --hub-id with --serial or --tcp")
    if (serial is None) == (tcp is None):
        raise ConfigError("give exactly one of --serial DEVICE or --tcp HOST:PORT")
    if serial is not None:
        transport = TransportConfig(
            "serial", "p1", device=serial, baud=9600 if dsmr2 else 115200, format="7E1" if dsmr2 else "8N1"
        )
    else:
        host, _, tcp_port = str(tcp).rpartition(":")
        if not host or not tcp_port.isdigit():
            raise ConfigError(f"--tcp {tcp!r}: give HOST:PORT")
        transport = TransportConfig("tcp", "p1", host=host, port=int(tcp_port))
    side = None
    if consumer is not None:
        try:
            # A P1 port only reads: no breaker to switch, so no prepayment on this hub.
            side = ConsumerConfig(tuple(consumer_json(consumer)))
        except (OSError, ValueError) as e:
            raise ConfigError(f"consumer configuration {consumer}: {e}") from None
    return hub_config(
        hub_id,
        state,
        meters=(MeterConfig("dsmr", transport),),
        wan=ServeConfig(listen, port),
        consumer=side,
        ihd=ServeConfig(ihd_listen, ihd_port) if side is not None else None,
    )


def _print_check(cfg) -> None:
    import json

    print(
        json.dumps(
            {
                "hub_id": cfg.hub_id,
                "state": str(cfg.state),
                "wan": f"{cfg.wan.listen}:{cfg.wan.port}",
                "ihd": None if cfg.ihd is None else f"{cfg.ihd.listen}:{cfg.ihd.port}",
                "mqtt": None if cfg.mqtt is None else f"{cfg.mqtt.host}:{cfg.mqtt.port}",
                "meters": [
                    {"id": m.id, "protocol": m.protocol, "mode": m.mode, "transport": m.transport.describe()}
                    for m in cfg.meters
                ],
            }
        )
    )


def _connectors(cfg):
    """The simulated transports' connector, only when the configuration has one (a hub reading
    real meters never loads the simulators)."""
    if not any(m.transport.kind == "simulated" for m in cfg.meters):
        return {}
    from smarthub.clock import SystemClock
    from smarthub.sim.rigs import simulated_connector

    return {"simulated": simulated_connector(SystemClock(), SystemClock().now(), timedelta(seconds=10))}


def _replay(cfg, log_path: Path) -> None:
    """``smarthub hub --replay``: the capture log through the hub's ports into its history."""
    import json

    from smarthub.assembly.replay import replay
    from smarthub.meters.capture_log import CaptureLogError, read_capture_log

    async def run() -> dict[str, Any]:
        assembly = _assemble(cfg)
        try:
            with open(log_path, encoding="utf-8") as f:
                return replay(assembly, read_capture_log(f)).as_dict()
        finally:
            await assembly.stop()

    try:
        result = asyncio.run(run())
    except CaptureLogError as e:
        print(f"smarthub hub: {log_path}: {e}", file=sys.stderr)
        raise typer.Exit(2) from None
    except (OSError, UnicodeDecodeError) as e:
        print(f"smarthub hub: {log_path}: {e}", file=sys.stderr)
        raise typer.Exit(2) from None
    print(json.dumps(result))


def _assemble(cfg):
    """The hub ``smarthub hub`` runs for ``cfg`` (built, not started)."""
    from smarthub.assembly.hub import build_hub

    return build_hub(cfg, connectors=_connectors(cfg))


async def _run_hub(cfg) -> None:
    import signal

    assembly = _assemble(cfg)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await assembly.start()
        err.print(f"hub {cfg.hub_id} serving IEEE 2030.5 on {assembly.url}/dcap (mutual TLS)")
        if assembly.consumer is not None and assembly.consumer.url:
            # single-use, 15 minutes: `smarthub ihd-code` makes another
            code = assembly.consumer.store.new_pairing_code(assembly.clock.now())
            err.print(f"in-home display on {assembly.consumer.url}/ (pairing code {code})")
        for conn in assembly.connections:
            names = ", ".join(m for m, _ in conn.meters) or "meters heard"
            err.print(f"{conn.protocol}: {names}")
        await stop.wait()
    finally:
        await assembly.stop()


@app.command("listen")
def listen_command(
    config: Annotated[Path | None, typer.Option(help="hub.toml: listen on all of its transports")] = None,
    transport: Annotated[
        str | None,
        typer.Option(
            help="instead of --config: serial:DEVICE[:BAUD[:FORMAT]], tcp:HOST:PORT or pipe:PATH (- stdin)"
        ),
    ] = None,
    protocol: Annotated[
        str | None, typer.Option(help="with --transport: dsmr, dlms, iec62056-21, mbus, wmbus, zigbee")
    ] = None,
    receiver: Annotated[
        str | None, typer.Option(help="with --transport, wM-Bus: im871a (the stick) or hex-lines")
    ] = None,
    key: Annotated[
        list[str] | None, typer.Option(help="with --transport: METER=HEXKEY, a key to try (repeat)")
    ] = None,
    seconds: Annotated[float, typer.Option(min=0.1, help="how long to listen")] = 60.0,
) -> None:
    """For installation: print every meter heard on the hub's transports for N seconds (id,
    manufacturer, medium, protocol, encrypted or not, whether the key works, values decoded),
    one JSON object per meter. Exit status 1 if no meter was heard, 2 on a configuration mistake.
    """
    import json

    from smarthub.assembly.config import PROTOCOLS, ConfigError, load_config
    from smarthub.assembly.listen import listen, one_transport_config

    try:
        if (config is None) == (transport is None):
            raise ConfigError("give --config hub.toml or --transport (with --protocol)")
        if config is not None:
            cfg = load_config(config)
        else:
            if protocol not in PROTOCOLS:
                raise ConfigError(f"--protocol: one of {', '.join(PROTOCOLS)}")
            keys = {}
            for k in key or []:
                meter, sep, hexkey = k.partition("=")
                try:
                    keys[meter] = bytes.fromhex(hexkey)
                except ValueError:
                    sep = ""
                if not sep or len(keys.get(meter, b"")) != 16:
                    raise ConfigError(f"--key {k!r}: give METER=32 hex digits")
            cfg = one_transport_config(str(transport), str(protocol), receiver=receiver, keys=keys)
    except (ConfigError, ValueError) as e:
        print(f"smarthub listen: {e}", file=sys.stderr)
        raise typer.Exit(2) from None
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)

    def heard(h) -> None:
        err.print(f"heard {h.protocol} meter {h.meter} on {h.transport}")

    err.print(f"listening for {seconds:g} s on {len(cfg.transports)} transport(s) ...")
    listener = asyncio.run(listen(cfg, seconds, connectors=_connectors(cfg), on_new=heard))
    for h in listener.report():
        print(json.dumps(h.as_dict()))
    for line in listener.unattributed[-5:]:
        err.print(f"[red]unreadable frame[/]: {line}")
    if not listener.heard:
        err.print("no meter heard")
        raise typer.Exit(1)


@app.command("ihd-code")
def ihd_code(
    state: Annotated[Path, typer.Option(help="the hub's state directory (ihd/ihd.sqlite)")],
) -> None:
    """Make a new pairing code for the hub's in-home display and print it: it pairs one screen,
    within 15 minutes (a running hub takes it at once; any older code stops working)."""
    from smarthub.hub.ihd.store import IhdStore

    path = state / "ihd" / "ihd.sqlite"
    if not path.exists():
        print(
            f"smarthub ihd-code: {path} does not exist (start the hub with --consumer first)", file=sys.stderr
        )
        raise typer.Exit(2)
    store = IhdStore(path)
    try:
        print(store.new_pairing_code(datetime.now(UTC)))
    finally:
        store.close()


@app.command()
def decode(
    protocol: Annotated[
        str | None, typer.Option(help="dlms, iec62056-21, mbus, wmbus, zigbee, dsmr or sml (not with --log)")
    ] = None,
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
    tz: Annotated[
        str, typer.Option(help="zone of meter clocks sent without UTC offset (e.g. Europe/Oslo)")
    ] = "UTC",
    skip_tag_check: Annotated[
        bool,
        typer.Option(help="dlms: decode a push whose tag fails when the key alone decrypts it (no AK)"),
    ] = False,
    log: Annotated[
        Path | None, typer.Option(help="capture log: one 'ISO-8601-time protocol hex' line per frame")
    ] = None,
) -> None:
    """Decode captured frames and print one JSON object per reading.

    A bad frame gets one line on standard error saying what is wrong, and an exit status
    that says which kind of problem it is: 2 malformed (or bad input), 3 corrupt (CRC/FCS/BCC),
    4 truncated, 5 encrypted and no key, 6 wrong key, 7 unknown list layout or no mapping (the
    raw values are shown). With --log, every frame is decoded with its logged time and the
    status is the first problem's. Points the mapping table does not translate are reported
    on standard error, not dropped.
    """
    import json
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    from smarthub.meters.capture_log import CapturedFrame, read_capture_log
    from smarthub.meters.decode import decode_points, parse_hex
    from smarthub.meters.errors import DecodeError, UnknownLayout, classify
    from smarthub.meters.mapping import MappingTable
    from smarthub.meters.zigbee_se import MeterFormatting

    def fail(err: Exception, where: str = "") -> int:
        if isinstance(err, DecodeError):
            status, kind = classify(err)
        else:
            status, kind = 2, "bad input"
        line = str(err).splitlines()[0] if str(err) else type(err).__name__
        if isinstance(err, UnknownLayout) and err.values:
            line += "; raw values: " + ", ".join(err.values)
        print(f"smarthub decode: {where}{kind}: {line}", file=sys.stderr)
        return status

    try:
        zone = ZoneInfo(tz)
        key_bytes = parse_hex(key) if key is not None else None
        if key_bytes is not None and len(key_bytes) != 16:
            raise DecodeError("input", f"an AES-128 key is 16 bytes, got {len(key_bytes)}")
        ak = parse_hex(auth_key) if auth_key is not None else None
        if log is not None:
            if protocol is not None:
                raise DecodeError("input", "--log names each frame's protocol; drop --protocol")
            frames = list(read_capture_log(log.read_text(encoding="utf-8").splitlines()))
        else:
            if protocol is None:
                raise DecodeError("input", "--protocol is required (or --log)")
            text = sys.stdin.read() if source == "-" else Path(source).read_text()
            frames = [CapturedFrame(datetime.now(UTC), protocol, parse_hex(text), 0)]
    except (DecodeError, OSError, UnicodeDecodeError, ZoneInfoNotFoundError, ValueError) as err:
        raise typer.Exit(fail(err)) from None
    formatting = MeterFormatting(
        multiplier=multiplier, divisor=divisor, unit_of_measure=unit_of_measure, device_type=device_type
    )
    table = MappingTable.default()
    status = 0
    formats: dict[int, bytes] = {}  # wM-Bus compact-frame formats the log's full frames teach
    for frame in frames:
        where = f"line {frame.line}: " if log is not None else ""
        try:
            points = decode_points(
                frame.protocol,
                frame.data,
                key=key_bytes,
                meter=meter,
                zigbee_formatting=formatting,
                authentication_key=ak,
                assume=zone,
                verify_tag=not skip_tag_check,
                formats=formats,
            )
        except DecodeError as err:
            status = status or fail(err, where)
            continue
        translation = table.translate(points, frame.time)
        for r in translation.readings:
            print(
                "{"
                f'"meter": {json.dumps(r.meter)}, "obis": {json.dumps(str(r.obis))}, "value": {r.value}, '
                f'"unit": {json.dumps(r.unit.value)}, "time": {json.dumps(r.time.isoformat())}'
                "}"
            )
        for u in translation.unmapped:
            print(
                f"{where}unmapped: {u.point.protocol} {u.point.key}={u.point.value} "
                f"{u.point.unit or ''} ({u.reason})",
                file=sys.stderr,
            )
        if not translation.readings and translation.unmapped:
            print(
                f"smarthub decode: {where}no mapping: the frame decoded, but the mapping table "
                "translates none of its values (raw values above)",
                file=sys.stderr,
            )
            status = status or 7
    if status:
        raise typer.Exit(status)


gdsc_app = typer.Typer(
    add_completion=False,
    help="The GDSC. With --state (and no command): register the manifest's hubs and pull them every "
    "half-hour window. `api`: serve the data services API; `token`: issue a bearer token for it; "
    "`client`: register an OAuth2 client or bind a party certificate. A hub's life: `installer` (an "
    "installer certificate), `installer-request` (the installer's signed request), `commission`, "
    "`replace`, `revoke`, `decommission`, `renew` (a party's or collector's certificate). `audit verify` "
    "and `audit anchor`: the audit chain and its signed anchors; `db-role`: the PostgreSQL application role; "
    "`group`: put premises in an aggregation group.",
)
app.add_typer(gdsc_app, name="gdsc")


def _gdsc_clock(state: Path):
    """The manifest's simulated clock (sim_start, speed, wall_start) if it has one, else real time."""
    import json

    from smarthub.clock import AcceleratedClock, Clock, SystemClock

    manifest_path = state / "fleet.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    clock: Clock = SystemClock()
    if "speed" in manifest and "wall_start" in manifest:  # a running fleet's shared clock
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

    from smarthub.gdsc.api.app import app_from_state
    from smarthub.gdsc.api.http_limits import BodyGuard, HeadDeadlineH11Protocol

    _require_state(state, db)
    if client_cert_optional and not tls:
        raise typer.BadParameter("needs --tls", param_hint="--client-cert-optional")
    clock = _gdsc_clock(state)
    # Slow and oversized clients (smarthub.gdsc.api.http_limits): a deadline on each request head,
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
    from smarthub.gdsc.api.tls import CrlReloader, serve, server_credentials, uvicorn_config

    if not (state / "ca" / "ca.pem").exists():
        print(f"smarthub gdsc api: {state} has no ca/ (the GDSC CA) to serve TLS with", file=sys.stderr)
        raise typer.Exit(2)
    hosts = sorted({host, "127.0.0.1", "localhost"} - {"0.0.0.0", "::"})
    # TLS dates are real time (OpenSSL's), whatever clock a simulated state runs on.
    context = server_credentials(state, datetime.now(UTC), hosts, client_cert_optional)
    # The CRL is kept current while the API runs (newer ones the GDSC publishes, or made here).
    server = uvicorn.Server(uvicorn_config(api, host, port, context, **guarded))  # head deadline too
    asyncio.run(serve(server, CrlReloader(state, context)))


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

    from smarthub.gdsc.api.auth.clients import ClientRegistry
    from smarthub.gdsc.api.auth.oauth import ALL_SCOPES, SCOPES
    from smarthub.gdsc.fleet.pki import CertificateAuthority, CertificateRejected, Role, verify_certificate
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
            from smarthub.gdsc.fleet.pki import lfdi

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


@gdsc_app.command("renew")
def gdsc_renew(
    state: Annotated[Path, typer.Option(help="GDSC state directory (ca/ with ca.key)")],
    cert: Annotated[Path, typer.Option(help="the certificate to renew (PEM): a party's or a collector's")],
    out: Annotated[Path, typer.Option(help="directory for the renewed certificate (same file name)")],
    days: Annotated[int | None, typer.Option(help="validity in days (default: as the old one)")] = None,
    db: Annotated[str | None, typer.Option(help="database URL (default: SQLite in the state dir)")] = None,
) -> None:
    """Renew a certificate for the same key, subject, role and SANs; prints its path and new LFDI.

    The holder keeps its private key. A renewed certificate has a new LFDI (IEEE 2030.5-2018
    §6.3.4 hashes the whole certificate): a party certificate bound for mutual TLS is bound anew
    to the same party and the old binding revoked (at the CA too, superseded). A collector's old
    certificate stays valid until revoked, so the collector can switch first. Hubs are renewed
    by the GDSC itself (upkeep, ``HubLifecycle.renew_hub``), which sends them the certificate."""
    from cryptography import x509

    from smarthub.gdsc.api.auth.clients import ClientRegistry
    from smarthub.gdsc.fleet.pki import CertificateAuthority, CertificateRejected, Role
    from smarthub.gdsc.store import Store

    now = _gdsc_clock(state).now()
    try:
        ca = CertificateAuthority.load(state / "ca")
        old = x509.load_pem_x509_certificate(cert.read_bytes())
        renewed = ca.renew(old, now, days)
        if renewed.role is Role.HUB:
            raise ValueError("hub certificates are renewed by the GDSC (upkeep or HubLifecycle.renew_hub)")
        path, _ = renewed.save(out, cert.stem)
    except (ValueError, CertificateRejected, OSError) as e:
        print(f"smarthub gdsc renew: {e}", file=sys.stderr)
        raise typer.Exit(2) from None
    print(f"certificate: {path}\nlfdi: {renewed.lfdi}")
    if renewed.role is not Role.PARTY or (db is None and not (state / "gdsc").is_dir()):
        return
    from smarthub.gdsc.fleet.pki import lfdi

    store = Store(db or f"sqlite:///{(state / 'gdsc' / 'gdsc.sqlite').resolve()}")
    try:
        store.create_schema()
        registry = ClientRegistry(store.engine)
        binding = registry.certificate(lfdi(old))
        if binding is not None and binding.revoked is None:
            registry.bind_certificate(binding.party_id, renewed.lfdi, renewed.certificate.serial_number, now)
            registry.unbind_certificate(binding.lfdi, now)
            ca.revoke(binding.serial, now, x509.ReasonFlags.superseded)
            print(f"bound to party: {binding.party_id}\nrevoked: {binding.lfdi}")
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
    from smarthub.gdsc.api.auth.tokens import issue_token

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


audit_app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="The audit chain: `verify` it against every signed anchor; `anchor` it now.",
)
gdsc_app.add_typer(audit_app, name="audit")


@audit_app.command("verify")
def gdsc_audit_verify(
    state: Annotated[Path, typer.Option(help="GDSC state directory (ca/ca.pem, gdsc/)")],
    db: Annotated[str | None, typer.Option(help="database URL (default: SQLite in the state dir)")] = None,
    anchors: Annotated[
        Path | None, typer.Option(help="signed anchor file (default: gdsc/audit-anchors.jsonl)")
    ] = None,
) -> None:
    """Walk the audit chain and check it against every signed anchor; one JSON line, exit
    status 2 if anything is altered, missing or rewritten since it was anchored."""
    from smarthub.gdsc.governance.audit_anchors import AnchorError, verify_state

    _require_state(state, db)
    try:
        report = verify_state(state, db, anchors)
    except (AnchorError, OSError) as e:
        raise _fail("audit verify", str(e)) from None
    print(json.dumps(report))
    if not report["ok"]:
        raise typer.Exit(2)


@audit_app.command("anchor")
def gdsc_audit_anchor(
    state: Annotated[Path, typer.Option(help="GDSC state directory (gdsc/operator.{pem,key})")],
    db: Annotated[str | None, typer.Option(help="database URL (default: SQLite in the state dir)")] = None,
    anchors: Annotated[
        Path | None, typer.Option(help="signed anchor file (default: gdsc/audit-anchors.jsonl)")
    ] = None,
) -> None:
    """Sign the chain's head with the operator key and append it to the anchor file now."""
    from smarthub.gdsc.governance.audit_anchors import anchor_state

    _require_state(state, db)
    try:
        a = anchor_state(state, datetime.now(UTC), db, anchors)
    except (OSError, ValueError) as e:
        raise _fail("audit anchor", str(e)) from None
    print(json.dumps(None if a is None else {"seq": a.seq, "hash": a.hash, "at": a.at.isoformat()}))


@gdsc_app.command("group")
def gdsc_group(
    state: Annotated[Path, typer.Option(help="GDSC state directory")],
    group: Annotated[str, typer.Option(help="the aggregation group (e.g. an LV feeder's id)")],
    premises: Annotated[list[str], typer.Option(help="a premises to put in the group (repeat)")],
    description: Annotated[str, typer.Option(help="what the group is, when it is created")] = "",
    start: Annotated[
        str | None,
        typer.Option(
            "--from", help="ISO 8601: membership from (default now; earlier only for premises in no group)"
        ),
    ] = None,
    db: Annotated[str | None, typer.Option(help="database URL (default: SQLite in the state dir)")] = None,
) -> None:
    """Put premises in an aggregation group: aggregates are served over such groups only (a
    premises is in one group at a time; what covers past data never changes)."""
    from smarthub.gdsc.governance.aggregates import MembershipRefused, UnknownGroup, assign_group
    from smarthub.gdsc.store import Store

    _require_state(state, db)
    store = Store(db or f"sqlite:///{(state / 'gdsc' / 'gdsc.sqlite').resolve()}")
    try:
        store.create_schema()
        when = datetime.fromisoformat(start) if start else None
        done = assign_group(store.engine, group, description, premises, _gdsc_clock(state).now(), when)
    except (MembershipRefused, UnknownGroup, ValueError) as e:
        raise _fail("group", str(e)) from None
    finally:
        store.close()
    print(json.dumps({"group": group, "premises": done}))


@gdsc_app.command("db-role")
def gdsc_db_role(
    db: Annotated[str, typer.Option(help="PostgreSQL URL of the role owning the GDSC schema")],
    role: Annotated[str, typer.Option(help="the application role to create or fix")] = "smarthub_app",
    password_file: Annotated[Path | None, typer.Option(help="file holding the role's password")] = None,
) -> None:
    """Give the GDSC processes a PostgreSQL role that cannot rewrite the audit log (it owns every
    table but audit_log; see smarthub.gdsc.db.roles); run after each schema upgrade."""
    from sqlalchemy import create_engine

    from smarthub.gdsc.db.roles import grant_application_role

    engine = create_engine(db, hide_parameters=True)
    try:
        password = password_file.read_text().strip() if password_file else None
        moved = grant_application_role(engine, role, password)
    except (OSError, ValueError) as e:
        raise _fail("db-role", str(e)) from None
    finally:
        engine.dispose()
    print(json.dumps({"role": role, "owns": moved, "audit_log": "SELECT, INSERT"}))


# -- the hub lifecycle (issue #5): installer certificates and requests, commission, end, replace --

FUELS = ("electricity", "gas", "water", "heat")


def _fail(command: str, message: str) -> typer.Exit:
    """One line on standard error; the caller raises the returned exit (status 2)."""
    print(f"smarthub gdsc {command}: {message}", file=sys.stderr)
    return typer.Exit(2)


def _fail_with(command: str, err: Exception) -> typer.Exit:
    from smarthub.gdsc.fleet.commissioning import CommissioningRefused

    if isinstance(err, CommissioningRefused):
        return _fail(command, f"refused: {err.code}: {err.reason}")
    text = str(err).splitlines()[0] if str(err) else type(err).__name__
    if isinstance(err, OSError) and getattr(err, "filename", None):
        text = f"{err.strerror or text}: {err.filename}"
    return _fail(command, text)


@contextlib.contextmanager
def _lifecycle(state: Path, db: str | None, command: str):
    """The state's hub lifecycle: its CA (ca/), store, shared pull plan and, with
    gdsc/operator.{pem,key}, the operator signer for the commands it queues."""
    from smarthub.gdsc.commands.signer import CommandSigner
    from smarthub.gdsc.fleet.lifecycle import HubLifecycle
    from smarthub.gdsc.fleet.pki import CertificateAuthority
    from smarthub.gdsc.pull.plan import PullPlan
    from smarthub.gdsc.store import Store

    _require_state(state, db)
    if not (state / "ca" / "ca.key").exists():
        raise _fail(command, f"{state} has no ca/ca.key (the GDSC CA)")
    store = Store(db or f"sqlite:///{(state / 'gdsc' / 'gdsc.sqlite').resolve()}")
    try:
        store.create_schema()
        signer = None
        if (state / "gdsc" / "operator.key").exists():
            signer = CommandSigner.from_files(
                str(state / "gdsc" / "operator.pem"),
                str(state / "gdsc" / "operator.key"),
                store.next_command_counter,
            )
        else:
            err.print("no gdsc/operator.key: no command can be signed for the hubs")
        yield HubLifecycle(store, CertificateAuthority.load(state / "ca"), PullPlan(store), signer)
    finally:
        store.close()


def _last_job(store) -> int:
    from sqlalchemy import func, select

    from smarthub.gdsc.pull.tables import urgent_work

    with store.engine.connect() as conn:
        return int(conn.execute(select(func.coalesce(func.max(urgent_work.c.id), 0))).scalar_one())


def _crl_jobs_after(store, job: int) -> list[str]:
    """The hubs a ``pki.crl`` command was queued for after job ``job``."""
    from sqlalchemy import select

    from smarthub.gdsc.pull.tables import urgent_work as u

    with store.engine.connect() as conn:
        rows = conn.execute(
            select(u.c.hub_id).where(u.c.id > job, u.c.command_type == "pki.crl").order_by(u.c.hub_id)
        )
        return [r.hub_id for r in rows]


def _hub_serial(state: Path, lifecycle, hub_id: str, given: str | None) -> int | None:
    """The certificate serial to revoke for ``hub_id``: ``given`` (decimal, or hex with 0x); for a
    hub registered from the manifest (no commissioning record), the serial of the state's
    ``hubs/<hub>/hub.pem`` if its LFDI is the one registered; else None (the lifecycle decides)."""
    from cryptography import x509
    from sqlalchemy import select

    from smarthub.gdsc.fleet.pki import lfdi
    from smarthub.gdsc.fleet.registry import hubs

    with lifecycle.store.engine.connect() as conn:
        registered = conn.execute(select(hubs.c.lfdi).where(hubs.c.hub_id == hub_id)).scalar()
    if registered is None:
        raise LookupError(f"no hub {hub_id!r} is registered at this GDSC")
    if given is not None:
        try:
            return int(given, 0)
        except ValueError:
            raise ValueError(
                f"a certificate serial is a number (decimal, or hex as 0x…), not {given!r}"
            ) from None
    if lifecycle.commissioning_record(hub_id) is not None:
        return None
    pem = state / "hubs" / hub_id / "hub.pem"
    if not pem.exists():
        return None
    cert = x509.load_pem_x509_certificate(pem.read_bytes())
    return cert.serial_number if registered.upper() == lfdi(cert) else None


def _reason(text: str):
    from cryptography import x509

    for flag in x509.ReasonFlags:
        if (
            text in (flag.value, flag.name, flag.name.replace("_", "-"))
            and flag is not x509.ReasonFlags.remove_from_crl
        ):
            return flag
    names = ", ".join(f.value for f in x509.ReasonFlags if f is not x509.ReasonFlags.remove_from_crl)
    raise ValueError(f"unknown revocation reason {text!r}; RFC 5280 §5.3.1 reasons: {names}")


def _save_hub(done, state: Path, hub_dir: Path) -> dict[str, Any]:
    """Write the hub's certificate (and key, if the CA made it) and the CA certificate into the
    directory `smarthub hub --state` reads; what was written, for the JSON line."""
    from smarthub.gdsc.fleet.pki import _atomic_write

    try:
        pem, key = done.certificate.save(hub_dir, "hub")
        _atomic_write(hub_dir / "ca.pem", (state / "ca" / "ca.pem").read_bytes(), 0o644)
    except OSError as e:
        raise OSError(
            f"hub {done.hub_id} is commissioned but its certificate could not be written to {hub_dir} "
            f"({e.strerror or e}): revoke it (`smarthub gdsc revoke --hub {done.hub_id}`), commission again"
        ) from None
    return {
        "hub_id": done.hub_id,
        "lfdi": done.certificate.lfdi,
        "serial": str(done.certificate.certificate.serial_number),
        "certificate": str(pem),
        "key": str(key) if key is not None else None,
        "installer": done.installer.name,
    }


@gdsc_app.command("installer")
def gdsc_installer(
    state: Annotated[Path, typer.Option(help="GDSC state directory (its ca/ issues the certificate)")],
    name: Annotated[str, typer.Option(help="the installer (person or firm), the certificate's CN")],
    out: Annotated[Path, typer.Option(help="directory for installer.pem and installer.key (0600)")],
    stem: Annotated[str, typer.Option(help="file name stem")] = "installer",
) -> None:
    """Issue an installer certificate from the state's CA: what signs commissioning requests."""
    import json

    from smarthub.gdsc.fleet.pki import CertificateAuthority, Role

    if not (state / "ca" / "ca.key").exists():
        raise _fail("installer", f"{state} has no ca/ca.key (the GDSC CA)")
    try:
        issued = CertificateAuthority.load(state / "ca").issue(Role.INSTALLER, name, _gdsc_clock(state).now())
        pem, key = issued.save(out, stem)
    except (ValueError, OSError) as e:
        raise _fail_with("installer", e) from None
    print(
        json.dumps(
            {
                "installer": name,
                "lfdi": issued.lfdi,
                "serial": str(issued.certificate.serial_number),
                "certificate": str(pem),
                "key": str(key),
            }
        )
    )


@gdsc_app.command("installer-request")
def gdsc_installer_request(
    installer_cert: Annotated[Path, typer.Option(help="the installer's certificate (PEM)")],
    installer_key: Annotated[Path, typer.Option(help="the installer's private key (PEM, EC P-256)")],
    hub_id: Annotated[str, typer.Option(help="the hub to commission")],
    premises: Annotated[str, typer.Option(help="the premises id the hub serves")],
    meter: Annotated[list[str], typer.Option(help="a meter the hub reads, ID:fuel (repeat)")],
    out: Annotated[Path, typer.Option(help="file to write the signed request envelope to")],
    state: Annotated[
        Path | None,
        typer.Option(help="GDSC state directory whose clock stamps the request (default: real time)"),
    ] = None,
    mpan: Annotated[str | None, typer.Option(help="the premises' MPAN (13 digits, check digit)")] = None,
    mprn: Annotated[str | None, typer.Option(help="the premises' MPRN")] = None,
    address: Annotated[str, typer.Option(help="the premises' address")] = "",
    url: Annotated[
        str | None, typer.Option(help="the hub's 2030.5 base URL on the WAN (default https://<hub id>:8443)")
    ] = None,
    host: Annotated[
        list[str] | None,
        typer.Option(help="a name or address for the hub certificate (repeat; default: the URL's)"),
    ] = None,
    wan_link: Annotated[str | None, typer.Option(help="the WAN link (cell) the hub sits behind")] = None,
    replaces: Annotated[str | None, typer.Option(help="the hub this one replaces at the premises")] = None,
    hub_public_key: Annotated[
        Path | None, typer.Option(help="the hub's own public key (PEM): certified instead of a CA-made key")
    ] = None,
) -> None:
    """The installer's tool: sign a commissioning request (valid for an hour) for `smarthub gdsc
    commission` (or `replace`)."""
    import json
    from urllib.parse import urlsplit

    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from smarthub.gdsc.fleet.commissioning import CommissioningRequest, sign_request
    from smarthub.model.identifiers import validate_mpan, validate_mprn

    try:
        meters: list[tuple[str, str]] = []
        for m in meter:
            meter_id, sep, fuel = m.rpartition(":")
            if not sep or not meter_id or fuel not in FUELS:
                raise ValueError(f"--meter {m!r}: give ID:fuel, fuel one of {', '.join(FUELS)}")
            meters.append((meter_id, fuel))
        url = url or f"https://{hub_id.lower()}:8443"
        parts = urlsplit(url)
        if parts.scheme != "https" or not parts.hostname:
            raise ValueError(f"--url {url!r}: the hub serves 2030.5 over https://host[:port]")
        cert_pem = installer_cert.read_bytes()
        cert = x509.load_pem_x509_certificate(cert_pem)
        key = serialization.load_pem_private_key(installer_key.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
            raise ValueError(f"{installer_key}: the installer key must be an EC P-256 private key")
        if key.public_key() != cert.public_key():
            raise ValueError(f"{installer_key} is not the key of the certificate {installer_cert}")
        request = CommissioningRequest(
            hub_id=hub_id,
            premises_id=premises,
            url=url,
            hosts=tuple(host or (parts.hostname,)),
            meters_by_fuel=tuple(meters),
            issued=(_gdsc_clock(state) if state is not None else _system_clock()).now(),
            address=address,
            mpan=validate_mpan(mpan) if mpan else None,
            mprn=validate_mprn(mprn) if mprn else None,
            wan_link=wan_link,
            replaces=replaces,
            hub_public_key_pem=hub_public_key.read_text() if hub_public_key is not None else None,
        )
        envelope = sign_request(request, key, cert_pem)
        out.write_bytes(envelope)
    except (ValueError, TypeError, OSError) as e:
        raise _fail_with("installer-request", e) from None
    print(
        json.dumps(
            {
                "request": str(out),
                "hub_id": hub_id,
                "premises_id": premises,
                "issued": request.issued.isoformat(),
                "replaces": replaces,
            }
        )
    )


def _system_clock():
    from smarthub.clock import SystemClock

    return SystemClock()


@gdsc_app.command("commission")
def gdsc_commission(
    state: Annotated[Path, typer.Option(help="GDSC state directory (ca/, gdsc/)")],
    request: Annotated[Path, typer.Option(help="the installer's signed request (`installer-request`)")],
    out: Annotated[
        Path | None,
        typer.Option(help="directory for hub.pem, hub.key and ca.pem (default: <state>/hubs/<hub id>)"),
    ] = None,
    old_serial: Annotated[
        str | None,
        typer.Option(help="a replacement's old hub certificate serial, if it was never commissioned"),
    ] = None,
    db: Annotated[str | None, typer.Option(help="database URL (default: SQLite in the state dir)")] = None,
) -> None:
    """Commission a hub from an installer's signed request: the request is verified (installer
    certificate from this CA, not revoked, signature, at most an hour old), then the hub gets its
    certificate, its premises and meters, and a first read. A request naming the hub it replaces
    is a replacement (as `replace`)."""
    import json

    from smarthub.gdsc.fleet.commissioning import CommissioningError
    from smarthub.gdsc.fleet.pki import CertificateRejected

    with _lifecycle(state, db, "commission") as lifecycle:
        try:
            envelope = request.read_bytes()
            payload = _peek(envelope)
            now = _gdsc_clock(state).now()
            if not payload.get("replaces"):
                hub_dir = _hub_dir(state, out, payload.get("hub_id"))
                done = lifecycle.commission(envelope, now)
                line = {**_save_hub(done, state, hub_dir), "status": "active", "scheduled": True}
            else:  # as `replace`: the old certificate is resolved before anything changes
                line = _replace(state, lifecycle, str(payload["replaces"]), envelope, now, old_serial, out)
        except (CommissioningError, CertificateRejected, ValueError, LookupError, OSError) as e:
            raise _fail_with("commission", e) from None
    print(json.dumps(line))


def _peek(envelope: bytes) -> dict[str, Any]:
    """An envelope's payload, unverified: read only to route the request and to check where the
    hub's files go before anything changes (the lifecycle verifies the envelope either way)."""
    import json

    try:
        payload = json.loads(json.loads(envelope)["payload"])
    except (ValueError, KeyError, TypeError):
        return {}  # malformed: the lifecycle says so
    return payload if isinstance(payload, dict) else {}


def _hub_dir(state: Path, out: Path | None, hub_id: Any) -> Path:
    """Where a commissioned hub's files go; refused (before anything changes) if they could not be
    written there, since a key the CA made exists only in this process."""
    import os

    if out is None and (
        not isinstance(hub_id, str)
        or not hub_id
        or hub_id.startswith(".")
        or any(c in hub_id for c in "/\\\0")
    ):
        raise ValueError(f"hub id {hub_id!r} cannot name a directory under {state / 'hubs'}: give --out")
    hub_dir = out or state / "hubs" / hub_id
    existing = next(p for p in (hub_dir, *hub_dir.parents) if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"cannot write the hub's certificate and key under {hub_dir} ({existing})")
    return hub_dir


def _replace(
    state: Path, lifecycle, old: str, envelope: bytes, now: datetime, old_serial: str | None, out: Path | None
) -> dict[str, Any]:
    hub_dir = _hub_dir(state, out, _peek(envelope).get("hub_id"))
    serial = _hub_serial(state, lifecycle, old, old_serial)
    before = _last_job(lifecycle.store)
    done = lifecycle.replace_hub(old, envelope, now, old_serial=serial)
    saved = _save_hub(done, state, hub_dir)  # first: the key the CA made exists only here
    return {
        **saved,
        "status": "active",
        "scheduled": True,
        "replaced": old,
        "old_status": "decommissioned",
        "crl": str(lifecycle.crl_path),
        "pki_crl_queued": _crl_jobs_after(lifecycle.store, before),
    }


@gdsc_app.command("replace")
def gdsc_replace(
    state: Annotated[Path, typer.Option(help="GDSC state directory (ca/, gdsc/)")],
    old: Annotated[str, typer.Option(help="the hub taken out (the request must name it)")],
    request: Annotated[Path, typer.Option(help="the installer's signed request for the new hub")],
    old_serial: Annotated[
        str | None,
        typer.Option(help="the old hub's certificate serial, if it was registered from the manifest"),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            help="directory for the new hub.pem, hub.key and ca.pem (default: <state>/hubs/<hub id>)"
        ),
    ] = None,
    db: Annotated[str | None, typer.Option(help="database URL (default: SQLite in the state dir)")] = None,
) -> None:
    """Put a new hub in place of an old one: it takes over the premises and meters, the old hub is
    decommissioned and its certificate revoked (superseded), and the CRL goes to the hubs."""
    import json

    from smarthub.gdsc.fleet.commissioning import CommissioningError
    from smarthub.gdsc.fleet.pki import CertificateRejected

    with _lifecycle(state, db, "replace") as lifecycle:
        try:
            envelope = request.read_bytes()
            line = _replace(state, lifecycle, old, envelope, _gdsc_clock(state).now(), old_serial, out)
        except (CommissioningError, CertificateRejected, ValueError, LookupError, OSError) as e:
            raise _fail_with("replace", e) from None
    print(json.dumps(line))


def _end_hub(
    state: Path, db: str | None, command: str, hub: str, serial: str | None, reason: str | None
) -> None:
    import json

    from smarthub.gdsc.fleet.lifecycle import DECOMMISSIONED, REVOKED

    with _lifecycle(state, db, command) as lifecycle:
        try:
            now = _gdsc_clock(state).now()
            cert_serial = _hub_serial(state, lifecycle, hub, serial)
            before = _last_job(lifecycle.store)
            if command == "revoke":
                flag = _reason(reason or "keyCompromise")
                crl = lifecycle.revoke_hub(hub, now, flag, serial=cert_serial)
                status = REVOKED
            else:
                crl = lifecycle.decommission_hub(hub, now, serial=cert_serial)
                status = DECOMMISSIONED
            record = lifecycle.commissioning_record(hub)
            revoked_serial = cert_serial if cert_serial is not None else int(record["cert_serial"])
            entry = crl.get_revoked_certificate_by_serial_number(revoked_serial)
            line = {
                "hub_id": hub,
                "status": status,
                "serial": str(revoked_serial),
                "reason": _entry_reason(entry),
                "crl": str(lifecycle.crl_path),
                "crl_entries": len(crl),
                "pki_crl_queued": _crl_jobs_after(lifecycle.store, before),
            }
        except (ValueError, LookupError, OSError) as e:
            raise _fail_with(command, e) from None
    print(json.dumps(line))


def _entry_reason(entry) -> str | None:
    from cryptography import x509

    if entry is None:
        return None
    try:
        return str(entry.extensions.get_extension_for_class(x509.CRLReason).value.reason.value)
    except x509.ExtensionNotFound:
        return "unspecified"


@gdsc_app.command("revoke")
def gdsc_revoke(
    state: Annotated[Path, typer.Option(help="GDSC state directory (ca/, gdsc/)")],
    hub: Annotated[str, typer.Option(help="the hub to revoke")],
    reason: Annotated[
        str, typer.Option(help="RFC 5280 §5.3.1 reason, e.g. keyCompromise, privilegeWithdrawn")
    ] = "keyCompromise",
    serial: Annotated[
        str | None, typer.Option(help="its certificate serial, if it was registered from the manifest")
    ] = None,
    db: Annotated[str | None, typer.Option(help="database URL (default: SQLite in the state dir)")] = None,
) -> None:
    """Revoke a hub: no more pulls, its data refused from now, its certificate on the CRL, which
    every other hub takes with its next bulk pull."""
    _end_hub(state, db, "revoke", hub, serial, reason)


@gdsc_app.command("decommission")
def gdsc_decommission(
    state: Annotated[Path, typer.Option(help="GDSC state directory (ca/, gdsc/)")],
    hub: Annotated[str, typer.Option(help="the hub to take out of service")],
    serial: Annotated[
        str | None, typer.Option(help="its certificate serial, if it was registered from the manifest")
    ] = None,
    db: Annotated[str | None, typer.Option(help="database URL (default: SQLite in the state dir)")] = None,
) -> None:
    """Take a hub out of service (cessationOfOperation): no more pulls, what it delivered stays
    readable, its certificate on the CRL (the other hubs take it with their next bulk pull)."""
    _end_hub(state, db, "decommission", hub, serial, None)


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
