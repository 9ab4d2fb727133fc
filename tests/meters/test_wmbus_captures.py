"""Wireless M-Bus frames published from real meters (see ``wmbus_captures.py`` for each one's
source), decoded end to end, asserting the values their sources state; then what reaches the data
model (OBIS readings) for the sub-meters of apartment blocks: heat cost allocators with their
set-day values, water and heat meters, alarms.
"""

from __future__ import annotations

import importlib.util
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from typer.testing import CliRunner

from smarthub.cli import app
from smarthub.meters import wmbus
from smarthub.meters.errors import ChecksumError, KeyMissing, TruncatedFrame, UnknownLayout, WrongKey
from smarthub.meters.mapping import MappingTable

_spec = importlib.util.spec_from_file_location(
    "wmbus_captures", Path(__file__).with_name("wmbus_captures.py")
)
assert _spec is not None and _spec.loader is not None
c = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(c)

BERLIN = ZoneInfo("Europe/Berlin")


def _points(data: bytes, keys: dict[str, bytes] | None = None, **kw: object) -> dict[str, object]:
    return {p.key: p for p in wmbus.data_points(data, keys, **kw)}  # type: ignore[arg-type]


def _v(points: dict[str, object], key: str) -> object:
    return points[key].value  # type: ignore[attr-defined]


# ---- Kamstrup: ELL AES-CTR, compact frames, info codes -------------------------------------------


def test_multical21_ell_aes_ctr_with_its_published_key() -> None:
    f = wmbus.decode_frame(c.MULTICAL21_ENCRYPTED, {"KAM76348799": c.MULTICAL21_KEY})
    assert f.ell is not None and f.ell.ci == 0x8D and f.ell.encryption == wmbus.ELL_AES_CTR
    assert not f.receiver_decrypted and f.ci == 0x78
    p = _points(c.MULTICAL21_ENCRYPTED, {"KAM76348799": c.MULTICAL21_KEY})
    assert _v(p, "cold_water:volume") == Decimal("6.408")  # total_m3
    assert _v(p, "cold_water:volume/s1") == Decimal("6.408")  # target_m3
    assert _v(p, "cold_water:flow_temperature/min/s1") == 127  # flow_temperature_c
    assert _v(p, "cold_water:external_temperature/min/s1") == 19  # external_temperature_c
    # info codes 0x71: DRY (bit 0) for 22-31 days (bits 4-6 = 7), the source's DRY / 22-31 days
    assert _v(p, "cold_water:info_codes") == 0x71
    assert all("dry" in q.flags for q in p.values())  # type: ignore[attr-defined]
    # the decrypted payload is what wmbusmeters published receiver-decrypted for this meter
    clear = wmbus.decode_frame(c.MULTICAL21_FULL)
    assert clear.receiver_decrypted and clear.application == f.application


def test_multical21_without_or_with_a_wrong_key() -> None:
    with pytest.raises(KeyMissing):
        wmbus.decode_frame(c.MULTICAL21_ENCRYPTED)
    with pytest.raises(WrongKey, match="payload CRC"):
        wmbus.decode_frame(c.MULTICAL21_ENCRYPTED, {"KAM76348799": bytes(16)})
    # a key given for the meter: a frame in clear is not taken in its place
    with pytest.raises(WrongKey):
        wmbus.decode_frame(c.MULTICAL21_FULL, {"KAM76348799": c.MULTICAL21_KEY})


def test_multical21_compact_frame_rebuilt_from_its_full_frame() -> None:
    formats: dict[int, bytes] = {}
    full = wmbus.decode_frame(c.MULTICAL21_FULL, formats=formats)
    assert full.format_signature == 0xA8ED and formats[0xA8ED] == bytes.fromhex("02FF2004134413615B6167")
    compact = wmbus.decode_frame(c.MULTICAL21_COMPACT, formats=formats)
    assert compact.ci == 0x79 and compact.format_signature == 0xA8ED
    a, b = wmbus.data_points(full), wmbus.data_points(compact)
    assert [(p.key, p.value) for p in a] == [(p.key, p.value) for p in b]
    assert _v(_points(c.MULTICAL21_COMPACT), "cold_water:volume") == Decimal("6.408")


