"""Feature-importance figures for the MLflow run.

Figures are built on `matplotlib.figure.Figure` with the Agg canvas, never
through pyplot, so no GUI backend is touched and no global figure registry
keeps them alive in a long-running flow worker.
"""

from __future__ import annotations

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def importance_figure(importance: pd.DataFrame, title: str) -> Figure:
    """Permutation importance (R² drop, with std) and impurity importance if any.

    `importance` is `Evaluation.importance`: columns feature,
    permutation_r2_drop, permutation_std and optionally impurity.
    """
    panels = ["permutation_r2_drop"] + (["impurity"] if "impurity" in importance else [])
    height = 1.2 + 0.35 * len(importance)
    figure = Figure(figsize=(5.5 * len(panels), height), layout="constrained")
    FigureCanvasAgg(figure)
    ordered = importance.iloc[::-1]
    for index, column in enumerate(panels, start=1):
        axes = figure.add_subplot(1, len(panels), index)
        errors = ordered["permutation_std"] if column == "permutation_r2_drop" else None
        axes.barh(ordered["feature"], ordered[column], xerr=errors, color="#4c72b0")
        axes.set_xlabel(
            "drop in held-out R² when shuffled"
            if column == "permutation_r2_drop"
            else "impurity importance (train)"
        )
        axes.axvline(0, color="black", linewidth=0.8)
    figure.suptitle(title)
    return figure
