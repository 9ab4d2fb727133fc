"""``smarthub hub``, ``smarthub listen`` and ``smarthub ihd-code``: a Smart Hub on real meters
(built by the hub's composition root, :mod:`smarthub.assembly`), and the installer's tools."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer

from smarthub.cli.app import LogFormatOption, app, err
from smarthub.logs import LogFormat, setup_logging


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
    log_format: LogFormatOption = LogFormat.text,
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
    setup_logging(logging.INFO, log_format, service="hub", hub_id=cfg.hub_id)
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
    from smarthub.assembly.replay import replay
    from smarthub.meters.capture_log import CaptureLogError, read_capture_log

    async def run() -> dict[str, Any]:
        assembly = assemble(cfg)
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


def assemble(cfg):
    """The hub ``smarthub hub`` runs for ``cfg`` (built, not started)."""
    from smarthub.assembly.hub import build_hub

    return build_hub(cfg, connectors=_connectors(cfg))


async def _run_hub(cfg) -> None:
    import signal

    assembly = assemble(cfg)
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
