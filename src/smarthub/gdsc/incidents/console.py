"""The operator web page: fleet health, pull progress per window, the error log and work orders.

Plain HTTP on loopback for the demo; it reads the store only. Rendered server-side with an
inline SVG chart so it needs no JavaScript toolkit and no network.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import html
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Generic, TypeVar

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from smarthub.clock import Clock, SystemClock
from smarthub.gdsc.incidents.console_tables import (
    HUBS,
    INCIDENTS,
    WINDOWS,
    WORK_ORDERS,
    BadQuery,
    TableSpec,
    incident_rows,
    open_incidents_by_kind,
    page,
    parse_query,
    window_rows,
    work_order_rows,
)
from smarthub.gdsc.incidents.error_log import ErrorLog
from smarthub.gdsc.incidents.hub_page import detail_html, hub_href, page_html
from smarthub.gdsc.incidents.hub_view import PULLS_PAGE, code_label, hub_view
from smarthub.gdsc.incidents.outage_page import body_html, parse_period
from smarthub.gdsc.incidents.outage_page import page_html as outages_html
from smarthub.gdsc.incidents.services_page import page_html as services_html
from smarthub.gdsc.incidents.services_page import service_rows
from smarthub.gdsc.outages.map import latest_event
from smarthub.gdsc.pull.scheduler import WindowProgress
from smarthub.gdsc.store import Store

STOPPING = web.AppKey("stopping", asyncio.Event)
T = TypeVar("T")

PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>smarthub GDSC operator</title>
<style>body{{font-family:system-ui,sans-serif;margin:1.5rem;color:#222}}table{{border-collapse:collapse}}
td,th{{padding:.25rem .6rem;border-bottom:1px solid #ddd;text-align:left;vertical-align:top}}
td.n{{text-align:right}}th[data-key]{{cursor:pointer}}
th[aria-sort=ascending]::after{{content:" ▲"}}th[aria-sort=descending]::after{{content:" ▼"}}
.err{{color:#b00020;font-weight:600}}.ok{{color:#1b7f3b}}.muted{{color:#777}}h1{{font-size:1.3rem}}
nav a{{margin-right:1rem}}</style></head><body>
<h1>GDSC operator — fleet health</h1>
<nav><a href="/">fleet</a><a href="/outages">outage map and timeline</a>
<a href="/services">data services</a></nav>
<p id="summary">{summary}</p><p id="live" class="ok"></p>
<h2>Pulls per retrieval window</h2><div id="chart">{chart}</div>
{windows}
<div id="errors">{errors}</div>
{incidents}
<h2>Work orders</h2>
{work_orders}
<h2>Hubs</h2>
{hubs}
<script src="/console.js"></script></body></html>"""

SCRIPT = (Path(__file__).parent / "console.js").read_text()
HUB_SCRIPT = (Path(__file__).parent / "hub.js").read_text()
OUTAGES_SCRIPT = (Path(__file__).parent / "outages.js").read_text()
# How each table's cells are shown (the page's script does the same for the pages it fetches).
LINKS = {"hub_id"}  # a hub id: a link to its page
FLAGS = {"errors", "failed"}  # a count shown red when not zero
EMPTY = {"last_pull": "never", "closed": "—", "work_order": "—"}


def _cell(key: str, row: dict[str, Any]) -> str:
    value = row.get(key)
    if key == "hubs" and row.get("hub_ids"):  # an incident's hubs: each a link, the rest counted
        links = ", ".join(
            f'<a href="{html.escape(hub_href(h))}">{html.escape(h)}</a>' for h in row["hub_ids"]
        )
        more = int(row.get("hubs_more") or 0)
        return f"<td>{links}{f' (+{more})' if more else ''}</td>"
    if value is None or value == "":
        return f"<td class='muted'>{html.escape(EMPTY.get(key, ''))}</td>"
    text = html.escape(str(value))
    if key in LINKS and value != "(area)":
        return f'<td><a href="{html.escape(hub_href(str(value)))}">{text}</a></td>'
    if key in FLAGS:
        return f"<td class='n {'err' if value else 'ok'}'>{text}</td>"
    if isinstance(value, int):
        return f"<td class='n'>{text}</td>"
    return f"<td>{text}</td>"