def test_multical21_max_flow_configuration_full_and_compact() -> None:
    formats: dict[int, bytes] = {}
    for frame in (c.MULTICAL21_VADDEN_FULL, c.MULTICAL21_VADDEN_COMPACT):
        p = _points(frame, formats=formats)
        assert _v(p, "cold_water:volume") == Decimal("20.015")  # total_m3
        assert _v(p, "cold_water:volume_flow/max/s2") == Decimal("0.317")  # max_flow_m3h
        assert _v(p, "cold_water:flow_temperature/min/s2") == 2  # flow_temperature_c
        assert _v(p, "cold_water:external_temperature_0xff_0x0f/s2") == 3  # external_temperature_c
        assert _v(p, "cold_water:info_codes") == 0  # status OK
    assert 0xC412 in formats


def test_compact_frame_of_an_unseen_format_is_an_unknown_layout_with_its_values() -> None:
    body = bytearray(c.MULTICAL21_COMPACT)
    body[20] ^= 0x01  # another format signature (the payload CRC after it is fixed below)
    crc = wmbus.crc16(bytes(body[19:]))
    body[17:19] = crc.to_bytes(2, "little")
    with pytest.raises(UnknownLayout, match="format signature 0xA8EC") as err:
        wmbus.decode_frame(bytes(body))
    assert err.value.values == ("710008190000081900007F13",)
    body = bytearray(c.MULTICAL21_COMPACT)
    body[-1] ^= 0x01  # a changed value: the full-frame CRC no longer matches
    body[17:19] = wmbus.crc16(bytes(body[19:])).to_bytes(2, "little")
    with pytest.raises(ChecksumError, match="full-frame CRC"):
        wmbus.decode_frame(bytes(body))


def test_flowiq2200_and_omnipower() -> None:
    p = _points(c.FLOWIQ2200)
    assert _v(p, "cold_water:volume") == Decimal("44.206")
    assert _v(p, "cold_water:volume/s1") == Decimal("43.108")
    assert _v(p, "cold_water:date/s1") == "2020-10-01"
    assert _v(p, "cold_water:volume_flow") == 0
    assert _v(p, "cold_water:volume_flow/max/s2") == Decimal("0.495")
    assert _v(p, "cold_water:volume_flow/min/s2") == 0
    assert _v(p, "cold_water:flow_temperature/min/s2") == 12
    assert _v(p, "cold_water:flow_temperature/max/s2") == 20
    assert _v(p, "cold_water:external_temperature/min/s2") == 19
    # the set-day volume is stamped at the end of its set day
    assert p["cold_water:volume/s1"].time == datetime(2020, 10, 2, tzinfo=UTC)  # type: ignore[attr-defined]
    for frame in (c.OMNIPOWER_FULL, c.OMNIPOWER_COMPACT):
        p = _points(frame)
        assert _v(p, "electricity:energy") == Decimal("7.94E3")  # 7.94 kWh
        assert _v(p, "electricity:energy_vife_0x3c") == 0  # production
        assert _v(p, "electricity:power") == 3  # 0.003 kW
        assert _v(p, "electricity:power_vife_0x3c") == 0


def test_multical603_heat_meter() -> None:
    p = _points(c.MULTICAL603)
    assert _v(p, "heat:energy") == Decimal("165E3") and p["heat:energy"].unit == "Wh"  # type: ignore[attr-defined]
    assert _v(p, "heat:volume") == Decimal("5.45")
    assert _v(p, "heat:volume_flow") == Decimal("0.018")
    assert _v(p, "heat:flow_temperature") == Decimal("53.28")
    assert _v(p, "heat:return_temperature") == Decimal("23.04")
    assert _v(p, "heat:forward_energy_m3c") == 299
    assert _v(p, "heat:return_energy_m3c") == 156
    assert _v(p, "heat:info_codes") == 0  # status OK


