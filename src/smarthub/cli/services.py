"""``smarthub gdsc service apply|approve|refuse|suspend|resume|revoke|list``: third-party data
services' applications and the GDSC operator's decisions on them
(:mod:`smarthub.gdsc.governance.services`, :mod:`smarthub.gdsc.api.auth.onboarding`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from smarthub.cli.app import fail
from smarthub.cli.gdsc import Db, StateDir, gdsc_app, now_at, require_state

service_app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Third-party data services: `apply` (a third party's application; creates its party), the "
    "operator's `approve` (prints the OAuth2 client credentials, once), `refuse`, `suspend`, `resume`, "
    "`revoke` (each with --reason), and `list`.",
)
gdsc_app.add_typer(service_app, name="service")

Service = Annotated[str, typer.Argument(help="the third party's party id")]
Reason = Annotated[str, typer.Option(help="why (the applicant sees it; required but for an approval)")]
By = Annotated[str, typer.Option(help="the GDSC operator deciding (recorded in the audit log)")]


@service_app.command("apply")
def service_apply(
    state: StateDir,
    service: Service,
    organisation: Annotated[str, typer.Option(help="the applying organisation")],
    purpose: Annotated[str, typer.Option(help="what it uses the data for")],
    data_kind: Annotated[
        list[str],
        typer.Option(help="readings, events, demand-response, appliances or ihd-messages (repeat)"),
    ],
    granularity: Annotated[
        str, typer.Option(help="the finest: half-hourly, daily, monthly, tariff-register")
    ],
    retention_days: Annotated[int, typer.Option(help="how long it keeps the data it receives")],
    db: Db = None,
) -> None:
    """Record a third party's application (its party is created, not approved)."""
    from smarthub.gdsc.governance.parties import DataKind, Granularity
    from smarthub.gdsc.governance.services import Application, DataServices
    from smarthub.gdsc.service import open_store

    require_state(state, db)
    store = open_store(state, db)
    try:
        kinds = frozenset(DataKind(k) for k in data_kind)
        application = Application(organisation, purpose, kinds, Granularity(granularity), retention_days)
        done = DataServices(store.engine).apply(service, application, now_at(state))
    except (LookupError, ValueError) as e:
        raise fail("smarthub gdsc service apply", str(e)) from None
    finally:
        store.close()
    print(json.dumps({"service": done.party_id, "status": done.status.value}))


def _decide(state: Path, db: str | None, service: str, decision: str, reason: str, by: str) -> None:
    from smarthub.gdsc.api.auth.clients import ClientRegistry
    from smarthub.gdsc.api.auth.onboarding import Onboarding
    from smarthub.gdsc.governance.services import DataServices, Decision
    from smarthub.gdsc.service import open_store

    require_state(state, db)
    store = open_store(state, db)
    try:
        onboarding = Onboarding(DataServices(store.engine), ClientRegistry(store.engine))
        done, creds = onboarding.decide(service, Decision(decision), reason, by, now_at(state))
    except (LookupError, ValueError) as e:
        raise fail(f"smarthub gdsc service {decision}", str(e)) from None
    finally:
        store.close()
    out: dict[str, str] = {"service": done.party_id, "status": done.status.value, "reason": done.reason}
    if creds is not None:  # the secret is shown once: only its hash is kept
        out |= {
            "client_id": creds.client_id,
            "client_secret": creds.client_secret,
            "scope": " ".join(sorted(creds.scopes)),
        }
    print(json.dumps(out))


@service_app.command("approve")
def service_approve(
    state: StateDir, service: Service, reason: Reason = "", by: By = "OPERATOR", db: Db = None
) -> None:
    """Approve an application: prints the service's OAuth2 client credentials (once)."""
    _decide(state, db, service, "approve", reason, by)


@service_app.command("refuse")
def service_refuse(
    state: StateDir, service: Service, reason: Reason = "", by: By = "OPERATOR", db: Db = None
) -> None:
    """Refuse an application, with the reason."""
    _decide(state, db, service, "refuse", reason, by)


@service_app.command("suspend")
def service_suspend(
    state: StateDir, service: Service, reason: Reason = "", by: By = "OPERATOR", db: Db = None
) -> None:
    """Suspend an approved service: its next request is refused (403), no new token is issued."""
    _decide(state, db, service, "suspend", reason, by)


@service_app.command("resume")
def service_resume(
    state: StateDir, service: Service, reason: Reason = "", by: By = "OPERATOR", db: Db = None
) -> None:
    """Resume a suspended service."""
    _decide(state, db, service, "resume", reason, by)


@service_app.command("revoke")
def service_revoke(
    state: StateDir, service: Service, reason: Reason = "", by: By = "OPERATOR", db: Db = None
) -> None:
    """Revoke a service (final): its OAuth2 client and tokens stop working at once."""
    _decide(state, db, service, "revoke", reason, by)


@service_app.command("list")
def service_list(state: StateDir, db: Db = None) -> None:
    """Every application and where it stands, one JSON object a line."""
    from smarthub.gdsc.governance.services import DataServices
    from smarthub.gdsc.service import open_store

    require_state(state, db)
    store = open_store(state, db)
    try:
        for s in DataServices(store.engine).all():
            a = s.application
            print(
                json.dumps(
                    {
                        "service": s.party_id,
                        "organisation": a.organisation,
                        "status": s.status.value,
                        "reason": s.reason,
                        "data_kinds": sorted(k.value for k in a.data_kinds),
                        "granularity": a.granularity.value,
                        "retention_days": a.retention_days,
                    }
                )
            )
    finally:
        store.close()
