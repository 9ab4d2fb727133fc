"""The bulk pull document: every channel's interval readings after a cursor, in one 2030.5 body.

Only standard IEEE 2030.5-2018 elements are used (metering mirror, §10.10): a
``MirrorUsagePointList`` holds one ``MirrorUsagePoint`` per meter (``href`` ``/mup/{meter}``,
whence the meter id: a ``description`` is cut to 32 octets), each with one
``MirrorMeterReading`` per channel (``href`` ``/mup/{meter}/mr/{ch}``, which the parser keys
by the MeterReading it mirrors, ``/upt/{meter}/mr/{ch}``, so cursors are the same whichever
way a hub is pulled). A MirrorMeterReading's ``lastUpdateTime`` is the end of the channel's
latest reading; its ``MirrorReadingSet`` holds the ``Reading`` elements at or after the
request's ``a``, oldest first and possibly cut short (then ``lastUpdateTime`` is later than the
last one); its ``ReadingType`` (which the XSD places *after* the sets) says commodity, unit
and scale. The List pages by MirrorUsagePoint (2030.5 ``s``/``l``/``all``/``results``).

Both sides are sans-I/O. The writer (:func:`smarthub.wan.contract.sep2_xml.write_mirror_usage_points`,
with the hub's other lxml builders) builds the tree with lxml directly: a day of two channels
is ~100 Readings and validating each through pydantic would cost more than the rest of a pull.
The parser is lxml's
``XMLPullParser`` fed chunk by chunk: when a MirrorMeterReading ends, its Readings are read
out (a list per field, no Python per Reading: issue 17) and its element dropped, so memory is
bounded by one channel's page, not the body. Readings in the shape the writer gives them (the
XSD's element order, no attributes, digits only) are read from lxml's serialization of their
MirrorReadingSet with two regular expressions, half the cost of the compiled XPath that
reads any other shape (and refuses what is wrong); both read the same parsed tree, so lxml
stays the only judge of the XML (well-formedness, entities, DTDs, namespaces).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from itertools import repeat
from operator import add

from lxml import etree

from smarthub.model.reading_type import ACCUMULATION_SUMMATION, obis_for_interval
from smarthub.wan.client.hub_client import PulledInterval, PullError

# The writer lives with the hub's other 2030.5 builders (the hub must not import this module's
# parser, which needs the GDSC client); re-exported here, where the document is described.
from smarthub.wan.contract.sep2_xml import (
    NS,
    ROLE_SUBMETER,
    UNTRUSTED_PARSER_OPTIONS,
    ChannelRows,
    MirrorPoint,
    XmlRefused,
    meter_of_href,
    reading_href_of_mirror,
    refuse_dtd_bytes,
    refuse_dtd_tree,
    wide_encoding,
    write_mirror_usage_points,
)

_N = "{" + NS + "}"

# Bounds of the XSD types the parser enforces, so a hostile body fails here, not in the store.
_INT48 = 2**47
_UINT32 = 2**32
_TIME_MAX = 2**62


@dataclass(frozen=True, slots=True)
class ChannelReadings:
    """One MirrorMeterReading of a bulk body: the channel's cursor key (the href of the
    MeterReading it mirrors), its readings, and where they stop.

    ``served_end`` is the end of the last reading served (None: none); ``last_update`` the
    MirrorMeterReading's lastUpdateTime, the end of the channel's latest reading (None: not
    given). ``cut_short``: the hub holds readings after those served."""

    href: str
    intervals: list[PulledInterval]
    last_update: int | None = None
    served_end: int | None = None
    first_start: int | None = None  # the earliest start served (None: none)
    # An appliance sub-meter's channel (its MirrorUsagePoint's roleFlags has isSubmeter, §E
    # RoleFlagsType bit 6): (meter, the appliance's name from the description); None otherwise.
    appliance: tuple[str, str] | None = None

    @property
    def cut_short(self) -> bool:
        end, last = self.served_end, self.last_update
        return end is not None and last is not None and last > end


@dataclass(frozen=True, slots=True)
class BulkPage:
    """The List's counts of a complete bulk body, and how many Readings it held."""

    all_: int
    results: int
    readings: int