# ---- Techem, Diehl ------------------------------------------------------------------------------


def test_techem_fhkv_heat_cost_allocators_by_the_layout_table() -> None:
    with pytest.raises(TruncatedFrame, match="3 bytes after it"):
        wmbus.decode_frame(c.TECHEM_FHKV_69)  # the published frame runs 3 bytes past its L
    frame = c.TECHEM_FHKV_69[: c.TECHEM_FHKV_69[0] + 1]
    f = wmbus.decode_frame(frame)
    assert f.ci == 0xA0 and f.layout is not None and "0x69" in f.layout and f.meter == "TCH11776622"
    p = _points(frame)
    assert _v(p, "heat_cost_allocator:hca_units") == 131
    assert _v(p, "heat_cost_allocator:date") == "2020-02-08"
    assert _v(p, "heat_cost_allocator:hca_units/s1") == 1026
    assert _v(p, "heat_cost_allocator:date/s1") == "2019-12-31"
    assert _v(p, "heat_cost_allocator:room_temperature") == Decimal("22.44")
    assert _v(p, "heat_cost_allocator:radiator_temperature") == Decimal("25.51")
    p = _points(c.TECHEM_FHKV_94)
    assert _v(p, "heat_cost_allocator:hca_units") == 4
    assert _v(p, "heat_cost_allocator:date") == "2021-02-05"
    assert _v(p, "heat_cost_allocator:hca_units/s1") == 45
    assert _v(p, "heat_cost_allocator:date/s1") == "2020-12-31"
    assert _v(p, "heat_cost_allocator:room_temperature") == Decimal("22.37")
    assert _v(p, "heat_cost_allocator:radiator_temperature") == Decimal("23.6")


def test_unknown_manufacturer_ci_is_an_unknown_layout_with_the_raw_payload() -> None:
    frame = bytearray(c.TECHEM_FHKV_94)
    frame[8] = 0x95  # a version the layout table does not list
    with pytest.raises(UnknownLayout, match="CI 0xA2 from TCH11111234") as err:
        wmbus.decode_frame(bytes(frame))
    assert err.value.values == (c.TECHEM_FHKV_94[11:].hex().upper(),)


def test_techem_radio_converter_on_a_wehrle_meter() -> None:
    f = wmbus.decode_frame(c.TECHEM_WEHRLE)
    assert f.meter == "WEH86868686" and f.manufacturer == "TCH" and f.receiver_decrypted
    assert _v(_points(c.TECHEM_WEHRLE), "water:volume") == Decimal("0.016")


def test_diehl_hydrus_set_day_and_history_values() -> None:
    p = _points(c.HYDRUS_WATER)
    assert _v(p, "water:volume") == Decimal("1.174")
    assert _v(p, "water:volume_flow") == 0
    assert _v(p, "water:flow_temperature") == Decimal("10.4")
    assert _v(p, "water:remaining_battery_life") == 4999  # days: 13.686797 years
    assert _v(p, "water:volume/s3") == Decimal("0.2")  # target_m3 ...
    assert _v(p, "water:datetime/s3") == "2019-10-31T23:59:00+00:00"  # ... at target_datetime
    assert p["water:volume/s3"].time == datetime(2019, 10, 31, 23, 59, tzinfo=UTC)  # type: ignore[attr-defined]