def _table(spec: TableSpec, result: dict[str, Any], src: str, state: str = "") -> str:
    """One table with its filter, state choice and pager, its first page rendered here; the
    page's script fetches the next ones (``src``) and fetches again when the fleet changes."""
    n = spec.name
    heads = "".join(
        f'<th data-key="{k}" data-empty="{html.escape(EMPTY.get(k, ""))}"'
        + (' data-link="hub"' if k in LINKS else "")
        + (' data-flag="1"' if k in FLAGS else "")
        + (
            f' aria-sort="{"ascending" if result["order"] == "asc" else "descending"}"'
            if k == result["sort"]
            else ""
        )
        + f">{html.escape(label)}</th>"
        for k, label in spec.columns
    )
    rows = "".join("<tr>" + "".join(_cell(k, r) for k in spec.keys) + "</tr>" for r in result["rows"])
    shown = (
        f"{result['offset'] + 1}–{result['offset'] + len(result['rows'])} of {result['total']}"
        if result["total"]
        else "none"
    )
    choice = (
        f'<select id="{n}-state" aria-label="which {n}">'
        + "".join(f"<option{' selected' if s == state else ''}>{s}</option>" for s in spec.states)
        + "</select> "
        if spec.states
        else ""
    )
    return (
        f'<p><input id="{n}-q" placeholder="filter: {", ".join(spec.search)}" aria-label="filter {n}"> '
        f'{choice}<button id="{n}-prev">previous</button> <span id="{n}-page">{shown}</span> '
        f'<button id="{n}-next">next</button></p>'
        f'<table id="{n}" data-src="{src}" data-limit="{result["limit"]}" data-sort="{result["sort"]}" '
        f'data-order="{result["order"]}" data-state="{state}"><thead><tr>{heads}</tr></thead>'
        f"<tbody>{rows}</tbody></table>"
    )


def hub_rows(status: list[dict[str, object]]) -> list[dict[str, Any]]:
    return [
        {**h, "last_pull": f"{h['last_pull']:%Y-%m-%d %H:%M:%S}" if h["last_pull"] else None} for h in status
    ]


def _chart(windows: list[WindowProgress]) -> str:
    recent = windows[-48:]
    if not recent:
        return "<p>No window has run yet.</p>"
    top = max(max(w.planned for w in recent), 1)
    bar, gap, h = 12, 3, 120
    parts = []
    for i, w in enumerate(recent):
        x = i * (bar + gap)
        ok_h = h * (w.done - w.failed) / top
        fail_h = h * w.failed / top
        parts.append(
            f'<rect x="{x}" y="{h - ok_h:.1f}" width="{bar}" height="{ok_h:.1f}" fill="#1b7f3b">'
            f"<title>{w.window_start:%H:%M} pulled {w.done}/{w.planned}</title></rect>"
        )
        if fail_h:
            parts.append(
                f'<rect x="{x}" y="{h - ok_h - fail_h:.1f}" width="{bar}" height="{fail_h:.1f}" '
                f'fill="#b00020"><title>{w.failed} failed</title></rect>'
            )
    width = len(recent) * (bar + gap)
    return (
        f'<svg width="{width}" height="{h + 4}" role="img" aria-label="hubs pulled per window">'
        f"{''.join(parts)}</svg><p>green: hubs pulled, red: failed pulls; one bar per half-hour window</p>"
    )


def _summary(status: list[dict[str, object]]) -> str:
    total = sum(int(str(h["readings"])) for h in status)
    errors = sum(int(str(h["errors"])) for h in status)
    return f"{len(status)} hubs, {total} readings stored, {errors} failed pulls"


