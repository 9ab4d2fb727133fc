"""The typed management command bodies of the WAN contract: one per command type, each round-
tripping through its JSON, each malformed body refused with the field named, and at the hub a
malformed body refused before anything changes (counter, handler, state)."""

from __future__ import annotations

import base64
import copy
import json
from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smarthub.clock import ManualClock
from smarthub.gdsc.commands.signer import CommandSigner
from smarthub.gdsc.commands.tariffs import tariff_update_body
from smarthub.gdsc.fleet.pki import CertificateAuthority, Role
from smarthub.hub.management import ManagementInterface
from smarthub.model.tariff import Flat, Tariff
from smarthub.wan.contract.bodies import (
    BODIES,
    CommandBody,
    ConsentSet,
    Granularity,
    IhdMessage,
    TariffUpdate,
    parse_body,
)
from smarthub.wan.contract.commands import COMMAND_TYPES, Command, MalformedCommand

NOW = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)
LFDI = "0123456789ABCDEF0123456789ABCDEF01234567"
TARIFF = Tariff(
    tariff_id="flat",
    version=2,
    effective_from=date(2026, 12, 8),
    name="Flat",
    standing_charge_p_per_day=Decimal("50"),
    pricing=Flat(unit_rate_p_per_kwh=Decimal("24.5")),
)