def test_diehl_hydrus_mode7_frame_with_ell_and_afl() -> None:
    f = wmbus.decode_frame(c.HYDRUS_MODE7)
    assert (
        f.ell is not None and f.ell.ci == 0x8C and f.afl is not None and f.afl.message_counter == 0x009BB56A
    )
    assert f.security_mode == 7 and f.receiver_decrypted  # published decrypted: its MAC cannot be checked
    p = _points(c.HYDRUS_MODE7, tz=BERLIN)
    assert _v(p, "water:volume") == Decimal("296.789")
    assert _v(p, "water:volume/s1") == Decimal("244.623")  # total_at_date_m3
    assert _v(p, "water:volume/s1/t1") == 0
    assert _v(p, "water:volume/s1/t2") == Decimal("244.623")
    assert _v(p, "water:date/s1") == "2022-12-31"  # at_date
    assert _v(p, "water:volume/s3") == Decimal("294.128")  # target_m3
    assert _v(p, "water:volume_flow") == Decimal("-0.002")
    assert _v(p, "water:flow_temperature") == Decimal("19.3")
    assert _v(p, "water:remaining_battery_life") == 3375  # days: 9.240436 years
    # the set-day value is the register at the end of 2022-12-31, Berlin time
    assert p["water:volume/s1"].time == datetime(2022, 12, 31, 23, tzinfo=UTC)  # type: ignore[attr-defined]
    assert p["water:volume/s3"].time == datetime(2023, 9, 30, 21, 59, tzinfo=UTC)  # type: ignore[attr-defined]
    # with a key configured the frame must authenticate: the receiver-decrypted form is refused
    with pytest.raises(WrongKey, match="MAC"):
        wmbus.decode_frame(c.HYDRUS_MODE7, {"DME64641820": bytes(16)})


# ---- Sensus, Itron, Apator, Qundis --------------------------------------------------------------


def test_sensus_iperl() -> None:
    p = _points(c.IPERL_DECRYPTED)
    assert _v(p, "water:volume") == Decimal("7.704") and _v(p, "water:volume_flow") == 0
    p = _points(c.IPERL_CLEAR)
    assert _v(p, "water:volume") == Decimal("123.529") and _v(p, "water:volume_flow") == 0
    assert wmbus.decode_frame(c.IPERL_CLEAR).meter == "SEN33225544"


def test_itron_water_meters() -> None:
    p = _points(c.ITRON_SOMEWATER)
    assert _v(p, "water:volume") == Decimal("4.605")
    assert _v(p, "water:volume/s1") == Decimal("3.888") and _v(p, "water:date/s1") == "2021-12-31"
    assert _v(p, "water:datetime") == "2022-01-21T01:26:44+00:00"
    assert _v(p, "water:enhanced_identification") == "2108728367"  # enhanced_id 002108728367
    assert p["water:volume"].time == datetime(2022, 1, 21, 1, 26, 44, tzinfo=UTC)  # type: ignore[attr-defined]
    p = _points(c.ITRON_ANYWATER)
    assert _v(p, "water:volume") == Decimal("111.968")
    assert _v(p, "water:volume/s1") == Decimal("87.98") and _v(p, "water:date/s1") == "2022-12-31"
    assert _v(p, "water:datetime") == "2023-07-20T21:18:16+00:00"
    f = wmbus.decode_frame(c.ITRON_MOREWATER)
    assert f.header is not None and f.header.ci == 0x72 and f.meter == "ITW18000056"
    p = _points(c.ITRON_MOREWATER)
    assert _v(p, "water:volume") == Decimal("521.277")
    assert _v(p, "water:volume_vife_0x3c") == 0  # total_backward_m3
    assert _v(p, "water:volume_flow") == Decimal("0.004")
    assert _v(p, "water:volume/s1") == Decimal("520.461") and _v(p, "water:date/s1") == "2022-10-01"
    assert _v(p, "water:datetime") == "2022-10-08T21:16:14+00:00"


