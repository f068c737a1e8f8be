"""Secret redaction and a real offline W&B run (no network, no mocks)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sparsey_hydra.errors import SparseyConfigError
from sparsey_hydra.tracking.secrets import REDACTED, redact
from sparsey_hydra.tracking.wandb_tracker import WandbTracker

ROOT = Path(__file__).resolve().parents[1]


def test_redact_secret_keys_case_insensitively() -> None:
    config = {
        "API_KEY": "k1",
        "wandb": {"apiKey": "k2", "api_key_env": "WANDB_API_KEY", "project": "p"},
        "db_password": "pw",
        "Client_Secret": "s",
        "access_token": 123,
        "credentials": {"user": "u"},
        "ssh_private_key": "-----BEGIN",
        "token_env": "MY_TOKEN",
        "empty_secret": "",
        "unset_token": None,
        "layers": [{"macs": 4, "password": "x"}],
    }
    out = redact(config)
    assert out == {
        "API_KEY": REDACTED,
        "wandb": {"apiKey": REDACTED, "api_key_env": "WANDB_API_KEY", "project": "p"},
        "db_password": REDACTED,
        "Client_Secret": REDACTED,
        "access_token": REDACTED,
        "credentials": REDACTED,
        "ssh_private_key": REDACTED,
        "token_env": "MY_TOKEN",
        "empty_secret": "",
        "unset_token": None,
        "layers": [{"macs": 4, "password": REDACTED}],
    }
    assert config["wandb"]["apiKey"] == "k2"  # the input is untouched
    out["layers"][0]["macs"] = 5
    assert config["layers"][0]["macs"] == 4  # and the output is a deep copy


def test_redact_url_passwords() -> None:
    config = {
        "store": {"url": "postgresql+psycopg://alice:s3cr3t@db.example:5432/sparsey"},
        "mirrors": ["https://bob:p@ss@host/x", "sqlite:///sparsey.db", ("ftp://u:v@h",)],
        "note": "see http://carol:pw@example.com and https://example.com/a:b@c",
        "plain": "user:pw@host is not a URL",
        "n": 3,
    }
    assert redact(config) == {
        "store": {"url": "postgresql+psycopg://alice:***@db.example:5432/sparsey"},
        "mirrors": ["https://bob:***@host/x", "sqlite:///sparsey.db", ("ftp://u:***@h",)],
        "note": "see http://carol:***@example.com and https://example.com/a:b@c",
        "plain": "user:pw@host is not a URL",
        "n": 3,
    }


def test_online_without_key_is_a_one_line_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SPARSEY_TEST_NO_KEY", raising=False)
    with pytest.raises(SparseyConfigError) as info:
        WandbTracker("online", "p", str(tmp_path), "run", {}, api_key_env="SPARSEY_TEST_NO_KEY")
    assert str(info.value) == (
        "system.wandb.mode=online needs an API key in $SPARSEY_TEST_NO_KEY; "
        "set it or use system.wandb.mode=offline"
    )
    with pytest.raises(SparseyConfigError, match="system.wandb.mode: unknown mode 'cloud'"):
        WandbTracker("cloud", "p", str(tmp_path), "run", {})


def test_disabled_is_a_no_op_without_importing_wandb(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from sparsey_hydra.tracking.wandb_tracker import WandbTracker\n"
        f"t = WandbTracker('disabled', 'p', {str(tmp_path / 'runs')!r}, 'n', {{'a': 1}})\n"
        "t.log({'m': 1.0}, step=0); t.log_summary({'m': 1}); t.log_images({'x': 'missing.png'})\n"
        "t.log_artifact('missing.pt', 'model'); t.finish()\n"
        "assert t.run_dir is None and not t.enabled\n"
        "assert 'wandb' not in sys.modules, 'wandb was imported'\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=60)
    assert not (tmp_path / "runs").exists()


def test_offline_run_logs_and_keeps_secrets_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in ("WANDB_MODE", "WANDB_DIR", "WANDB_RUN_ID", "WANDB_PROJECT"):
        monkeypatch.delenv(var, raising=False)
    for var in ("WANDB_DATA_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(var, str(tmp_path / "wandb_home" / var.lower()))
    secret = "sk-THIS-MUST-NOT-LEAK-1234567890"
    config = {
        "api_key": secret,
        "wandb": {"api_key_env": "WANDB_API_KEY"},
        "store": {"url": f"postgresql://me:{secret}@db/x"},
        "model": {"macs": 9},
    }
    model_file = tmp_path / "model.pt"
    model_file.write_bytes(b"\x00weights")
    image = tmp_path / "rf.png"
    from PIL import Image

    Image.new("L", (8, 8), color=128).save(image)

    tracker = WandbTracker(
        "offline", "sparsey-test", str(tmp_path / "runs"), "run-1", config, tags=["test"]
    )
    try:
        for step in range(3):
            tracker.log({"train/overlap": 0.1 * step, "eval/accuracy": None}, step=step)
        tracker.log_images({"rf": image})
        tracker.log_summary({"accuracy": 0.75, "token": secret})
        tracker.log_artifact(model_file, "mnist/model:v1", metadata={"password": secret})
    finally:
        tracker.finish()
    tracker.finish()  # idempotent

    run_dir = Path(tracker.run_dir or "")
    assert run_dir.is_dir() and run_dir.name.startswith("offline-run-")
    assert run_dir.is_relative_to(tmp_path / "runs")
    assert list(run_dir.glob("*.wandb")), "no .wandb file in the offline run"
    (wandb_file,) = run_dir.glob("*.wandb")
    # wandb-core writes the record log from its own process: under load the last records can
    # land a moment after finish() returns, so give it a few seconds before reading it.
    deadline = time.monotonic() + 15
    while b"macs" not in wandb_file.read_bytes() and time.monotonic() < deadline:
        time.sleep(0.1)
    record_log = wandb_file.read_bytes()
    # The config is stored uncompressed in the .wandb record log, so the search below means
    # something: the redacted config is there and the secret is not.
    assert b"macs" in record_log and REDACTED.encode() in record_log
    # wandb-core (0.31) writes files/config.yaml only when the run is synced; check it when
    # present, and check every file the run left anywhere under tmp_path either way.
    config_yaml = run_dir / "files" / "config.yaml"
    if config_yaml.exists():
        assert secret not in config_yaml.read_text()
    leaked = [p for p in tmp_path.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]
    assert leaked == []
    assert not tracker.enabled
    tracker.log({"late": 1.0}, step=9)  # after finish: a no-op, not an error


@pytest.mark.parametrize("override, message", [
    ("+system.stores.postgresql.password={secret}",
     "error: system.stores.postgresql.password: a secret on the command line would be "
     "recorded in .hydra/; put it in an environment variable and give the variable's NAME "
     "instead (password_env, api_key_env, credentials_env)"),
    ("system.stores.sqlite.url=postgresql://me:{secret}@127.0.0.1/db",
     "error: system.stores.sqlite.url: the URL holds a password, which would be recorded in "
     ".hydra/; remove it from the URL and use a store whose password comes from an "
     "environment variable (postgresql: password_env)"),
    ("+system.stores.pg={{name: postgresql, password: {secret}}}",
     "error: system.stores.pg: 'password' would be recorded in .hydra/; put the secret in an "
     "environment variable and give the variable's NAME instead"),
])
def test_a_secret_on_the_command_line_is_refused_before_hydra_records_it(
        tmp_path: Path, override: str, message: str) -> None:
    from cli_helpers import error_lines, files_containing, train

    secret = "s3cr3t-" + "x7" * 8
    res = train(tmp_path, override.format(secret=secret), "dataset.limit=20")
    assert res.returncode == 2 and error_lines(res) == [message], res.explain()
    assert not (tmp_path / "out").exists()  # Hydra never started: no .hydra/ dump
    assert files_containing(tmp_path, secret.encode()) == []
    assert secret not in res.output
