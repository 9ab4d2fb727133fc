"""The topology file decoders (CSV, GeoJSON) take any text a network operator uploads: a parsed
file or a TopologyError naming the problem, never another exception."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from smarthub.gdsc.outages.topology import CSV_COLUMNS, TopologyError, parse

HEADER = ",".join(CSV_COLUMNS) + "\n"
cells = st.text(alphabet=st.characters(codec="utf-8"), max_size=12)
rows = st.lists(st.lists(cells, min_size=0, max_size=7).map(",".join), max_size=6).map("\n".join)


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(max_size=200), rows.map(lambda r: HEADER + r)), st.sampled_from(["csv", "geojson"]))
def test_any_text_parses_or_is_refused_clearly(text: str, fmt: str) -> None:
    try:
        parse(text, fmt).check()
    except TopologyError as err:
        assert str(err)
