"""The reflected CRC-16s (DSMR, HDLC, SML) against a bit-by-bit reference, on the catalogue's
check string and on inputs long enough, and odd enough, to take the two-byte table path."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smarthub.meters.crc import CRC16_ARC, CRC16_KERMIT, CRC16_X25, ReflectedCrc16

CRCS = {  # name: (crc, reflected polynomial, init, xorout, check value of b"123456789")
    "ARC": (CRC16_ARC, 0xA001, 0x0000, 0x0000, 0xBB3D),
    "X-25": (CRC16_X25, 0x8408, 0xFFFF, 0xFFFF, 0x906E),
    "KERMIT": (CRC16_KERMIT, 0x8408, 0x0000, 0x0000, 0x2189),
}


def bitwise(data: bytes, poly: int, init: int, xorout: int) -> int:
    crc = init
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ poly if crc & 1 else crc >> 1
    return crc ^ xorout


@pytest.mark.parametrize("name", CRCS)
def test_the_catalogue_check_value(name: str) -> None:
    crc, _poly, _init, _xorout, check = CRCS[name]
    assert crc(b"123456789") == check
    assert crc(b"123456789" * 3) == bitwise(b"123456789" * 3, *CRCS[name][1:4])


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=300), name=st.sampled_from(sorted(CRCS)))
def test_the_table_paths_agree_with_the_bitwise_crc(data: bytes, name: str) -> None:
    crc, poly, init, xorout, _check = CRCS[name]
    assert crc(data) == crc(bytearray(data)) == crc(memoryview(data)) == bitwise(data, poly, init, xorout)


def test_the_two_byte_table_is_compact() -> None:
    """65,536 16-bit entries in an array (128 kB), not a list of int objects (2.5 MB each)."""
    crc = ReflectedCrc16(0xA001, 0, 0)
    crc(bytes(64))
    assert crc._pairs.itemsize == 2 and len(crc._pairs) == 65536
