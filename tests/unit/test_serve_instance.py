"""The instance directory a gunicorn master owns (`serve/gunicorn_conf.py`):
a second master on the same port stops before touching a live one's files."""

from __future__ import annotations

import os
from types import SimpleNamespace

import pytest

from serve import gunicorn_conf


def master(instance):
    return SimpleNamespace(app=SimpleNamespace(instance_dir=instance))


def test_a_second_master_leaves_the_live_ones_files_alone(tmp_path):
    instance = tmp_path / "serve" / "8000"
    live = master(instance)
    gunicorn_conf.on_starting(live)
    champions = instance / "champions.json"
    champions.write_text("{}")
    try:
        with pytest.raises(SystemExit, match=rf"pid {os.getpid()}.*API_INSTANCE_PORT=<port>"):
            gunicorn_conf.on_starting(master(instance))
        assert champions.read_text() == "{}"
        assert (instance / "metrics").is_dir()
    finally:
        os.close(live.instance_lock)
    # Once the live master is gone (its lock with it), a new one takes over
    # and starts from an empty directory.
    after = master(instance)
    gunicorn_conf.on_starting(after)
    os.close(after.instance_lock)
    assert not champions.exists() and (instance / "metrics").is_dir()
