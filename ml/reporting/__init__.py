"""People-facing output: the analytics report, the drift report, the DP release."""