def test_apator_16_2_mode5_with_its_published_key_and_its_register_layout() -> None:
    f = wmbus.decode_frame(c.APATOR162_ENCRYPTED, {"APA88888888": c.APATOR162_KEY})
    assert (
        f.security_mode == 5 and not f.receiver_decrypted and f.layout == "Apator AT-WMBUS-16-2 water meter"
    )
    assert _v(_points(c.APATOR162_ENCRYPTED, {"APA88888888": c.APATOR162_KEY}), "water:volume") == Decimal(
        "4.848"
    )
    with pytest.raises(KeyMissing):
        wmbus.decode_frame(c.APATOR162_ENCRYPTED)
    with pytest.raises(WrongKey):
        wmbus.decode_frame(c.APATOR162_ENCRYPTED, {"APA88888888": c.MULTICAL21_KEY})
    assert _v(_points(c.APATOR162_A), "water:volume") == Decimal("270.133")
    assert _v(_points(c.APATOR162_F), "water:volume") == Decimal("30.908")
    assert _v(_points(c.APATOR162_NEW), "water:volume") == Decimal("21.93")


def test_apator_16_2_register_without_known_size_is_an_unknown_layout() -> None:
    frame = bytearray(c.APATOR162_NEW)
    frame[25] = 0x99  # the register before the volume becomes one the table has no size for
    with pytest.raises(UnknownLayout, match="register 0x99"):
        wmbus.decode_frame(bytes(frame))


def test_apator_08_thirds_of_a_litre() -> None:
    assert _v(_points(c.APATOR08), "water:volume") == Decimal("871.571")
    v = _v(_points(c.APATOR08_2), "water:volume")
    assert isinstance(v, Decimal) and round(v, 6) == Decimal("457.579333")


def test_qundis_q_caloric_heat_cost_allocator_set_days() -> None:
    p = _points(c.QCALORIC)
    assert _v(p, "heat_cost_allocator:hca_units") == 127
    assert (
        _v(p, "heat_cost_allocator:hca_units/s1") == 145
        and _v(p, "heat_cost_allocator:date/s1") == "2018-12-31"
    )
    assert (
        _v(p, "heat_cost_allocator:hca_units/s17") == 79
        and _v(p, "heat_cost_allocator:date/s17") == "2019-01-31"
    )
    assert _v(p, "heat_cost_allocator:datetime") == "2019-02-20T11:32:00+00:00"
    assert "invalid" in p["heat_cost_allocator:date/err"].flags  # type: ignore[attr-defined]  # FFFF: none
    p = _points(c.QCALORIC_2, tz=BERLIN)
    assert _v(p, "heat_cost_allocator:hca_units") == 97
    assert (
        _v(p, "heat_cost_allocator:hca_units/s1") == 270
        and _v(p, "heat_cost_allocator:date/s1") == "2020-12-31"
    )
    assert (
        _v(p, "heat_cost_allocator:hca_units/s17") == 97
        and _v(p, "heat_cost_allocator:date/s17") == "2021-06-30"
    )
    assert p["heat_cost_allocator:hca_units"].time == datetime(2021, 7, 2, 20, 45, tzinfo=UTC)  # type: ignore[attr-defined]
    assert p["heat_cost_allocator:hca_units/s1"].time == datetime(2020, 12, 31, 23, tzinfo=UTC)  # type: ignore[attr-defined]


# ---- frames with their link-layer CRCs ----------------------------------------------------------


