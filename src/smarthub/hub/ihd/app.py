"""The in-home display: a small web app the hub serves on the home network.

Any screen on the LAN (phone, tablet, wall display, TV browser) is an IHD. Pages are rendered
on the hub (HTML + inline SVG charts); one small script (``static/ihd.js``) keeps the live
power current through Server-Sent Events. Nothing is fetched from outside the home.

It reads only what the hub already holds: the data mirror (live power), each fuel's
:class:`~smarthub.hub.tariffs.CostAccumulator` (figures and rates), the priced intervals and
appliance sub-meters (:class:`~smarthub.hub.consumption.HomeConsumption`), the prepayment
ledger and the consent store. It never talks to a meter.

**Access** (the limits are in :mod:`smarthub.hub.ihd.store`):

* a screen pairs with a single-use 6-digit code made at the hub (``IhdStore.new_pairing_code``:
  the console, ``smarthub ihd-code``, or the "Paired screens" page of a screen already paired),
  valid 15 minutes, with a hub-wide back-off after each wrong code and a lockout after five;
* it then holds a random session token in an HttpOnly, SameSite=Strict cookie; sessions expire
  (30 days unused, a year at most) and the "Paired screens" page lists and unpairs them;
* every request must name the hub in its ``Host`` header: an IP address or one of
  ``allowed_hosts`` (``localhost`` and this machine's name by default). A page on another site
  that resolves its own name to the hub's address (DNS rebinding) sends its own name and is
  refused, so it can neither pair nor read;
* every state-changing POST carries a CSRF token tied to the session (a hidden form field, or
  the ``X-CSRF-Token`` header), and the pairing form a double-submit token tied to a cookie; a
  POST whose ``Origin`` names another site is refused as well.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import ipaddress
import secrets
import socket
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from smarthub.clock import Clock
from smarthub.hub.consumption import HomeConsumption, PricedInterval, Supply
from smarthub.hub.ihd.charts import bar_chart, column_chart
from smarthub.hub.ihd.live import LivePower, sse
from smarthub.hub.ihd.revocations import Revocation, RevocationRequests
from smarthub.hub.ihd.store import PRIORITIES, SESSION_MAX, IhdStore, Message, PairingRefused
from smarthub.hub.ihd.submeter_info import MonthUse, SubmeterHistory, monthly_info
from smarthub.hub.prepayment import PrepaymentLedger, ReconnectRefused, SupplyAction
from smarthub.hub.prepayment_bridge import PrepaymentBridge
from smarthub.hub.privacy import ConsentStore, Granularity
from smarthub.hub.tariffs import Rate, Summary
from smarthub.model.tariff import LONDON, SETTLEMENT_PERIOD, TariffError
from smarthub.model.tariff_calc import day_start, local_day, settlement_periods
from smarthub.wan import httpd as web
from smarthub.wan.contract.bodies.services import ServiceConsent, ServiceSummary

COOKIE = "ihd_session"
SCREEN = "screen"  # the request's state: the paired screen it comes from
CSRF = "csrf"  # its CSRF token
PAIR_COOKIE = "ihd_pair"  # the pairing form's double-submit token (before there is a session)
CSRF_FIELD = "csrf"
CSRF_HEADER = "X-CSRF-Token"
_FORMS = ("application/x-www-form-urlencoded", "multipart/form-data")  # multipart: refused 415
KEEPALIVE = 15.0  # seconds between SSE comments, so idle proxies and sleeping tabs keep the stream
_PENNY = Decimal("0.01")


def money(x: Decimal) -> str:
    sign = "-" if x < 0 else ""
    return f"{sign}£{abs(x).quantize(_PENNY, ROUND_HALF_UP):,.2f}"


def kwh(x: Decimal) -> str:
    return f"{x.quantize(Decimal('0.01'), ROUND_HALF_UP)} kWh"


def local_hm(t: datetime) -> str:
    return t.astimezone(LONDON).strftime("%H:%M")


PAIR_ERRORS = {
    "wrong": "That code is not right.",
    "wait": "Too many wrong codes: wait a few seconds before trying again.",
    "locked": "Too many wrong codes: make a new pairing code at the hub.",
    "none": "There is no pairing code waiting (they last 15 minutes and work once):"
    " make a new one at the hub.",
}


def csrf_token(session_token: str) -> str:
    """The CSRF token of a session: an HMAC of the session token, which a page on another site
    can neither read (HttpOnly cookie) nor compute."""
    return hmac.new(session_token.encode(), b"smarthub ihd csrf", hashlib.sha256).hexdigest()[:32]


def default_hosts() -> frozenset[str]:
    """Host names the display answers to besides IP addresses: localhost and this machine's
    name (with ``.local``, as mDNS announces it)."""
    name = socket.gethostname().lower()
    return frozenset({"localhost", name, f"{name}.local"})


def _host_allowed(host: str, allowed: frozenset[str]) -> bool:
    """Whether a ``Host`` header names this hub: an IP literal (DNS rebinding needs a name), or
    an allowed name."""
    name = host.lower()
    if name.startswith("["):  # [IPv6]:port
        name = name[1 : name.find("]")] if "]" in name else name
    elif name.count(":") == 1:
        name = name.rsplit(":", 1)[0]
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return name.rstrip(".") in allowed


def _csrf_input(request: web.Request) -> str:
    return f'<input type="hidden" name="{CSRF_FIELD}" value="{escape(request.get(CSRF, ""))}">'


@dataclass
class Ihd:
    """Everything the IHD reads; only ``consumption`` and ``store`` are required."""

    consumption: HomeConsumption
    store: IhdStore
    clock: Clock
    live: LivePower
    consent: ConsentStore | None = None
    ledger: PrepaymentLedger | None = None
    bridge: PrepaymentBridge | None = None
    recipients: list[str] = field(default_factory=lambda: ["gdsc"])
    # The hub's history: a flat's heat-cost allocators and water meters, month by month (issue 21).
    history: SubmeterHistory | None = None
    # "Stop sharing" of a GDSC consent on the "Data services" page: kept for the GDSC (issue 25).
    revocations: RevocationRequests | None = None
    # How often the GDSC pulls this hub at most (its window), as the display tells the consumer.
    pull_every: timedelta = timedelta(minutes=30)
    title: str = "Home energy"
    # Slow and oversized clients (issue 8). The IHD's forms are a few hundred bytes.
    max_body: int = 64 * 1024  # larger bodies: 413 (a Content-Length over it before any byte)
    body_timeout: float = 10.0  # a body not received by then: 408
    # A connection idle that long (before a request, between requests) is closed, and so is one
    # whose request head is not complete that long after its first byte (wan.httpd).
    header_timeout: float = 10.0
    send_timeout: float = 30.0  # a screen that leaves the live stream unread that long: closed
    # Host names (besides IP addresses) the display answers to: see _host_allowed.
    allowed_hosts: frozenset[str] = field(default_factory=default_hosts)

    # -- the web app ------------------------------------------------------------------------
    def app(self) -> web.Application:
        """The display on the hub's own HTTP server (:mod:`smarthub.wan.httpd`, as the WAN): the
        ``Host`` and pairing checks are guards on the request head, so a stranger's body is
        never read; the server reads a paired screen's body within ``max_body`` and
        ``body_timeout``; then the CSRF check, then the handler."""
        app = web.Application(
            guards=[self._host, self._auth],
            middlewares=[self._csrf],
            client_max_size=self.max_body,
            idle_timeout=self.header_timeout,
            header_timeout=self.header_timeout,
            body_timeout=self.body_timeout,
            send_timeout=self.send_timeout,
        )
        app.router.add_get("/", self.dashboard)
        app.router.add_get("/pair", self.pair_form)
        app.router.add_post("/pair", self.pair)
        app.router.add_get("/screens", self.screens_page)
        app.router.add_post("/screens/unpair", self.unpair)
        app.router.add_post("/screens/code", self.new_code)
        app.router.add_get("/events", self.events)
        app.router.add_get("/api/summary", self.summary_json)
        app.router.add_post("/messages/ack", self.ack_message)
        app.router.add_post("/prepayment/{fuel}/emergency", self.emergency)
        app.router.add_post("/prepayment/{fuel}/reconnect", self.reconnect)
        app.router.add_get("/consent", self.consent_page)
        app.router.add_get("/services", self.services_page)
        app.router.add_post("/services/stop", self.stop_service_consent)
        app.router.add_post("/consent", self.consent_set)
        app.router.add_get("/static/{name}", self.static)
        return app

    async def start(self, host: str, port: int) -> tuple[web.AppRunner, int]:
        """Serve on ``host:port`` (0: any free port); returns the runner and the bound port."""
        runner = web.AppRunner(self.app())
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        return runner, int(runner.addresses[0][1])

    async def _host(self, request: web.Request) -> None:
        """Refuse a request that does not name this hub (DNS rebinding, module docstring)."""
        if not _host_allowed(request.host, self.allowed_hosts):
            raise web.HTTPMisdirectedRequest(text=f"this display does not answer to {request.host!r}")

    async def _auth(self, request: web.Request) -> None:
        if request.method == "POST":
            origin = request.headers.get("origin")
            if origin and urlsplit(origin).netloc != request.host:
                raise web.HTTPForbidden(text=f"cross-site request from {origin} refused")
        if request.path in ("/pair",) or request.path.startswith("/static/"):
            return
        token = request.cookies.get(COOKIE)
        screen = self.store.session(token, self.clock.now())
        if screen is None or token is None:
            if request.method == "GET" and request.path in ("/", "/consent", "/services", "/screens"):
                raise web.HTTPSeeOther("/pair")
            raise web.HTTPUnauthorized(text="pair this screen with the hub first: /pair")
        request[SCREEN] = screen
        request[CSRF] = csrf_token(token)

    async def _csrf(self, request: web.Request, handler: web.Handler) -> web.Response:
        """Every state-changing POST carries its CSRF token (the body has been read by now)."""
        if request.method != "POST":
            return await handler(request)
        # /pair: double submit, the form's token equals its cookie's; elsewhere the session's.
        expected = request.cookies.get(PAIR_COOKIE, "") if request.path == "/pair" else request[CSRF]
        given = request.headers.get(CSRF_HEADER.lower())
        if given is None and request.content_type in _FORMS:
            given = str((await _form(request)).get(CSRF_FIELD, ""))
        if not expected or not given or not secrets.compare_digest(given.encode(), expected.encode()):
            raise web.HTTPForbidden(text="missing or wrong CSRF token: reload the page and try again")
        return await handler(request)

    # -- pairing ----------------------------------------------------------------------------

    async def pair_form(
        self, request: web.Request, error: str | None = None, status: int = 200
    ) -> web.Response:
        error = error or request.query.get("error")
        # The double-submit token: the form's hidden field must equal this cookie on POST.
        pre = request.cookies.get(PAIR_COOKIE) or secrets.token_urlsafe(24)
        message = PAIR_ERRORS.get(error or "", "That code is not right." if error else "")
        body = (
            "<h1>Pair this screen</h1><p>Enter the 6-digit pairing code your Smart Hub shows"
            " (it makes a new one each time: on its console, or from a screen already paired).</p>"
            + (f'<p class="error">{escape(message)}</p>' if message else "")
            + '<form method="post" action="/pair">'
            f'<input type="hidden" name="{CSRF_FIELD}" value="{escape(pre)}">'
            '<input name="code" inputmode="numeric" autocomplete="off"'
            ' pattern="[0-9]{6}" required aria-label="pairing code">'
            ' <input name="name" maxlength="40" placeholder="name this screen" aria-label="screen name">'
            " <button>Pair</button></form>"
        )
        resp = self._page("Pair", body, status=status)
        resp.set_cookie(PAIR_COOKIE, pre, httponly=True, samesite="Strict", max_age=3600, path="/pair")
        return resp

    async def pair(self, request: web.Request) -> web.Response:
        form = await _form(request)
        name = str(form.get("name", "")).strip() or _screen_name(request.headers.get("user-agent", ""))
        try:
            token = self.store.pair(str(form.get("code", "")), self.clock.now(), name)
        except PairingRefused as refused:
            if refused.kind == "wrong":
                raise web.HTTPSeeOther("/pair?error=wrong") from None
            resp = await self.pair_form(request, refused.kind, 429 if refused.kind == "wait" else 403)
            if refused.retry_after is not None:
                resp.headers["Retry-After"] = str(max(1, round(refused.retry_after)))
            return resp
        resp = _see_other("/")
        max_age = int(SESSION_MAX.total_seconds())
        resp.set_cookie(COOKIE, token, httponly=True, samesite="Strict", max_age=max_age)
        resp.del_cookie(PAIR_COOKIE, path="/pair")
        return resp

    # -- paired screens ---------------------------------------------------------------------
    async def screens_page(self, request: web.Request, code: str | None = None) -> web.Response:
        now = self.clock.now()
        this = request[SCREEN]
        rows = []
        for sc in self.store.screens(now):
            seen = datetime.fromtimestamp(sc.last_seen, LONDON)
            paired = datetime.fromtimestamp(sc.paired, LONDON)
            rows.append(
                f'<li class="screen" data-screen="{sc.id}"><strong>{escape(sc.name)}</strong>'
                + (" (this screen)" if sc.id == this.id else "")
                + f' <span class="muted">paired {paired:%d %b %Y}, last seen {seen:%d %b %H:%M}</span>'
                f'<form method="post" action="/screens/unpair">{_csrf_input(request)}'
                f'<input type="hidden" name="screen" value="{sc.id}">'
                f'<button id="unpair-{sc.id}">Unpair</button></form></li>'
            )
        shown = (
            f'<p>Pairing code for the next screen: <strong id="pairing-code" class="big">{code}</strong>'
            " (works once, for 15 minutes)</p>"
            if code
            else ""
        )
        body = (
            f'<h1>Paired screens</h1><ul class="screens">{"".join(rows)}</ul>{shown}'
            f'<form method="post" action="/screens/code">{_csrf_input(request)}'
            '<button id="new-code">Pair another screen</button></form><nav><a href="/">Back</a></nav>'
        )
        return self._page("Paired screens", body)

    async def unpair(self, request: web.Request) -> web.Response:
        form = await _form(request)
        try:
            screen = int(str(form.get("screen", "")))
        except ValueError:
            raise web.HTTPBadRequest(text="screen must be the number of a paired screen") from None
        if not self.store.unpair(screen):
            raise web.HTTPNotFound(text=f"no paired screen {screen}")
        if screen == request[SCREEN].id:  # this screen unpaired itself
            resp = _see_other("/pair")
            resp.del_cookie(COOKIE)
            return resp
        raise web.HTTPSeeOther("/screens")

    async def new_code(self, request: web.Request) -> web.Response:
        """A paired screen makes the code for another one (the consumer is already in)."""
        return await self.screens_page(request, self.store.new_pairing_code(self.clock.now()))

    async def static(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        types = {"ihd.js": "application/javascript", "ihd.css": "text/css"}
        if name not in types:
            raise web.HTTPNotFound()
        # Beside this module, not through importlib.resources (with zipfile ~1.5 MB of a hub's 64).
        text = (Path(__file__).parent / "static" / name).read_text(encoding="utf-8")
        return web.Response(
            body=text.encode(),
            content_type=f"{types[name]}; charset=utf-8",
            headers={"Cache-Control": "max-age=3600"},
        )

    # -- live -------------------------------------------------------------------------------
    async def events(self, request: web.Request) -> web.Response:
        """The live power as Server-Sent Events, for as long as the screen keeps the stream (the
        server closes the stream, and so unsubscribes, when the screen goes away)."""
        return web.Response(
            content_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            stream=self._live_events(),
        )

    async def _live_events(self) -> AsyncIterator[bytes]:
        q = self.live.subscribe()
        try:
            current = self.live.current()
            if current is not None:
                yield sse("power", current)
            while True:
                try:
                    data = await asyncio.wait_for(q.get(), KEEPALIVE)
                except TimeoutError:
                    yield b": keepalive\n\n"
                    continue
                yield sse("power", data)
        finally:
            self.live.unsubscribe(q)

    # -- figures ----------------------------------------------------------------------------
    def figures(self) -> dict[str, Any]:
        now = self.clock.now()
        out: dict[str, Any] = {"time": now.isoformat(), "live": self.live.current(), "fuels": {}}
        for fuel, supply in self.consumption.supplies.items():
            acc = supply.accumulator
            f: dict[str, Any] = {"supplier": supply.supplier, "meter": supply.meter}
            for name, s in (
                ("today", acc.today(now)),
                ("week", acc.this_week(now)),
                ("month", acc.this_month(now)),
            ):
                f[name] = {
                    "cost": str(s.cost),
                    "kwh": str(s.kwh),
                    "co2_kg": str(s.co2_kg),
                    "unpriced": s.unpriced,
                }
            for name, r in (
                ("current_rate", _safe_rate(acc.current_rate, now)),
                ("next_rate", _safe_rate(acc.next_rate, now)),
            ):
                f[name] = None if r is None else _rate_json(r)
            out["fuels"][fuel] = f
        d = local_day(now)
        out["appliances"] = [
            {"name": a.name, "meter": a.meter, "kwh": str(a.kwh), "cost": str(a.cost)}
            for a in self.consumption.appliance_costs(d, d + timedelta(days=1))
        ]
        if self.ledger is not None:
            out["prepayment"] = {f: self.ledger.balance(f).to_json() for f in self._prepaid()}
        heat_and_water = self._submeters(now)
        if heat_and_water:
            out["heat_and_water"] = [m.to_json() for m in heat_and_water]
        return out

    def _submeters(self, now: datetime) -> list[MonthUse]:
        return [] if self.history is None else monthly_info(self.history, now, LONDON, self.store.building())

    def _submeter_section(self, now: datetime) -> str:
        """This month's heating and water against last month, the same month last year and the
        building's average (EED Annex VIIa), in the billing's units and costs."""
        uses = self._submeters(now)
        if not uses:
            return ""
        parts = ['<section id="heat-and-water"><h2>Heating and water</h2>']
        for u in uses:

            def fig(x: Decimal | None, u: MonthUse = u) -> str:
                if x is None:
                    return "–"
                c = u.cost(x)
                return f"{x.normalize():f} {u.unit}" + ("" if c is None else f" ({u.currency} {c})")

            rows = [
                ("This month so far", u.this_month, fig(u.this_month)),
                (f"{u.last:%b %Y}", u.last_month, fig(u.last_month)),
            ]
            if u.month_before is not None:
                rows.append(("The month before", u.month_before, fig(u.month_before)))
            if u.last_month_last_year is not None:
                rows.append(
                    (f"{u.last:%b} a year before", u.last_month_last_year, fig(u.last_month_last_year))
                )
            if u.building_average is not None and u.average_month is not None:
                rows.append(
                    (
                        f"Building average, {u.average_month:%b %Y}",
                        u.building_average,
                        fig(u.building_average),
                    )
                )
            parts.append(f"<h3>{escape(u.label)}</h3>" + bar_chart(f"submeter-{u.medium}", rows))
        parts.append("</section>")
        return "".join(parts)

    async def summary_json(self, request: web.Request) -> web.Response:
        return web.json_response(self.figures())

    # -- pages ------------------------------------------------------------------------------
    async def dashboard(self, request: web.Request) -> web.Response:
        now = self.clock.now()
        csrf = _csrf_input(request)
        sections = [self._live_section(), self._messages_section(now, csrf)]
        if self.ledger is not None:
            sections.append(self._prepayment_section(now, csrf))
        sections.append(
            '<div class="fuels">'
            + "".join(self._fuel_card(s, now) for s in self.consumption.supplies.values())
            + "</div>"
        )
        sections.append(self._appliance_section(now))
        sections.append(self._submeter_section(now))
        sections.append(self._comparison_section(now))
        sections.append(
            '<nav><a href="/consent">Data sharing</a> · <a href="/services">Data services</a>'
            ' · <a href="/screens">Paired screens</a></nav>'
        )
        return self._page(self.title, "".join(sections), script=True)

    def _live_section(self) -> str:
        cur = self.live.current()
        watts = "–" if cur is None else f"{int(Decimal(cur['watts'])):,}"
        since = "" if cur is None else local_hm(datetime.fromisoformat(cur["time"]))
        return (
            '<section class="live"><h2>Using now</h2>'
            f'<p><span id="live-power" class="big">{watts}</span> <span class="unit">W</span></p>'
            f'<p class="muted">reading at <span id="live-time">{escape(since)}</span></p></section>'
        )

    def _messages_section(self, now: datetime, csrf: str = "") -> str:
        msgs = self.store.messages(now)
        if not msgs:
            return ""
        items = []
        for m in msgs:
            items.append(
                f'<li class="msg p{m.priority}{" third-party" if m.third_party else ""}"'
                f' data-id="{escape(m.message_id)}">{_message_from(m)}'
                f' <span class="muted">({PRIORITIES[m.priority]})</span><p>{escape(m.text)}</p>'
                f'<form method="post" action="/messages/ack">{csrf}'
                f'<input type="hidden" name="sender" value="{escape(m.sender)}">'
                f'<input type="hidden" name="id" value="{escape(m.message_id)}">'
                "<button>OK, got it</button></form></li>"
            )
        return f'<section id="messages"><h2>Messages</h2><ul class="msgs">{"".join(items)}</ul></section>'

    def _fuel_card(self, supply: Supply, now: datetime) -> str:
        acc = supply.accumulator
        rows = []
        for label, s in (
            ("Today", acc.today(now)),
            ("This week", acc.this_week(now)),
            ("This month", acc.this_month(now)),
        ):
            rows.append(_summary_row(label, s))
        cur, nxt = _safe_rate(acc.current_rate, now), _safe_rate(acc.next_rate, now)
        rate = (
            "<p>Rate not available</p>"
            if cur is None
            else (
                f'<p class="rate">Now: <strong>{_p_inc_vat(cur)}</strong> ({escape(cur.name)})'
                + ("" if cur.until is None else f" until {local_hm(cur.until)}")
                + "</p>"
            )
        )
        if nxt is not None:
            rate += f'<p class="rate">Next: {_p_inc_vat(nxt)} ({escape(nxt.name)})</p>'
        d = local_day(now)
        tariff_name = acc.schedule.in_force(d).name or acc.schedule.tariff_id
        halves = self.consumption.half_hours(supply.fuel, d)
        midnight = day_start(d)
        bars = [
            (int((p.start - midnight) // SETTLEMENT_PERIOD), local_hm(p.start), p.cost, _tip(p))
            for p in halves
        ]
        chart = column_chart(f"halfhours-{supply.fuel}", bars, "£", slots=settlement_periods(d), every=8)
        return (
            f'<section class="fuel" id="fuel-{supply.fuel}"><h2>{supply.fuel.capitalize()}</h2>'
            f'<p class="muted">{escape(supply.supplier)} · {escape(tariff_name)}</p>'
            f'{rate}<table class="figures"><tr><th></th><th>£</th><th>kWh</th><th>kg CO₂</th></tr>'
            f"{''.join(rows)}</table>"
            f"<h3>Today by half-hour (£)</h3>{chart}</section>"
        )

    def _appliance_section(self, now: datetime) -> str:
        d = local_day(now)
        apps = self.consumption.appliance_costs(d, d + timedelta(days=1))
        rows = [(a.name, a.cost, f"{money(a.cost)} · {kwh(a.kwh)}") for a in apps]
        elec = self.consumption.supplies.get("electricity")
        if elec is not None and apps:
            total = sum((p.cost for p in self.consumption.half_hours("electricity", d)), Decimal(0))
            rest = total - sum((a.cost for a in apps), Decimal(0))
            if rest > 0:
                rest = rest.quantize(_PENNY, ROUND_HALF_UP)
                rows.append(("Rest of home", rest, money(rest)))
        chart = bar_chart("appliance-chart", rows)
        return f'<section id="appliances"><h2>What cost money today</h2>{chart}</section>'

    def _comparison_section(self, now: datetime) -> str:
        parts = ['<section id="comparison"><h2>Compared with</h2>']
        d = local_day(now)
        monday = d - timedelta(days=d.weekday())
        for fuel, supply in self.consumption.supplies.items():
            acc = supply.accumulator
            this = acc.summary(monday, d + timedelta(days=1))
            try:
                last = acc.summary(monday - timedelta(days=7), d - timedelta(days=6))
            except TariffError:
                continue
            rows = [
                ("This week so far", this.kwh, kwh(this.kwh)),
                ("Same days last week", last.kwh, kwh(last.kwh)),
            ]
            parts.append(f"<h3>{fuel.capitalize()}: last week</h3>" + bar_chart(f"lastweek-{fuel}", rows))
        comparison = self.store.comparison()
        if comparison is not None:
            for fuel, fc in comparison.fuels.items():
                fuel_supply = self.consumption.supplies.get(fuel)
                if fuel_supply is None:
                    continue
                yours = fuel_supply.accumulator.summary(comparison.start, comparison.end)
                rows = [
                    ("Your home", yours.kwh, kwh(yours.kwh)),
                    ("Average", fc.average_kwh, kwh(fc.average_kwh)),
                    ("Efficient", fc.efficient_kwh, kwh(fc.efficient_kwh)),
                ]
                parts.append(
                    f"<h3>{fuel.capitalize()}: {escape(comparison.description)} ({comparison.homes} homes,"
                    f" {comparison.start:%d %b} – {comparison.end - timedelta(days=1):%d %b})</h3>"
                    + bar_chart(f"similar-{fuel}", rows)
                )
        parts.append("</section>")
        return "".join(parts)

    def _prepayment_section(self, now: datetime, csrf: str = "") -> str:
        assert self.ledger is not None
        cards = []
        for fuel in self._prepaid():
            b = self.ledger.balance(fuel)
            action = self.ledger.supply_action(fuel, now)
            buttons = ""
            if b.emergency_available:
                buttons += (
                    f'<form method="post" action="/prepayment/{fuel}/emergency">{csrf}'
                    f'<button id="emergency-{fuel}">Use emergency credit</button></form>'
                )
            if action is SupplyAction.AWAIT_CONFIRMATION:
                buttons += (
                    f'<form method="post" action="/prepayment/{fuel}/reconnect">{csrf}'
                    '<p class="warn">Your credit is back.'
                    " Before the gas is turned back on, make sure every gas appliance is switched off.</p>"
                    f'<button id="reconnect-{fuel}">Appliances are off: turn the gas back on</button></form>'
                )
            topups = self.ledger.top_ups(fuel)[:5]
            history = "".join(
                f"<li>{money(Decimal(t['amount']))} · "
                f"{datetime.fromtimestamp(t['applied'], LONDON):%d %b %H:%M}"
                + ("" if Decimal(t["to_debt"]) == 0 else f" ({money(Decimal(t['to_debt']))} to debt)")
                + "</li>"
                for t in topups
            )
            cards.append(
                f'<div class="balance {"low" if b.low_credit else ""}"><h3>{fuel.capitalize()} credit</h3>'
                f'<p class="big" id="balance-{fuel}">{money(b.credit)}</p>'
                + ("" if b.debt == 0 else f"<p>Debt: {money(b.debt)}</p>")
                + ('<p class="warn">Emergency credit in use</p>' if b.emergency_active else "")
                + ('<p class="warn">Supply is off</p>' if b.supply == "off" else "")
                + f"{buttons}<h4>Top-ups</h4>"
                + f'<ul id="topups-{fuel}">{history or "<li>None yet</li>"}</ul></div>'
            )
        balances = "".join(cards)
        return (
            f'<section id="prepayment"><h2>Pay as you go</h2><div class="balances">{balances}</div></section>'
        )

    def _prepaid(self) -> list[str]:
        if self.ledger is None:
            return []
        fuels = self.bridge.fuels if self.bridge is not None else set(self.consumption.supplies)
        return [f for f in self.consumption.supplies if f in fuels]

    # -- actions ----------------------------------------------------------------------------
    async def ack_message(self, request: web.Request) -> web.Response:
        form = await _form(request)
        self.store.acknowledge(str(form.get("sender", "")), str(form.get("id", "")), self.clock.now())
        raise web.HTTPSeeOther("/")

    def _fuel(self, request: web.Request) -> str:
        fuel = request.match_info["fuel"]
        if self.ledger is None or fuel not in self._prepaid():
            raise web.HTTPNotFound(text=f"no prepayment account for {fuel!r}")
        return fuel

    async def emergency(self, request: web.Request) -> web.Response:
        fuel = self._fuel(request)
        assert self.ledger is not None
        try:
            self.ledger.activate_emergency_credit(fuel, self.clock.now())
        except ValueError as err:
            raise web.HTTPConflict(text=str(err)) from None
        if self.bridge is not None:
            await self.bridge.apply_supply(fuel)
        raise web.HTTPSeeOther("/")

    async def reconnect(self, request: web.Request) -> web.Response:
        fuel = self._fuel(request)
        assert self.ledger is not None
        try:
            self.ledger.confirm_reconnect(fuel, self.clock.now())
        except ReconnectRefused as err:
            raise web.HTTPConflict(text=str(err)) from None
        if self.bridge is not None:
            await self.bridge.apply_supply(fuel)
        raise web.HTTPSeeOther("/")

    # -- consent ----------------------------------------------------------------------------
    async def consent_page(self, request: web.Request) -> web.Response:
        if self.consent is None:
            raise web.HTTPNotFound(text="this hub keeps no consent store")
        decided = self.consent.all()
        names = sorted({*self.recipients, *decided})
        rows = []
        for r in names:
            g = self.consent.granularity(r)
            options = "".join(
                f'<option value="{x.value}"{" selected" if x is g else ""}>{x.value}</option>'
                for x in Granularity
            )
            rows.append(
                f'<li class="recipient" data-recipient="{escape(r)}"><strong>{escape(r)}</strong>'
                f' <span class="granularity">{g.value}</span>{"" if r in decided else " (default)"}'
                f'<form method="post" action="/consent">{_csrf_input(request)}'
                f'<input type="hidden" name="recipient" value="{escape(r)}">'
                f'<select name="granularity" aria-label="granularity for {escape(r)}">{options}</select>'
                f' <button name="action" value="set">Save</button>'
                f' <button name="action" value="revoke" id="revoke-{escape(r)}">Stop sharing</button>'
                "</form></li>"
            )
        body = (
            "<h1>Who sees your data</h1><p>Choose, for each organisation, how detailed the data it may"
            " collect from this hub is. <em>none</em> stops sharing.</p>"
            f'<ul class="recipients">{"".join(rows)}</ul>'
            f'<h2>Add an organisation</h2><form method="post" action="/consent">{_csrf_input(request)}'
            '<input name="recipient" required maxlength="64" aria-label="organisation id">'
            '<select name="granularity">'
            + "".join(f'<option value="{x.value}">{x.value}</option>' for x in Granularity)
            + '</select> <button name="action" value="set">Grant</button></form>'
            + '<nav><a href="/services">Data services: who holds your consent, what they read</a>'
            ' · <a href="/">Back</a></nav>'
        )
        return self._page("Data sharing", body)

    async def consent_set(self, request: web.Request) -> web.Response:
        if self.consent is None:
            raise web.HTTPNotFound(text="this hub keeps no consent store")
        form = await _form(request)
        recipient = str(form.get("recipient", "")).strip()
        if not recipient or len(recipient) > 64:
            raise web.HTTPBadRequest(text="a recipient is 1..64 characters")
        if form.get("action") == "revoke":
            granularity = Granularity.NONE
        else:
            try:
                granularity = Granularity(str(form.get("granularity", "")))
            except ValueError:
                raise web.HTTPBadRequest(
                    text=f"granularity must be one of {[g.value for g in Granularity]}"
                ) from None
        self.consent.set(recipient, granularity, self.clock.now())
        raise web.HTTPSeeOther("/consent")

    # -- data services ----------------------------------------------------------------------
    async def services_page(self, request: web.Request) -> web.Response:
        """Which data services hold the household's consent and what each read, as the GDSC's
        audit log has it (the latest ``ihd.services`` it sent); each live consent with its "Stop
        sharing" button, or what became of the consumer's request to stop it."""
        view = self.store.services()
        now = self.clock.now()
        asked = {} if self.revocations is None else self.revocations.latest()
        if view is None:
            body = "<p>The GDSC has not sent this home's data services yet.</p>"
        elif not view.services:
            body = "<p>No data service holds your consent or has read your data.</p>"
        else:
            csrf = _csrf_input(request) if self.revocations is not None else None
            wait = _minutes(self.pull_every)
            body = (
                '<ul class="services">'
                + "".join(_service_item(x, now, asked, csrf, wait) for x in view.services)
                + "</ul>"
            )
        as_of = (
            "" if view is None else f'<p class="as-of">As recorded by the GDSC at {_local(view.as_of)}.</p>'
        )
        return self._page(
            "Data services",
            "<h1>Data services</h1><p>The organisations you allowed to receive your data through the"
            " GDSC, and what each has read.</p>"
            + body
            + as_of
            + '<nav><a href="/consent">Data sharing</a> · <a href="/">Back</a></nav>',
        )

    async def stop_service_consent(self, request: web.Request) -> web.Response:
        """ "Stop sharing" of a consent the GDSC holds: the request is kept for the GDSC's next
        pull (``hub.ihd.revocations``), and this hub stops letting the service have anything at
        once (its privacy filter; the GDSC's ``consent.set`` after the revocation settles it)."""
        if self.revocations is None:
            raise web.HTTPNotFound(text="this display does not forward revocations")
        form = await _form(request)
        consent_id = str(form.get("consent_id", ""))
        view = self.store.services()
        held = next(
            (
                (x.service_id, c)
                for x in (view.services if view is not None else ())
                for c in x.consents
                if c.consent_id == consent_id
            ),
            None,
        )
        if held is None:  # only a consent the display shows can be stopped from it
            raise web.HTTPNotFound(text=f"no consent {consent_id[:64]!r} among your data services")
        service_id, _consent = held
        screen = request[SCREEN]
        now = self.clock.now()
        self.revocations.request(consent_id, service_id, f"{screen.name} #{screen.id}", now)
        if self.consent is not None:
            self.consent.set(service_id, Granularity.NONE, now)
        raise web.HTTPSeeOther("/services")

    # -- layout -----------------------------------------------------------------------------
    def _page(self, title: str, body: str, *, script: bool = False, status: int = 200) -> web.Response:
        js = '<script src="/static/ihd.js" defer></script>' if script else ""
        html = (
            '<!doctype html><html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<title>{escape(title)}</title><link rel="stylesheet" href="/static/ihd.css">{js}</head>'
            f"<body><main>{body}</main></body></html>"
        )
        return web.Response(body=html.encode(), status=status, content_type="text/html; charset=utf-8")


