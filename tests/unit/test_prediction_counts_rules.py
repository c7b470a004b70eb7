"""Prediction counts that outlive a killed worker, without Redis (the counts
beside a live stream: tests/integration/test_prediction_counts.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

from ml.settings import ROOT
from serve.prediction_counts import PredictionCounts, folder


def test_counts_outlive_their_process_and_are_adopted_once(tmp_path):
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent("""
            import sys, time
            from pathlib import Path
            from serve.prediction_counts import PredictionCounts
            counts = PredictionCounts(Path(sys.argv[1]))
            counts.add_recorded(9)
            counts.sent(3)
            counts.answered(3)
            counts.sent(2)  # killed while Redis has not answered
            print("counted", flush=True)
            time.sleep(600)
        """), str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "counted"
    first, second = PredictionCounts(tmp_path), PredictionCounts(tmp_path)
    assert first.adopt_dead() == (0, 0)  # its owner lives
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=10)
    assert first.adopt_dead() == (4, 2) and second.adopt_dead() == (0, 0)
    assert (first.recorded, first.pending) == (6, 6)
    # Closed with predictions unsettled, a file stays for another to adopt.
    first.close()
    assert second.adopt_dead() == (6, 0)
    second.sent(6)
    second.answered(6)
    second.close()
    assert list(tmp_path.iterdir()) == []



def test_each_stream_has_its_own_counts_folder(tmp_path):
    one = folder(tmp_path, "redis://vgsales_api:x@127.0.0.1:36379/17")
    assert one == tmp_path / "prediction-log" / "127.0.0.1-36379-17"
    assert folder(tmp_path, "redis://127.0.0.1:36379/18") != one

