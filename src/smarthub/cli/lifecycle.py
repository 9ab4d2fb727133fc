"""``smarthub gdsc installer|installer-request|commission|replace|revoke|decommission|recover|
recovery``: a hub's life at the GDSC, acted on from a state directory
(:mod:`smarthub.gdsc.fleet.actions`, :mod:`smarthub.gdsc.fleet.recovery`)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from smarthub.cli.app import err, fail, first_line
from smarthub.cli.gdsc import gdsc_app, now_at, require_state

if TYPE_CHECKING:
    from smarthub.gdsc.fleet.lifecycle import HubLifecycle

StateDir = Annotated[Path, typer.Option(help="GDSC state directory (ca/, gdsc/)")]
Db = Annotated[str | None, typer.Option(help="database URL (default: SQLite in the state dir)")]
Serial = Annotated[
    str | None, typer.Option(help="its certificate serial, if it was registered from the manifest")
]


def _fail_with(command: str, e: Exception) -> typer.Exit:
    from smarthub.gdsc.fleet.commissioning import CommissioningRefused

    if isinstance(e, CommissioningRefused):
        return fail(f"smarthub gdsc {command}", f"refused: {e.code}: {e.reason}")
    return fail(f"smarthub gdsc {command}", first_line(e))


def _serial(text: str | None) -> int | None:
    """A certificate serial as given: decimal, or hex with 0x."""
    if text is None:
        return None
    try:
        return int(text, 0)
    except ValueError:
        raise ValueError(f"a certificate serial is a number (decimal, or hex as 0x…), not {text!r}") from None


@contextlib.contextmanager
def _lifecycle(state: Path, db: str | None, command: str) -> Iterator[HubLifecycle]:
    from smarthub.gdsc.service import open_lifecycle

    require_state(state, db)
    if not (state / "ca" / "ca.key").exists():
        raise fail(f"smarthub gdsc {command}", f"{state} has no ca/ca.key (the GDSC CA)")
    with open_lifecycle(state, db) as lifecycle:
        if lifecycle.signer is None:
            err.print("no gdsc/operator.key: no command can be signed for the hubs")
        yield lifecycle


@gdsc_app.command("installer")
def gdsc_installer(
    state: Annotated[Path, typer.Option(help="GDSC state directory (its ca/ issues the certificate)")],
    name: Annotated[str, typer.Option(help="the installer (person or firm), the certificate's CN")],
    out: Annotated[Path, typer.Option(help="directory for installer.pem and installer.key (0600)")],
    stem: Annotated[str, typer.Option(help="file name stem")] = "installer",
) -> None:
    """Issue an installer certificate from the state's CA: what signs commissioning requests."""
    from smarthub.gdsc.fleet.actions import issue_installer

    if not (state / "ca" / "ca.key").exists():
        raise fail("smarthub gdsc installer", f"{state} has no ca/ca.key (the GDSC CA)")
    try:
        line = issue_installer(state, name, out, stem, now_at(state))
    except (ValueError, OSError) as e:
        raise _fail_with("installer", e) from None
    print(json.dumps(line))


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
    from datetime import UTC, datetime
    from urllib.parse import urlsplit

    from smarthub.gdsc.fleet.commissioning import FUELS, CommissioningRequest, sign_request_with
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
        request = CommissioningRequest(
            hub_id=hub_id,
            premises_id=premises,
            url=url,
            hosts=tuple(host or (parts.hostname,)),
            meters_by_fuel=tuple(meters),
            issued=now_at(state) if state is not None else datetime.now(UTC),
            address=address,
            mpan=validate_mpan(mpan) if mpan else None,
            mprn=validate_mprn(mprn) if mprn else None,
            wan_link=wan_link,
            replaces=replaces,
            hub_public_key_pem=hub_public_key.read_text() if hub_public_key is not None else None,
        )
        cert_pem, key_pem = installer_cert.read_bytes(), installer_key.read_bytes()
        try:
            envelope = sign_request_with(request, cert_pem, key_pem)
        except ValueError as e:
            if str(e).startswith("the installer key"):  # name the files
                raise ValueError(f"{installer_key}: {e} {installer_cert}") from None
            raise
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


def _act(command: str, state: Path, db: str | None, action: Any) -> None:
    """Run ``action(lifecycle)`` on the state's lifecycle; print its JSON line or fail."""
    from smarthub.gdsc.fleet.commissioning import CommissioningError
    from smarthub.gdsc.fleet.pki import CertificateRejected

    with _lifecycle(state, db, command) as lifecycle:
        try:
            line = action(lifecycle)
        except (CommissioningError, CertificateRejected, ValueError, LookupError, OSError) as e:
            raise _fail_with(command, e) from None
    print(json.dumps(line))