async def _form(request: web.Request) -> Mapping[str, str]:
    """The request's form fields (URL-encoded; a body of another type has none); a body that is
    not a form (bytes that are not UTF-8) is answered 400, a multipart one 415 (the display's
    forms are URL-encoded), not 500."""
    return await request.post()


def _see_other(location: str) -> web.Response:
    """A 303 to ``location`` that can carry cookies (``HTTPSeeOther`` is for plain redirects)."""
    return web.Response(status=303, headers={"Location": location}, content_type="text/plain; charset=utf-8")


def _screen_name(user_agent: str) -> str:
    """A name for a screen paired without one: what its browser says it runs on."""
    for token in ("iPhone", "iPad", "Android", "Windows", "Macintosh", "CrOS", "Linux"):
        if token in user_agent:
            return {"Macintosh": "Mac", "CrOS": "Chromebook"}.get(token, token) + " screen"
    return "screen"


def _safe_rate(fn: Any, now: datetime) -> Rate | None:
    with contextlib.suppress(TariffError):
        return fn(now)
    return None


def _rate_json(r: Rate) -> dict[str, Any]:
    return {
        "name": r.name,
        "p_per_kwh_ex_vat": str(r.unit_price_p_per_kwh),
        "vat_rate": str(r.vat_rate),
        "until": None if r.until is None else r.until.isoformat(),
    }


