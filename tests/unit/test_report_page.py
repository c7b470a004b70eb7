"""The reports' page template escapes everything it is given, tables included."""

from __future__ import annotations

import pandas as pd

from ml.reporting import page
from ml.reporting.page import Section

HOSTILE = '<script>alert("x")</script> & "quotes"'


def test_every_block_is_escaped():
    section = Section("s", HOSTILE)
    section.text(HOSTILE)
    section.heading(HOSTILE, level=4)
    section.items([HOSTILE])
    section.missing(HOSTILE, HOSTILE)
    section.table(pd.DataFrame({HOSTILE: [HOSTILE], "n": [1.23456]}), HOSTILE, digits=1)
    html = page.render(HOSTILE, HOSTILE, [section])
    assert "<script>" not in html
    assert html.count("&lt;script&gt;") >= 9
    assert "<h4>&lt;script&gt;" in html and '<td>1.2</td>' in html
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")


def test_the_table_of_contents_lists_every_section_and_can_be_left_out():
    sections = [Section("a", "First"), Section("b", "Second")]
    with_toc = page.render("t", "s", sections)
    assert '<li><a href="#a">First</a></li><li><a href="#b">Second</a></li>' in with_toc
    assert "<nav>" not in page.render("t", "s", sections, toc=False)
