"""The HTML page both reports are made of: titled sections of blocks.

Sections collect what to show (paragraphs, headings, lists, charts, tables);
`render` lays them out with the Jinja2 template `templates/page.html.j2`,
which escapes every value. Tables are the one block that arrives as markup:
pandas writes them with every cell escaped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup
from matplotlib.figure import Figure

from ml.reporting import charts

TEMPLATES = Path(__file__).parent / "templates"
_ENVIRONMENT = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=select_autoescape(["html", "html.j2"]),
    undefined=StrictUndefined,
    keep_trailing_newline=True,
)


@dataclass
class Section:
    """One titled part of a page: blocks in order, and the names of its charts."""

    id: str
    title: str
    blocks: list[dict] = field(default_factory=list)
    charts: list[str] = field(default_factory=list)

    def text(self, paragraph: str) -> None:
        self.blocks.append({"kind": "text", "text": paragraph})

    def heading(self, text: str, level: int = 3) -> None:
        self.blocks.append({"kind": "heading", "text": text, "level": level})

    def items(self, items: list[str]) -> None:
        self.blocks.append({"kind": "items", "items": list(items)})

    def missing(self, name: str, text: str) -> None:
        """A highlighted note that `name` is missing, findable by `data-missing-champion`."""
        self.blocks.append({"kind": "missing", "name": name, "text": text})

    def chart(self, name: str, figure: Figure, caption: str) -> None:
        """A figure as an embedded PNG, findable by `data-chart="<name>"`."""
        self.blocks.append({"kind": "chart", "name": name, "caption": caption,
                            "png": charts.png_base64(figure)})
        self.charts.append(name)

    def table(self, frame: pd.DataFrame, caption: str, digits: int = 2) -> None:
        """A table, floats rounded to `digits` (pandas escapes every cell)."""
        body = frame.to_html(
            index=False, border=0, classes="data", na_rep="", escape=True,
            float_format=lambda value: f"{value:,.{digits}f}",
        )
        self.blocks.append({"kind": "table", "caption": caption, "html": Markup(body)})


def render(title: str, subtitle: str, sections: list[Section], *, toc: bool = True) -> str:
    """The whole page: title, subtitle, a table of contents, the sections."""
    return _ENVIRONMENT.get_template("page.html.j2").render(
        title=title, subtitle=subtitle, sections=sections, toc=toc)