def _p_inc_vat(r: Rate) -> str:
    return f"{(r.unit_price_p_per_kwh * (1 + r.vat_rate)).quantize(_PENNY, ROUND_HALF_UP)}p/kWh"


def _summary_row(label: str, s: Summary) -> str:
    kwh_shown = s.kwh.quantize(_PENNY, ROUND_HALF_UP)
    return f"<tr><th>{label}</th><td>{money(s.cost)}</td><td>{kwh_shown}</td><td>{s.co2_kg}</td></tr>"


def _local(t: datetime) -> str:
    return t.astimezone(LONDON).strftime("%d %b %Y %H:%M")


def _local_day(t: datetime) -> str:
    return t.astimezone(LONDON).strftime("%d %b %Y")


def _period(start: datetime, end: datetime) -> str:
    """A data period in local days (an end at local midnight is the day before, inclusive)."""
    last = end - timedelta(microseconds=1) if end.astimezone(LONDON).time() == time(0) else end
    first, final = _local_day(start), _local_day(last)
    return first if first == final else f"{first} – {final}"


def _minutes(d: timedelta) -> str:
    m = max(1, round(d.total_seconds() / 60))
    return f"{m} minute{'s' if m != 1 else ''}"


def _consent_item(c: ServiceConsent, asked: Revocation | None, csrf: str | None, wait: str) -> str:
    """A live consent: what it covers, and its "Stop sharing" button or the request's fate."""
    what = (
        f"{escape(', '.join(c.data_kinds))}, {escape(c.granularity)}, since {_local_day(c.granted)},"
        f" until {_local_day(c.expires)}"
    )
    if asked is not None and asked.state == "pending":
        when = _local(asked.request.requested_at)
        state = (
            f'<p class="stop-pending">You asked to stop this at {when} ({escape(asked.request.screen)}):'
            f" this hub shares nothing more with them; the GDSC ends the consent when it next collects"
            f" from this hub (usually within {wait}).</p>"
        )
    else:
        refused = (
            ""
            if asked is None or asked.state != "refused"
            else f'<p class="stop-refused">The GDSC did not stop it: {escape(asked.reason)}</p>'
        )
        button = (
            ""
            if csrf is None
            else f'<form method="post" action="/services/stop">{csrf}'
            f'<input type="hidden" name="consent_id" value="{escape(c.consent_id)}">'
            f' <button id="stop-{escape(c.consent_id)}">Stop sharing</button></form>'
        )
        state = refused + button
    return f'<li class="consent" data-consent="{escape(c.consent_id)}">{what}{state}</li>'