# One valid body per command type, as the GDSC sends it (so to_json must give it back exactly).
VALID: dict[str, dict[str, Any]] = {
    "mapping.update": {"table": {"version": "2", "entries": []}},
    "meter.key": {"meter": "E1", "key": "00112233445566778899aabbccddeeff", "pending": True},
    "meter.add": {"meter": "W1", "protocol": "wmbus", "fuel": "water"},
    "meter.remove": {"meter": "W1"},
    "meter.replace": {"old": "E1", "new": "E2", "protocol": "dlms", "fuel": "electricity"},
    "consent.set": {
        "recipient": "SUP1",
        "granularity": "daily",
        "version": 1_700_000_000_000_000,
        "meters": {"E1": "half-hourly"},
        "data_from": 1_700_000_000,
        "data_until": None,
        "events": True,
    },
    "supplier.keys": {
        "fuel": "gas",
        "supplier_id": "SUP2",
        "lfdi": LFDI,
        "effective": "2026-12-08T00:30:00+00:00",
    },
    "network.configure": {
        "listen": "127.0.0.1",
        "port": 9443,
        "ntp": ["ntp.example"],
        "allowed_clients": [LFDI],
    },
    "supply.disconnect": {"meter": "E1"},
    "supply.reconnect": {"meter": "E1"},
    "supply.state": {"meter": "E1"},
    "supply.limit": {"meter": "E1", "watts": 3000},
    "prepayment.topup": {"voucher": "{}", "signature": "AAAA", "signer": "-----BEGIN CERTIFICATE-----"},
    "tariff.update": tariff_update_body(TARIFF, "electricity"),
    "ihd.message": {
        "sender": "SUP1",
        "id": "m1",
        "text": "Hello",
        "priority": 2,
        "expires": "2026-12-09T00:00:00+00:00",
    },
    "ihd.comparison": {
        "start": "2026-11-30",
        "end": "2026-12-07",
        "homes": 12,
        "description": "3-bed semis",
        "electricity": {"average_kwh": "60.5", "efficient_kwh": "41.25"},
    },
    "ihd.building": {
        "month": "2026-01-01",
        "flats": 64,
        "flat_area_m2": "65.29",
        "per_m2": {"heat_cost_allocator": "1.521", "warm_water": "0.0493", "water": "0.0987"},
        "prices": {"heat_cost_allocator": "0.2134", "warm_water": "9.41", "water": "4.20"},
        "currency": "EUR",
    },
    "ihd.appliance": {"meter": "PLUG1", "name": "Dishwasher"},
    "ihd.services": {
        "as_of": "2026-12-07T12:00:00+00:00",
        "services": [
            {
                "id": "ADV",
                "organisation": "Advisor Ltd",
                "purpose": "tariff advice",
                "status": "approved",
                "consents": [
                    {
                        "id": "K1",
                        "data_kinds": ["readings"],
                        "granularity": "half-hourly",
                        "granted": "2026-12-01T09:00:00+00:00",
                        "expires": "2027-12-01T09:00:00+00:00",
                    }
                ],
                "reads": [
                    {
                        "at": "2026-12-07T11:00:00+00:00",
                        "data_kind": "readings",
                        "granularity": "half-hourly",
                        "meter": "E1",
                        "periods": [
                            {"start": "2025-12-01T00:00:00+00:00", "end": "2026-12-01T00:00:00+00:00"}
                        ],
                    }
                ],
                "reads_total": 18,
                "refused_total": 1,
                "last_read": "2026-12-07T11:00:00+00:00",
            }
        ],
    },
    "message.display": {
        "text": "Outage tonight",
        "priority": "high",
        "start": "2026-12-07T18:00:00+00:00",
        "duration_s": 3600,
    },
    "firmware.update": {"package": base64.b64encode(b"package bytes").decode()},
    "diagnostic.ping": {"nonce": "n-1"},
    "diagnostic.han_scan": {},
    "diagnostic.link_test": {"meter": "E1"},
    "appliance.run": {
        "appliance": "dishwasher",
        "kwh": ["0.5", "1.2"],
        "earliest": "2026-12-07T20:00:00+00:00",
        "deadline": "2026-12-08T07:00:00+00:00",
        "step_minutes": 30,
    },
    "drlc.event": {"xml": "<EndDeviceControl/>"},
    "drlc.responses": {"after": 4},
    "pki.crl": {"crl": base64.b64encode(b"DER").decode()},
    "pki.certificate": {"certificate": "-----BEGIN CERTIFICATE-----\n...", "replaces_serial": "1234"},
    "transfer.policy": {
        "version": 1_700_000_000_000_000,
        "frequency": "daily",
        "window_start": 60,
        "window_length": 240,
        "aggregation": "daily",
        "priority": 3,
    },
    "recovery.snapshot": {},
    "history.restore": {
        "meter": "E1",
        "obis": "1-0:1.8.0",
        "duration": 1800,
        "power_of_ten": 0,
        "rows": [[1_796_256_000, 250, 0], [1_796_257_800, 190, 8]],
        "fuel": "electricity",
    },
    "prepayment.restore": {
        "fuel": "electricity",
        "credit": "12.34",
        "debt": "1.50",
        "emergency_active": False,
        "as_of": "2026-12-07T10:00:00+00:00",
        "topups": [["V1", "10.00", "0.00", "10.00", "2026-12-01T09:00:00+00:00", 1_796_115_600]],
    },
    "recovery.complete": {"recovery": 7, "steps": 30, "storage": "0123456789abcdef"},
}

