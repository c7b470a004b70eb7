"""Settings: precedence, typed values, secrets kept out of reprs."""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path
import sys

import pytest
from pydantic import SecretStr, ValidationError

from ml.settings import ROOT, Settings, load_settings

# Built at run time so that no literal password sits in a tracked file
# (tests/system/test_security.py scans them).
SECRET = "-".join(("hunter2", "long", "secret"))


def write_env(run_dir, text: str):
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "stack.env").write_text(text)
    return {"VGSALES_RUN_DIR": str(run_dir)}


def test_environment_beats_file_beats_defaults(tmp_path):
    environ = write_env(
        tmp_path / ".run",
        "# generated\nMARIADB_PORT='34999'\nMARIADB_DATABASE='from_file'\n"
        "export API_PORT=18999\nREDIS_PASSWORD=''\n",
    )
    settings = load_settings(environ={**environ, "MARIADB_DATABASE": "from_env"})
    assert settings.mariadb_database == "from_env"
    assert settings.mariadb_port == 34999
    assert settings.api_port == 18999
    assert settings.mariadb_host == Settings.mariadb_host
    assert settings.run_dir == tmp_path / ".run"


def test_a_missing_env_file_gives_the_defaults(tmp_path):
    settings = load_settings(environ={"VGSALES_RUN_DIR": str(tmp_path / "absent")})
    defaults = Settings(run_dir=tmp_path / "absent")
    assert settings == defaults


def test_a_bad_port_names_the_variable_and_the_file(tmp_path):
    environ = write_env(tmp_path / ".run", "MARIADB_PORT='not-a-port'\n")
    with pytest.raises(ValueError) as raised:
        load_settings(environ=environ)
    message = str(raised.value)
    assert "MARIADB_PORT='not-a-port'" in message
    assert str(tmp_path / ".run" / "stack.env") in message
    with pytest.raises(ValueError, match=r"API_PORT='x' \(from the environment\)"):
        load_settings(environ={**environ, "MARIADB_PORT": "1", "API_PORT": "x"})


def test_secrets_stay_out_of_reprs(tmp_path):
    environ = write_env(tmp_path / ".run", f"MARIADB_PASSWORD='{SECRET}'\n")
    settings = load_settings(environ=environ)
    assert SECRET not in repr(settings) and "hunter2" not in str(settings)
    assert settings.mariadb_password.get_secret_value() == SECRET


def test_replace_keeps_types_and_wraps_secrets():
    settings = dataclasses.replace(Settings(), mariadb_password="wrong", mariadb_port="3307")
    assert settings.mariadb_password == SecretStr("wrong")
    assert settings.mariadb_port == 3307
    with pytest.raises(ValidationError):
        dataclasses.replace(settings, api_port="eighty")


def test_for_api_drops_the_writer_password_only():
    settings = Settings(mariadb_password="w" * 32, mariadb_reader_password="r" * 32)
    api = settings.for_api()
    assert api.mariadb_password.get_secret_value() == ""
    assert api.sqlalchemy_url(reader=True) == settings.sqlalchemy_url(reader=True)
    assert "w" * 32 not in api.sqlalchemy_url()


def test_as_env_exports_plain_values_and_an_absolute_seeds_dir(tmp_path):
    """dbt never reads the seeds folder (it reads the copy staged inside the
    project, ml/warehouse/seed_stage.py), so the folder is exported as it is."""
    settings = Settings(api_admin_token="token-value", vgsales_seeds_dir=str(tmp_path))
    env = settings.as_env()
    assert env["API_ADMIN_TOKEN"] == "token-value"
    assert env["MARIADB_PORT"] == str(Settings.mariadb_port)
    assert Path(env["VGSALES_SEEDS_DIR"]) == tmp_path.resolve()
    assert settings.seeds_dir.resolve() == tmp_path.resolve()


def test_shell_output_round_trips_through_the_loader(tmp_path):
    environ = write_env(tmp_path / ".run", "MARIADB_PASSWORD='p@ss word$'\nAPI_PORT='18001'\n")
    printed = subprocess.run(
        [sys.executable, "-m", "ml.settings", "--shell"], cwd=ROOT, env=environ,
        capture_output=True, text=True, check=True,
    ).stdout
    sourced = subprocess.run(
        ["sh", "-c", f'{printed}\nprintf "%s|%s" "$MARIADB_PASSWORD" "$API_PORT"'],
        capture_output=True, text=True, check=True,
    ).stdout
    assert sourced == "p@ss word$|18001"


def test_every_port_default_comes_from_scripts_ports_sh():
    """One home for port defaults: Settings reads scripts/ports.sh, which the
    shell scripts source; every port it names has a default there."""
    import re

    from ml.settings import PORT_DEFAULTS, ROOT, Settings

    script = (ROOT / "scripts" / "ports.sh").read_text()
    names = re.search(r"PORT_NAMES=\(([^)]*)\)", script).group(1).split()
    assert sorted(PORT_DEFAULTS) == sorted(names)
    settings = Settings()
    assert settings.mariadb_port == PORT_DEFAULTS["MARIADB_PORT"]
    assert settings.api_instance_port == PORT_DEFAULTS["API_INSTANCE_PORT"]
    assert settings.mlflow_tracking_uri.endswith(f":{PORT_DEFAULTS['MLFLOW_PORT']}")
