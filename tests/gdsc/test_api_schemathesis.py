"""Issue 22, must show (b): Schemathesis against the running API with **all** its checks.

``schemathesis run --checks all`` (every phase: examples, coverage, fuzzing, stateful over the
document's links) against the API served by uvicorn on a loopback port (``World.served``), each
request as a party drawn from every role (``schemathesis_hooks.py``). The checks include
``positive_data_acceptance`` (a schema-valid request is not refused with 400/422) and
``negative_data_rejection`` (a schema-invalid one is), ``unsupported_method`` (405 with a true
``Allow``), ``ignored_auth`` (401 without a valid token, whatever the body), the response
schema, status code, content type and header checks, and ``use_after_free`` /
``ensure_resource_availability`` over the links.

The only failures allowed are those in :data:`INEXPRESSIBLE`: rules of the API that an OpenAPI
3.1 document cannot state (a relation between two parameters, the server's clock, the state of
the database), so a request that satisfies the schema can still be refused, each with the reason.
Anything else — a 5xx, a schema-invalid request accepted, a response that does not match the
document, one of these rules answered differently — fails the test.

``make test`` runs every role together with few examples (well under a minute); the
``slow`` variant runs each role on its own with many more.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gdsc.api_world import PARTIES, World, build

HOOKS = Path(__file__).resolve().parent / "schemathesis_hooks.py"


@dataclass(frozen=True)
class Rule:
    code: str  # the Schemathesis check's code (ST202: positive_data_acceptance)
    status: int
    detail: str  # a pattern over the error body
    reason: str


INEXPRESSIBLE = [
    Rule(
        "ST202",
        400,
        r"cannot send this event: (the event ends at .* which is already past|an event needs a control)",
        "a demand-response event must not be over by the server's clock, and needs at least one of "
        "three optional controls (duty_cycle, load_reduction_percent, appliance_load_reduction)",
    ),
    Rule(
        "ST202",
        400,
        r"time range end .* is not after start|the billing period ends before it starts"
        r"|a billing period of at most [0-9]+ days|a period of at most [0-9]+ days",
        "start and end are two query parameters; OpenAPI cannot relate one parameter to another",
    ),
    Rule(
        "ST202",
        400,
        r"message expiry .* is already past",
        "whether an expiry is past depends on the server's clock at the time of the request",
    ),
    Rule(
        "ST202",
        400,
        r"cannot send tariff .*: effective .* is not local midnight of the tariff's effective_from",
        "`effective` must be local (Europe/London) midnight of `tariff.effective_from`: a relation "
        "between two fields, through a time zone's rules",
    ),
    Rule(
        "ST202",
        422,
        r"body\.tariff\.pricing\.(tiered|time_of_use)\b.*Value error, ",
        "a tariff's structure: the last tier unbounded and tier bounds increasing, tier names unique, "
        "a time-of-use day covered exactly once by its periods, every rate and day type used "
        "defined — relations between items that JSON Schema cannot state",
    ),
    Rule(
        "ST202",
        422,
        r"body\.tariff\.pricing\.dynamic\.unit_rates_p_per_kwh\.start: Value error, .* not on a half-hour",
        "a dynamic price series starts on a half-hour boundary (UTC): no date-time format says so",
    ),
    Rule(
        "ST202",
        400,
        r"cannot consent to .*: no party|consent is given to suppliers and data services, not to a ",
        "the grantee must be a party the GDSC knows, of a role that may receive data: the database's "
        "state, not the request's shape",
    ),
    Rule(
        "ST202",
        400,
        r"feeder .* is not a known feeder|its parent .* is not a known (secondary|primary|feeder)"
        r"|only a primary substation has no parent",
        "a network edit must fit the topology it edits (a premises' feeder and a node's parent "
        "exist, only a primary has none): the database's state and a relation between fields",
    ),
    Rule(
        "ST202",
        400,
        r"topology file refused: ",
        "a topology upload is a CSV or GeoJSON file whose grammar and references (each node's "
        "parent, each premises' feeder) are its content; the document can only say it is a file of "
        "that media type",
    ),
    Rule(
        "ST202",
        400,
        r"shipment file refused: ",
        "a shipment file is CSV whose header, fields and keys are its content; the document can only "
        "say it is a file of that media type",
    ),
    Rule(
        "ST202",
        400,
        r"a data service's message has priority 1 \(normal\) at most",
        "an IHD message's priority may be 0-3 for the premises' supplier but at most 1 for a data "
        "service (issue 25): it depends on the caller's role, not the request's shape",
    ),
    Rule(
        "ST202",
        400,
        r"no meter \[.*\] at premises",
        "a consent's meters must be meters of the premises: the database's state",
    ),
]


@dataclass(frozen=True)
class Failure:
    operation: str
    codes: tuple[str, ...]
    status: int | None
    body: str

    def rule(self) -> Rule | None:
        for rule in INEXPRESSIBLE:
            if (
                self.codes == (rule.code,)
                and self.status == rule.status
                and re.search(rule.detail, self.body)
            ):
                return rule
        return None


def failures(junit: Path) -> tuple[int, int, list[Failure]]:
    """(test cases, errors, failures) from Schemathesis' JUnit report."""
    suite = ET.parse(junit).getroot()
    found = []
    for case in suite.iter("testcase"):
        for failure in case.iter("failure"):
            for block in re.split(r"(?m)^\d+\. Test Case ID: ", failure.text or "")[1:]:
                status = re.search(r"(?m)^\[(\d{3})\]", block)
                body = re.search(r"(?m)^    `(.*)`$", block)
                found.append(
                    Failure(
                        case.get("name", "?"),
                        tuple(re.findall(r"(?m)^- (ST\d+|[A-Z][A-Za-z]+\d*) ", block)) or ("?",),
                        int(status.group(1)) if status else None,
                        body.group(1) if body else block[:500],
                    )
                )
    errors = sum(int(s.get("errors", "0")) for s in suite.iter("testsuite"))
    return len(list(suite.iter("testcase"))), errors, found


