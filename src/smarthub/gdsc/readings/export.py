"""Bulk export of readings as CSV or Parquet, streamed.

The buckets come from :func:`smarthub.gdsc.readings.queries.iter_readings` one local month at a time
and leave as they are encoded: CSV line by line, Parquet one row group per ``ROW_GROUP`` buckets
(the footer, which records every row group's offset, last). Memory stays bounded by one month of
stored intervals plus one row group, however long the period exported.

Columns are the JSON readings endpoint's fields, with the same meaning: ``start`` (UTC),
``duration`` (s), ``value`` × 10^``power_of_ten`` in IEEE 2030.5 ``uom``, ``quality`` (OR of the
summed intervals' flags), ``intervals`` (stored intervals summed). The Parquet file's key-value
metadata names the premises, meter, OBIS code, granularity and the data time the caller was
allowed to see.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from smarthub.gdsc.readings.queries import Bucket

CSV_MEDIA_TYPE = "text/csv"
PARQUET_MEDIA_TYPE = "application/vnd.apache.parquet"
COLUMNS = ("start", "duration", "value", "power_of_ten", "uom", "quality", "intervals")
ROW_GROUP = 8192

SCHEMA = pa.schema(
    [
        pa.field("start", pa.timestamp("s", tz="UTC"), nullable=False),
        pa.field("duration", pa.int32(), nullable=False),
        pa.field("value", pa.int64(), nullable=False),
        pa.field("power_of_ten", pa.int8(), nullable=False),
        pa.field("uom", pa.int16(), nullable=False),
        pa.field("quality", pa.int32(), nullable=False),
        pa.field("intervals", pa.int32(), nullable=False),
    ]
)


def _iso(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


def csv_stream(buckets: Iterable[Bucket], flush_every: int = 1024) -> Iterator[bytes]:
    """RFC 4180 CSV (header line, CRLF line ends), in chunks of ``flush_every`` rows."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    for n, b in enumerate(buckets, 1):
        writer.writerow((_iso(b.start), b.duration, b.value, b.power_of_ten, b.uom, b.quality, b.intervals))
        if n % flush_every == 0:
            yield buf.getvalue().encode()
            buf.seek(0)
            buf.truncate()
    yield buf.getvalue().encode()


class _Sink:
    """A write-only file that hands its bytes out as they come and keeps only the position
    (Parquet's footer records absolute offsets, so ``tell`` must count every byte ever written)."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.position = 0
        self.closed = False

    def write(self, data: Any) -> int:
        b = bytes(data)
        self.chunks.append(b)
        self.position += len(b)
        return len(b)

    def tell(self) -> int:
        return self.position

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def writable(self) -> bool:
        return True

    def take(self) -> bytes:
        out = b"".join(self.chunks)
        self.chunks.clear()
        return out


def parquet_stream(
    buckets: Iterable[Bucket], metadata: dict[str, str], row_group: int = ROW_GROUP
) -> Iterator[bytes]:
    """A Parquet file (zstd-compressed), one row group per ``row_group`` buckets, as it is written."""
    schema = SCHEMA.with_metadata({k.encode(): v.encode() for k, v in metadata.items()})
    sink = _Sink()
    writer = pq.ParquetWriter(pa.PythonFile(sink, mode="w"), schema, compression="zstd")
    try:
        rows: list[Bucket] = []
        for b in buckets:
            rows.append(b)
            if len(rows) >= row_group:
                writer.write_table(_table(rows, schema))
                rows.clear()
                yield sink.take()
        if rows:
            writer.write_table(_table(rows, schema))
    finally:
        writer.close()
    yield sink.take()


def _table(rows: list[Bucket], schema: pa.Schema) -> pa.Table:
    return pa.table(
        {
            "start": pa.array([b.start for b in rows], pa.timestamp("s", tz="UTC")),
            "duration": pa.array([b.duration for b in rows], pa.int32()),
            "value": pa.array([b.value for b in rows], pa.int64()),
            "power_of_ten": pa.array([b.power_of_ten for b in rows], pa.int8()),
            "uom": pa.array([b.uom for b in rows], pa.int16()),
            "quality": pa.array([b.quality for b in rows], pa.int32()),
            "intervals": pa.array([b.intervals for b in rows], pa.int32()),
        },
        schema=schema,
    )
