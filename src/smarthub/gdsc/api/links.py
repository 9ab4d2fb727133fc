"""OpenAPI ``links`` (OpenAPI 3.1 §4.8.20) in the data services API's document, so a client or a
tool can follow an answer to its next request without reading prose (issue 22 item 7):

* every command and on-demand read answers 202 with ``job_id``: linked to ``GET /v1/jobs/{job_id}``
  (the ``Location`` header says the same, and is documented on the 202);
* a demand-response event sent (202, ``event_id``) is linked to ``GET …/demand-response/events/{event_id}``;
* a consent granted (201, ``consent_id``) is linked to its revocation,
  ``DELETE /v1/premises/{premises_id}/consents/{consent_id}``.

Operation ids are the route functions' names (``create_app`` sets them), so links name
operations that stay put when paths are reorganised.
"""

from typing import Any

FOLLOW_JOB = {
    "FollowJob": {
        "operationId": "get_job",
        "parameters": {"job_id": "$response.body#/job_id"},
        "description": "The queued command's or read's state: queued, in-flight, done or failed.",
    }
}
REVOKE_CONSENT = {
    "RevokeConsent": {
        "operationId": "revoke_consent",
        "parameters": {
            "premises_id": "$request.path.premises_id",
            "consent_id": "$response.body#/consent_id",
        },
        "description": "Revoke this consent (effective on the next request, pushed to the hub).",
    }
}
FOLLOW_EVENT = {
    "FollowEvent": {
        "operationId": "get_demand_response_event",
        "parameters": {"premises_id": "$request.path.premises_id", "event_id": "$response.body#/event_id"},
        "description": "The event's delivery, the hub's answer and its DrResponses.",
    }
}
LOCATION = {
    "Location": {
        "description": "the job to follow: `/v1/jobs/{job_id}`",
        "required": True,
        "schema": {"type": "string", "pattern": r"^/v1/jobs/[1-9][0-9]*$"},
    }
}
DEMAND_RESPONSE = ("dispatch_demand_response_event", "cancel_demand_response_event")
COMMANDS = ("tariff_update", "ihd_message", "top_up", "supply", "on_demand_read")


def document_links(spec: dict[str, Any]) -> dict[str, Any]:
    """Add the links (and the 202's ``Location`` header) to the operations that are served."""
    for ops in spec.get("paths", {}).values():
        for op in ops.values():
            if not isinstance(op, dict):
                continue
            responses = op.get("responses", {})
            if op.get("operationId") in COMMANDS and "202" in responses:
                responses["202"]["links"] = dict(FOLLOW_JOB)
                responses["202"]["headers"] = dict(LOCATION)
            if op.get("operationId") in DEMAND_RESPONSE and "202" in responses:
                responses["202"]["links"] = dict(FOLLOW_EVENT)
                responses["202"]["headers"] = {
                    "Location": {
                        "description": "the event to follow",
                        "required": True,
                        "schema": {
                            "type": "string",
                            "pattern": r"^/v1/premises/[A-Za-z0-9._:-]+/demand-response/events/[0-9A-F]{32}$",
                        },
                    }
                }
            if op.get("operationId") == "grant_consent" and "201" in responses:
                responses["201"]["links"] = dict(REVOKE_CONSENT)
    return spec