def schemathesis_binary() -> str:
    script = Path(sys.executable).parent / "schemathesis"
    return str(script) if script.exists() else "schemathesis"


def run(world: World, base: str, parties: list[str], examples: int, seed: int, out: Path) -> list[Failure]:
    (out / "hooks").mkdir()
    shutil.copy(HOOKS, out / "hooks" / "schemathesis_hooks.py")
    env = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": "schemathesis_hooks",
        # the hooks module alone on the path (tests/ holds packages that would shadow libraries)
        "PYTHONPATH": str(out / "hooks"),
        "SMARTHUB_API_TOKENS": json.dumps({p: world.tokens[p] for p in parties}),
        "SMARTHUB_API_SEED": str(seed),
    }
    done = subprocess.run(
        [
            schemathesis_binary(),
            "run",
            f"{base}/openapi.json",
            "--checks",
            "all",
            "--continue-on-failure",
            "--max-examples",
            str(examples),
            "--seed",
            str(seed),
            "--report",
            "junit,json",
            "--report-junit-path",
            str(out / "junit.xml"),
            "--report-json-path",
            str(out / "run.json"),
            "--no-color",
            "--workers",
            "1",
        ],
        env=env,
        cwd=out,  # its cache (.schemathesis/, replayed crashes) stays with this run, not in the repo
        capture_output=True,
        text=True,
        timeout=1800,
    )
    (out / "schemathesis.log").write_text(done.stdout + done.stderr)
    assert done.returncode in (0, 1), done.stdout[-3000:] + done.stderr[-3000:]  # 1: failures found
    report = json.loads((out / "run.json").read_text())
    assert report["complete"] and report["errors"] == [], report["errors"]
    operations = report["operations"]["total"]
    assert report["operations"]["tested"] == operations >= 16
    assert {name: p["status"] for name, p in report["phases"].items() if p["status"] == "skipped"} == {}
    cases, errors, found = failures(out / "junit.xml")
    assert cases == operations + 1 and errors == 0  # each operation, and the stateful scenarios
    return found


def unexplained(found: list[Failure]) -> list[Failure]:
    return [f for f in found if f.rule() is None]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("schemathesis")
    w = build(f"sqlite:///{tmp / 'api.sqlite'}", tmp / "state")
    yield w
    w.store.close()


@pytest.fixture(scope="module")
def base(world: World) -> Iterator[str]:
    with world.served() as url:
        yield url


def test_the_allowlist_reads_the_report_it_is_applied_to(tmp_path: Path) -> None:
    """The parser finds the failures a report lists, and an unknown one is not explained away."""
    text = (
        "1. Test Case ID: a\n\n- ST202 Schema-valid request rejected\n\n[400] Bad Request:\n\n"
        '    `{"detail":"time range end 2000-01-01T00:00:00+00:00 is not after start 2000-01-01T00:00:00+00:00"}`\n\n'
        "2. Test Case ID: b\n\n- ST201 Schema-invalid request accepted\n\n[200] OK:\n\n    `[]`\n"
    )
    suite = ET.Element("testsuites")
    s = ET.SubElement(suite, "testsuite", errors="0")
    ET.SubElement(ET.SubElement(s, "testcase", name="GET /v1/jobs"), "failure").text = text
    ET.ElementTree(suite).write(tmp_path / "j.xml")
    _, _, found = failures(tmp_path / "j.xml")
    assert [(f.codes, f.status) for f in found] == [(("ST202",), 400), (("ST201",), 200)]
    assert unexplained(found) == [found[1]]


def test_schemathesis_all_checks_every_role(world: World, base: str, tmp_path: Path) -> None:
    found = run(world, base, [p.party_id for p in PARTIES], examples=4, seed=22, out=tmp_path)
    assert unexplained(found) == [], (tmp_path / "schemathesis.log").read_text()[-20000:]


@pytest.mark.slow
@pytest.mark.parametrize("party", [p.party_id for p in PARTIES])
def test_schemathesis_all_checks_each_role_at_length(
    world: World, base: str, tmp_path: Path, party: str
) -> None:
    found = run(world, base, [party], examples=50, seed=2200, out=tmp_path)
    assert unexplained(found) == [], (tmp_path / "schemathesis.log").read_text()[-20000:]
