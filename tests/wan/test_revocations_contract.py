"""The consent revocations' wire format (``smarthub.wan.contract.revocations``): requests and
answers round-trip, and a malformed document is refused with where it is wrong."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from smarthub.wan.contract.revocations import (
    APPLIED,
    MAX_REQUESTS,
    REFUSED,
    BadRevocations,
    RevocationAnswer,
    RevocationRequest,
    answers_json,
    parse_answers,
    parse_pending,
    parse_requests,
    requests_json,
)

AT = datetime(2026, 11, 24, 13, 0, 0, 250_000, tzinfo=UTC)


def test_requests_and_answers_round_trip() -> None:
    asked = [
        RevocationRequest("r1", "K1", "ADV", AT, "Kitchen #1"),
        RevocationRequest("r2", "K2", "ADV", AT, ""),
    ]
    assert parse_requests(requests_json(asked)) == asked
    answers = [RevocationAnswer("r1", APPLIED, AT), RevocationAnswer("r2", REFUSED, AT, "not yours")]
    assert parse_answers(answers_json(answers)) == answers


@pytest.mark.parametrize(
    ("doc", "error"),
    [
        (b"{", "not JSON"),
        (b"[]", r'a document \{"requests": \[\.\.\.\]\} was expected'),
        (json.dumps({"requests": [1]}).encode(), r"requests\[0\] must be a JSON object"),
        (
            json.dumps(
                {
                    "requests": [
                        {
                            "id": "r",
                            "consent_id": "",
                            "service_id": "S",
                            "requested_at": AT.isoformat(),
                            "screen": "",
                        }
                    ]
                }
            ).encode(),
            r"requests\[0\]\.consent_id must be a string of 1\.\.64",
        ),
        (
            json.dumps(
                {
                    "requests": [
                        {
                            "id": "r",
                            "consent_id": "K",
                            "service_id": "S",
                            "requested_at": "2026-11-24T13:00:00",
                            "screen": "",
                        }
                    ]
                }
            ).encode(),
            r"requests\[0\]\.requested_at must be an ISO 8601 time with its UTC offset",
        ),
        (
            json.dumps(
                {
                    "requests": [
                        {
                            "id": "r",
                            "consent_id": "K",
                            "service_id": "S",
                            "requested_at": AT.isoformat(),
                            "screen": "x",
                        }
                    ]
                    * (MAX_REQUESTS + 1)
                }
            ).encode(),
            f"requests has {MAX_REQUESTS + 1} entries, at most {MAX_REQUESTS}",
        ),
    ],
)
def test_a_malformed_requests_document_is_refused(doc: bytes, error: str) -> None:
    with pytest.raises(BadRevocations, match=error):
        parse_requests(doc)


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (
            {"id": "r", "state": "done", "at": AT.isoformat()},
            r"answers\[0\]\.state must be applied or refused",
        ),
        (
            {"id": "r" * 65, "state": APPLIED, "at": AT.isoformat()},
            r"answers\[0\]\.id must be a string of 1\.\.64",
        ),
        ({"id": "r", "state": APPLIED, "at": 5}, r"answers\[0\]\.at must be an ISO 8601 time"),
        ({"id": "r", "state": REFUSED, "at": AT.isoformat(), "reason": "x" * 301}, r"answers\[0\]\.reason"),
    ],
)
def test_a_malformed_answer_is_refused(answer: dict[str, object], error: str) -> None:
    with pytest.raises(BadRevocations, match=error):
        parse_answers(json.dumps({"answers": [answer]}).encode())


def test_the_header_counts_waiting_requests_and_anything_illegible_is_none() -> None:
    assert [parse_pending(v) for v in ("3", " 1 ", None, "", "-1", "two", "1; x")] == [3, 1, 0, 0, 0, 0, 0]
    with pytest.raises(BadRevocations, match="timezone-aware"):
        RevocationAnswer("r", APPLIED, AT.replace(tzinfo=None))


def test_a_document_nested_too_deep_is_refused_not_a_crash() -> None:
    with pytest.raises(BadRevocations, match="not JSON: RecursionError"):
        parse_requests(b"[" * 100_000)
