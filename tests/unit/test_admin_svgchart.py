"""The SVG chart helper: well-formed SVG whose bars carry the numbers they draw."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from relay.admin.svgchart import Series, horizontal_bars, nice_max, stacked_bars

NS = {"s": "http://www.w3.org/2000/svg"}


def _bars(svg: str) -> list[ET.Element]:
    root = ET.fromstring(svg)
    return [r for r in root.iterfind(".//s:rect", NS) if "data-value" in r.attrib]


def test_stacked_bars_draw_one_rect_per_nonzero_value_with_its_number() -> None:
    svg = stacked_bars(
        "Caught per day",
        ["2026-11-01", "2026-11-02"],
        [Series("deleted", "#d55e00", [2, 0]), Series("held", "#e69f00", [1, 3])],
        desc="three days",
    )
    root = ET.fromstring(svg)
    assert root.get("role") == "img"
    assert root.find("s:title", NS).text == "Caught per day"  # type: ignore[union-attr]
    assert root.find("s:desc", NS).text == "three days"  # type: ignore[union-attr]
    bars = [(b.get("data-label"), b.get("data-series"), b.get("data-value")) for b in _bars(svg)]
    assert bars == [
        ("2026-11-01", "deleted", "2"),
        ("2026-11-01", "held", "1"),
        ("2026-11-02", "held", "3"),
    ]
    titles = [b.find("s:title", NS).text for b in _bars(svg)]  # type: ignore[union-attr]
    assert titles[0] == "2026-11-01, deleted: 2"


def test_stacked_bar_heights_are_proportional_and_stack_upwards() -> None:
    svg = stacked_bars("t", ["a"], [Series("x", "#000", [1]), Series("y", "#111", [3])])
    low, high = _bars(svg)
    assert float(high.get("height", 0)) == pytest.approx(3 * float(low.get("height", 0)))
    # y sits on top of x: its bottom edge is x's top edge.
    assert float(high.get("y", 0)) + float(high.get("height", 0)) == pytest.approx(
        float(low.get("y", 0)), abs=0.11
    )


def test_labels_and_titles_are_escaped() -> None:
    svg = horizontal_bars('<script>&"', [("<b>rule</b>", 4)])
    assert "<script>" not in svg and "<b>" not in svg
    [bar] = _bars(svg)
    assert bar.get("data-label") == "<b>rule</b>" and bar.get("data-value") == "4"


def test_horizontal_bars_scale_to_the_largest_and_say_when_empty() -> None:
    svg = horizontal_bars("Rules", [("a", 10), ("b", 5)], unit=" min")
    a, b = _bars(svg)
    assert float(a.get("width", 0)) == pytest.approx(2 * float(b.get("width", 0)))
    assert "10 min" in svg
    assert "nothing in this period" in horizontal_bars("Rules", [])


def test_series_must_match_labels() -> None:
    with pytest.raises(ValueError, match="one value per label"):
        stacked_bars("t", ["a", "b"], [Series("x", "#000", [1])])


@pytest.mark.parametrize(
    ("value", "axis"),
    [(0, (4.0, 1.0)), (3, (4.0, 1.0)), (5, (8.0, 2.0)), (37, (40.0, 10.0)), (301, (400.0, 100.0))],
)
def test_axis_maximum_is_round_and_steps_are_whole(value: float, axis: tuple[float, float]) -> None:
    assert nice_max(value) == axis
