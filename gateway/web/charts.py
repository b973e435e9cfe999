"""Small charts drawn on the server as SVG, for the admin dashboards: no script draws them.

Each chart is a `<figure>`: its caption, the SVG (`role="img"`, named by its `<title>` and
described by a sentence that says what it shows) and the same figures as a table in a
`<details>`, for screen readers, keyboards and anyone who wants the numbers. Every text that
reaches the markup is escaped here, so a label may be anything a convention's staff typed.
Values below zero are drawn as zero (the table shows them as they are).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

WIDTH = 640
BAR_ROW = 26
BAR_THICKNESS = 18
COLUMN_HEIGHT = 220
AXIS_LABELS = 8
"""At most this many labels under a time axis; the others are in the table."""
LABEL_CHARS = 28
"""Labels drawn in the SVG are cut to this many characters (the table has them whole)."""
CHAR_WIDTH = 7
ID = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")


@dataclass(frozen=True)
class Datum:
    """One bar or column: its label, its value, how the value reads (`text`, else the
    number) and, for a bar, what it is out of (`limit`, drawn behind it: a block behind the
    rooms booked)."""

    label: str
    value: float
    text: str | None = None
    limit: float | None = None

    @property
    def shown(self) -> str:
        return self.text if self.text is not None else number(self.value)


def number(value: float) -> str:
    """A figure as people read it: whole numbers with thousands separators, else one
    decimal."""
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.1f}"


def nice_scale(top: float, ticks: int = 4) -> tuple[float, float]:
    """The axis for values up to `top`: its end and its step, the step 1, 2 or 5 times a
    power of ten, so the axis ends at a round number at or above `top`."""
    if not math.isfinite(top) or top <= 0:
        return 1.0, 1.0
    rough = top / ticks
    power = 10 ** math.floor(math.log10(rough))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= rough)
    if step < 1 and float(top).is_integer():
        step = 1.0
    return step * math.ceil(top / step - 1e-9), step


def _check_id(chart_id: str) -> str:
    if not ID.fullmatch(chart_id):
        raise ValueError(f"not an id for a chart: {chart_id!r}")
    return chart_id


def _cut(label: str, chars: int = LABEL_CHARS) -> str:
    return label if len(label) <= chars else label[: chars - 1] + "…"


def _drawn(value: float) -> float:
    return value if math.isfinite(value) and value > 0 else 0.0


def _f(value: float) -> str:
    """A coordinate: two decimals at most."""
    return f"{value:.2f}".rstrip("0").rstrip(".")


def _table(
    chart_id: str,
    title: str,
    data: Sequence[Datum],
    label_heading: str,
    value_heading: str,
    limit_heading: str | None,
    limit_text: Callable[[float], str],
) -> str:
    with_limit = limit_heading is not None and any(d.limit is not None for d in data)
    head = f'<th scope="col">{escape(label_heading)}</th>'
    head += f'<th scope="col" class="num">{escape(value_heading)}</th>'
    if with_limit:
        head += f'<th scope="col" class="num">{escape(limit_heading)}</th>'
    rows = []
    for d in data:
        cells = f'<th scope="row">{escape(d.label)}</th><td class="num">{escape(d.shown)}</td>'
        if with_limit:
            limit = "" if d.limit is None else limit_text(d.limit)
            cells += f'<td class="num">{escape(limit)}</td>'
        rows.append(f"<tr>{cells}</tr>")
    return (
        f'<details class="chart-data"><summary>The figures of “{escape(title)}”</summary>'
        f'<div class="table-wrap"><table id="{chart_id}-table">'
        f"<caption>{escape(title)}</caption>"
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div></details>"
    )


def _figure(chart_id: str, title: str, svg: str, table: str) -> Markup:
    return Markup(  # noqa: S704 - every text inside was escaped where it was put in
        f'<figure class="chart-figure" id="{chart_id}">'
        f'<figcaption id="{chart_id}-caption">{escape(title)}</figcaption>'
        f"{svg}{table}</figure>"
    )


def _empty(chart_id: str, title: str, empty: str) -> Markup:
    return _figure(chart_id, title, f'<p class="muted chart-empty">{escape(empty)}</p>', "")


def _svg_open(chart_id: str, title: str, description: str, height: float) -> str:
    return (
        f'<svg class="chart" role="img" viewBox="0 0 {WIDTH} {_f(height)}" '
        f'width="{WIDTH}" height="{_f(height)}" preserveAspectRatio="xMinYMin meet" '
        f'aria-labelledby="{chart_id}-title {chart_id}-desc">'
        f'<title id="{chart_id}-title">{escape(title)}</title>'
        f'<desc id="{chart_id}-desc">{escape(description)}</desc>'
    )


def bar_chart(
    chart_id: str,
    title: str,
    data: Sequence[Datum],
    *,
    label_heading: str = "Item",
    value_heading: str = "Value",
    limit_heading: str | None = None,
    limit_text: Callable[[float], str] = number,
    description: str | None = None,
    empty: str = "Nothing to show yet.",
) -> Markup:
    """Horizontal bars, one per datum, in the order given, on one scale from zero; a
    datum's `limit` is drawn as a lighter track behind its bar."""
    _check_id(chart_id)
    if not data:
        return _empty(chart_id, title, empty)
    top, _ = nice_scale(max(max(_drawn(d.value), _drawn(d.limit or 0)) for d in data))
    label_width = min(LABEL_CHARS, max(len(d.label) for d in data)) * CHAR_WIDTH + 12
    value_width = max(len(d.shown) for d in data) * CHAR_WIDTH + 12
    plot = max(WIDTH - label_width - value_width, 60)
    height = len(data) * BAR_ROW + 8
    if description is None:
        best = max(data, key=lambda d: d.value)
        description = (
            f"{len(data)} bars. The longest: {best.label}, {best.shown}. "
            "The figures are in the table below."
        )
    parts = [_svg_open(chart_id, title, description, height)]
    for i, d in enumerate(data):
        y = 4 + i * BAR_ROW
        middle = y + BAR_THICKNESS / 2
        parts.append(
            f'<text x="{label_width - 8}" y="{_f(middle)}" text-anchor="end" '
            f'dominant-baseline="middle">{escape(_cut(d.label))}</text>'
        )
        end = 0.0
        if d.limit is not None:
            track = plot * _drawn(d.limit) / top
            end = track
            parts.append(
                f'<rect class="track" x="{label_width}" y="{y}" width="{_f(track)}" '
                f'height="{BAR_THICKNESS}"/>'
            )
        length = plot * _drawn(d.value) / top
        end = max(end, length)
        parts.append(
            f'<rect class="bar" x="{label_width}" y="{y}" width="{_f(length)}" '
            f'height="{BAR_THICKNESS}"/>'
        )
        parts.append(
            f'<text x="{_f(label_width + end + 6)}" y="{_f(middle)}" '
            f'dominant-baseline="middle">{escape(d.shown)}</text>'
        )
    parts.append(
        f'<line class="axis" x1="{label_width}" y1="0" x2="{label_width}" y2="{_f(height)}"/>'
    )
    parts.append("</svg>")
    table = _table(chart_id, title, data, label_heading, value_heading, limit_heading, limit_text)
    return _figure(chart_id, title, "".join(parts), table)


