"""The choice inside a bulk claim (``pull.claims.choose_bulk``), pure: no database, no clock.

The claim around it (the due rows read under lock, the links' room, the writes) is tested on
real SQLite and PostgreSQL in test_plan.py; here the rules of the choice alone.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from hypothesis import given
from hypothesis import strategies as st

from smarthub.gdsc.pull.claims import choose_bulk, one_per_hub
from smarthub.gdsc.pull.tables import CLAIMED, PENDING

W0 = datetime(2026, 3, 2, tzinfo=UTC)
W = timedelta(minutes=30)


class Row(NamedTuple):
    hub_id: str
    window_start: datetime
    wan_link: str | None = None
    state: str = PENDING


def test_one_pull_per_hub_the_latest_window_and_the_earlier_resolved_by_it() -> None:
    rows = [Row("H1", W0), Row("H2", W0), Row("H1", W0 + W)]
    taken, resolved = choose_bulk(rows, {}, limit=10, finished=set())
    assert taken == [Row("H2", W0), Row("H1", W0 + W)]
    assert resolved == [Row("H1", W0)]


def test_a_links_room_bounds_what_is_taken_behind_it_and_others_pass_it_by() -> None:
    rows = [Row("H1", W0, "cell-A"), Row("H2", W0, "cell-A"), Row("H3", W0, "cell-B"), Row("H4", W0)]
    taken, resolved = choose_bulk(rows, {"cell-A": 1, "cell-B": 0}, limit=10, finished=set())
    assert [r.hub_id for r in taken] == ["H1", "H4"]
    assert resolved == []


def test_at_most_limit_in_due_order() -> None:
    rows = [Row(f"H{i}", W0) for i in range(5)]
    taken, _ = choose_bulk(rows, {}, limit=2, finished=set())
    assert [r.hub_id for r in taken] == ["H0", "H1"]
    assert choose_bulk(rows, {}, limit=0, finished=set()) == ([], [])


def test_a_dead_holders_finished_pull_is_resolved_not_pulled_again_and_takes_no_room() -> None:
    dead = Row("H1", W0, "cell-A", CLAIMED)
    rows = [dead, Row("H2", W0, "cell-A")]
    taken, resolved = choose_bulk(rows, {"cell-A": 1}, limit=10, finished={("H1", W0)})
    assert (taken, resolved) == ([Row("H2", W0, "cell-A")], [dead])
    # Expired but not finished: pulled again.
    taken, resolved = choose_bulk(rows, {"cell-A": 2}, limit=10, finished=set())
    assert [r.hub_id for r in taken] == ["H1", "H2"] and resolved == []


def test_a_hub_left_out_keeps_its_earlier_rows_due() -> None:
    rows = [Row("H1", W0, "cell-A"), Row("H1", W0 + W, "cell-A")]
    assert choose_bulk(rows, {"cell-A": 0}, limit=10, finished=set()) == ([], [])


rows_st = st.lists(
    st.builds(
        Row,
        st.sampled_from(["H1", "H2", "H3", "H4"]),
        st.integers(0, 3).map(lambda k: W0 + k * W),
        st.sampled_from([None, "cell-A", "cell-B"]),
        st.sampled_from([PENDING, CLAIMED]),
    ),
    max_size=12,
    unique_by=lambda r: (r.hub_id, r.window_start),
)


@given(rows_st, st.integers(0, 3), st.integers(0, 3), st.integers(0, 6))
def test_the_choice_keeps_its_rules_for_any_rows(
    rows: list[Row], room_a: int, room_b: int, limit: int
) -> None:
    room = {"cell-A": room_a, "cell-B": room_b}
    finished = {(r.hub_id, r.window_start) for r in rows[::2] if r.state == CLAIMED}
    taken, resolved = choose_bulk(rows, room, limit, finished)
    hubs = [r.hub_id for r in taken]
    assert len(hubs) == len(set(hubs)) <= limit  # one pull per hub, at most limit
    assert not set(taken) & set(resolved)
    for link, free in room.items():
        assert sum(r.wan_link == link for r in taken) <= free
    latest, _ = one_per_hub(rows)
    assert set(taken) <= set(latest)  # a hub is pulled for its latest window
    assert [r for r in latest if r in taken] == taken  # in due (given) order
    for r in resolved:  # resolved: finished by a dead holder, or covered by a pull taken now
        assert (r.hub_id, r.window_start) in finished or r.hub_id in hubs