def _error_section(log: ErrorLog | None) -> str:
    """The error log's counts and the open incidents by kind (the tables below it are paged)."""
    if log is None:
        return ""
    s = log.summary()
    by_code = open_incidents_by_kind(log.engine)
    parts = []
    top = max(by_code.values(), default=1)
    for row, (label, n) in enumerate(sorted(by_code.items(), key=lambda kv: -kv[1])):
        y = row * 22
        w = 300 * n / top
        parts.append(
            f'<text x="0" y="{y + 15}" font-size="13">{html.escape(label)}</text>'
            f'<rect x="150" y="{y + 3}" width="{w:.1f}" height="16" fill="#c77c02"><title>{n}</title></rect>'
            f'<text x="{155 + w:.1f}" y="{y + 15}" font-size="13">{n}</text>'
        )
    chart = (
        f'<svg width="500" height="{max(len(by_code), 1) * 22}" role="img"'
        ' aria-label="open incidents by kind">'
        f"{''.join(parts)}</svg>"
        if by_code
        else "<p class='ok'>No open incident.</p>"
    )
    return (
        f"<h2>Error log</h2><p>{s['incidents_open']} open incidents ({s['incidents_closed']} closed), "
        f"{s['events']} hub events, {s['repairs_sent']} remote repairs sent, "
        f"{s['repairs_queued']} queued, {s['work_orders_open']} open work orders</p>{chart}"
    )