_TAG_READING = _N + "Reading"
_TAG_SET = _N + "MirrorReadingSet"
_TAG_MMR = _N + "MirrorMeterReading"
_TAG_MUP = _N + "MirrorUsagePoint"
_TAG_RT = _N + "ReadingType"
_TAG_ROOT = _N + "MirrorUsagePointList"
_TAG_TP = _N + "timePeriod"
_TAG_VALUE = _N + "value"
_TAG_QUALITY = _N + "qualityFlags"
_TAG_START = _N + "start"
_TAG_DURATION = _N + "duration"
_TAG_LAST_UPDATE = _N + "lastUpdateTime"


def _int(text: str | bytes | None, what: str, low: int, high: int, base: int = 10) -> int:
    if text is None:
        raise PullError(f"bulk body: {what} is missing")
    try:
        v = int(text.strip(), base)
    except ValueError:
        raise PullError(f"bulk body: {what} {text[:40]!r} is not an integer") from None
    if not low <= v < high:
        raise PullError(f"bulk body: {what} {v} is out of range")
    return v


_NSMAP = {"s": NS}


def _xpath(expr: str) -> etree.XPath:
    # Plain strings (no "smart" strings holding their element): lists of numbers come out of C.
    return etree.XPath(expr, namespaces=_NSMAP, smart_strings=False)


_READINGS = "s:MirrorReadingSet/s:Reading"
_COUNT_READINGS = _xpath(f"count({_READINGS})")
_COUNT_NESTED = _xpath(f"count(.//{_READINGS})")  # a set nested deeper than the MMR's own
# Every Reading has exactly one value, timePeriod start and duration: each has at least one
# and there are as many as Readings; and no such element holds an element, so each holds at
# most one text node (libxml2 merges adjacent text; comments and PIs are dropped, CDATA is
# text), and the text lists below are as long as the Readings only if each holds exactly one.
_WELL_FORMED = _xpath(
    f"count({_READINGS}[s:value and s:timePeriod/s:start and s:timePeriod/s:duration]) = $n"
    f" and count({_READINGS}/s:value) = $n and count({_READINGS}/s:timePeriod/s:start) = $n"
    f" and count({_READINGS}/s:timePeriod/s:duration) = $n"
    f" and not({_READINGS}/s:value/* or {_READINGS}/s:timePeriod/s:start/*"
    f" or {_READINGS}/s:timePeriod/s:duration/* or {_READINGS}/s:qualityFlags/*)"
)
_ONE_QUALITY_EACH = _xpath(
    f"count({_READINGS}[s:qualityFlags]) = $n and count({_READINGS}/s:qualityFlags) = $n"
)
_STARTS = _xpath(f"{_READINGS}/s:timePeriod/s:start/text()")
_DURATIONS = _xpath(f"{_READINGS}/s:timePeriod/s:duration/text()")
_VALUES = _xpath(f"{_READINGS}/s:value/text()")
_QUALITIES = _xpath(f"{_READINGS}/s:qualityFlags/text()")
_new_interval = partial(tuple.__new__, PulledInterval)


# The fast path: a MirrorReadingSet as lxml serializes it (``etree.tostring``, ASCII, its
# in-scope namespace declarations on its start tag), holding Readings of exactly the writer's
# shape: qualityFlags (optional), timePeriod (duration, start), value, in the XSD's order
# (IEEE 2030.5-2018 Annex B, ReadingBase), no attribute, no namespace declaration, text of
# digits only. The serialization is the parsed tree's, so a set that matches has those
# Readings and no other Reading, and each field's text is what the XPath below would read.
# Anything else (another order, whitespace, a prefix, an extra element) goes to the XPath.
# Possessive quantifiers: no backtracking, linear in the set's size whatever it holds.
def _reading_re(group: bytes) -> bytes:
    """One Reading of the writer's shape, each field's text in a ``group`` (b"(" captures)."""
    return (
        rb"<Reading>(?:<qualityFlags>" + group + rb"[0-9A-Fa-f]++)</qualityFlags>)?+"
        rb"<timePeriod><duration>" + group + rb"[0-9]++)</duration>"
        rb"<start>" + group + rb"[0-9]++)</start></timePeriod>"
        rb"<value>" + group + rb"-?+[0-9]++)</value></Reading>"
    )


_CANON_READING = re.compile(_reading_re(b"("))
_CANON_SET = re.compile(
    rb'<MirrorReadingSet(?: xmlns(?::[A-Za-z_][\w.-]*+)?+="[^"<]*+")*+>'
    # the set's own fields (mRID, description, version, timePeriod): none is a Reading
    rb"(?:<(?!Reading>)(\w++)>[^<>]*+</\1>"
    rb"|<timePeriod><duration>[0-9]++</duration><start>[0-9]++</start></timePeriod>)*+"
    rb"(?P<readings>(?:" + _reading_re(b"(?:") + rb")*+)"
    rb"</MirrorReadingSet>"
)


