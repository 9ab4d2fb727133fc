"""``/v1/jobs``: the state of the commands and reads a party queued."""

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query

from smarthub.gdsc.api import mappers
from smarthub.gdsc.api.deps import Caller, Desk, Services
from smarthub.gdsc.api.schemas import ERRORS, JobOut, JobsPage
from smarthub.gdsc.governance.access import Action

router = APIRouter()


@router.get("/v1/jobs/{job_id}", response_model=JobOut, responses=ERRORS)
def get_job(party: Caller, api: Services, desk: Desk, job_id: Annotated[int, Path(ge=1, le=2**62)]) -> JobOut:
    """A queued command's or read's state: queued, in-flight, done or failed (with why)."""
    # A job that does not exist and another party's job get the same answer, after the same
    # work (one look-up, one audit entry), so job ids cannot be enumerated (issue 13).
    owner = desk.job_owner(job_id)
    decision = api.guard.authorize(
        party,
        Action.READ_JOB,
        premises_id=owner[1] if owner else None,
        job_owner=owner[0] if owner else None,
    )
    job = desk.job(job_id) if owner is not None and decision.allow else None
    if job is None:
        raise HTTPException(404, f"no job {job_id} that {party} may follow")
    return mappers.job_out(job)


@router.get("/v1/jobs", response_model=JobsPage, responses=ERRORS)
def list_jobs(
    party: Caller,
    desk: Desk,
    after: Annotated[int | None, Query(ge=0, le=2**62)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> JobsPage:
    """The ids of the jobs the caller queued, oldest first (each followed at ``/v1/jobs/{id}``)."""
    ids = desk.jobs_of(party, after, limit + 1)
    return JobsPage(jobs=ids[:limit], next_after=ids[limit - 1] if len(ids) > limit else None)