@gdsc_app.command("commission")
def gdsc_commission(
    state: StateDir,
    request: Annotated[Path, typer.Option(help="the installer's signed request (`installer-request`)")],
    out: Annotated[
        Path | None,
        typer.Option(help="directory for hub.pem, hub.key and ca.pem (default: <state>/hubs/<hub id>)"),
    ] = None,
    old_serial: Annotated[
        str | None,
        typer.Option(help="a replacement's old hub certificate serial, if it was never commissioned"),
    ] = None,
    db: Db = None,
) -> None:
    """Commission a hub from an installer's signed request: the request is verified (installer
    certificate from this CA, not revoked, signature, at most an hour old), then the hub gets its
    certificate, its premises and meters, and a first read. A request naming the hub it replaces
    is a replacement (as `replace`)."""
    from smarthub.gdsc.fleet import actions

    _act(
        "commission",
        state,
        db,
        lambda lc: actions.commission(
            lc, state, request.read_bytes(), now_at(state), out, _serial(old_serial)
        ),
    )


@gdsc_app.command("replace")
def gdsc_replace(
    state: StateDir,
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
    db: Db = None,
) -> None:
    """Put a new hub in place of an old one: it takes over the premises and meters, the old hub is
    decommissioned and its certificate revoked (superseded), and the CRL goes to the hubs."""
    from smarthub.gdsc.fleet import actions

    _act(
        "replace",
        state,
        db,
        lambda lc: actions.replace(
            lc, state, old, request.read_bytes(), now_at(state), _serial(old_serial), out
        ),
    )


@gdsc_app.command("revoke")
def gdsc_revoke(
    state: StateDir,
    hub: Annotated[str, typer.Option(help="the hub to revoke")],
    reason: Annotated[
        str, typer.Option(help="RFC 5280 §5.3.1 reason, e.g. keyCompromise, privilegeWithdrawn")
    ] = "keyCompromise",
    serial: Serial = None,
    db: Db = None,
) -> None:
    """Revoke a hub: no more pulls, its data refused from now, its certificate on the CRL, which
    every other hub takes with its next bulk pull."""
    from smarthub.gdsc.fleet import actions

    _act(
        "revoke",
        state,
        db,
        lambda lc: actions.end_hub(
            lc, state, hub, now_at(state), revoke=True, reason=reason, serial=_serial(serial)
        ),
    )


@gdsc_app.command("decommission")
def gdsc_decommission(
    state: StateDir,
    hub: Annotated[str, typer.Option(help="the hub to take out of service")],
    serial: Serial = None,
    db: Db = None,
) -> None:
    """Take a hub out of service (cessationOfOperation): no more pulls, what it delivered stays
    readable, its certificate on the CRL (the other hubs take it with their next bulk pull)."""
    from smarthub.gdsc.fleet import actions

    _act(
        "decommission",
        state,
        db,
        lambda lc: actions.end_hub(lc, state, hub, now_at(state), revoke=False, serial=_serial(serial)),
    )


@gdsc_app.command("recover")
def gdsc_recover(
    state: StateDir,
    hub: Annotated[str, typer.Option(help="the hub to restore")],
    source: Annotated[
        str | None, typer.Option(help="whose state to restore (default: the hub it replaced, else itself)")
    ] = None,
    db: Db = None,
) -> None:
    """Plan and queue a recovery of a hub now (the running GDSC's upkeep does this by itself for
    a replacement and for a hub whose pull says its storage is blank); prints the recovery job."""
    from smarthub.gdsc.fleet.recovery import HubRecoveries

    def action(lc: HubLifecycle) -> dict[str, Any]:
        if lc.signer is None:
            raise ValueError("no gdsc/operator.key: the restore cannot be signed")
        recoveries = HubRecoveries(lc.store, lc.signer, lc.plan)
        rid = recoveries.start(hub, now_at(state), source_hub_id=source, reason="operator")
        found = recoveries.get(rid)
        assert found is not None
        return found.to_json()

    _act("recover", state, db, action)


@gdsc_app.command("recovery")
def gdsc_recovery(
    state: StateDir,
    hub: Annotated[str, typer.Option(help="the hub whose recoveries to show")],
    steps: Annotated[bool, typer.Option(help="each step too (command type, job, attempts, state)")] = False,
    db: Db = None,
) -> None:
    """A hub's recovery jobs, one JSON line each: state, steps applied and failed, what was
    planned (commands, intervals, the backup used)."""
    from smarthub.gdsc.fleet.recovery import HubRecoveries
    from smarthub.gdsc.service import open_store

    require_state(state, db)
    store = open_store(state, db)
    try:
        from smarthub.gdsc.service import operator_signer

        signer = operator_signer(state, store)
        if signer is None:
            raise fail("smarthub gdsc recovery", f"{state} has no gdsc/operator.key")
        recoveries = HubRecoveries(store, signer)
        for r in recoveries.of_hub(hub):
            line = r.to_json()
            if steps:
                line["step_list"] = recoveries.steps(r.recovery_id)
            print(json.dumps(line))
    finally:
        store.close()