def _canonical(elem: etree._Element, n: int) -> list[tuple[bytes, bytes, bytes, bytes]] | None:
    """(qualityFlags or b"", duration, start, value) of each of the MirrorMeterReading's ``n``
    Readings, in document order, if every MirrorReadingSet holds them in the writer's shape;
    None otherwise (the XPath path reads them, or refuses them)."""
    found: list[tuple[bytes, bytes, bytes, bytes]] = []
    for reading_set in elem.iterchildren(_TAG_SET):
        text = etree.tostring(reading_set, with_tail=False)
        m = _CANON_SET.fullmatch(text)
        if m is None:
            return None
        found += _CANON_READING.findall(text, m.start("readings"), m.end("readings"))
    return found if len(found) == n else None


def _ints(
    texts: Sequence[str] | Sequence[bytes], n: int, what: str, low: int, high: int, base: int = 10
) -> list[int]:
    """``texts`` (one per Reading, in document order) as integers in [low, high)."""
    if len(texts) != n:  # an empty element, or text split around a child or comment
        raise PullError(f"bulk body: a Reading whose {what} is missing or not plain text")
    try:
        values = [int(t, base) for t in texts] if base != 10 else list(map(int, texts))
    except ValueError:
        for t in texts:  # the one at fault, for the message
            _int(t, what, low, high, base)
        raise  # pragma: no cover - one of them failed above
    if values and (min(values) < low or max(values) >= high):
        for v in values:
            if not low <= v < high:
                raise PullError(f"bulk body: {what} {v} is out of range")
    return values


# ReadingTypes read before, by their serialization, of which what is read is a function (the
# serialization carries the subtree and its namespaces): a fleet's channels share a handful, and
# reading one is nine lookups and conversions per channel per pull. Bounded: at most this many,
# none over 512 bytes (a hub sending odd ones is read the long way every time).
_READING_TYPES: dict[bytes, tuple[str, int, int, bool]] = {}
_READING_TYPES_MAX = 1024


def _reading_type(rt: etree._Element, href: str) -> tuple[str, int, int, bool]:
    """(OBIS code, powerOfTenMultiplier, uom, summation register?) of a channel's ReadingType."""
    key = etree.tostring(rt, with_tail=False)
    known = _READING_TYPES.get(key)
    if known is not None:
        return known
    commodity = _int(rt.findtext(_N + "commodity"), "ReadingType commodity", 0, 256)
    flow = _int(rt.findtext(_N + "flowDirection"), "ReadingType flowDirection", 0, 256)
    uom = _int(rt.findtext(_N + "uom"), "ReadingType uom", 0, 256)
    p10_text = rt.findtext(_N + "powerOfTenMultiplier")
    p10 = 0 if p10_text is None else _int(p10_text, "ReadingType powerOfTenMultiplier", -128, 128)
    kind = _int(rt.findtext(_N + "kind") or "0", "ReadingType kind", 0, 256)
    phase = _int(rt.findtext(_N + "phase") or "0", "ReadingType phase", 0, 256)
    qualifier = _int(rt.findtext(_N + "dataQualifier") or "0", "ReadingType dataQualifier", 0, 256)
    accumulation = rt.findtext(_N + "accumulationBehaviour") or "0"
    summation = _int(accumulation, "ReadingType accumulationBehaviour", 0, 256) == ACCUMULATION_SUMMATION
    try:
        obis = str(obis_for_interval(commodity, flow, uom, kind=kind, phase=phase, qualifier=qualifier))
    except KeyError as err:
        raise PullError(f"bulk body: {href}: {err.args[0]}") from None
    out = (obis, p10, uom, summation)
    if len(key) <= 512 and len(_READING_TYPES) < _READING_TYPES_MAX:
        _READING_TYPES[key] = out
    return out


def _appliance(mup: etree._Element, meter: str) -> tuple[str, str] | None:
    """(meter, appliance name) if the MirrorUsagePoint is a sub-meter (roleFlags isSubmeter)."""
    flags = mup.findtext(_N + "roleFlags")
    if flags is None or not _int(flags, "MirrorUsagePoint roleFlags", 0, 0x10000, 16) & ROLE_SUBMETER:
        return None
    name = (mup.findtext(_N + "description") or "").strip()
    return meter, name or meter


