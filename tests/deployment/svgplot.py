"""A dashboard panel's series drawn as an SVG line chart (test artifacts only: where no Grafana
runs, the same queries over a real Prometheus's data, plotted). Plain SVG text: no plotting
library is worth a dependency for polylines."""

from __future__ import annotations

from html import escape

COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b")


def line_chart(title: str, series: dict[str, list[tuple[float, float]]], unit: str = "") -> str:
    w, h, left, right, top, bottom = 640, 280, 60, 160, 30, 30
    points = [p for s in series.values() for p in s]
    if not points:
        return (
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}">'
            f'<text x="10" y="20">{escape(title)}: no data</text></svg>'
        )
    t0, t1 = min(t for t, _ in points), max(t for t, _ in points)
    v0, v1 = min(0.0, min(v for _, v in points)), max(v for _, v in points)
    t1, v1 = (t1 if t1 > t0 else t0 + 1), (v1 if v1 > v0 else v0 + 1)

    def x(t: float) -> float:
        return left + (t - t0) / (t1 - t0) * (w - left - right)

    def y(v: float) -> float:
        return h - bottom - (v - v0) / (v1 - v0) * (h - top - bottom)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="11">',
        '<rect width="100%" height="100%" fill="white"/>',
        f'<text x="{left}" y="18" font-size="13" font-weight="bold">{escape(title)}</text>',
        f'<line x1="{left}" y1="{h - bottom}" x2="{w - right}" y2="{h - bottom}" stroke="#888"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{h - bottom}" stroke="#888"/>',
        f'<text x="{left - 4}" y="{y(v1) + 4:.1f}" text-anchor="end">{v1:.3g} {escape(unit)}</text>',
        f'<text x="{left - 4}" y="{y(v0) + 4:.1f}" text-anchor="end">{v0:.3g}</text>',
        f'<text x="{w - right}" y="{h - 10}" text-anchor="end">{t1 - t0:.0f} s</text>',
    ]
    for i, (name, pts) in enumerate(sorted(series.items())):
        colour = COLOURS[i % len(COLOURS)]
        path = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in pts)
        out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{path}"/>')
        out.append(
            f'<text x="{w - right + 8}" y="{top + 14 * (i + 1)}" fill="{colour}">{escape(name)}</text>'
        )
    out.append("</svg>")
    return "\n".join(out)
