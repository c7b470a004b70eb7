"""The prediction stream's format and drain, drift references, drift checks, runs."""