# Per command type: (a malformed body, the field the error must name).
MALFORMED: dict[str, tuple[dict[str, Any], str]] = {
    "mapping.update": ({"table": {"entries": []}}, "table"),
    "meter.key": ({"meter": "E1", "key": "0011"}, "key"),
    "meter.add": ({"meter": "W1"}, "protocol"),
    "meter.remove": ({"meter": 7}, "meter"),
    "meter.replace": ({"old": "E1", "new": "E1", "protocol": "dlms"}, "new"),
    "consent.set": ({"recipient": "SUP1", "granularity": "hourly"}, "granularity"),
    "supplier.keys": ({**VALID["supplier.keys"], "effective": "2026-12-08T00:10:00+00:00"}, "effective"),
    "network.configure": ({"port": 70000}, "port"),
    "supply.disconnect": ({}, "meter"),
    "supply.reconnect": ({"meter": ""}, "meter"),
    "supply.state": ({"meter": None}, "meter"),
    "supply.limit": ({"meter": "E1", "watts": "3kW"}, "watts"),
    "prepayment.topup": ({"voucher": "{}", "signature": "AAAA"}, "signer"),
    "tariff.update": ({**VALID["tariff.update"], "version": 3}, "version"),
    "ihd.message": ({**VALID["ihd.message"], "priority": 9}, "priority"),
    "ihd.comparison": ({**VALID["ihd.comparison"], "homes": 0}, "homes"),
    "ihd.building": ({**VALID["ihd.building"], "flats": 4}, "flats"),
    "ihd.appliance": ({"meter": "PLUG1", "name": "x" * 41}, "name"),
    "ihd.services": (
        {
            **VALID["ihd.services"],
            "services": [{**VALID["ihd.services"]["services"][0], "reads": [{"at": "noon"}]}],
        },
        "services[0].reads[0].at",
    ),
    "message.display": ({**VALID["message.display"], "start": "tonight"}, "start"),
    "firmware.update": ({"package": "not base64!"}, "package"),
    "diagnostic.ping": ([], "body"),  # not an object at all
    "diagnostic.han_scan": ("scan", "body"),
    "diagnostic.link_test": ({"meter": ["E1"]}, "meter"),
    "appliance.run": ({**VALID["appliance.run"], "kwh": ["0.5", "lots"]}, "kwh[1]"),
    "drlc.event": ({"xml": 5}, "xml"),
    "drlc.responses": ({"after": -1}, "after"),
    "pki.crl": ({"crl": "%%%"}, "crl"),
    "pki.certificate": ({"certificate": "not a certificate"}, "certificate"),
    "transfer.policy": ({**VALID["transfer.policy"], "window_start": 45}, "window_start"),
    "recovery.snapshot": ([1], "body"),
    "history.restore": ({**VALID["history.restore"], "rows": [[1_796_256_001, 250, 0]]}, "rows[0]"),
    "prepayment.restore": ({**VALID["prepayment.restore"], "debt": "-1"}, "debt"),
    "recovery.complete": ({"recovery": 0, "steps": 1}, "recovery"),
}


def test_every_command_type_has_a_body_and_examples() -> None:
    assert set(BODIES) == set(COMMAND_TYPES) == set(VALID) == set(MALFORMED)
    for ctype, cls in BODIES.items():
        assert ctype == cls.TYPE


@pytest.mark.parametrize("ctype", COMMAND_TYPES)
def test_body_round_trips(ctype: str) -> None:
    body = parse_body(ctype, VALID[ctype])
    assert isinstance(body, BODIES[ctype])
    assert body.to_json() == VALID[ctype]  # the wire format the GDSC has always sent
    assert BODIES[ctype].parse(json.loads(json.dumps(body.to_json()))) == body


@pytest.mark.parametrize("ctype", COMMAND_TYPES)
def test_malformed_body_names_the_field(ctype: str) -> None:
    bad, field = MALFORMED[ctype]
    with pytest.raises(MalformedCommand) as err:
        parse_body(ctype, bad)
    assert str(err.value).startswith(f"{ctype}: ")
    assert err.value.field == (None if field == "body" else field), str(err.value)
    assert (f"'{field}'" if field != "body" else "JSON object") in str(err.value)


def test_unknown_keys_are_ignored_and_optional_ones_stay_absent() -> None:
    body = parse_body("consent.set", {"recipient": "SUP1", "granularity": "none", "from_the_future": 1})
    assert body == ConsentSet("SUP1", Granularity.NONE)
    assert body.to_json() == {"recipient": "SUP1", "granularity": "none"}  # no scope: the hub keeps its own


def test_the_signer_signs_a_typed_body_as_its_json(tmp_path: Path) -> None:
    ca = CertificateAuthority.create("ca", NOW)
    op = ca.issue(Role.OPERATOR, "ops", NOW)
    signer = CommandSigner(op.private_key, op.cert_pem, lambda hub: 1)
    typed = parse_body("supply.limit", VALID["supply.limit"])
    signed = signer.command("HUB1", "supply.limit", typed, NOW)
    assert Command.from_payload(signed.payload).body == VALID["supply.limit"]
    with pytest.raises(ValueError, match="cannot be sent as"):
        signer.command("HUB1", "supply.state", typed, NOW)


