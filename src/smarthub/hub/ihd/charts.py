"""Inline SVG charts rendered on the hub: no script, no external library, readable on a phone.

Hand-written because the charts are two bar shapes and the IHD must work with no network at
run time (a charting library would be JavaScript shipped to every screen for two bar charts).
Every bar carries a <title> so a screen reader (and a long press) gives the exact figure.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from html import escape

PALETTE = ("#2a7ab0", "#e07b39", "#3a9d5d", "#b5476b", "#7a5cb0", "#8c8c3a", "#4a4a4a")


def _num(x: Decimal | float) -> str:
    return f"{float(x):.1f}"


def column_chart(
    chart_id: str,
    bars: Sequence[tuple[int, str, Decimal, str]],
    unit: str,
    *,
    slots: int,
    height: int = 140,
    every: int = 4,
) -> str:
    """Vertical bars in ``slots`` fixed places (e.g. a day's half-hours, so the axis does not
    stretch as the day fills): (slot, label, value, tooltip). A label every ``every`` slots
    keeps 48 half-hours legible on a phone."""
    n = max(1, slots)
    width = 480
    top = max((v for _, _, v, _ in bars), default=Decimal(0)) or Decimal(1)
    slot = width / n
    parts = [
        f'<svg id="{escape(chart_id)}" class="chart" viewBox="0 0 {width} {height + 20}" role="img"'
        f' aria-label="{escape(unit)} by period" preserveAspectRatio="none">'
    ]
    for i, label, value, tip in bars:
        h = float(value) / float(top) * height
        x = i * slot
        parts.append(
            f'<rect class="bar" x="{x + 1:.1f}" y="{height - h:.1f}" width="{max(1.0, slot - 2):.1f}"'
            f' height="{h:.1f}" fill="{PALETTE[0]}"><title>{escape(tip)}</title></rect>'
        )
        if i % every == 0:
            parts.append(f'<text x="{x:.1f}" y="{height + 14}" font-size="10">{escape(label)}</text>')
    if not bars:
        parts.append(f'<text x="10" y="{height // 2}" font-size="14">No readings yet today</text>')
    parts.append("</svg>")
    return "".join(parts)


def bar_chart(chart_id: str, rows: Sequence[tuple[str, Decimal, str]], *, row_height: int = 28) -> str:
    """Horizontal bars (e.g. cost by appliance): (label, value, value as shown)."""
    width, label_w = 480, 130
    top = max((v for _, v, _ in rows), default=Decimal(0)) or Decimal(1)
    height = max(1, len(rows)) * row_height
    parts = [
        f'<svg id="{escape(chart_id)}" class="chart" viewBox="0 0 {width} {height}" role="img"'
        f' aria-label="{escape(chart_id)}">'
    ]
    for i, (label, value, shown) in enumerate(rows):
        y = i * row_height
        w = float(value) / float(top) * (width - label_w - 120)
        parts.append(
            f'<g class="row" data-label="{escape(label)}">'
            f'<text x="0" y="{y + 18}" font-size="13">{escape(label)}</text>'
            f'<rect class="bar" x="{label_w}" y="{y + 4}" width="{max(0.0, w):.1f}" height="{row_height - 8}"'
            f' fill="{PALETTE[i % len(PALETTE)]}"><title>{escape(label)}: {escape(shown)}</title></rect>'
            f'<text x="{label_w + w + 6:.1f}" y="{y + 18}" font-size="13">{escape(shown)}</text></g>'
        )
    if not rows:
        parts.append('<text x="0" y="18" font-size="13">No appliance meters paired</text>')
    parts.append("</svg>")
    return "".join(parts)