def test_published_frames_with_their_link_crcs() -> None:
    assert wmbus.detect_crc(c.SONTEX_HCA_WITH_CRC) == (True, "A")
    f = wmbus.decode_frame(c.SONTEX_HCA_WITH_CRC)
    # what tests/test_dll_crcs.sh states: id 27293981, SON (0x4dee), heat cost allocator, ver 0x16
    assert (f.meter, f.device_type, f.version) == ("SON27293981", 0x08, 0x16)
    assert wmbus.detect_crc(c.APATOR08_WITH_CRC) == (True, "A")
    f = wmbus.decode_frame(c.APATOR08_WITH_CRC)
    assert (f.meter, f.manufacturer, f.device_type, f.version) == ("APT000BC37C", "APT", 0x03, 0x03)
    assert f.layout == "Apator 08 water meter"  # the source names driver apator08 for it
    # the values (no source states them): what the same codec reads with the CRCs stripped
    p = _points(c.SONTEX_HCA_WITH_CRC)
    assert _v(p, "heat_cost_allocator:hca_units") == 0
    assert _v(p, "heat_cost_allocator:datetime") == "2021-11-06T18:25:00+00:00"
    assert "invalid" in p["heat_cost_allocator:date/s1"].flags  # type: ignore[attr-defined]  # never set
    for frame in (c.SONTEX_HCA_WITH_CRC, c.APATOR08_WITH_CRC):
        for pos in (5, 15, len(frame) - 4):
            bad = bytearray(frame)
            bad[pos] ^= 0x04
            with pytest.raises(ChecksumError):
                wmbus.decode_frame(bytes(bad))


# ---- what reaches the data model ----------------------------------------------------------------


def _readings(data: bytes, keys: dict[str, bytes] | None = None, tz: ZoneInfo = BERLIN) -> dict[str, tuple]:  # type: ignore[type-arg]
    table = MappingTable.default()
    received = datetime(2024, 1, 1, tzinfo=UTC)
    tr = table.translate(wmbus.data_points(data, keys, tz=tz), received)
    return {str(r.obis): (r.value, r.unit.value, r.time, r.quality) for r in tr.readings}


def test_sub_meter_readings_reach_the_data_model() -> None:
    hca = _readings(c.QCALORIC_2)
    assert hca["4-0:1.0.0"][:2] == (Decimal(97), "")  # current consumption units
    assert hca["4-0:1.2.0"][:3] == (Decimal(270), "", datetime(2020, 12, 31, 23, tzinfo=UTC))  # set day
    assert hca["4-0:96.10.1"][0] == 0  # status byte: no alarm
    techem = _readings(c.TECHEM_FHKV_94)
    assert techem["4-0:1.0.0"][0] == 4 and techem["4-0:1.2.0"][0] == 45
    assert techem["4-0:1.2.0"][2] == datetime(2020, 12, 31, 23, tzinfo=UTC)
    water = _readings(c.HYDRUS_MODE7)
    assert water["8-0:1.0.0"][:2] == (Decimal("296.789"), "m3")
    assert water["8-0:1.2.0"][:3] == (Decimal("244.623"), "m3", datetime(2022, 12, 31, 23, tzinfo=UTC))
    assert water["8-0:2.0.0"][0] == Decimal("-0.002")
    kam = _readings(c.MULTICAL21_ENCRYPTED, {"KAM76348799": c.MULTICAL21_KEY})
    assert kam["8-0:1.0.0"][0] == Decimal("6.408") and kam["8-0:1.2.0"][0] == Decimal("6.408")
    assert kam["8-0:97.97.0"][0] == 0x71  # info codes: DRY, the meter's error register
    heat = _readings(c.MULTICAL603)
    assert heat["6-0:1.0.0"][:2] == (Decimal(165), "kWh") and heat["6-0:2.0.0"][0] == Decimal("5.45")
    assert heat["6-0:10.0.0"][0] == Decimal("53.28") and heat["6-0:11.0.0"][0] == Decimal("23.04")


def test_status_alarm_bits_make_readings_questionable() -> None:
    frame = bytearray(c.QCALORIC)
    frame[12] = 0x0A  # status byte: application error (bit 1) and permanent error (bit 3)
    r = _readings(bytes(frame))
    assert r["4-0:96.10.1"][0] == 0x0A
    assert all(q[3].name == "QUESTIONABLE" for q in r.values())
    # the values kept raw (storage 17) carry the same flags
    tr = MappingTable.default().translate(wmbus.data_points(bytes(frame)), datetime(2024, 1, 1, tzinfo=UTC))
    assert tr.unmapped and all({"error", "permanent_error"} <= u.point.flags for u in tr.unmapped)
    assert _readings(c.QCALORIC)["4-0:1.0.0"][3].name == "VALID"  # the frame as published


