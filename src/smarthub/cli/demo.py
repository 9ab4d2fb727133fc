"""``smarthub demo`` and ``smarthub chaos``: the simulated fleet and the GDSC, accelerated."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shutil
import signal
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from smarthub.cli.app import LogFormatOption, app, err
from smarthub.logs import LogFormat, setup_logging

if TYPE_CHECKING:
    from smarthub.sim.demo import DemoConfig, DemoResult, DemoRun
    from smarthub.sim.services_demo import ServicesDemo

State = Annotated[Path | None, typer.Option(help="state directory (default: a temporary one)")]
Db = Annotated[str | None, typer.Option(help="GDSC database URL (default: SQLite in the state dir)")]


@contextlib.contextmanager
def _state_dir(state: Path | None, prefix: str) -> Iterator[Path]:
    """``state``, or a temporary directory removed afterwards."""
    if state is not None:
        yield state
        return
    tmp = tempfile.mkdtemp(prefix=prefix)
    try:
        yield Path(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@app.command()
def demo(
    homes: Annotated[int, typer.Option(min=1, help="simulated homes, each with a Smart Hub")] = 20,
    days: Annotated[
        int | None, typer.Option(min=1, help="simulated days (default 1; with --building a month, 31)")
    ] = None,
    headless: Annotated[bool, typer.Option(help="no operator page; exit at the end, JSON last line")] = False,
    seconds_per_day: Annotated[
        float | None,
        typer.Option(min=1.0, help="wall seconds per simulated day (default 60; with --building 6)"),
    ] = None,
    building: Annotated[
        bool,
        typer.Option(
            "--building",
            help="an apartment block instead of houses: its sub-meters (heat-cost allocators, hot and "
            "cold water) through an accelerated month, its heating and water bills at the end (JSON, "
            "headless)",
        ),
    ] = False,
    flats: Annotated[int, typer.Option(min=3, help="--building: the block's flats")] = 64,
    layout: Annotated[
        str,
        typer.Option(help="--building: 'flats' (a hub in each flat) or 'basement' (one hub for the block)"),
    ] = "flats",
    bills: Annotated[Path | None, typer.Option(help="--building: write bills.csv here")] = None,
    seed: int = 1,
    db: Db = None,
    state: State = None,
    port: Annotated[int, typer.Option(help="operator page port")] = 8080,
    channel_every: Annotated[
        int,
        typer.Option(
            min=0,
            help="every N-th hub listens on no port (behind a NAT) and is pulled through the channel "
            "it keeps open to the GDSC (2: half the fleet; 0: none)",
        ),
    ] = 0,
    ipv6: Annotated[
        bool, typer.Option("--ipv6", help="every hub, the GDSC's channel and alert endpoints on IPv6 (::1)")
    ] = False,
    services: Annotated[
        bool,
        typer.Option(
            "--services",
            help="serve the data services API and run the four example third-party services against "
            "it (a tariff advisor, a prepayment top-up provider, a demand-response aggregator sending "
            "the hubs one event, appliance health reading every home's smart plugs): their outcome "
            "and the operator page's services as a JSON line before the last",
        ),
    ] = False,
    api_port: Annotated[
        int, typer.Option(help="--services: the data services API's port (0: a free one)")
    ] = 0,
    power_quality: Annotated[
        bool,
        typer.Option(
            "--power-quality",
            help="every hub keeps power quality (voltages, sags, swells, power failures): about "
            "twice the readings pulled and stored",
        ),
    ] = False,
    log_format: LogFormatOption = LogFormat.text,
) -> None:
    """Run a GDSC and a fleet of simulated homes through an accelerated day (or, with
    ``--building``, an apartment block through a month, billed at its end)."""
    from smarthub.sim.demo import DemoConfig

    setup_logging(logging.ERROR, log_format, service="demo")
    if building and services:
        raise typer.BadParameter(
            "the services run against the houses' demo, not --building", param_hint="--services"
        )
    if building:
        _building_demo(flats, days or 31, seconds_per_day or 6.0, seed, layout, db, state, bills)
        return
    days, seconds_per_day = days or 1, seconds_per_day or 60.0
    result = None
    with _state_dir(state, "smarthub-demo-") as where:
        cfg = DemoConfig(
            homes=homes, days=days, seconds_per_day=seconds_per_day, seed=seed, state=where, db_url=db,
            channel_every=channel_every, ipv6=ipv6, power_quality=power_quality,
        )  # fmt: skip
        try:
            result = asyncio.run(_demo(cfg, headless, port, services=services, api_port=api_port))
        except KeyboardInterrupt:
            err.print("stopped")
    if result is not None:
        print(result.json_line())
        if result.missing or result.duplicates:
            raise typer.Exit(1)


def _building_demo(
    flats: int, days: int, seconds_per_day: float, seed: int, layout: str, db: str | None,
    state: Path | None, bills: Path | None,
) -> None:  # fmt: skip
    """``demo --building``: headless, the JSON summary last (exit 1 if a reading went missing or
    the bills do not add up to the building's cost)."""
    from smarthub.sim.building import BuildingDemoConfig, building_demo

    if layout not in ("flats", "basement"):
        raise typer.BadParameter("'flats' or 'basement'", param_hint="--layout")
    err.print(f"[bold]smarthub demo --building[/]: {flats} flats ({layout}), {days} days …")
    with _state_dir(state, "smarthub-building-") as where:
        cfg = BuildingDemoConfig(
            flats=flats, days=days, seconds_per_day=seconds_per_day, seed=seed, state=where, db_url=db,
            layout=layout,
        )  # fmt: skip
        result = asyncio.run(building_demo(cfg, bills))
    print(result.json_line())
    if result.missing or result.duplicates or result.bill_total != result.building_cost:
        raise typer.Exit(1)


@app.command()
def chaos(
    homes: Annotated[int, typer.Option(min=1, help="simulated homes")] = 50,
    days: Annotated[int, typer.Option(min=1, help="simulated days")] = 3,
    seed: Annotated[int, typer.Option(help="seeds the homes and the faults: same seed, same run")] = 1,
    seconds_per_day: Annotated[float, typer.Option(min=1.0, help="wall seconds per simulated day")] = 60.0,
    db: Db = None,
    state: State = None,
    channel_every: Annotated[
        int,
        typer.Option(
            min=0,
            help="every N-th hub listens on no port and is reached only through its channel "
            "(2: half the fleet); adds the channel_cut and channel_endpoint_restart faults",
        ),
    ] = 0,
    ipv6: Annotated[
        bool, typer.Option("--ipv6", help="every hub, the GDSC's channel and alert endpoints on IPv6 (::1)")
    ] = False,
    power_quality: Annotated[
        bool,
        typer.Option(
            "--power-quality",
            help="every hub keeps power quality (voltages, sags, swells, power failures); the "
            "JSON's power_failures gives each injected outage's summary at its node",
        ),
    ] = False,
    log_format: LogFormatOption = LogFormat.text,
) -> None:
    """Run a fleet with faults injected (WAN and cell outages, power cuts, HAN dropouts, collector
    and database restarts), top-ups in flight and the upkeep's events of weeks (renewals,
    revocations, consents, changes of tenancy and supplier, tariffs); JSON last line."""
    from smarthub.sim.chaos import run_chaos
    from smarthub.sim.demo import DemoConfig

    setup_logging(logging.ERROR, log_format, service="chaos")
    err.print(f"chaos: {homes} homes, {days} days, seed {seed}, {seconds_per_day:g} s per simulated day …")
    with _state_dir(state, "smarthub-chaos-") as where:
        cfg = DemoConfig(
            homes=homes, days=days, seconds_per_day=seconds_per_day, seed=seed, state=where, db_url=db,
            channel_every=channel_every, ipv6=ipv6, power_quality=power_quality,
        )  # fmt: skip
        result = asyncio.run(run_chaos(cfg))
    print(result.json_line())
    if (
        result.lost
        or result.duplicates
        or result.topups_lost
        or result.topups_doubled
        or result.topup_days_missed
        or result.commands_refused_stale_crl
        or result.commands_refused_signer
        or result.renewals_done != result.renewals_due
        or result.consent_expiries_applied != result.consent_expiries
    ):
        raise typer.Exit(1)


async def _demo(
    cfg: DemoConfig, headless: bool, port: int, *, services: bool = False, api_port: int = 0
) -> DemoResult | None:
    """The demo with a progress bar and, unless headless, the operator page (then the fleet keeps
    running, and being pulled, until Ctrl-C or SIGTERM). A signal ends the run cleanly: pulls in
    flight finish, the page and the hubs close, the count is printed (``None`` when stopped
    during the day: nothing complete to count)."""
    from aiohttp import web

    from smarthub.sim.demo import account, keep_running, run_day, setup, teardown

    stop = _stop_on_signals()
    if services and not cfg.plugs_everywhere:
        # Appliance health reads the homes' smart plugs: every home has them in this run.
        cfg = replace(cfg, plugs_everywhere=True)
    err.print(
        f"[bold]smarthub demo[/]: {cfg.homes} homes, {cfg.days} day(s), GDSC store "
        f"{cfg.db_url or 'SQLite'}, state in {cfg.state}"
    )
    run = await setup(cfg)
    runner = None
    third_parties: ServicesDemo | None = None
    late: asyncio.Task[dict[str, Any]] | None = None
    dr: asyncio.Task[dict[str, Any]] | None = None
    try:
        if services:
            from smarthub.sim.services_demo import last_day, start_services

            third_parties = await start_services(run, api_port)
            err.print(
                f"data services API: {third_parties.base}/docs (tariff advisor, top-up provider, "
                "demand-response aggregator, appliance health)"
            )
        if not headless:
            # The operator page's outage map draws the simulated network (the chaos run loads
            # the same one; the plain demo injects no power cut, so the map stays green).
            from smarthub.gdsc.outages.topology import TopologyStore
            from smarthub.sim.topology import fleet_topology

            await asyncio.to_thread(TopologyStore(run.store.engine).load, fleet_topology(run.fleet.specs))
            runner = web.AppRunner(run.gdsc.console(), access_log=None)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", port).start()
            err.print(f"operator page: http://127.0.0.1:{port}/")
        total = (cfg.end + timedelta(minutes=30) - cfg.sim_start).total_seconds()
        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(),
            console=err,
            transient=False,
        ) as progress:
            task = progress.add_task("simulated day", total=total, status="starting")
            day = asyncio.create_task(run_day(run, meters_run_on=not headless))
            if third_parties is not None:
                late = asyncio.create_task(_services_late(run, third_parties))
                dr = asyncio.create_task(third_parties.demand_response(last_day(cfg)))
            while not day.done() and not stop.is_set():
                now = run.clock.now()
                windows = run.scheduler.windows
                status = (
                    f"sim {now:%a %H:%M} · pulls {sum(w.done for w in windows)} · errors "
                    f"{run.scheduler.pull_errors} · stored {sum(w.inserted for w in windows)}"
                )
                progress.update(
                    task, completed=min((now - cfg.sim_start).total_seconds(), total), status=status
                )
                await asyncio.wait([day, asyncio.ensure_future(stop.wait())], timeout=0.25,
                                   return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
            if not day.done():
                day.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await day
                err.print("stopped during the simulated day")
                return None
            progress.update(task, completed=total, status="done")
            result = day.result()
        if late is not None and dr is not None and third_parties is not None:
            outcome = await asyncio.wait_for(late, timeout=600)
            during = await asyncio.wait_for(dr, timeout=600)
            after = await third_parties.after_the_day(last_day(cfg))
            outcome["services"]["demand_response"] = {**during, **after["demand_response"]}
            outcome["services"]["appliance_health"] = after["appliance_health"]
            outcome["services"]["operator_page"] = after["operator_page"]
            print(json.dumps(outcome))
        err.print(
            f"stored {result.readings_stored}/{result.readings_expected} readings, missing {result.missing}, "
            f"duplicates {result.duplicates}, pull errors {result.pull_errors}, {result.seconds:.1f} s"
        )
        if not headless and not stop.is_set():
            err.print(f"fleet keeps running; operator page on http://127.0.0.1:{port}/ — Ctrl-C to stop")
            await keep_running(run, stop)
            err.print("stopping …")
            result = await asyncio.to_thread(account, run, result.seconds)
        return result
    finally:
        for pending in (late, dr):
            if pending is not None and not pending.done():
                pending.cancel()
        if third_parties is not None:
            await third_parties.stop()
        if runner is not None:
            await runner.cleanup()
        await teardown(run)


async def _services_late(run: DemoRun, third_parties: ServicesDemo) -> dict[str, Any]:
    """The services run at noon of the last simulated day, while the fleet is still pulled (a
    top-up is delivered by the collector's next tick, and half a day at 60 s a day leaves 30 wall
    seconds for it), advising on the year to the day's end."""
    from smarthub.model.tariff import LONDON

    cfg = run.cfg
    await run.clock.sleep_until(cfg.end - timedelta(hours=12))
    return await third_parties.finish(cfg.end.astimezone(LONDON).date())


def _stop_on_signals() -> asyncio.Event:
    """An event set by SIGINT or SIGTERM (the first one: the run winds down cleanly). A second
    signal gives the default handling back, so a third Ctrl-C interrupts a shutdown that hangs."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def on_signal() -> None:
        if stop.is_set():
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    return stop