class Shared(Generic[T]):
    """A value read at most once per ``max_age`` seconds (wall time, monotonic), by one reader at
    a time: every page open on the console shares the same read instead of making its own.

    A read that takes long stretches the age: the value is kept at least ``busy`` times as long
    as its read took, so a fleet whose status takes 2 s to read is read every 8 s, not without
    pause (the console must not keep the database busy by itself)."""

    def __init__(
        self,
        read: Callable[[], Awaitable[T]],
        max_age: float,
        *,
        busy: float = 4.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.read = read
        self.max_age = max_age
        self.busy = busy
        self.monotonic = monotonic
        self.reads = 0
        self._value: T | None = None
        self._at = 0.0
        self._took = 0.0
        self._lock: asyncio.Lock | None = None

    async def get(self) -> T:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            age = max(self.max_age, self.busy * self._took)
            if self._value is None or self.monotonic() - self._at >= age:
                start = self.monotonic()
                self._value = await self.read()
                self._at = self.monotonic()
                self._took = self._at - start
                self.reads += 1
            return self._value


def console_app(
    store: Store,
    windows: Callable[[], list[WindowProgress]],
    error_log: ErrorLog | None = None,
    metrics: CollectorRegistry | None = None,
    live_every: float = 1.0,
    clock: Clock | None = None,
) -> web.Application:
    """The console over ``store``: ``windows`` gives the scheduler's windows so far, ``error_log``
    the incidents (none: the error log's parts are left out), ``metrics`` served on ``/metrics``."""
    clock_ = clock or SystemClock()

    def dumps(o: object) -> str:
        return json.dumps(o, default=str)

    # The fleet's status (a grouped read of the pull log and the stored readings: about a quarter
    # of a second at 2,000 hubs with 30 days stored, bench/console.py) and the live event built on
    # it are read at most once per ``live_every`` whatever the number of open pages.
    fleet = Shared(lambda: asyncio.to_thread(store.fleet_status), live_every)

    async def read_live() -> dict[str, Any]:
        return await asyncio.to_thread(live_status, await fleet.get())

    live_data = Shared(read_live, live_every)

    def table_rows(spec: TableSpec, state: str, status: list[dict[str, object]]) -> list[dict[str, Any]]:
        """Every row of one table (called in a worker thread: it reads the database)."""
        if spec is HUBS:
            return hub_rows(status)
        if spec is WINDOWS:
            return window_rows(list(windows()))
        if error_log is None:
            raise web.HTTPNotFound(text="this GDSC keeps no error log")
        if spec is INCIDENTS:
            return incident_rows(store.engine, state)
        return work_order_rows(store.engine, state)

    def render_index(status: list[dict[str, object]]) -> str:
        def first_page(spec: TableSpec) -> dict[str, Any]:
            p = parse_query(spec, {})
            return page(spec, table_rows(spec, p["state"], status), p)

        error_tables: tuple[str, str] | None = None
        if error_log is not None:
            error_tables = (
                _table(INCIDENTS, first_page(INCIDENTS), "/api/tables/incidents", "open"),
                _table(WORK_ORDERS, first_page(WORK_ORDERS), "/api/tables/work_orders", "open"),
            )
        return PAGE.format(
            summary=_summary(status),
            chart=_chart(windows()),
            windows=_table(WINDOWS, first_page(WINDOWS), "/api/tables/windows"),
            errors=_error_section(error_log),
            incidents=error_tables[0] if error_tables else "",
            work_orders=error_tables[1] if error_tables else "<p class='muted'>No error log here.</p>",
            hubs=_table(HUBS, first_page(HUBS), "/api/hubs"),
        )

    async def index(request: web.Request) -> web.Response:
        status = await fleet.get()
        return web.Response(text=await asyncio.to_thread(render_index, status), content_type="text/html")

    async def table_json(request: web.Request) -> web.Response:
        """One page of a table, sorted and filtered here: ``offset``, ``limit`` (≤ 500), ``sort``
        (a column), ``order`` (asc/desc), ``q`` (words, each in one of the searched columns),
        ``state`` (incidents: open/closed/all; work orders: open/resolved/all)."""
        name = request.match_info.get("table", "hubs")
        spec = TABLES.get(name)
        if spec is None:
            raise web.HTTPNotFound(text=f"no table {name!r}: one of {', '.join(TABLES)}")
        try:
            p = parse_query(spec, request.query)
        except BadQuery as err:
            raise web.HTTPBadRequest(text=str(err)) from None
        status = await fleet.get() if spec is HUBS else []
        rows = await asyncio.to_thread(table_rows, spec, p["state"], status)
        return web.json_response(page(spec, rows, p), dumps=dumps)

    async def status_json(request: web.Request) -> web.Response:
        return web.json_response(await fleet.get(), dumps=dumps)

    async def incidents_json(request: web.Request) -> web.Response:
        if error_log is None:
            raise web.HTTPNotFound(text="this GDSC keeps no error log")
        return web.json_response(error_log.incidents(open_only="all" not in request.query), dumps=dumps)

    async def work_orders_json(request: web.Request) -> web.Response:
        if error_log is None:
            raise web.HTTPNotFound(text="this GDSC keeps no error log")
        return web.json_response(error_log.work_orders(request.query.get("status")), dumps=dumps)

    async def metrics_text(request: web.Request) -> web.Response:
        assert metrics is not None
        body = await asyncio.to_thread(generate_latest, metrics)  # the fleet gauges read the store
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    def pulls_page(request: web.Request) -> tuple[int, int]:
        try:
            offset = max(int(request.query.get("pulls_offset", "0")), 0)
            limit = min(max(int(request.query.get("pulls_limit", str(PULLS_PAGE))), 1), 500)
        except ValueError:
            raise web.HTTPBadRequest(text="pulls_offset and pulls_limit are whole numbers") from None
        return offset, limit

    async def one_hub(request: web.Request) -> dict[str, object]:
        offset, limit = pulls_page(request)
        hub_id = request.match_info["hub_id"]
        view = await asyncio.to_thread(
            hub_view, store.engine, hub_id, clock_.now(), pulls_offset=offset, pulls_limit=limit
        )
        if view is None:
            raise web.HTTPNotFound(text=f"no hub {hub_id!r}")
        return view

    async def hub_page(request: web.Request) -> web.Response:
        """The hub detail page (``?part=detail``: only the part the page's script swaps in)."""
        view = await one_hub(request)
        if request.query.get("part") == "detail":
            return web.Response(text=detail_html(view), content_type="text/html")
        return web.Response(text=page_html(view), content_type="text/html")

    async def hub_json(request: web.Request) -> web.Response:
        return web.json_response(await one_hub(request), dumps=dumps)

    def live_status(status: list[dict[str, object]]) -> dict[str, Any]:
        ws = list(windows())
        incidents = error_log.summary() if error_log is not None else {}
        data: dict[str, Any] = {
            "summary": _summary(status),
            "windows": len(ws),
            "pulls": sum(w.done for w in ws),
            "failed": sum(w.failed for w in ws),
            "incidents_open": incidents.get("incidents_open", 0),
            "chart": _chart(ws),
            "errors": _error_section(error_log),
            "at": max((str(h["last_pull"]) for h in status if h["last_pull"]), default=""),
            "outage_event": latest_event(store.engine),
        }
        # What the pages compare to know whether to fetch their tables again: the hubs' pull
        # counts and statuses, the windows' progress and the error log's counts.
        data["version"] = hashlib.sha256(
            json.dumps(
                [
                    data,
                    incidents,
                    [(h["hub_id"], h["pulls"], h["status"]) for h in status],
                    [(str(w.window_start), w.done, w.failed, w.readings) for w in ws],
                ]
            ).encode()
        ).hexdigest()[:16]
        return data

    async def live(request: web.Request) -> web.StreamResponse:
        """Server-Sent Events: a ``status`` event every ``live_every`` seconds (summary, the
        windows' chart and counts, open incidents, a version of the whole) until the client
        goes or the app stops."""
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await resp.prepare(request)
        stopping: asyncio.Event = request.app[STOPPING]
        try:
            while not stopping.is_set():
                data = await live_data.get()
                await resp.write(f"event: status\ndata: {json.dumps(data)}\n\n".encode())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), live_every)
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        return resp

    async def on_shutdown(app: web.Application) -> None:
        app[STOPPING].set()  # the event streams end at once, not at the shutdown timeout

    async def script(request: web.Request) -> web.Response:
        return web.Response(text=SCRIPT, content_type="application/javascript")

    async def hub_script(request: web.Request) -> web.Response:
        return web.Response(text=HUB_SCRIPT, content_type="application/javascript")

    async def outages_script(request: web.Request) -> web.Response:
        return web.Response(text=OUTAGES_SCRIPT, content_type="application/javascript")

    async def outages_page(request: web.Request) -> web.Response:
        """The outage map and timeline (``?part=body``: only the part the page's script swaps in;
        ``since``, ``until``: the period of the timeline)."""
        now = clock_.now()
        try:
            since, until = parse_period(request.query)
        except ValueError as err:
            raise web.HTTPBadRequest(text=str(err)) from None
        render = body_html if request.query.get("part") == "body" else outages_html
        text = await asyncio.to_thread(render, store.engine, now, since, until)
        return web.Response(text=text, content_type="text/html")

    async def services_page(request: web.Request) -> web.Response:
        """Third-party data services: decisions, consents, traffic (:mod:`.services_page`)."""
        text = await asyncio.to_thread(services_html, store.engine, clock_.now())
        return web.Response(text=text, content_type="text/html")

    async def services_json(request: web.Request) -> web.Response:
        rows = await asyncio.to_thread(service_rows, store.engine, clock_.now())
        return web.json_response(rows, dumps=dumps)

    app = web.Application()
    app[STOPPING] = asyncio.Event()
    app.on_shutdown.append(on_shutdown)
    app.router.add_get("/", index)
    app.router.add_get("/console.js", script)
    app.router.add_get("/hub.js", hub_script)
    app.router.add_get("/outages.js", outages_script)
    app.router.add_get("/outages", outages_page)
    app.router.add_get("/services", services_page)
    app.router.add_get("/api/services", services_json)
    app.router.add_get("/api/hubs", table_json)
    app.router.add_get("/api/tables/{table}", table_json)
    app.router.add_get("/api/hubs/{hub_id}", hub_json)
    app.router.add_get("/hubs/{hub_id}", hub_page)
    app.router.add_get("/api/live", live)
    if metrics is not None:
        app.router.add_get("/metrics", metrics_text)
    app.router.add_get("/api/fleet", status_json)
    app.router.add_get("/api/incidents", incidents_json)
    app.router.add_get("/api/work-orders", work_orders_json)
    return app


TABLES = {t.name: t for t in (HUBS, WINDOWS, INCIDENTS, WORK_ORDERS)}

__all__ = ["TABLES", "code_label", "console_app"]
