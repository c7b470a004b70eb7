"""The vgsales pipeline flow: `python -m flows.pipeline`."""