async def test_a_malformed_body_of_each_type_is_refused_at_the_hub_and_changes_nothing(
    tmp_path: Path,
) -> None:
    ca = CertificateAuthority.create("ca", NOW)
    op = ca.issue(Role.OPERATOR, "ops", NOW)
    mgmt = ManagementInterface("HUB1", ca.certificate, ManualClock(NOW), tmp_path / "management.sqlite")
    ran: list[CommandBody] = []
    for ctype in COMMAND_TYPES:
        mgmt.register(ctype, ran.append)
    # Signed without the GDSC's check: as a faulty or older GDSC could send them.
    signer = CommandSigner(op.private_key, op.cert_pem, lambda hub: 0)
    try:
        for n, ctype in enumerate(COMMAND_TYPES, start=1):
            bad = MALFORMED[ctype][0]
            envelope = signer.sign(Command("HUB1", n, ctype, bad, NOW.isoformat())).envelope()
            result = await mgmt.handle(envelope)
            assert (result.status, result.code) == ("refused", "malformed"), (ctype, result)
            # (A body that is no object is refused by the envelope's own check.)
            expected = f"{ctype}: " if isinstance(bad, dict) else "counter must be an integer"
            assert result.detail.startswith(expected), result.detail
            assert mgmt.last_counter == 0 and ran == []  # the counter is not spent, nothing ran
        # ... and the well-formed bodies run, each handed its typed body.
        for n, ctype in enumerate(COMMAND_TYPES, start=1):
            envelope = signer.sign(Command("HUB1", n, ctype, VALID[ctype], NOW.isoformat())).envelope()
            assert (await mgmt.handle(envelope)).status == "applied", ctype
        assert [type(b) for b in ran] == [BODIES[c] for c in COMMAND_TYPES]
        assert mgmt.last_counter == len(COMMAND_TYPES)
        outcomes = [row[3] for row in mgmt.log(limit=1000)]
        assert outcomes.count("refused") == len(COMMAND_TYPES)
    finally:
        mgmt.close()


def test_a_summer_tariff_update_keeps_its_local_offset_on_the_wire() -> None:
    summer = replace(TARIFF, effective_from=date(2026, 9, 1))
    sent = tariff_update_body(summer, "gas", datetime.fromisoformat("2026-09-01T00:00:00+01:00"))
    body = parse_body("tariff.update", sent)
    assert isinstance(body, TariffUpdate) and body.effective == datetime(2026, 8, 31, 23, 0, tzinfo=UTC)
    assert body.to_json() == sent  # "+01:00" as sent, not rewritten to UTC
    local_date = parse_body("tariff.update", {**sent, "effective": "2026-09-01"})
    assert local_date == body  # the local date alone means the same instant
    with pytest.raises(MalformedCommand, match="'effective' '2026-09-01T00:00:00' needs a UTC offset"):
        parse_body("tariff.update", {**sent, "effective": "2026-09-01T00:00:00"})


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(
    ctype=st.sampled_from(COMMAND_TYPES),
    data=st.data(),
)
def test_any_json_body_is_parsed_or_refused_by_name_never_an_exception(
    ctype: str, data: st.DataObject
) -> None:
    # Bodies near a valid one (each field replaced or dropped in turn), and arbitrary JSON.
    valid = VALID[ctype]
    mutated = dict(valid)
    if valid:
        key = data.draw(st.sampled_from(sorted(valid)))
        if data.draw(st.booleans()):
            mutated[key] = data.draw(_json)
        else:
            del mutated[key]
    body = data.draw(st.sampled_from([mutated, data.draw(_json)]))
    try:
        parsed = parse_body(ctype, body)
    except MalformedCommand as err:
        assert str(err).startswith(f"{ctype}: ")
        return
    assert BODIES[ctype].parse(json.loads(json.dumps(parsed.to_json()))) == parsed


