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
``XMLPullParser`` fed chunk by chunk: each Reading is turned into a tuple and its element
dropped as soon as it ends, so memory is bounded by one channel's page, not the body.
"""

from __future__ import annotations

from dataclasses import dataclass

from lxml import etree

from smarthub.model.reading_type import obis_for_interval
from smarthub.wan.client.hub_client import PulledInterval, PullError

# The writer lives with the hub's other 2030.5 builders (the hub must not import this module's
# parser, which needs the GDSC client); re-exported here, where the document is described.
from smarthub.wan.contract.sep2_xml import (
    NS,
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


def _int(text: str | None, what: str, low: int, high: int, base: int = 10) -> int:
    if text is None:
        raise PullError(f"bulk body: {what} is missing")
    try:
        v = int(text.strip(), base)
    except ValueError:
        raise PullError(f"bulk body: {what} {text[:40]!r} is not an integer") from None
    if not low <= v < high:
        raise PullError(f"bulk body: {what} {v} is out of range")
    return v


class BulkParser:
    """Streaming parser of a bulk body: ``feed`` chunks, take the readings it returns, ``close``.

    Raises :class:`PullError` (and nothing else) for anything that is not a well-formed
    MirrorUsagePointList of this shape: malformed or truncated XML, a DTD or entity
    declaration, missing or out-of-range fields, a ReadingType with no OBIS equivalent.
    """

    def __init__(self) -> None:
        # Events only for the elements handled here: the rest is read from the tree they sit in.
        self._parser = etree.XMLPullParser(
            events=("start", "end"),
            tag=(_TAG_ROOT, _TAG_MMR, _TAG_READING),
            **UNTRUSTED_PARSER_OPTIONS,
        )
        self._root: etree._Element | None = None
        self._tail = b""  # the end of the previous chunk, so a marker split across two is seen
        self._pending: list[tuple[int, int, int, int]] = []  # the current channel's (start, dur, value, q)
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
        if self._out or self._pending:
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
            tag = elem.tag
            if tag == _TAG_READING:
                parent = elem.getparent()
                if parent is not None and parent.tag == _TAG_SET:
                    self._reading(elem)
                    elem.clear()
                    # Drop the Readings already turned into tuples: memory stays at one element.
                    while elem.getprevious() is not None:
                        del parent[0]
            elif tag == _TAG_MMR:
                self._channel(elem)
                parent = elem.getparent()
                elem.clear()
                if parent is not None:
                    parent.remove(elem)

    def _reading(self, elem: etree._Element) -> None:
        start = duration = value = None
        quality = 0
        for child in elem:
            tag = child.tag
            if tag == _TAG_VALUE:
                value = _int(child.text, "Reading value", -_INT48, _INT48)
            elif tag == _TAG_QUALITY:
                quality = _int(child.text, "Reading qualityFlags", 0, 0x10000, 16)
            elif tag == _TAG_TP:
                for f in child:
                    if f.tag == _TAG_START:
                        start = _int(f.text, "Reading timePeriod start", 0, _TIME_MAX)
                    elif f.tag == _TAG_DURATION:
                        duration = _int(f.text, "Reading timePeriod duration", 0, _UINT32)
        if start is None or duration is None or value is None:
            raise PullError("bulk body: a Reading without timePeriod start, duration or value")
        self._pending.append((start, duration, value, quality))
        self._readings += 1

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
        commodity = _int(rt.findtext(_N + "commodity"), "ReadingType commodity", 0, 256)
        flow = _int(rt.findtext(_N + "flowDirection"), "ReadingType flowDirection", 0, 256)
        uom = _int(rt.findtext(_N + "uom"), "ReadingType uom", 0, 256)
        p10_text = rt.findtext(_N + "powerOfTenMultiplier")
        p10 = 0 if p10_text is None else _int(p10_text, "ReadingType powerOfTenMultiplier", -128, 128)
        kind = _int(rt.findtext(_N + "kind") or "0", "ReadingType kind", 0, 256)
        phase = _int(rt.findtext(_N + "phase") or "0", "ReadingType phase", 0, 256)
        qualifier = _int(rt.findtext(_N + "dataQualifier") or "0", "ReadingType dataQualifier", 0, 256)
        try:
            obis = str(obis_for_interval(commodity, flow, uom, kind=kind, phase=phase, qualifier=qualifier))
        except KeyError as err:
            raise PullError(f"bulk body: {href}: {err.args[0]}") from None
        rows = [PulledInterval(meter, obis, s, d, v, p10, uom, q) for s, d, v, q in self._pending]
        served_end = max((s + d for s, d, _, _ in self._pending), default=None)
        self._out.append(ChannelReadings(key, rows, last, served_end))
        self._pending = []


__all__ = [
    "BulkPage",
    "BulkParser",
    "ChannelReadings",
    "ChannelRows",
    "MirrorPoint",
    "write_mirror_usage_points",
]
