"""Fuzzing the DSMR codec: whatever the bytes, `decode_telegram` raises only `DecodeError`
subclasses and `TelegramStream.feed` raises nothing.

The default size keeps `make test` quick; `SMARTHUB_FUZZ_EXAMPLES=20000 make bench` scales it up.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smarthub.meters.dsmr import Telegram, TelegramStream, crc16, decode_telegram, readings
from smarthub.meters.errors import DecodeError

EXAMPLES = int(os.environ.get("SMARTHUB_FUZZ_EXAMPLES", "400"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])

DATA = Path(__file__).parent / "data"


def _load(path: Path) -> bytes:
    lines = [line for line in path.read_text().splitlines() if not line.startswith("#")]
    data = ("\r\n".join(lines) + "\r\n").encode("ascii")
    bang = data.index(b"!")
    # Recompute the CRC: the spec example's printed one is wrong (see test_dsmr.py).
    return data[: bang + 1] + f"{crc16(data[: bang + 1]):04X}\r\n".encode()


VALID = [_load(p) for p in sorted(DATA.glob("*.txt"))]


def fix_crc(data: bytes) -> bytes:
    """Give a mutated telegram a correct CRC again, so that the grammar checks get exercised
    rather than stopping at the checksum."""
    bang = data.find(b"!")
    if bang < 0:
        return data
    return data[: bang + 1] + f"{crc16(data[: bang + 1]):04X}\r\n".encode()


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(VALID)))
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        kind = draw(st.sampled_from(["flip", "truncate", "insert", "delete", "replace"]))
        pos = draw(st.integers(min_value=0, max_value=max(0, len(data) - 1)))
        if kind == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(min_value=0, max_value=7))
        elif kind == "truncate":
            del data[pos:]
        elif kind == "insert":
            data[pos:pos] = draw(
                st.binary(min_size=1, max_size=8) | st.sampled_from([b"(", b")", b"!", b"/", b"*"])
            )
        elif kind == "delete":
            del data[pos : pos + draw(st.integers(min_value=1, max_value=8))]
        elif kind == "replace" and data:
            data[pos] = draw(st.sampled_from(b"()*!/\r\n.:-0123456789SWABCDEFkWhm3 \x00\xff"))
    if draw(st.booleans()):
        return fix_crc(bytes(data))
    return bytes(data)


def check_decode(data: bytes) -> None:
    try:
        telegram = decode_telegram(data)
    except DecodeError:
        return
    assert isinstance(telegram, Telegram)
    # A telegram that decodes either maps to readings or is refused with a DecodeError.
    with contextlib.suppress(DecodeError):
        readings(telegram)


@FUZZ
@given(st.binary(max_size=2000))
def test_decode_arbitrary_bytes(data: bytes) -> None:
    check_decode(data)


@FUZZ
@given(st.binary(max_size=400).map(lambda b: b"/ISK5\\2M550T-1012\r\n\r\n" + b).map(fix_crc))
def test_decode_arbitrary_body_with_valid_crc(data: bytes) -> None:
    check_decode(data)


@FUZZ
@given(
    st.text(alphabet="0123456789-:.*()SWkWhm3\r\nABCDEF", max_size=300).map(
        lambda s: fix_crc(b"/ISK5\\2M550T-1012\r\n\r\n" + s.encode() + b"!")
    )
)
def test_decode_grammar_like_text_with_valid_crc(data: bytes) -> None:
    check_decode(data)


@FUZZ
@given(mutated())
def test_decode_mutated_telegrams(data: bytes) -> None:
    check_decode(data)


@FUZZ
@given(
    st.lists(st.one_of(mutated(), st.sampled_from(VALID), st.binary(max_size=200)), max_size=6),
    st.lists(st.integers(min_value=1, max_value=500), min_size=1, max_size=10),
)
def test_stream_never_raises_and_resynchronises(pieces: list[bytes], sizes: list[int]) -> None:
    stream = TelegramStream(max_buffer=4096)
    blob = b"".join(pieces)
    out: list[Telegram | DecodeError] = []
    pos = i = 0
    while pos < len(blob):
        size = sizes[i % len(sizes)]
        out += stream.feed(blob[pos : pos + size])
        pos, i = pos + size, i + 1
    assert all(isinstance(r, Telegram | DecodeError) for r in out)
    assert stream.buffered <= 4096 + 500
    # Whatever came before, a clean telegram after a line break is found again.
    good = VALID[0]
    tail = stream.feed(b"\r\n" + good)
    assert tail and tail[-1] == decode_telegram(good)