class BulkParser:
    """Streaming parser of a bulk body: ``feed`` chunks, take the readings it returns, ``close``.

    Raises :class:`PullError` (and nothing else) for anything that is not a well-formed
    MirrorUsagePointList of this shape: malformed or truncated XML, a DTD or entity
    declaration, missing, repeated or out-of-range fields, a ReadingType with no OBIS equivalent.

    The parser sees events for the root and for each MirrorMeterReading only, not for each
    Reading: once a MirrorMeterReading has ended, its Readings' fields come out as lists of
    strings from compiled XPath expressions (one libxml2 call per field, not Python per
    element; a check in the same style first refuses a Reading with a field missing or
    repeated), and the MirrorMeterReading is dropped from the tree, so memory stays at one
    channel's readings.
    """

    def __init__(self) -> None:
        self._parser = etree.XMLPullParser(
            events=("start", "end"),
            tag=(_TAG_ROOT, _TAG_MMR),
            **UNTRUSTED_PARSER_OPTIONS,
        )
        self._root: etree._Element | None = None
        self._tail = b""  # the end of the previous chunk, so a marker split across two is seen
        self._out: list[ChannelReadings] = []
        self._readings = 0
        self._closed = False

    @property
    def readings(self) -> int:
        """Readings parsed so far (a page counts them to know whether another page follows)."""
        return self._readings

    def feed(self, chunk: bytes | bytearray) -> list[ChannelReadings]:
        chunk = bytes(chunk)  # lxml takes bytes only (h11 hands out bytearrays)
        if self._closed:
            raise PullError("bulk body: data after the end of the document")
        if self._root is None:
            # Entities are never resolved (resolve_entities=False); a DTD is refused outright,
            # however long the prolog before it (checked again on the tree: UTF-16, say).
            window = self._tail + chunk
            if not self._tail and wide_encoding(window) is not None:
                # Streamed, a UTF-16 body's markers may straddle chunks at any byte: the hub
                # writes UTF-8, so nothing else is taken.
                raise PullError("bulk body: only UTF-8 is accepted (a UTF-16/32 body is refused)")
            self._tail = window[-16:]
            try:
                refuse_dtd_bytes(window)
            except XmlRefused as err:
                raise PullError(f"bulk body: {err}") from None
        try:
            self._parser.feed(chunk)
            self._drain()
        except PullError:
            raise
        except (etree.LxmlError, ValueError, LookupError, TypeError) as err:
            raise PullError(f"bulk body: malformed XML: {err}") from None
        out, self._out = self._out, []
        return out

    def close(self) -> BulkPage:
        """End of body: the List's counts; raises :class:`PullError` if the document is incomplete."""
        self._closed = True
        try:
            self._parser.close()
            self._drain()
        except PullError:
            raise
        except (etree.LxmlError, ValueError, LookupError, TypeError) as err:
            raise PullError(f"bulk body: truncated or malformed XML: {err}") from None
        if self._root is None:
            raise PullError("bulk body: root is not a 2030.5 MirrorUsagePointList")
        root = self._root
        if self._out or any(s.getparent() is not None for s in root.iter(_TAG_SET)):
            # Every MirrorMeterReading, with its sets, left the tree when it ended.
            raise PullError("bulk body: readings outside a complete MirrorMeterReading")
        return BulkPage(
            _int(root.get("all"), "MirrorUsagePointList all", 0, _UINT32),
            _int(root.get("results"), "MirrorUsagePointList results", 0, _UINT32),
            self._readings,
        )

    def _drain(self) -> None:
        for event, elem in self._parser.read_events():
            if event == "start":
                if self._root is None and elem.tag == _TAG_ROOT and elem.getparent() is None:
                    try:
                        refuse_dtd_tree(elem)
                    except XmlRefused as err:
                        raise PullError(f"bulk body: {err}") from None
                    self._root = elem
                continue
            if elem.tag == _TAG_MMR:
                self._channel(elem)
                parent = elem.getparent()
                elem.clear()
                if parent is not None:
                    parent.remove(elem)

    def _channel(self, elem: etree._Element) -> None:
        href = elem.get("href")
        if not href:
            raise PullError("bulk body: a MirrorMeterReading without href")
        mup = elem.getparent()
        if mup is None or mup.tag != _TAG_MUP or self._root is None or mup.getparent() is not self._root:
            raise PullError("bulk body: root is not a 2030.5 MirrorUsagePointList holding MirrorUsagePoints")
        try:
            meter = meter_of_href(mup.get("href") or "")
            key = reading_href_of_mirror(href)
        except ValueError as err:
            raise PullError(f"bulk body: {err}") from None
        last_text = elem.findtext(_TAG_LAST_UPDATE)
        last = None if last_text is None else _int(last_text, "lastUpdateTime", 0, _TIME_MAX)
        rt = elem.find(_TAG_RT)
        if rt is None:
            raise PullError(f"bulk body: {href} has no ReadingType")
        obis, p10, uom, summation = _reading_type(rt, href)
        n = int(_COUNT_READINGS(elem))
        rows: list[PulledInterval] = []
        served_end = first_start = None
        if n:
            fields = _canonical(elem, n)
            if fields is not None:
                q_texts, d_texts, s_texts, v_texts = zip(*fields, strict=True)
                starts = _ints(s_texts, n, "Reading timePeriod start", 0, _TIME_MAX)
                durations = _ints(d_texts, n, "Reading timePeriod duration", 0, _UINT32)
                values = _ints(v_texts, n, "Reading value", -_INT48, _INT48)
                if b"" not in q_texts:
                    qualities = _ints(q_texts, n, "Reading qualityFlags", 0, 0x10000, 16)
                else:  # qualityFlags is optional (absent: 0)
                    qualities = [_int(q, "Reading qualityFlags", 0, 0x10000, 16) if q else 0 for q in q_texts]
            else:
                starts, durations, values, qualities = self._by_xpath(elem, n)
            # Built in C: the named tuple's own __new__ is Python, a third of a row's cost.
            rows = list(
                map(
                    _new_interval,
                    zip(repeat(meter, n), repeat(obis, n), starts, durations, values, repeat(p10, n),
                        repeat(uom, n), qualities, strict=True),
                )
            )  # fmt: skip
            if summation:
                # A register's reads (duration 0, the register at an instant: the GDSC's VEE
                # compares them with the intervals): a read's end, for the cursor, is the second
                # after it, as the hub's lastUpdateTime has it.
                if any(durations):
                    raise PullError(f"bulk body: {href}: a summation register's Reading with a duration")
                served_end = max(starts) + 1
            else:
                served_end = max(map(add, starts, durations))
            first_start = min(starts)
        if int(_COUNT_NESTED(elem)) != n:
            raise PullError(f"bulk body: {href}: a MirrorReadingSet outside its MirrorMeterReading's own")
        self._readings += n
        self._out.append(ChannelReadings(key, rows, last, served_end, first_start, _appliance(mup, meter)))

    def _by_xpath(self, elem: etree._Element, n: int) -> tuple[list[int], list[int], list[int], list[int]]:
        """(starts, durations, values, qualities) of the ``n`` Readings of any shape, by compiled
        XPath; raises :class:`PullError` for a Reading with a field missing or repeated."""
        if not _WELL_FORMED(elem, n=n):
            raise PullError(
                "bulk body: a Reading without timePeriod start, duration or value, or with one"
                " of them (or qualityFlags) twice"
            )
        starts = _ints(_STARTS(elem), n, "Reading timePeriod start", 0, _TIME_MAX)
        durations = _ints(_DURATIONS(elem), n, "Reading timePeriod duration", 0, _UINT32)
        values = _ints(_VALUES(elem), n, "Reading value", -_INT48, _INT48)
        if _ONE_QUALITY_EACH(elem, n=n):
            qualities = _ints(_QUALITIES(elem), n, "Reading qualityFlags", 0, 0x10000, 16)
        else:  # qualityFlags is optional (absent: 0): matched Reading by Reading
            qualities = [
                0 if q is None else _int(q, "Reading qualityFlags", 0, 0x10000, 16)
                for q in self._each_quality(elem)
            ]
        return starts, durations, values, qualities

    @staticmethod
    def _each_quality(elem: etree._Element) -> list[str | None]:
        """Each Reading's qualityFlags text (None where it has none), in document order."""
        out: list[str | None] = []
        for s in elem.iterchildren(_TAG_SET):
            for r in s.iterchildren(_TAG_READING):
                flags = r.findall(_TAG_QUALITY)
                if len(flags) > 1:
                    raise PullError("bulk body: a Reading with qualityFlags twice")
                out.append(flags[0].text or "" if flags else None)
        return out


__all__ = [
    "BulkPage",
    "BulkParser",
    "ChannelReadings",
    "ChannelRows",
    "MirrorPoint",
    "write_mirror_usage_points",
]
