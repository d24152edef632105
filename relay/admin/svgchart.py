"""Small server-side SVG charts: stacked vertical bars and labelled horizontal bars.

Why our own and not a charting library: the admin pages are served under a
Content-Security-Policy without ``'unsafe-inline'``, and the usual Python SVG
libraries (pygal among them) put an inline ``<style>`` and a script in every
chart, which that policy blocks.  These charts use presentation attributes only
(``fill``, ``font-size``), so they look the same inline in a page, in the
stand-alone report and in a PDF, with no JavaScript and no CDN.

Accessibility: each chart is ``role="img"`` with a ``<title>`` and a
``<desc>``; each bar has its own ``<title>`` ("2026-11-03, deleted: 4") and
``data-label`` / ``data-series`` / ``data-value`` attributes, and the pages
put a table with the same numbers next to every chart.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

__all__ = ["Series", "horizontal_bars", "nice_max", "stacked_bars"]

_FONT = 'font-family="system-ui, sans-serif"'
_ids = itertools.count(1)


@dataclass(frozen=True, slots=True)
class Series:
    """One stacked series: its name, colour and one value per label."""

    name: str
    color: str
    values: Sequence[float]


def nice_max(value: float, ticks: int = 4) -> tuple[float, float]:
    """A round axis ``(maximum, step)``: maximum ≥ ``value``, ``ticks`` steps of 1, 2 or 5
    times a power of ten, at least 1 (the charts count messages); (4, 1) for nothing."""
    raw = max(value, 0.0) / ticks
    magnitude = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1
    nice = next(m * magnitude for m in (1, 2, 5, 10) if raw <= m * magnitude)
    step = max(1.0, float(nice))
    return step * ticks, step


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.1f}"


def _open(kind: str, title: str, desc: str, width: int, height: int) -> tuple[str, list[str]]:
    ident = f"chart{next(_ids)}"
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart chart-{kind}" role="img" '
        f'viewBox="0 0 {width} {height}" width="100%" preserveAspectRatio="xMinYMin meet" '
        f'aria-labelledby="{ident}-t {ident}-d" data-chart="{escape(kind)}">'
        f'<title id="{ident}-t">{escape(title)}</title><desc id="{ident}-d">{escape(desc)}</desc>'
    )
    return ident, [head]


def _text(x: float, y: float, content: str, size: int = 12, anchor: str = "start") -> str:
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" {_FONT}>'
        f"{escape(content)}</text>"
    )


def _rect(x: float, y: float, w: float, h: float, color: str) -> str:
    return f'<rect x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{h:.1f}" fill="{escape(color)}"'


def _bar(
    x: float, y: float, w: float, h: float, color: str, label: str, series: str, value: float
) -> str:
    tip = f"{label}, {series}: {_number(value)}" if series else f"{label}: {_number(value)}"
    data = f'data-label="{escape(label)}" data-series="{escape(series)}"'
    return (
        f'{_rect(x, y, w, h, color)} {data} data-value="{_number(value)}">'
        f"<title>{escape(tip)}</title></rect>"
    )


def _legend(series: Sequence[Series], x: float, y: float) -> list[str]:
    parts, offset = [], x
    for s in series:
        parts.append(_rect(offset, y - 10, 12, 12, s.color) + "/>")
        parts.append(_text(offset + 16, y, s.name, 13))
        offset += 26 + 7.0 * len(s.name)
    return parts


def stacked_bars(
    title: str,
    labels: Sequence[str],
    series: Sequence[Series],
    *,
    desc: str = "",
    width: int = 600,
    height: int = 260,
) -> Markup:
    """Vertical bars, one per label, each stacking every series' value (bottom first)."""
    if any(len(s.values) != len(labels) for s in series):
        raise ValueError("every series needs one value per label")
    left, top, bottom = 44, 28, 44
    plot_w, plot_h = width - left - 8, height - top - bottom
    totals = [sum(s.values[i] for s in series) for i in range(len(labels))]
    top_value, step = nice_max(max(totals, default=0))
    _, parts = _open("stacked", title, desc, width, height)
    parts += _legend(series, left, 14)
    parts += _y_axis(left, top, plot_w, plot_h, top_value, step)
    slot = plot_w / max(len(labels), 1)
    bar_w = max(1.0, slot * 0.72)
    every = max(1, math.ceil(len(labels) / 7))
    for i, label in enumerate(labels):
        x = left + i * slot + (slot - bar_w) / 2
        base = float(top + plot_h)
        for s in series:
            value = s.values[i]
            if value > 0:
                h = plot_h * value / top_value
                base -= h
                parts.append(_bar(x, base, bar_w, h, s.color, label, s.name, value))
        if i % every == 0:
            cx = x + bar_w / 2
            parts.append(
                f'<text x="{cx:.1f}" y="{top + plot_h + 16}" font-size="11" text-anchor="middle" '
                f"{_FONT}>{escape(label[-5:])}</text>"
            )
    parts.append("</svg>")
    return Markup("".join(parts))


def _y_axis(
    left: float, top: float, plot_w: float, plot_h: float, top_value: float, step: float
) -> list[str]:
    parts = []
    for n in range(round(top_value / step) + 1):
        value = n * step
        y = top + plot_h - plot_h * value / top_value
        parts.append(
            f'<line x1="{left}" x2="{left + plot_w:.1f}" y1="{y:.1f}" y2="{y:.1f}" '
            'stroke="#d0d7de" stroke-width="1"/>'
        )
        parts.append(_text(left - 6, y + 4, _number(value), 13, "end"))
    return parts


def horizontal_bars(
    title: str,
    items: Sequence[tuple[str, float]],
    *,
    color: str = "#1f6feb",
    desc: str = "",
    unit: str = "",
    width: int = 560,
) -> Markup:
    """One labelled horizontal bar per ``(label, value)``, longest scale at the top value."""
    row_h, label_w, top = 30, 215, 8
    height = top + row_h * max(len(items), 1) + 8
    plot_w = width - label_w - 80
    top_value = max((v for _, v in items), default=0) or 1
    _, parts = _open("horizontal", title, desc, width, height)
    for i, (label, value) in enumerate(items):
        y = top + i * row_h
        w = max(1.0, plot_w * value / top_value) if value > 0 else 0.0
        shown = label if len(label) <= 28 else label[:27] + "…"
        parts.append(_text(label_w - 8, y + 20, shown, 14, "end"))
        parts.append(_bar(label_w, y + 5, w, row_h - 10, color, label, "", value))
        parts.append(_text(label_w + w + 6, y + 20, f"{_number(value)}{unit}", 14))
    if not items:
        parts.append(_text(label_w, top + 17, "nothing in this period"))
    parts.append("</svg>")
    return Markup("".join(parts))
