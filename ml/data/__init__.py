"""The raw file: fetching and verifying it, its structural checks, synthetic data."""