def _service_item(
    x: ServiceSummary,
    now: datetime,
    asked: Mapping[str, Revocation] | None = None,
    csrf: str | None = None,
    wait: str = "30 minutes",
) -> str:
    asked = asked or {}
    name = f"<strong>{escape(x.organisation)}</strong> ({escape(x.service_id)})"
    status = "" if x.status == "approved" else f' <span class="status">{escape(x.status)}</span>'
    # The consents the GDSC confirmed ended at the consumer's request: not live, whatever an older
    # view still says, and listed as stopped once the GDSC's view no longer carries them.
    stopped = [r for r in asked.values() if r.request.service_id == x.service_id and r.state == "applied"]
    ended = {r.request.consent_id for r in stopped}
    live = [c for c in x.consents if c.expires > now and c.consent_id not in ended]
    done = "".join(
        f'<p class="stopped">Sharing stopped at your request: the GDSC ended the consent at'
        f" {_local(s.answered or s.request.requested_at)}.</p>"
        for s in stopped
    )
    if live:
        consents = "".join(_consent_item(c, asked.get(c.consent_id), csrf, wait) for c in live)
        held = f'<ul class="consents">{consents}</ul>{done}'
    else:
        held = done + '<p class="consents">No consent now.</p>'
    if x.reads_total:
        rows = "".join(
            f"<tr><td>{_local(r.at)}</td><td>{escape(r.data_kind)}"
            f"{'' if r.meter is None else ' ' + escape(r.meter)}</td>"
            f"<td>{escape(r.granularity or '')}</td>"
            f"<td>{'; '.join(_period(s, e) for s, e in r.periods)}</td></tr>"
            for r in x.reads
        )
        reads = (
            f'<p class="reads">Read {x.reads_total} time{"s" if x.reads_total != 1 else ""}'
            f"{'' if x.last_read is None else ', last ' + _local(x.last_read)}.</p>"
            '<table class="service-reads"><tr><th>When</th><th>What</th><th>Detail</th><th>Of</th></tr>'
            f"{rows}</table>"
        )
    else:
        reads = '<p class="reads">Has read nothing.</p>'
    refused = (
        f'<p class="refused">{x.refused_total} attempt{"s" if x.refused_total != 1 else ""} refused.</p>'
        if x.refused_total
        else ""
    )
    purpose = f"<p>{escape(x.purpose)}</p>" if x.purpose else ""
    return (
        f'<li class="service" data-service="{escape(x.service_id)}">{name}{status}{purpose}{held}'
        f"{reads}{refused}</li>"
    )


def _tip(p: PricedInterval) -> str:
    return f"{local_hm(p.start)}: {kwh(p.kwh)}, {money(p.cost)}"


def _message_from(m: Message) -> str:
    """Who a message is from: a data service's by its name, marked as a third party so that it is
    never taken for the supplier's (issue 25); a supplier's by its sender as before."""
    if not m.third_party:
        return f"<strong>{escape(m.sender)}</strong>"
    return (
        f"<strong>{escape(m.sender_name or m.sender)}</strong>"
        ' <span class="origin">a data service you share with, not your energy supplier</span>'
    )