def test_every_hub_handler_is_declared_for_its_types_body(tmp_path: Path) -> None:
    """What the hub's handlers take (their annotations) is what the management interface hands
    them: a handler written against another type's body, or a dict, is found here."""
    import inspect
    import typing
    from datetime import timedelta

    from smarthub.hub.appliances import appliance_commands
    from smarthub.hub.drlc import drlc_commands
    from smarthub.sim.fleet import SimulatedHome, home_specs, provision

    specs = home_specs(2, seed=5)  # the second: DLMS with prepayment, so supply.* and top-ups too
    provision(tmp_path, specs, NOW - timedelta(days=1))
    home = SimulatedHome(specs[1], tmp_path, ManualClock(NOW), NOW, timedelta(seconds=60))
    # The home-automation handlers, as sim.home_automation registers them (built, never run).
    handlers = {**home.management.handlers, **appliance_commands(None), **drlc_commands(None, None)}  # type: ignore[arg-type]
    assert set(handlers) == set(COMMAND_TYPES)
    for ctype, handler in handlers.items():
        first = next(iter(inspect.signature(handler).parameters.values()))
        declared = typing.get_type_hints(handler)[first.name]
        assert BODIES[ctype] in (typing.get_args(declared) or (declared,)), (ctype, declared)


def test_a_services_view_with_a_data_kind_newer_than_the_hub_is_shown_not_refused() -> None:
    """A data kind added at the GDSC after the hub's firmware is displayed as sent (the whole
    view was refused when ``demand-response`` was added); one that is no kind name is refused."""
    from smarthub.wan.contract.bodies.services import IhdServices

    body = copy.deepcopy(VALID["ihd.services"])
    service = body["services"][0]
    service["consents"][0]["data_kinds"] = ["readings", "appliance-health"]
    service["reads"][0]["data_kind"] = "appliance-health"
    view = IhdServices.parse(body)
    assert view.services[0].consents[0].data_kinds == ("readings", "appliance-health")
    assert view.services[0].reads[0].data_kind == "appliance-health"
    service["reads"][0]["data_kind"] = "<script>"
    with pytest.raises(MalformedCommand, match=r"services\[0\]\.reads\[0\]\.data_kind"):
        IhdServices.parse(body)
    service["reads"][0]["data_kind"] = "readings"
    service["consents"][0]["data_kinds"] = ["readings", 7]
    with pytest.raises(MalformedCommand, match=r"data_kinds\[1\]"):
        IhdServices.parse(body)


def test_a_third_party_message_names_its_service_and_a_supplier_message_is_as_before() -> None:
    """Issue 25: a data service's ``ihd.message`` says whose it is, for the display to show it as
    the service's; the supplier's keeps the wire format it always had (no ``origin``)."""
    supplier = parse_body("ihd.message", VALID["ihd.message"])
    assert isinstance(supplier, IhdMessage)
    assert (supplier.origin, supplier.sender_name) == ("supplier", None)
    wire = {**VALID["ihd.message"], "sender": "ADV", "origin": "third-party", "sender_name": "Advisor Ltd"}
    service = parse_body("ihd.message", wire)
    assert isinstance(service, IhdMessage)
    assert (service.origin, service.sender_name) == ("third-party", "Advisor Ltd")
    assert service.to_json() == wire and IhdMessage.parse(service.to_json()) == service
    for bad, field in (
        ({**wire, "origin": "supplier-ish"}, "origin"),
        ({**wire, "sender_name": None}, "sender_name"),  # a third party's must name the service
        ({**wire, "sender_name": " "}, "sender_name"),
        ({**wire, "sender_name": "x" * 121}, "sender_name"),
    ):
        with pytest.raises(MalformedCommand) as err:
            parse_body("ihd.message", bad)
        assert err.value.field == field, str(err.value)
