"""The dashboards' SVG charts, as pure functions: well-formed, accessible markup (an image
named and described, its figures as a table), labels that stay text whatever they hold,
nothing drawn for no data, and bars to scale; and the per-minute series they are fed."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from datetime import UTC, datetime

import pytest

from gateway.web.charts import AXIS_LABELS, Datum, bar_chart, column_chart, nice_scale
from gateway.web.dashboards import per_minute, pickup_by_night, pickup_of_hotels

HOSTILE = '<script>alert("x")</script></text><a href="javascript:1">&amp;'
SVG = "{http://www.w3.org/2000/svg}"


def parse(markup: str) -> ET.Element:
    """The chart as XML: every element it draws is well-formed, so a label that broke out
    of its text would show up as an element here."""
    xml = str(markup).replace("<svg ", f'<svg xmlns="{SVG[1:-1]}" ', 1)
    return ET.fromstring(xml)  # noqa: S314 - our own markup, the thing under test


def elements(root: ET.Element, tag: str) -> list[ET.Element]:
    return [e for e in root.iter() if e.tag in (tag, SVG + tag)]


def texts(root: ET.Element) -> list[str]:
    return ["".join(e.itertext()) for e in root.iter()]


def widths(root: ET.Element, kind: str = "bar") -> list[float]:
    return [float(r.get("width", "0")) for r in elements(root, "rect") if r.get("class") == kind]


@pytest.mark.parametrize("chart", [bar_chart, column_chart])
def test_a_hostile_label_or_title_stays_text(chart: object) -> None:
    markup = chart(  # type: ignore[operator]
        "c1", f"Title {HOSTILE}", [Datum(HOSTILE, 3, text=HOSTILE), Datum("ok", 1)]
    )
    root = parse(markup)
    assert not elements(root, "script")
    assert not elements(root, "a")
    assert "<script" not in markup
    assert "&lt;script&gt;" in markup
    assert any(HOSTILE in text for text in texts(root)), "the label is shown, as text"
    (table,) = elements(root, "table")
    assert HOSTILE in "".join(table.itertext())


def test_a_chart_is_an_image_named_and_described_with_its_figures_in_a_table() -> None:
    data = [Datum("Standard (STD)", 1250, text="12.50 EUR"), Datum("Sponsor (SPO)", 0)]
    root = parse(bar_chart("revenue", "Revenue by badge type", data, value_heading="Revenue"))
    (svg,) = elements(root, "svg")
    assert svg.get("role") == "img"
    ids = {e.get("id"): e for e in root.iter() if e.get("id")}
    named_by = (svg.get("aria-labelledby") or "").split()
    assert named_by == ["revenue-title", "revenue-desc"]
    assert "".join(ids["revenue-title"].itertext()) == "Revenue by badge type"
    assert "Standard (STD), 12.50 EUR" in "".join(ids["revenue-desc"].itertext())
    (table,) = elements(root, "table")
    assert "".join(elements(table, "caption")[0].itertext()) == "Revenue by badge type"
    rows = [["".join(c.itertext()) for c in row] for row in elements(table, "tr")]
    assert rows == [
        ["Item", "Revenue"],
        ["Standard (STD)", "12.50 EUR"],
        ["Sponsor (SPO)", "0"],
    ]
    assert elements(root, "details"), "the table sits in a disclosure under the chart"


@pytest.mark.parametrize("chart", [bar_chart, column_chart])
def test_no_data_draws_no_image_and_says_so(chart: object) -> None:
    markup = chart("empty", "Nothing <here>", [], empty="No <b>data</b> yet.")  # type: ignore[operator]
    root = parse(markup)
    assert not elements(root, "svg")
    assert not elements(root, "table")
    assert not elements(root, "b")
    assert "No <b>data</b> yet." in texts(root)[0]
    assert "Nothing <here>" in "".join(elements(root, "figcaption")[0].itertext())


def test_an_id_that_is_not_an_id_is_refused() -> None:
    for bad in ('x" onload="alert(1)', "1abc", "", "a b"):
        with pytest.raises(ValueError, match="not an id"):
            bar_chart(bad, "t", [Datum("a", 1)])


def test_bars_are_to_scale_on_a_round_axis() -> None:
    root = parse(bar_chart("s", "Scale", [Datum("a", 1), Datum("b", 2), Datum("c", 4)]))
    a, b, c = widths(root)
    assert b == pytest.approx(2 * a)
    assert c == pytest.approx(4 * a)
    many = parse(bar_chart("m", "Big", [Datum("a", 1_000_000), Datum("b", 250_000)]))
    big, small = widths(many)
    assert small == pytest.approx(big / 4)


def test_a_limit_is_drawn_behind_its_bar_on_the_same_scale() -> None:
    root = parse(
        bar_chart(
            "p",
            "Pickup",
            [Datum("HQ 2027-06-01", 3, limit=12), Datum("HQ 2027-06-02", 12, limit=12)],
            limit_heading="Block",
        )
    )
    bars, tracks = widths(root), widths(root, "track")
    assert tracks[0] == pytest.approx(tracks[1])
    assert bars[0] == pytest.approx(tracks[0] / 4)
    assert bars[1] == pytest.approx(tracks[1])
    (table,) = elements(root, "table")
    assert ["".join(c.itertext()) for c in elements(table, "th")][:3] == [
        "Item",
        "Value",
        "Block",
    ]


def test_zero_negative_and_non_finite_values_draw_nothing_and_break_nothing() -> None:
    data = [Datum("zero", 0), Datum("minus", -5), Datum("nan", math.nan)]
    bars = parse(bar_chart("z", "Zeros", data))
    assert widths(bars) == [0, 0, 0]
    columns = parse(column_chart("z", "Zeros", data))
    assert [float(r.get("height", "")) for r in elements(columns, "rect")] == [0, 0, 0]
    for root in (bars, columns):
        assert "-5" in "".join(elements(root, "table")[0].itertext())


def test_columns_over_time_label_only_a_few_periods() -> None:
    data = [Datum(f"2027-06-01 10:{m:02d}", m % 7) for m in range(60)]
    root = parse(column_chart("t", "Per minute", data, axis_label=lambda label: label[-5:]))
    columns = [r for r in elements(root, "rect") if r.get("class") == "bar"]
    assert len(columns) == 60
    heights = [float(r.get("height", "0")) for r in columns]
    assert heights[6] == pytest.approx(6 * heights[1], abs=0.05)
    labels = [t for t in texts(root) if t.startswith("10:")]
    assert 0 < len(labels) <= AXIS_LABELS
    assert labels[0] == "10:00"
    rows = elements(elements(root, "table")[0], "tr")
    assert len(rows) == 61


@pytest.mark.parametrize(
    ("top", "end", "step"),
    [(0, 1, 1), (-3, 1, 1), (1, 1, 1), (3, 3, 1), (7, 8, 2), (30, 30, 10), (95, 100, 50)],
)
def test_the_axis_ends_at_a_round_number_at_or_above_the_top(
    top: float, end: float, step: float
) -> None:
    assert nice_scale(top) == (end, step)


def test_the_axis_of_small_fractions() -> None:
    end, step = nice_scale(0.3)
    assert end >= 0.3
    assert step == pytest.approx(0.1)


def test_registrations_per_minute_fill_the_gaps_up_to_now() -> None:
    rows = [
        {"period": "2027-06-01T10:00", "badge_type": "STD", "registrations": 2},
        {"period": "2027-06-01T10:00", "badge_type": "VIP", "registrations": 1},
        {"period": "2027-06-01T10:03", "badge_type": "STD", "registrations": 4},
    ]
    now = datetime(2027, 6, 1, 10, 5, 30, tzinfo=UTC)
    data = per_minute(rows, now, minutes=10)
    assert len(data) == 10
    assert data[-1].label == "2027-06-01 10:05"
    values = {d.label[-5:]: d.value for d in data}
    assert (values["10:00"], values["10:01"], values["10:03"], values["10:05"]) == (3, 0, 4, 0)
    later = per_minute(rows, datetime(2027, 6, 2, tzinfo=UTC), minutes=10)
    assert later[-1].label == "2027-06-01 10:03", "long after, the window ends at the last one"
    assert [d.value for d in per_minute([], now, minutes=3)] == [0, 0, 0]


def test_the_pickup_from_the_hotels_list_adds_up_like_the_pickup_route() -> None:
    night = {"block": 10, "booked": 0, "left": 10, "rate_cents": 100, "release_date": None}
    hotels = {
        "convention_id": "c",
        "synced_at": None,
        "hotels": [
            {
                "code": "HQ",
                "name": "Headquarters",
                "room_types": [
                    {
                        "code": "KING",
                        "description": "King",
                        "nights": [
                            night | {"night": "2027-05-31", "booked": 5},
                            night | {"night": "2027-06-01", "booked": 10},
                        ],
                    },
                    {
                        "code": "DQ",
                        "description": "Queens",
                        "nights": [night | {"night": "2027-05-31"}],
                    },
                ],
            }
        ],
    }
    pickup = pickup_of_hotels(hotels)
    assert (pickup["block"], pickup["booked"], pickup["pickup_percent"]) == (30, 15, 50.0)
    (hotel,) = pickup["hotels"]
    assert [r["pickup_percent"] for r in hotel["room_types"]] == [75.0, 0.0]
    nights = pickup_by_night(pickup)
    assert [(d.label, d.value, d.limit) for d in nights] == [
        ("HQ 2027-05-31", 5, 20),
        ("HQ 2027-06-01", 10, 10),
    ]
