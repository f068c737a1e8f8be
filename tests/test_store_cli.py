"""End to end: the real `sparsey` command writing to sqlite + postgresql + firestore at once.

Each test runs the installed console script in a subprocess against the session's real
PostgreSQL server and Firestore emulator, then reads what it left with the store adapters
(and, for secrets, with plain clients and a byte search of every file).
"""

from __future__ import annotations

import json
import os
import secrets
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from services import PostgresServer, free_port, write_service_account_key

from sparsey_hydra.plugins import get_registry
from sparsey_hydra.stores.store_set import open_store

pytestmark = pytest.mark.slow

SPARSEY = Path(sys.executable).parent / "sparsey"
FAST = ("trainer.progress=false", "dataset.limit=60")
ALL_THREE = "system.write_stores=[sqlite,postgresql,firestore]"


def sparsey(cwd: Path, *overrides: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    cwd.mkdir(parents=True, exist_ok=True)
    cmd = [str(SPARSEY)] if SPARSEY.exists() else [sys.executable, "-m", "sparsey_hydra.cli"]
    return subprocess.run([*cmd, "+experiment=train", *FAST, "hydra.run.dir=out", *overrides],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL)


def base_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("WANDB_", "FIRESTORE_", "GOOGLE_"))}
    env.update(WANDB_SILENT="true", PYTHONWARNINGS="ignore", COLUMNS="200", **extra)
    return env


def stores_of(cwd: Path, pg: PostgresServer, database: str, firestore: dict[str, Any]
              ) -> dict[str, Any]:
    cfgs = {"sqlite": {"name": "sqlite", "url": f"sqlite:///{cwd / 'sparsey.db'}"},
            "postgresql": pg.store_config(database), "firestore": firestore}
    return {k: open_store(c, get_registry(), cwd, key=f"system.stores.{k}")
            for k, c in cfgs.items()}


