"""Issue 22, must show (a): a Python client generated from the spec the running API serves works
unmodified, for every role.

The API runs under uvicorn on a loopback port (``World.served``: the same guards as ``smarthub gdsc
api``). Its ``/openapi.json`` is fetched over HTTP and handed to openapi-python-client (a test
extra, installed by ``make install``; nothing is downloaded at run time); any warning but the one
it gives for a request media type it cannot write (the topology upload's CSV) fails here. The generated package is imported
as it is and used to read readings, grant a consent, send a top-up and follow its job as each
party of ``api_world`` — the answers parsed into the generated models are the access policy's.
"""

from __future__ import annotations

import importlib
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import httpx
import pytest

from gdsc.api_world import DAY1, NOW, PARTIES, World, build

PACKAGE = "gdsc_generated_client"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("client")
    w = build(f"sqlite:///{tmp / 'api.sqlite'}", tmp / "state")
    yield w
    w.store.close()


@pytest.fixture(scope="module")
def base(world: World) -> Iterator[str]:
    with world.served() as url:
        yield url


def generator() -> list[str]:
    script = Path(sys.executable).parent / "openapi-python-client"
    if script.exists():
        return [str(script)]
    found = shutil.which("openapi-python-client")
    assert found, "openapi-python-client is a test extra: run `make install`"
    return [found]


