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
from collections.abc import Callable
from pathlib import Path

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from smarthub.clock import Clock, SystemClock
from smarthub.gdsc.incidents.error_log import ErrorLog
from smarthub.gdsc.incidents.hub_page import detail_html, hub_href, page_html
from smarthub.gdsc.incidents.hub_view import PULLS_PAGE, code_label, hub_view
from smarthub.gdsc.pull.scheduler import WindowProgress
from smarthub.gdsc.store import Store

STOPPING = web.AppKey("stopping", asyncio.Event)

PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>smarthub GDSC operator</title>
<style>body{{font-family:system-ui,sans-serif;margin:1.5rem;color:#222}}table{{border-collapse:collapse}}
td,th{{padding:.25rem .6rem;border-bottom:1px solid #ddd;text-align:right}}
td:first-child,th:first-child{{text-align:left}}
.err{{color:#b00020;font-weight:600}}.ok{{color:#1b7f3b}}h1{{font-size:1.3rem}}</style></head><body>
<h1>GDSC operator — fleet health</h1>
<p id="summary">{summary}</p><p id="live" class="ok"></p>
<h2>Pulls per retrieval window</h2><div id="chart">{chart}</div>
<div id="errors">{errors}</div>
<h2>Hubs</h2><p><input id="q" placeholder="filter: hub, premises, status" aria-label="filter hubs">
<button id="prev">previous</button> <span id="page">{page}</span> <button id="next">next</button></p>
<table id="hubs" data-limit="{limit}"><thead><tr><th data-sort="hub_id">hub</th>
<th data-sort="premises_id">premises</th><th data-sort="status">status</th>
<th data-sort="last_pull">last pull (sim time)</th><th data-sort="pulls">pulls</th>
<th data-sort="readings">readings stored</th><th data-sort="errors">errors</th></tr></thead>
<tbody>{rows}</tbody></table>
<script src="/console.js"></script></body></html>"""

PAGE_SIZE = 50
SCRIPT = (Path(__file__).parent / "console.js").read_text()
HUB_SCRIPT = (Path(__file__).parent / "hub.js").read_text()
SORT_KEYS = ("hub_id", "premises_id", "status", "last_pull", "pulls", "readings", "errors")


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
    if log is None:
        return ""
    s = log.summary()
    open_incidents = log.incidents(open_only=True)
    by_code: dict[str, int] = {}
    for i in open_incidents:
        label = code_label(int(i["code"]))
        by_code[label] = by_code.get(label, 0) + 1
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
    rows = "".join(
        "<tr>"
        + "".join(
            f"<td>{html.escape(str(c))}</td>"
            for c in (
                w["work_order_id"],
                w["party"],
                w["assignee"],
                w["hub_id"] or "(area)",
                w["reason"],
                f"{w['created']:%Y-%m-%d %H:%M}",
            )
        )
        + "</tr>"
        for w in log.work_orders(status="open")[-50:]
    )
    return (
        f"<h2>Error log</h2><p>{s['incidents_open']} open incidents ({s['incidents_closed']} closed), "
        f"{s['events']} hub events, {s['repairs_sent']} remote repairs sent, "
        f"{s['repairs_queued']} queued, {s['work_orders_open']} open work orders</p>{chart}"
        "<h2>Open work orders</h2><table><tr><th>#</th><th>party</th><th>assignee</th><th>hub</th>"
        f"<th>reason</th><th>created</th></tr>{rows}</table>"
    )


def console_app(
    store: Store,
    windows: Callable[[], list[WindowProgress]],
    error_log: ErrorLog | None = None,
    metrics: CollectorRegistry | None = None,
    live_every: float = 1.0,
    clock: Clock | None = None,
) -> web.Application:
    clock_ = clock or SystemClock()

    async def index(request: web.Request) -> web.Response:
        rows = []
        status = await asyncio.to_thread(store.fleet_status)
        for h in status[:PAGE_SIZE]:
            last = h["last_pull"]
            cells = [
                f'<a href="{html.escape(hub_href(str(h["hub_id"])))}">{html.escape(str(h["hub_id"]))}</a>',
                html.escape(str(h["premises_id"])),
                html.escape(str(h["status"])),
                f"{last:%Y-%m-%d %H:%M:%S}" if last else "never",
                str(h["pulls"]),
                str(h["readings"]),
            ]
            err_cls = "err" if h["errors"] else "ok"
            rows.append(
                "<tr>"
                + "".join(f"<td>{c}</td>" for c in cells)
                + f"<td class='{err_cls}'>{h['errors']}</td></tr>"
            )
        summary = _summary(status)
        shown = min(len(status), PAGE_SIZE)
        body = PAGE.format(
            summary=summary,
            chart=_chart(windows()),
            errors=_error_section(error_log),
            rows="".join(rows),
            page=f"1–{shown} of {len(status)}" if status else "no hub",
            limit=PAGE_SIZE,
        )
        return web.Response(text=body, content_type="text/html")

    async def status_json(request: web.Request) -> web.Response:
        return web.json_response(store.fleet_status(), dumps=lambda o: json.dumps(o, default=str))

    def dumps(o: object) -> str:
        return json.dumps(o, default=str)

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

    async def hubs_json(request: web.Request) -> web.Response:
        """One page of the fleet, sorted and filtered here (thousands of hubs never go whole to
        the browser): ``offset``, ``limit`` (≤ 500), ``sort`` (a column), ``order``, ``q``."""
        try:
            offset = max(int(request.query.get("offset", "0")), 0)
            limit = min(max(int(request.query.get("limit", str(PAGE_SIZE))), 1), 500)
        except ValueError:
            raise web.HTTPBadRequest(text="offset and limit are whole numbers") from None
        key = request.query.get("sort", "hub_id")
        if key not in SORT_KEYS:
            raise web.HTTPBadRequest(text=f"sort by one of {', '.join(SORT_KEYS)}")
        q = request.query.get("q", "").strip().lower()
        rows = await asyncio.to_thread(store.fleet_status)
        if q:
            rows = [
                h for h in rows if any(q in str(h[k]).lower() for k in ("hub_id", "premises_id", "status"))
            ]
        rows.sort(key=lambda h: (h[key] is None, h[key] if h[key] is not None else 0), reverse=False)
        if request.query.get("order") == "desc":
            rows.reverse()
        page = rows[offset : offset + limit]
        return web.json_response(
            {"total": len(rows), "offset": offset, "limit": limit, "rows": page}, dumps=dumps
        )

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

    async def live(request: web.Request) -> web.StreamResponse:
        """Server-Sent Events: a ``status`` event every ``live_every`` seconds (summary, the
        windows' chart and counts, open incidents) until the client goes or the app stops."""
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await resp.prepare(request)
        stopping: asyncio.Event = request.app[STOPPING]
        try:
            while not stopping.is_set():
                status = await asyncio.to_thread(store.fleet_status)
                ws = list(windows())
                incidents = await asyncio.to_thread(error_log.summary) if error_log is not None else {}
                data = {
                    "summary": _summary(status),
                    "windows": len(ws),
                    "pulls": sum(w.done for w in ws),
                    "failed": sum(w.failed for w in ws),
                    "incidents_open": incidents.get("incidents_open", 0),
                    "chart": _chart(ws),
                    "errors": await asyncio.to_thread(_error_section, error_log),
                    "at": max((str(h["last_pull"]) for h in status if h["last_pull"]), default=""),
                }
                # What the pages compare to know whether to fetch their tables again.
                data["version"] = hashlib.sha256(
                    json.dumps([data, [(h["hub_id"], h["pulls"], h["status"]) for h in status]]).encode()
                ).hexdigest()[:16]
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

    app = web.Application()
    app[STOPPING] = asyncio.Event()
    app.router.add_get("/console.js", script)
    app.on_shutdown.append(on_shutdown)
    app.router.add_get("/", index)
    app.router.add_get("/hub.js", hub_script)
    app.router.add_get("/api/hubs", hubs_json)
    app.router.add_get("/api/hubs/{hub_id}", hub_json)
    app.router.add_get("/hubs/{hub_id}", hub_page)
    app.router.add_get("/api/live", live)
    if metrics is not None:
        app.router.add_get("/metrics", metrics_text)
    app.router.add_get("/api/fleet", status_json)
    app.router.add_get("/api/incidents", incidents_json)
    app.router.add_get("/api/work-orders", work_orders_json)
    return app
