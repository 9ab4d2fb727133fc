from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smarthub.model import InvalidIdentifier, ObisCode, validate_mpan, validate_mprn
from smarthub.model.identifiers import make_mpan, mpan_check_digit


@pytest.mark.parametrize(
    ("text", "expected", "formatted"),
    [
        ("1-0:1.8.0", ObisCode(1, 0, 1, 8, 0), "1-0:1.8.0"),
        ("7-0:3.0.0", ObisCode(7, 0, 3, 0, 0), "7-0:3.0.0"),
        ("1-0:1.8.0.255", ObisCode(1, 0, 1, 8, 0), "1-0:1.8.0"),
        ("1-0:99.97.0*101", ObisCode(1, 0, 99, 97, 0, 101), "1-0:99.97.0*101"),
        (" 0-1:24.2.1 ", ObisCode(0, 1, 24, 2, 1), "0-1:24.2.1"),
    ],
)
def test_parse_and_format(text: str, expected: ObisCode, formatted: str) -> None:
    assert ObisCode.parse(text) == expected
    assert str(expected) == formatted


@pytest.mark.parametrize(
    "bad", ["", "1.8.0", "1-0:1.8", "1-0:1.8.0.0.0", "a-b:c.d.e", "1-0:256.8.0", "1-0;1.8.0"]
)
def test_parse_rejects(bad: str) -> None:
    with pytest.raises(ValueError):
        ObisCode.parse(bad)


@given(st.tuples(*[st.integers(0, 255)] * 6))
def test_round_trip(groups: tuple[int, ...]) -> None:
    code = ObisCode(*groups)
    assert ObisCode.parse(str(code)) == code
    assert ObisCode.from_bytes(code.to_bytes()) == code


def test_mpan_check_digit_known_value() -> None:
    # By hand: 1·3+2·5+0·7+0·13+0·17+2·19+3·23+3·29+0·31+5·37+9·41+6·43 = 1019; 1019 mod 11 = 7.
    assert mpan_check_digit("120002330596") == 7
    assert validate_mpan("12 0002 3305 967") == "1200023305967"


def test_mpan_rejects_bad_check_digit_and_form() -> None:
    with pytest.raises(InvalidIdentifier, match="check digit"):
        validate_mpan("1200023305968")
    with pytest.raises(InvalidIdentifier, match="13 digits"):
        validate_mpan("120002330596")


@given(st.integers(10, 99), st.integers(0, 10**10 - 1))
def test_make_mpan_validates(distributor: int, unique: int) -> None:
    mpan = make_mpan(distributor, unique)
    assert validate_mpan(mpan) == mpan
    wrong = mpan[:12] + str((int(mpan[12]) + 1) % 10)
    with pytest.raises(InvalidIdentifier):
        validate_mpan(wrong)


def test_mprn_form() -> None:
    assert validate_mprn("1234567") == "1234567"
    for bad in ("12345", "12345678901", "0123456", "12a4567"):
        with pytest.raises(InvalidIdentifier):
            validate_mprn(bad)
