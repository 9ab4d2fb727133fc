"""Published DLMS/COSEM example frames decoded and re-encoded with our codec.

Sources (named per vector): the DLMS UA Green Book examples as reproduced in the test suite of
the ``dlms-cosem`` package (github.com/u9n/dlms-cosem, tests/test_hdlc, tests/test_asce,
tests/test_xdlms, tests/test_security.py), and CRC catalogue check values.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from smarthub.meters.dlms.apdu import (
    Aare,
    Aarq,
    ApplicationContext,
    Conformance,
    DataNotification,
    GetRequestNext,
    GetRequestNormal,
    GetResponseNormal,
    InitiateRequest,
    InitiateResponse,
    Mechanism,
    ReleaseRequest,
    decode_apdu,
)
from smarthub.meters.dlms.axdr import DateTime, decode_data
from smarthub.meters.dlms.hdlc import (
    FrameType,
    HdlcAddress,
    HdlcParameters,
    crc16_x25,
    decode_frame,
    encode_frame,
)
from smarthub.meters.dlms.security import SecurityKeys, decipher_apdu, decrypt, encrypt, hls_gmac
from smarthub.model.obis import ObisCode

# Green Book security example keys and server system title.
EK = bytes.fromhex("000102030405060708090A0B0C0D0E0F")
AK = bytes.fromhex("D0D1D2D3D4D5D6D7D8D9DADBDCDDDEDF")
SERVER_TITLE = bytes.fromhex("4D4D4D0000BC614E")
KEYS = SecurityKeys(EK, AK)


def test_crc16_x25_check_values() -> None:
    assert crc16_x25(b"123456789") == 0x906E  # CRC-16/X-25 catalogue check value
    assert crc16_x25(b"123456789" * 3) == crc16_x25(bytearray(b"123456789" * 3))  # pair-table path
    # dlms-cosem tests/test_hdlc/test_hdlc.py TestCrc: HCS of 03 3F is 5B EC on the wire.
    assert crc16_x25(bytes.fromhex("033f")).to_bytes(2, "little") == bytes.fromhex("5bec")


# dlms-cosem tests/test_hdlc/test_hdlc.py
SNRM = bytes.fromhex("7ea00802232193bd647e")
UA = bytes.fromhex("7EA01F21022373E6C781801205019A06019A070400000001080400000001CCA27E")
I_AARQ = bytes.fromhex(
    "7EA02C02232110AF9FE6E600601DA109060760857405080101BE10040E01000000065F1F0400001E1DFFFFC5E47E"
)
I_AARE = bytes.fromhex(
    "7EA0382102233034E7E6E7006129A109060760857405080101A203020100A305A103020100BE10040E0800065F1F0400001E1D04C80007B86A7E"
)


def test_snrm_vector() -> None:
    f = decode_frame(SNRM)
    assert f.type is FrameType.SNRM and f.pf
    assert f.destination == HdlcAddress(1, 17, 2) and f.source == HdlcAddress(16)
    assert encode_frame(f) == SNRM


def test_ua_vector_and_parameters() -> None:
    f = decode_frame(UA)
    assert f.type is FrameType.UA and f.destination == HdlcAddress(16) and f.source == HdlcAddress(1, 17, 2)
    assert HdlcParameters.from_bytes(f.info) == HdlcParameters(0x9A, 0x9A, 1, 1)
    assert encode_frame(f) == UA


def test_information_frames_vectors() -> None:
    req = decode_frame(I_AARQ)
    assert (req.type, req.ns, req.nr, req.pf, req.segmented) == (FrameType.I, 0, 0, True, False)
    assert encode_frame(req) == I_AARQ
    resp = decode_frame(I_AARE)
    assert (resp.ns, resp.nr) == (0, 1)
    assert encode_frame(resp) == I_AARE
    aare = decode_apdu(resp.info[3:])
    assert isinstance(aare, Aare) and aare.result == 0 and aare.diagnostic == 0
    init = decode_apdu(aare.user_information or b"")
    assert isinstance(init, InitiateResponse)
    assert init.negotiated_conformance == 0x001E1D and init.server_max_receive_pdu_size == 0x04C8


def test_segmented_format_field() -> None:
    f = decode_frame(I_AARQ)
    seg = encode_frame(type(f)(f.type, f.destination, f.source, f.info, segmented=True))
    assert seg[1:3] == bytes.fromhex("a82c")  # dlms-cosem: "a81d" = segmented, the S bit 0x08
    assert decode_frame(seg).segmented


# dlms-cosem tests/test_asce/test_aarq.py ("Example encodings from DLMS Green Book v10")
AARQ_PLAIN = bytes.fromhex("601DA109060760857405080101BE10040E01000000065F1F0400007E1F04B0")
AARQ_LLS = (
    b"`6\xa1\t\x06\x07`\x85t\x05\x08\x01\x01\x8a\x02\x07\x80\x8b\x07`\x85t\x05\x08\x02\x01\xac\n\x80\x0812345678"
    b"\xbe\x10\x04\x0e\x01\x00\x00\x00\x06_\x1f\x04\x00\x00~\x1f\x04\xb0"
)
AARQ_HLS_GMAC = AARQ_LLS.replace(b"\x02\x01\xac\n\x80\x0812345678", b"\x02\x05\xac\n\x80\x08K56iVagY")
AARQ_CIPHERED_LLS = bytes.fromhex(
    "6066a109060760857405080103a60a04084D4D4D0000BC614E8a0207808b0760857405080201ac0a80083132333435363738"
    "be34043221303001234567801302FF8A7874133D414CED25B42534D28DB0047720606B175BD52211BE6841DB204D39EE6FDB8E356855"
)


def test_aarq_vectors() -> None:
    a = decode_apdu(AARQ_PLAIN)
    assert isinstance(a, Aarq) and not a.ciphered and a.mechanism is None
    init = decode_apdu(a.user_information)
    assert init == InitiateRequest(0x007E1F, 0x04B0)
    assert a.to_bytes() == AARQ_PLAIN
    lls = decode_apdu(AARQ_LLS)
    assert (
        isinstance(lls, Aarq) and lls.mechanism == Mechanism.LLS and lls.authentication_value == b"12345678"
    )
    assert lls.to_bytes() == AARQ_LLS
    hls = decode_apdu(AARQ_HLS_GMAC)
    assert (
        isinstance(hls, Aarq)
        and hls.mechanism == Mechanism.HLS_GMAC
        and hls.authentication_value == b"K56iVagY"
    )
    ciph = decode_apdu(AARQ_CIPHERED_LLS)
    assert isinstance(ciph, Aarq) and ciph.ciphered and ciph.calling_ap_title == SERVER_TITLE
    assert ciph.application_context == ApplicationContext.LN_CIPHERED
    assert ciph.to_bytes() == AARQ_CIPHERED_LLS


def test_green_book_glo_initiate_request_decrypts() -> None:
    """The glo-initiate-request (0x21) of the Green Book's ciphered AARQ example decrypts, with
    the Green Book keys, to an InitiateRequest carrying a dedicated key."""
    ciph = decode_apdu(AARQ_CIPHERED_LLS)
    assert isinstance(ciph, Aarq)
    plain = decipher_apdu(ciph.user_information, KEYS, system_title=SERVER_TITLE)
    assert plain.invocation_counter == 0x01234567 and plain.security_control == 0x30
    init = decode_apdu(plain.plain)
    assert isinstance(init, InitiateRequest)
    assert init.dedicated_key == bytes.fromhex("00112233445566778899AABBCCDDEEFF")
    assert init.proposed_conformance == 0x007E1F and init.client_max_receive_pdu_size == 0x04B0


# dlms-cosem tests/test_asce/test_aare.py
AARE_HLS = bytes.fromhex(
    "6142A109060760857405080101A203020100A305A10302010E88020780890760857405080205AA0A8008503677524A323146"
    "BE10040E0800065F1F040000501F01F40007"
)
AARE_REJECTED = bytes.fromhex("611FA109060760857405080101A203020101A305A103020101BE0604040E010601")


def test_aare_vectors() -> None:
    hls = decode_apdu(AARE_HLS)
    assert isinstance(hls, Aare) and hls.result == 0 and hls.diagnostic == 14  # authentication-required
    assert hls.mechanism == Mechanism.HLS_GMAC and hls.authentication_value == b"P6wRJ21F"
    assert hls.to_bytes() == AARE_HLS
    rej = decode_apdu(AARE_REJECTED)
    assert isinstance(rej, Aare) and rej.result == 1 and rej.diagnostic == 1
    err = decode_apdu(rej.user_information or b"")
    assert (err.service, err.error_type, err.error) == (1, 6, 1)  # type: ignore[union-attr]
    assert rej.to_bytes() == AARE_REJECTED


def test_release_vectors() -> None:
    r = decode_apdu(bytes.fromhex("6203800100"))  # dlms-cosem tests/test_asce/test_rlrq.py
    assert r == ReleaseRequest(0) and r.to_bytes() == bytes.fromhex("6203800100")
    ciphered = bytes.fromhex(
        "6239800100be34043221303001234567801302FF8A7874133D414CED25B42534D28DB0047720606B175BD52211BE6841DB204D39EE6FDB8E356855"
    )
    r2 = decode_apdu(ciphered)
    assert isinstance(r2, ReleaseRequest) and r2.user_information and r2.user_information[0] == 0x21


# dlms-cosem tests/test_xdlms/test_get.py
def test_get_vectors() -> None:
    req = b"\xc0\x01\xc1\x00\x01\x00\x00+\x01\x00\xff\x02\x00"
    assert decode_apdu(req) == GetRequestNormal(1, 1, ObisCode(0, 0, 43, 1, 0), 2)
    assert GetRequestNormal(1, 1, ObisCode(0, 0, 43, 1, 0), 2).to_bytes() == req
    assert decode_apdu(b"\xc0\x02\xc1\x00\x00\x00\x01") == GetRequestNext(1, 1)
    resp = decode_apdu(b"\xc4\x01\xc1\x00\x06\x00\x00\x13\x91")
    assert isinstance(resp, GetResponseNormal) and resp.value == 5009
    err = decode_apdu(b"\xc4\x01\xc1\x01\x01")
    assert isinstance(err, GetResponseNormal) and err.data is None and err.result == 1
    assert err.to_bytes() == b"\xc4\x01\xc1\x01\x01"


# dlms-cosem tests/test_xdlms/test_data_notification.py
def test_data_notification_vector() -> None:
    raw = (
        b'\x0f\x00\x00\x01\xdb\x00\t"\x12Z\x85\x916\x00\x00\x00\x00I\x00\x00\x00\x11\x00\x00\x00\nZ\x85\x13'
        b"\xd0\x14\x80\x00\x00\x00\r\x00\x00\x00\n\x01\x00"
    )
    n = decode_apdu(raw)
    assert isinstance(n, DataNotification) and n.long_invoke_id == 0x1DB and n.date_time is None
    assert isinstance(n.value, bytes) and len(n.value) == 0x22
    assert n.to_bytes() == raw


def test_date_time_deviation_convention() -> None:
    # From the dlms-cosem block-transfer example (a Swedish meter): 2019-12-19 02:00 local, deviation
    # 0xFFC4 = -60 (CET: UTC = local + deviation), clock status 0.
    dt = DateTime.from_bytes(bytes.fromhex("07e30c1304020000 00ffc400".replace(" ", "")))
    assert dt.deviation == -60 and dt.clock_status == 0 and dt.weekday == 4
    assert dt.to_datetime() == datetime(2019, 12, 19, 1, 0, tzinfo=UTC)
    unspecified = DateTime.from_bytes(bytes.fromhex("ffffffffffffffffff8000ff"))
    assert unspecified.year is None and unspecified.deviation is None and unspecified.to_datetime() is None
    value, _ = decode_data(bytes.fromhex("1907e30c1304020000008000ff"))
    assert isinstance(value, DateTime) and value.to_datetime() == datetime(2019, 12, 19, 2, 0, tzinfo=UTC)


# dlms-cosem tests/test_security.py (the Green Book's worked example)
def test_green_book_gcm_vector() -> None:
    plain = bytes.fromhex("C0010000080000010000FF0200")  # GET clock attribute 2
    ciphered = bytes.fromhex("411312FF935A47566827C467BC7D825C3BE4A77C3FCC056B6B")
    out = encrypt(0x30, SERVER_TITLE, 0x01234567, EK, AK, plain)
    assert out == bytes.fromhex("3001234567") + ciphered
    assert decrypt(out, SERVER_TITLE, EK, AK) == (plain, 0x01234567, 0x30)


def test_green_book_hls_gmac_vector() -> None:
    tag = hls_gmac(bytes.fromhex("4D4D4D0000000001"), 1, KEYS, bytes.fromhex("503677524A323146"))
    assert tag == bytes.fromhex("1000000001") + bytes.fromhex("1A52FE7DD3E72748973C1E28")


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        (Conformance.GET, 0x000010),
        (Conformance.BLOCK_TRANSFER_WITH_GET_OR_READ, 0x001000),
        (Conformance.ACTION, 1),
    ],
)
def test_conformance_bits(flag: Conformance, value: int) -> None:
    assert int(flag) == value