def column_chart(
    chart_id: str,
    title: str,
    data: Sequence[Datum],
    *,
    label_heading: str = "Period",
    value_heading: str = "Value",
    axis_label: Callable[[str], str] = lambda label: label,
    description: str | None = None,
    empty: str = "Nothing to show yet.",
) -> Markup:
    """Columns over time, one per period in the order given (fill gaps with zeros before),
    with a value axis at round steps and at most `AXIS_LABELS` period labels under it
    (`axis_label` shortens each, say to its time of day)."""
    _check_id(chart_id)
    if not data:
        return _empty(chart_id, title, empty)
    top, step = nice_scale(max(_drawn(d.value) for d in data))
    left, right, above, below = 52, 8, 10, 28
    plot_w = WIDTH - left - right
    plot_h = COLUMN_HEIGHT - above - below
    slot = plot_w / len(data)
    thickness = max(slot * 0.8, 1.0)
    if description is None:
        best = max(data, key=lambda d: d.value)
        total = sum(d.value for d in data)
        description = (
            f"{len(data)} periods from {data[0].label} to {data[-1].label}; "
            f"in all {number(total)}, the most {best.shown} ({best.label}). "
            "The figures are in the table below."
        )
    parts = [_svg_open(chart_id, title, description, COLUMN_HEIGHT)]
    baseline = above + plot_h
    ticks = round(top / step)
    for k in range(ticks + 1):
        value = k * step
        y = baseline - plot_h * value / top
        parts.append(
            f'<line class="grid" x1="{left}" y1="{_f(y)}" x2="{WIDTH - right}" y2="{_f(y)}"/>'
        )
        parts.append(
            f'<text x="{left - 6}" y="{_f(y)}" text-anchor="end" '
            f'dominant-baseline="middle">{escape(number(value))}</text>'
        )
    every = max(1, math.ceil(len(data) / AXIS_LABELS))
    for i, d in enumerate(data):
        x = left + i * slot + (slot - thickness) / 2
        height = plot_h * _drawn(d.value) / top
        parts.append(
            f'<rect class="bar" x="{_f(x)}" y="{_f(baseline - height)}" '
            f'width="{_f(thickness)}" height="{_f(height)}"/>'
        )
        if i % every == 0:
            parts.append(
                f'<text x="{_f(left + i * slot + slot / 2)}" y="{_f(baseline + 18)}" '
                f'text-anchor="middle">{escape(_cut(axis_label(d.label), 12))}</text>'
            )
    parts.append(
        f'<line class="axis" x1="{left}" y1="{_f(baseline)}" x2="{WIDTH - right}" '
        f'y2="{_f(baseline)}"/>'
    )
    parts.append("</svg>")
    table = _table(chart_id, title, data, label_heading, value_heading, None, number)
    return _figure(chart_id, title, "".join(parts), table)