@pytest.fixture
def three(tmp_path: Path, postgres_server: PostgresServer, pg_database: str,
          firestore_env: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Overrides + environment that select all three stores (fresh database and project)."""
    overrides = [ALL_THREE, *postgres_server.overrides(pg_database),
                 f"system.stores.firestore.project_id={firestore_env['project_id']}"]
    env = base_env(FIRESTORE_EMULATOR_HOST=os.environ["FIRESTORE_EMULATOR_HOST"],
                   **{postgres_server.password_env: postgres_server.password})
    opened: list[Any] = []
    yield {"overrides": overrides, "env": env, "database": pg_database,
           "firestore": firestore_env, "opened": opened}
    for s in opened:
        s.close()


def test_one_run_written_to_three_stores_reads_back_the_same(
        tmp_path: Path, postgres_server: PostgresServer, three: dict[str, Any]) -> None:
    run = sparsey(tmp_path, "system.wandb.mode=disabled", *three["overrides"], env=three["env"])
    assert run.returncode == 0, run.stderr[-3000:]
    stores = stores_of(tmp_path, postgres_server, three["database"], three["firestore"])
    three["opened"].extend(stores.values())

    records = {}
    for kind, store in stores.items():
        (exp,) = store.list_experiments()
        assert exp["status"] == "completed" and exp["error"] is None, kind
        assert f"{kind}={exp['id']}" in run.stdout  # the printout names each store's id
        steps = store.step_metrics(exp["id"])
        model = store.get_model("mnist_small-digits")
        records[kind] = {
            "summary": json.dumps(exp["summary"], sort_keys=True),
            "config": json.dumps(exp["config"], sort_keys=True),
            "steps": json.dumps(steps, sort_keys=True),
            "model": (model["version"], model["path"], model["sha256"],
                      json.dumps(model["metrics_summary"], sort_keys=True)),
            "name_seed": (exp["name"], exp["kind"], exp["seed"]),
        }
        assert steps, f"{kind} has no step rows"
        assert model["experiment_id"] == exp["id"]
    assert records["sqlite"] == records["postgresql"] == records["firestore"]
    summary = json.loads(records["sqlite"]["summary"])
    assert summary["train"]["frames"] == 48 and summary["model"]["version"] == 1
    assert Path(summary["model"]["path"]).is_file()


def _wandb_records(path: Path) -> Iterator[bytes]:
    """Records of a W&B .wandb file (a LevelDB-style log: 32 KiB blocks, 7-byte headers)."""
    data = path.read_bytes()
    assert data[:4] == b":W&B", "not a W&B record log"
    pos, block, pending = 7, 32768, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0 and length == 0:
            pos += left
            continue
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind == 1:
            yield chunk
        elif kind == 2:
            pending = chunk
        elif kind == 3:
            pending += chunk
        elif kind == 4:
            yield pending + chunk
            pending = b""


def test_planted_secrets_appear_nowhere_and_the_model_is_a_wandb_artifact(
        tmp_path: Path, tmp_path_factory: pytest.TempPathFactory,
        postgres_server: PostgresServer, three: dict[str, Any]) -> None:
    keydir = tmp_path_factory.mktemp("key")  # outside the searched tree
    project = f"key-{secrets.token_hex(4)}"
    key = write_service_account_key(keydir / "sa.json", project)
    pem_line = key["private_key"].splitlines()[5]  # 64 characters of the private key
    wandb_key = f"wandb-{secrets.token_hex(20)}"
    planted = {"pg password": postgres_server.password, "key id": key["private_key_id"],
               "private key": pem_line, "W&B key": wandb_key}
    cwd = tmp_path / "run"
    env = {**three["env"], "SPARSEY_FS_KEY": str(keydir / "sa.json"), "WANDB_API_KEY": wandb_key}
    for var in ("WANDB_DATA_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_ARTIFACT_DIR"):
        env[var] = str(cwd / "wandb-home" / var.lower())  # W&B's own dirs: searched too
    overrides = [o for o in three["overrides"] if "firestore.project_id" not in o]
    run = sparsey(cwd, "system.wandb.mode=offline", *overrides,
                  "system.stores.firestore.project_id=null",  # so it comes from the key file
                  "system.stores.firestore.credentials_env=SPARSEY_FS_KEY", env=env)
    assert run.returncode == 0, run.stderr[-3000:]

    # The secrets were really used: PostgreSQL took the password, Firestore the key's project.
    fs = {"name": "firestore", "project_id": project}
    stores = stores_of(cwd, postgres_server, three["database"], fs)
    three["opened"].extend(stores.values())
    for store in stores.values():
        assert store.list_experiments()[0]["status"] == "completed"

    texts = {"stdout+stderr": run.stdout + run.stderr,
             "postgresql": postgres_server.dump(three["database"])}
    client = stores["firestore"].client
    texts["firestore"] = "\n".join(
        repr(d.to_dict()) for c in ("hpo_runs", "experiments", "batches", "models",
                                    "model_registry") for d in client.collection(c).stream())
    files = [p for p in cwd.rglob("*") if p.is_file()]
    names = {p.relative_to(cwd).parts[0] for p in files}
    assert {"sparsey.db", "models", "out"} <= names
    assert any(".hydra" in p.parts for p in files) and list(cwd.glob("out/wandb/offline-run-*"))
    # the searched texts hold the recorded config (variable NAMES only), so a leak would show
    assert all("SPARSEY_FS_KEY" in texts[k] for k in ("postgresql", "firestore"))
    assert planted["private key"].encode() in (keydir / "sa.json").read_bytes()
    for label, secret in planted.items():
        assert [p for p in files if secret.encode() in p.read_bytes()] == [], label
        assert [k for k, t in texts.items() if secret in t] == [], label

    # Each model save is a W&B artifact in the offline run, with its hash as metadata.
    from wandb.proto import wandb_internal_pb2

    (wandb_file,) = cwd.glob("out/wandb/offline-run-*/run-*.wandb")
    artifacts = []
    for raw in _wandb_records(wandb_file):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(raw)
        if record.WhichOneof("record_type") == "artifact":
            artifacts.append(record.artifact)
    (artifact,) = artifacts
    model = stores["sqlite"].get_model("mnist_small-digits")
    assert (artifact.name, artifact.type) == ("mnist_small-digits", "model")
    assert json.loads(artifact.metadata) == {"version": 1, "sha256": model["sha256"]}
    assert [m.path for m in artifact.manifest.contents] == ["v1.pt"]


@pytest.mark.parametrize("broken", ["postgresql port", "emulator down", "missing key file"])
def test_unreachable_store_stops_before_training(
        tmp_path: Path, three: dict[str, Any], broken: str) -> None:
    overrides, env = list(three["overrides"]), dict(three["env"])
    if broken == "postgresql port":
        overrides.append(f"system.stores.postgresql.port={free_port()}")
        expected = "error: system.stores.postgresql: cannot open "
    elif broken == "emulator down":
        env["FIRESTORE_EMULATOR_HOST"] = f"127.0.0.1:{free_port()}"
        expected = "error: system.stores.firestore: cannot reach Firestore (the emulator at "
    else:
        env["SPARSEY_FS_KEY"] = str(tmp_path / "no-such-key.json")
        overrides.append("system.stores.firestore.credentials_env=SPARSEY_FS_KEY")
        expected = ("error: system.stores.firestore.credentials_env: $SPARSEY_FS_KEY points to "
                    f"'{tmp_path / 'no-such-key.json'}', which is not a file")
    run = sparsey(tmp_path, "system.wandb.mode=disabled", *overrides, env=env)
    assert run.returncode == 2, run.stderr[-3000:]
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(expected), run.stderr
    assert not (tmp_path / "models").exists()  # nothing trained, no model saved
    if (tmp_path / "sparsey.db").exists():
        import sqlite3

        con = sqlite3.connect(tmp_path / "sparsey.db")
        assert con.execute("SELECT COUNT(*) FROM experiments").fetchone() == (0,)
        con.close()


def test_unknown_write_store_is_refused_up_front(tmp_path: Path) -> None:
    run = sparsey(tmp_path, "system.wandb.mode=disabled", "system.write_stores=[sqlite,mongo]",
                  env=base_env())
    assert run.returncode == 2
    assert run.stderr.strip() == ("error: system.write_stores.1: unknown store 'mongo'; "
                                  "system.stores defines: firestore, postgresql, sqlite")
    assert not (tmp_path / "sparsey.db").exists()


def run_sparsey(cwd: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    cmd = [str(SPARSEY)] if SPARSEY.exists() else [sys.executable, "-m", "sparsey_hydra.cli"]
    return subprocess.run([*cmd, *args, "trainer.progress=false", "system.wandb.mode=disabled"],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL)


def test_evaluate_by_name_from_postgresql_and_refuse_a_tampered_file(
        tmp_path: Path, postgres_server: PostgresServer, pg_database: str) -> None:
    """Only PostgreSQL is written and read: the model is found through its registry there."""
    env = base_env(**{postgres_server.password_env: postgres_server.password})
    pg = [*postgres_server.overrides(pg_database), "system.write_stores=[postgresql]",
          "system.read_store=postgresql"]
    trained = run_sparsey(tmp_path, "+experiment=train", "dataset.limit=40", "hydra.run.dir=t",
                          "model_name=pgnet", *pg, env=env)
    assert trained.returncode == 0, trained.stderr[-3000:]
    path = tmp_path / "models" / "pgnet" / "v1.pt"
    before = path.read_bytes()

    evaluated = run_sparsey(tmp_path, "+experiment=evaluate", "model_name=pgnet",
                            "dataset.limit=30", "hydra.run.dir=e", *pg, env=env)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert path.read_bytes() == before
    assert not (tmp_path / "sparsey.db").exists()  # sqlite was never opened
    store = open_store(postgres_server.store_config(pg_database), get_registry(), tmp_path)
    try:
        train_exp, eval_exp = store.list_experiments()
        assert (train_exp["kind"], eval_exp["kind"]) == ("train", "evaluate")
        assert eval_exp["status"] == "completed"
        assert eval_exp["config"]["evaluated_model"]["sha256"] == \
            store.get_model("pgnet", 1)["sha256"]
        assert eval_exp["summary"]["eval"]["frames"] == 30
        assert eval_exp["summary"]["train"]["frames"] == 0
        assert {r["phase"] for r in store.step_metrics(eval_exp["id"])} == {"eval"}
    finally:
        store.close()

    unknown = run_sparsey(tmp_path, "+experiment=evaluate", "model_name=nope",
                          "hydra.run.dir=u", *pg, env=env)
    assert unknown.returncode == 2
    assert unknown.stderr.strip() == "error: model_name: unknown model 'nope'; known models: pgnet"

    data = bytearray(before)
    data[len(data) // 3] ^= 0x01
    path.write_bytes(bytes(data))
    refused = run_sparsey(tmp_path, "+experiment=evaluate", "model_name=pgnet",
                          "hydra.run.dir=x", *pg, env=env)
    assert refused.returncode == 2
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in refused.stderr, refused.stderr
    assert lines[0].startswith(f"error: model file '{path}' does not match its registered "
                               "sha256"), lines[0]
    assert path.read_bytes() == bytes(data)  # refused, not "repaired"
