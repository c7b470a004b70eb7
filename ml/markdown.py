"""Markdown tables, the one way the project writes them (summaries, model
cards, drift reports, benchmarks)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd


def markdown_table(headers: Sequence[object], rows: Sequence[Sequence[object]],
                   align: str = "") -> str:
    """A GitHub markdown table; `align` has one letter per column, l or r (default l)."""
    rules = ("---:" if align[i:i + 1] == "r" else "---" for i in range(len(headers)))
    rule = "|" + "|".join(rules) + "|"
    lines = ["| " + " | ".join(str(c) for c in headers) + " |", rule]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def frame_table(frame: pd.DataFrame, digits: int = 4) -> str:
    """`frame` as a markdown table, floats to `digits` decimals, NaN blank."""
    def cell(value: object) -> str:
        if isinstance(value, (float, np.floating)):
            return "" if np.isnan(value) else f"{value:.{digits}f}"
        return str(value)

    return markdown_table(list(frame.columns),
                          [[cell(v) for v in row] for row in frame.itertuples(index=False)])
