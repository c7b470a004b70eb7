"""The mart snapshot's Arrow IPC round trips are exact, through bytes alone
(through a real Redis: tests/integration/test_snapshot.py)."""

from __future__ import annotations

import decimal

import numpy as np
import pandas as pd
from pandas.testing import assert_frame_equal

from ml.warehouse import snapshot


def frame_with_nulls() -> pd.DataFrame:
    """One column per dtype the mart or features may use, each holding a null,
    with a shuffled non-default index so order and index are checked too."""
    df = pd.DataFrame(
        {
            "text": pd.array(["Wii Sports", None, "Tetris", "Halo"], dtype="str"),
            "string": pd.array(["a", "b", None, "d"], dtype="string"),
            "object": pd.Series(["x", "y", "z", None], dtype=object),
            "category": pd.Categorical(
                ["Sports", None, "Puzzle", "Sports"],
                categories=["Shooter", "Sports", "Puzzle"],
            ),
            "ordered": pd.Categorical(
                ["low", "high", None, "low"],
                categories=["low", "mid", "high"],
                ordered=True,
            ),
            "year": pd.array([2006, None, 1989, 2001], dtype="Int64"),
            "generation": pd.array([7, 3, None, 6], dtype="Int32"),
            "sales": [82.74, np.nan, 30.26, 0.01],
            "share": pd.array([0.5, None, 0.25, 1.0], dtype="Float64"),
            "flag": pd.array([True, None, False, True], dtype="boolean"),
            "released": pd.to_datetime(["2006-11-19", None, "1989-06-14", "2001-11-15"]),
            "decimal": pd.Series(
                [decimal.Decimal("41.49"), None, decimal.Decimal("23.20"), decimal.Decimal("0.00")],
                dtype=object,
            ),
        },
        index=[10, 3, 7, 0],
    )
    return df.iloc[[2, 0, 3, 1]]


def test_ipc_round_trip_is_exact_for_every_dtype_with_nulls():
    df = frame_with_nulls()
    assert df.isna().any().all(), "every column must hold a null"
    back = snapshot.ipc_to_frame(snapshot.frame_to_ipc(df))
    assert_frame_equal(back, df, check_exact=True)
    assert back["object"].iloc[3] is None
    assert back["ordered"].cat.ordered
    assert list(back["category"].cat.categories) == ["Shooter", "Sports", "Puzzle"]


def test_ipc_round_trip_keeps_a_default_range_index_and_empty_frames():
    df = frame_with_nulls().reset_index(drop=True)
    assert_frame_equal(snapshot.ipc_to_frame(snapshot.frame_to_ipc(df)), df, check_exact=True)
    empty = df.iloc[0:0]
    assert_frame_equal(snapshot.ipc_to_frame(snapshot.frame_to_ipc(empty)), empty, check_exact=True)

