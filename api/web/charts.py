"""Charts drawn on the server as inline SVG: no script, no image files, readable by screen readers."""
from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup, escape

SERIES_COLOURS = ("#1f5fa8", "#c2410c")


def line_chart(
    xs: Sequence[int], series: dict[str, Sequence[float | None]], *, title: str, width: int = 560, height: int = 240
) -> Markup:
    """A line chart of values in [0, 1] over versions ``xs``; a None value leaves a gap."""
    left, right, top, bottom = 44, 16, 28, 36
    plot_w, plot_h = width - left - right, height - top - bottom
    span = max(len(xs) - 1, 1)

    def x(i: int) -> float:
        return left + (plot_w * i / span if len(xs) > 1 else plot_w / 2)

    def y(value: float) -> float:
        return top + plot_h * (1 - value)

    parts = [f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-labelledby="chart-title" '
             f'xmlns="http://www.w3.org/2000/svg"><title id="chart-title">{escape(title)}</title>']
    for tick in (0, 0.25, 0.5, 0.75, 1):
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" class="grid"/>'
                     f'<text x="{left - 6}" y="{y(tick) + 4:.1f}" text-anchor="end">{tick:.2f}</text>')
    for i, version in enumerate(xs):
        parts.append(f'<text x="{x(i):.1f}" y="{height - bottom + 16}" text-anchor="middle">v{version}</text>')
    for (name, values), colour in zip(series.items(), SERIES_COLOURS):
        points = [(x(i), y(v)) for i, v in enumerate(values) if v is not None]
        if len(points) > 1:
            path = " ".join(f"{px:.1f},{py:.1f}" for px, py in points)
            parts.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2.5"/>')
        for (px, py), value in zip(points, [v for v in values if v is not None]):
            parts.append(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="4" fill="{colour}">'
                         f'<title>{escape(name)}: {value:.3f}</title></circle>')
    for index, (name, colour) in enumerate(zip(series, SERIES_COLOURS)):
        lx = left + index * 170
        parts.append(f'<rect x="{lx}" y="6" width="12" height="12" fill="{colour}"/>'
                     f'<text x="{lx + 18}" y="16">{escape(name)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def heat_map(names: Sequence[str], values: Sequence[Sequence[float | None]], counts: Sequence[Sequence[int]],
             *, title: str) -> Markup:
    """A user x user matrix of shares in [0, 1], darker for more agreement; empty cells had no shared text."""
    cell, label_w = 44, 110
    size = label_w + cell * len(names)
    parts = [f'<svg class="heatmap" viewBox="0 0 {size + 8} {size + 8}" role="img" aria-labelledby="heat-title" '
             f'xmlns="http://www.w3.org/2000/svg"><title id="heat-title">{escape(title)}</title>']
    for i, name in enumerate(names):
        parts.append(f'<text x="{label_w - 6}" y="{label_w + cell * i + cell / 2 + 4}" text-anchor="end">'
                     f'{escape(name[:14])}</text>')
        cx = label_w + cell * i + cell / 2
        parts.append(f'<text x="{cx}" y="{label_w - 6}" transform="rotate(-45 {cx} {label_w - 6})">'
                     f'{escape(name[:14])}</text>')
    for i, row in enumerate(values):
        for j, value in enumerate(row):
            px, py = label_w + cell * j, label_w + cell * i
            if value is None:
                parts.append(f'<rect x="{px}" y="{py}" width="{cell - 2}" height="{cell - 2}" class="empty"/>')
                continue
            # Light (little agreement) to dark blue (full agreement); the text flips to white on dark cells.
            lightness = 92 - 62 * value
            ink = "#fff" if value > 0.55 else "#111"
            parts.append(
                f'<rect x="{px}" y="{py}" width="{cell - 2}" height="{cell - 2}" fill="hsl(214 70% {lightness:.0f}%)">'
                f'<title>{escape(names[i])} and {escape(names[j])}: {value:.0%} of {counts[i][j]} shared texts'
                f'</title></rect><text x="{px + cell / 2 - 1}" y="{py + cell / 2 + 4}" text-anchor="middle" '
                f'fill="{ink}">{round(100 * value)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))