# ---- the command line on these captures ---------------------------------------------------------

runner = CliRunner()


@pytest.mark.parametrize(
    ("data", "args", "status", "message"),
    [
        (c.MULTICAL21_ENCRYPTED, [], 5, "no key: wmbus"),
        (c.MULTICAL21_ENCRYPTED, ["--key", "00" * 16], 6, "wrong key: wmbus: ELL payload CRC"),
        (c.APATOR162_ENCRYPTED, ["--key", c.MULTICAL21_KEY.hex()], 6, "wrong key: wmbus"),
        (c.TECHEM_FHKV_69, [], 4, "truncated frame: wmbus"),
        (c.SONTEX_HCA_WITH_CRC[:-1] + b"\x00", [], 3, "corrupt frame: wmbus: block CRC"),
        (
            bytes([0x21]) + c.TECHEM_FHKV_94[1:8] + b"\x99" + c.TECHEM_FHKV_94[9:34],
            [],
            7,
            "raw values: 0F9F29",
        ),
    ],
)
def test_decode_tells_what_is_wrong(data: bytes, args: list[str], status: int, message: str) -> None:
    result = runner.invoke(app, ["decode", "--protocol", "wmbus", *args, "-"], input=data.hex())
    assert result.exit_code == status, result.output
    assert message in result.stderr


def test_decode_prints_readings_of_real_captures() -> None:
    result = runner.invoke(
        app,
        ["decode", "--protocol", "wmbus", "--key", c.MULTICAL21_KEY.hex(), "-"],
        input=c.MULTICAL21_ENCRYPTED.hex(),
    )
    assert result.exit_code == 0, result.output
    assert '"meter": "KAM76348799", "obis": "8-0:1.0.0", "value": 6.408, "unit": "m3"' in result.stdout
    result = runner.invoke(
        app, ["decode", "--protocol", "wmbus", "--tz", "Europe/Berlin", "-"], input=c.QCALORIC.hex()
    )
    assert result.exit_code == 0, result.output
    assert (
        '"obis": "4-0:1.2.0", "value": 145, "unit": "", "time": "2018-12-31T23:00:00+00:00"' in result.stdout
    )
    assert date(2018, 12, 31).isoformat() not in result.stderr  # the set date is used, not "unmapped"


def test_decode_log_learns_compact_formats_from_full_frames(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # the flowIQ 2200's records (a format the layout table does not list), full then compact
    records = wmbus.decode_frame(c.FLOWIQ2200).application
    kw = {"manufacturer": "KAW", "ident": 52525252, "version": 0x3A, "device_type": 0x16, "records": records}
    full = wmbus.encode_frame(**kw, access_no=1, ci=wmbus.CI_NO_HEADER, ell_session=0, with_crc=False)  # type: ignore[arg-type]
    compact = wmbus.encode_frame(**kw, access_no=2, ci=wmbus.CI_COMPACT, ell_session=0)  # type: ignore[arg-type]
    alone = runner.invoke(app, ["decode", "--protocol", "wmbus", "-"], input=compact.hex())
    assert alone.exit_code == 7 and "compact frame of format signature" in alone.stderr
    log = tmp_path / "radio.log"
    log.write_text(f"2024-05-01T10:00:00Z wmbus {full.hex()}\n2024-05-01T10:00:16Z wmbus {compact.hex()}\n")
    result = runner.invoke(app, ["decode", "--log", str(log)])
    assert result.exit_code == 0, result.output
    rows = [r for r in result.stdout.splitlines() if '"obis": "8-0:1.0.0"' in r]
    assert len(rows) == 2 and all('"value": 44.206' in r for r in rows)
    assert '"time": "2024-05-01T10:00:16+00:00"' in rows[1]