@pytest.fixture(scope="module")
def gen(base: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    """The client generated from the served document, imported unmodified."""
    tmp = tmp_path_factory.mktemp("generated")
    spec = httpx.get(f"{base}/openapi.json", timeout=10)
    assert spec.status_code == 200
    (tmp / "openapi.json").write_text(json.dumps(spec.json()))
    (tmp / "config.yaml").write_text(f"package_name_override: {PACKAGE}\npost_hooks: []\n")
    done = subprocess.run(
        [
            *generator(),
            "generate",
            "--path",
            str(tmp / "openapi.json"),
            "--config",
            str(tmp / "config.yaml"),
            "--meta",
            "none",
            "--output-path",
            str(tmp / PACKAGE),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    # Every warning is one the generator itself owns up to (a request media type it cannot
    # write: the topology upload's CSV and GeoJSON files, the meter shipment's CSV), never a schema
    # it could not read.
    warnings = re.findall(r"(?m)^WARNING parsing (.*?) within default\.\s+(.+)$", done.stdout + done.stderr)
    assert all(
        (op == "POST /v1/network/topology" and why.startswith("Unsupported content type"))
        # a CSV-only upload: the generator leaves the operation out (an operator's file import)
        or (op == "POST /v1/meter-shipments" and why.startswith("Endpoint will not be generated"))
        for op, why in warnings
    ), done.stdout + done.stderr
    assert "Warning(s) encountered" not in done.stdout + done.stderr or warnings, done.stdout + done.stderr
    sys.path.insert(0, str(tmp))
    try:

        def load(name: str) -> ModuleType:
            return importlib.import_module(f"{PACKAGE}.{name}")

        api = {
            op: load(f"api.default.{op}")
            for op in (
                "get_readings",
                "grant_consent",
                "revoke_consent",
                "top_up",
                "get_job",
                "list_consents",
                "get_appliances",
            )
        }
        yield SimpleNamespace(package=load("client"), models=load("models"), **api)
    finally:
        sys.path.remove(str(tmp))
        for name in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
            del sys.modules[name]


def client_as(gen: SimpleNamespace, base: str, world: World, party: str) -> Any:
    return gen.package.AuthenticatedClient(
        base_url=base, token=world.tokens[party], raise_on_unexpected_status=True
    )


def read(gen: SimpleNamespace, client: Any, granularity: str) -> Any:
    return gen.get_readings.sync_detailed(
        "P1",
        client=client,
        meter_id="E1",
        start=DAY1,
        end=DAY1 + timedelta(days=1),
        granularity=gen.models.ServedGranularity(granularity),
    )


def read_finest(gen: SimpleNamespace, client: Any) -> Any:
    """Half-hourly, or the finest level the 403's ``max_granularity`` says this party may have."""
    r = read(gen, client, "half-hourly")
    if r.status_code == 403 and r.parsed.max_granularity in ("daily", "monthly"):
        r = read(gen, client, r.parsed.max_granularity)
    return r


# What the access policy lets each party of api_world do at P1 (E1, electricity supplied by S1,
# C1 the occupant who consents to TP reading daily data): the finest readings it gets, whether it
# may grant a consent, whether it may top up.
EXPECTED = {
    "C1": ("half-hourly", True, False),
    "S1": ("monthly", False, True),
    "SG": (None, False, False),
    "TP": ("daily", False, False),
    "DNO": (None, False, False),
    "OP": (None, False, False),
    "INST": (None, False, False),
}


def test_every_party_of_the_world_is_covered() -> None:
    assert sorted(EXPECTED) == sorted(p.party_id for p in PARTIES)


@pytest.mark.parametrize("party", list(EXPECTED))  # C1 first: TP reads under C1's consent
def test_generated_client_reads_consents_tops_up_and_follows_its_job(
    world: World, base: str, gen: SimpleNamespace, party: str
) -> None:
    finest, may_consent, may_top_up = EXPECTED[party]
    m = gen.models
    with client_as(gen, base, world, party) as client:
        # 1. Readings, parsed into the generated ReadingsPage (or ErrorBody).
        r = read_finest(gen, client)
        if finest is None:
            assert r.status_code == 403 and isinstance(r.parsed, m.ErrorBody) and r.parsed.detail
        else:
            assert r.status_code == 200 and isinstance(r.parsed, m.ReadingsPage), r.content
            page = r.parsed
            assert page.granularity == m.ServedGranularity(finest)
            values = [x.value for x in page.readings]
            if finest == "half-hourly":
                assert values == [100 + i for i in range(48)]  # what api_world stored
            elif finest == "daily":
                assert values == [sum(100 + i for i in range(48))]
            else:
                assert values == []  # a month is served whole or not at all; two days are stored
        # 2. A consent for TP to read P1's daily readings.
        grant = m.ConsentIn(
            party_id="TP",
            data_kinds=[m.DataKind.READINGS],
            granularity=m.Granularity.DAILY,
            purpose="energy advice",
            expires_at=NOW + timedelta(days=30),
        )
        r = gen.grant_consent.sync_detailed("P1", client=client, body=grant)
        if may_consent:
            assert r.status_code == 201 and isinstance(r.parsed, m.ConsentOut), r.content
            assert (r.parsed.party_id, r.parsed.granularity) == ("TP", m.Granularity.DAILY)
            listed = gen.list_consents.sync("P1", client=client)
            assert r.parsed.consent_id in [c.consent_id for c in listed]
        else:
            assert r.status_code == 403 and isinstance(r.parsed, m.ErrorBody), r.content
        # 3. A top-up, and 4. its job followed.
        r = gen.top_up.sync_detailed("P1", client=client, body=m.TopUpIn(meter_id="E1", amount="5.00"))
        if not may_top_up:
            assert r.status_code == 403 and isinstance(r.parsed, m.ErrorBody), r.content
            return
        assert r.status_code == 202 and isinstance(r.parsed, m.JobAccepted), r.content
        accepted = r.parsed
        assert accepted.command_type == "prepayment.topup" and accepted.voucher_id
        job = gen.get_job.sync(accepted.job_id, client=client)
        assert isinstance(job, m.JobOut)
        assert (job.job_id, job.state, job.voucher_id) == (
            accepted.job_id,
            m.JobOutState.QUEUED,
            accepted.voucher_id,
        )
    # Nobody else may follow it: 404, exactly as for a job that does not exist.
    for other in ("C1", "SG"):
        with client_as(gen, base, world, other) as client:
            r = gen.get_job.sync_detailed(accepted.job_id, client=client)
            assert r.status_code == 404 and isinstance(r.parsed, m.ErrorBody)


def test_generated_client_refuses_nothing_the_server_needs(gen: SimpleNamespace) -> None:
    """The generated models carry the spec's rules the client can see: the pricing tag is a
    required constructor argument, money a string."""
    m = gen.models
    with pytest.raises(TypeError):
        m.Flat(unit_rate_p_per_kwh="24.50")  # type: ignore[call-arg]
    flat = m.Flat(type_="flat", unit_rate_p_per_kwh="24.50")
    assert flat.to_dict() == {"type": "flat", "unit_rate_p_per_kwh": "24.50"}
    assert m.TopUpIn(meter_id="E1", amount="10.00").to_dict() == {"meter_id": "E1", "amount": "10.00"}


@pytest.mark.parametrize(("party", "status"), [("C1", 200), ("TP", 403), ("S1", 403)])
def test_generated_client_reads_a_premises_appliances_as_the_policy_says(
    world: World, base: str, gen: SimpleNamespace, party: str, status: int
) -> None:
    """Issue 25: the occupant reads its appliances; TP, consented to readings only, and the
    supplier are refused (appliance data needs its own consent)."""
    m = gen.models
    with client_as(gen, base, world, party) as client:
        r = gen.get_appliances.sync_detailed(
            "P1",
            client=client,
            start=DAY1,
            end=DAY1 + timedelta(days=1),
            granularity=m.ServedGranularity.DAILY,
        )
    assert r.status_code == status, r.content
    if status == 200:
        assert isinstance(r.parsed, m.AppliancesPage) and r.parsed.appliances == []  # no plug pulled
    else:
        assert isinstance(r.parsed, m.ErrorBody) and r.parsed.detail
