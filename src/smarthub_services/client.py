"""A small client of the GDSC data services API: OAuth2 client credentials and JSON over HTTP.

Standard library only (``urllib``), so a service carries no dependency on the GDSC's code or on
an HTTP library. An access token is fetched at ``POST /oauth/token`` with HTTP Basic client
authentication (RFC 6749 §2.3.1, §4.4) and reused until shortly before it expires; a request
answered 401 ``invalid_token`` (RFC 6750 §3.1: expired, or the client revoked) fetches one new
token and is tried once more. Any other refusal is raised as :class:`ApiError` with the API's
``detail`` (the access policy's reason, as the GDSC states it).
"""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

MAX_PAGE = 10_000  # the API's largest page (its `limit` bound)
APPLIANCE_SPAN = timedelta(days=31)  # the longest period one appliances request may ask for
APPLIANCE_SERIES = ("readings", "starts", "run_seconds")  # what each plug carries, each in time order


class ApiError(Exception):
    """The API refused a request: ``status`` is the HTTP status, ``detail`` the reason it gave."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"{status}: {detail}")
        self.status = status
        self.detail = detail


class Unreachable(Exception):
    """The GDSC could not be reached (connection refused, reset, timed out)."""


@dataclass(frozen=True, slots=True)
class Credentials:
    client_id: str
    client_secret: str
    scope: str | None = None


def _detail(body: bytes) -> str:
    try:
        doc = json.loads(body)
    except ValueError:
        return body.decode("utf-8", "replace")[:200]
    if isinstance(doc, dict):
        if "detail" in doc:
            return str(doc["detail"])
        if "error" in doc:  # the token endpoint's RFC 6749 §5.2 error
            return f"{doc['error']}: {doc.get('error_description', '')}".rstrip(": ")
    return str(doc)[:200]


class DataServicesClient:
    """The API at ``base_url`` as one OAuth2 client. ``monotonic`` is injected for the tests'
    sake (token expiry is measured on it)."""

    def __init__(
        self,
        base_url: str,
        credentials: Credentials,
        *,
        timeout: float = 30.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.credentials = credentials
        self.timeout = timeout
        self._monotonic = monotonic
        self._token: str | None = None
        self._expires = 0.0

    # -- transport --------------------------------------------------------------------------

    def _send(self, request: urllib.request.Request) -> tuple[int, bytes, Mapping[str, str]]:
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                return answer.status, answer.read(), {k.lower(): v for k, v in answer.headers.items()}
        except urllib.error.HTTPError as err:
            return err.code, err.read(), {k.lower(): v for k, v in err.headers.items()}
        except (urllib.error.URLError, ConnectionError, TimeoutError) as err:
            raise Unreachable(f"{request.full_url}: {getattr(err, 'reason', err)}") from err

    def token(self) -> str:
        """A live access token (fetched when there is none or it is about to expire)."""
        if self._token is not None and self._monotonic() < self._expires:
            return self._token
        c = self.credentials
        basic = base64.b64encode(
            f"{urllib.parse.quote(c.client_id)}:{urllib.parse.quote(c.client_secret)}".encode()
        ).decode()
        form = {"grant_type": "client_credentials", **({"scope": c.scope} if c.scope else {})}
        request = urllib.request.Request(
            f"{self.base_url}/oauth/token",
            data=urllib.parse.urlencode(form).encode(),
            headers={
                "Authorization": f"Basic {basic}",
                "Content-Type": "application/x-www-form-urlencoded",
            },
            method="POST",
        )
        status, body, _ = self._send(request)
        if status != 200:
            raise ApiError(status, _detail(body))
        doc = json.loads(body)
        self._token = str(doc["access_token"])
        # renew a little early, so a request never carries a token that expires on the way
        self._expires = self._monotonic() + max(0.0, float(doc.get("expires_in", 300)) - 30)
        return self._token

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int] | None = None,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, Any]:
        """``(status, JSON body or None)`` of a 2xx answer; a refusal raises :class:`ApiError`."""
        url = f"{self.base_url}{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        data = None if body is None else json.dumps(body).encode()
        for attempt in (1, 2):
            hdrs = {
                "Authorization": f"Bearer {self.token()}",
                "Accept": "application/json",
                **(headers or {}),
            }
            if data is not None:
                hdrs["Content-Type"] = "application/json"
            status, raw, answer_headers = self._send(urllib.request.Request(url, data, hdrs, method=method))
            if (
                status == 401
                and attempt == 1
                and "invalid_token" in answer_headers.get("www-authenticate", "")
            ):
                self._token = None  # expired or revoked: one new token, one more try
                continue
            if status >= 400:
                raise ApiError(status, _detail(raw))
            return status, (json.loads(raw) if raw else None)
        raise AssertionError("unreachable")  # the loop returns or raises

    def get(self, path: str, **params: str | int) -> Any:
        return self.request("GET", path, params=params)[1]

    # -- endpoints ----------------------------------------------------------------------------

    def readings(
        self,
        premises_id: str,
        meter_id: str,
        start: datetime,
        end: datetime,
        granularity: str,
        obis: str = "1-0:1.8.0",
    ) -> Iterator[dict[str, Any]]:
        """Every reading of ``GET /v1/premises/{id}/readings`` in ``[start, end)``, page by page
        (``after`` / ``next_after``)."""
        params: dict[str, str | int] = {
            "meter_id": meter_id,
            "start": start.isoformat(),
            "end": end.isoformat(),
            "granularity": granularity,
            "obis": obis,
            "limit": MAX_PAGE,
        }
        while True:
            page = self.get(f"/v1/premises/{urllib.parse.quote(premises_id)}/readings", **params)
            yield from page["readings"]
            if page["next_after"] is None:
                return
            params["after"] = page["next_after"]

    def appliances(
        self, premises_id: str, start: datetime, end: datetime, granularity: str = "half-hourly"
    ) -> list[dict[str, Any]]:
        """``GET /v1/premises/{id}/appliances`` over ``[start, end)``, asked at most
        :data:`APPLIANCE_SPAN` at a time: each smart plug (``meter_id``, ``name``) with its
        readings (energy), ``starts`` and ``run_seconds`` over the whole period, in time order."""
        out: dict[str, dict[str, Any]] = {}
        t = start
        while t < end:
            stop = min(end, t + APPLIANCE_SPAN)
            page = self.get(
                f"/v1/premises/{urllib.parse.quote(premises_id)}/appliances",
                start=t.isoformat(),
                end=stop.isoformat(),
                granularity=granularity,
            )
            for a in page["appliances"]:
                held = out.setdefault(a["meter_id"], {**a, **{k: [] for k in APPLIANCE_SERIES}})
                held["name"] = a["name"]
                for k in APPLIANCE_SERIES:
                    held[k] += a.get(k, [])  # a GDSC from before the run counts serves no starts
            t = stop
        return list(out.values())

    def tariffs(self, fuel: str = "electricity") -> list[dict[str, Any]]:
        """``GET /v1/tariffs``: the latest version of every tariff the GDSC distributes for
        ``fuel``, each as the tariff document the hubs get."""
        return [entry["tariff"] for entry in self.get("/v1/tariffs", fuel=fuel)]
