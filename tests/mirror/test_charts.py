"""The dashboard's bar charts: a bytes axis with round values, and bars drawn against it."""

from __future__ import annotations

import re

import pytest
from django.template.defaultfilters import filesizeformat
from django.urls import reverse

from archive_app.templatetags.archive_tags import bar_chart, byte_ticks
from tests.factories import make_entry


@pytest.mark.parametrize("largest", [1, 900, 1024, 5_000, 3 * 1024**2, 700 * 1024**2, 1024**3, 7 * 1024**4])
def test_ticks_are_round_cover_the_largest_and_are_few(largest):
    ticks = byte_ticks(largest)
    assert ticks[0] == 0 and ticks[-2] < largest <= ticks[-1]
    assert 2 <= len(ticks) <= 6
    steps = {b - a for a, b in zip(ticks, ticks[1:], strict=False)}
    assert len(steps) == 1
    # Each label is a whole number of its unit: "500.0 MB", not "476.8 MB".
    assert all(re.fullmatch(r"\d+(\.0)? \w+", filesizeformat(t).replace("\xa0", " ")) for t in ticks[1:])


def test_bars_stand_on_the_axis_they_are_read_against():
    bars = [{"label": "2020", "bytes": 300 * 1024**2, "entries": 3}, {"label": "2021", "bytes": 0, "entries": 0}]
    chart = bar_chart(bars, "t", "c")
    ticks = {tick["label"].replace("\xa0", " "): tick["y"] for tick in chart["ticks"]}
    full = chart["bars"][0]
    # 300 MB on an axis 0, 100 MB, ..., 300 MB (or beyond): the bar's top sits at the 300 MB mark if there is one.
    if "300.0 MB" in ticks:
        assert full["y"] == pytest.approx(ticks["300.0 MB"], abs=0.1)
    assert full["y"] + full["height"] == pytest.approx(ticks["0 bytes"], abs=0.1)
    assert chart["bars"][1]["height"] == 0
    assert all(bar["x"] >= chart["plot_left"] for bar in chart["bars"])


@pytest.mark.django_db
def test_the_dashboard_charts_show_their_axis_values(client, make_user):
    make_entry("1_chartone", flavor_sizes=(2 * 1024**3, 10**6))
    client.force_login(make_user("lib"))
    html = client.get(reverse("home")).content.decode()
    axis = html.split('data-testid="chart-created-y-axis"')[1].split("</g>")[0]
    labels = re.findall(r">([^<]+)</text>", axis)
    assert labels[0].startswith("0") and any("GB" in label for label in labels)
    assert "Year of creation" in html and "Year of last play" in html
