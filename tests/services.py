"""Real servers for the store tests: PostgreSQL (Debian's package) and the Firestore emulator.

Both are started here, once per session, on 127.0.0.1 and a free port, and stopped at the
end. `bash .ci/services.sh` installs what they need; the fixtures find the binaries
themselves (/usr/lib/postgresql/*/bin, node, .ci/node_modules), so no variable has to be set.
A missing install fails the tests that need it, naming the fix; nothing is skipped.
"""

from __future__ import annotations

import glob
import os
import secrets
import shlex
import shutil
import socket
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
LAUNCHER = REPO / ".ci" / "firestore-emulator.mjs"
EMULATOR_PACKAGE = REPO / ".ci" / "node_modules" / "@firestore-emulator" / "server"
PG_PASSWORD_ENV = "SPARSEY_TEST_PG_PASSWORD"
INSTALL_HINT = "run `bash .ci/services.sh` first"
# gRPC's C core logs each closed emulator channel at INFO on stderr; keep test output readable.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- PostgreSQL --------------------------------------------------------------------------------

def pg_bindir() -> Path:
    """The newest installed PostgreSQL's bin dir (Debian keeps them versioned)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).resolve().parent
    pytest.fail(f"PostgreSQL's initdb was not found; {INSTALL_HINT}")


def _as_postgres(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: switch to the `postgres` user when we are root."""
    if os.geteuid() != 0:
        return cmd
    if shutil.which("runuser"):
        return ["runuser", "-u", "postgres", "--", *cmd]
    return ["su", "postgres", "-s", "/bin/sh", "-c", shlex.join(cmd)]


@dataclass
class PostgresServer:
    """A throwaway cluster: superuser `postgres`, password in $SPARSEY_TEST_PG_PASSWORD."""

    port: int
    password: str
    root: Path
    bindir: Path
    host: str = "127.0.0.1"
    user: str = "postgres"
    password_env: str = PG_PASSWORD_ENV

    def connect(self, database: str = "postgres") -> Any:
        import psycopg

        return psycopg.connect(host=self.host, port=self.port, user=self.user,
                               password=self.password, dbname=database, autocommit=True)

    def create_database(self) -> str:
        """A fresh, empty database, so each test sees only its own rows."""
        name = f"t_{secrets.token_hex(6)}"
        with self.connect() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return name

    def store_config(self, database: str, **extra: Any) -> dict[str, Any]:
        """A `system.stores` entry for the postgresql adapter."""
        return {"name": "postgresql", "host": self.host, "port": self.port,
                "database": database, "user": self.user, "password_env": self.password_env,
                **extra}

    def overrides(self, database: str, key: str = "postgresql") -> list[str]:
        """The same as Hydra command-line overrides."""
        return [f"system.stores.{key}.{k}={v}" for k, v in
                self.store_config(database).items() if k != "name"]

    def dump(self, database: str) -> str:
        """Every row of every table, as text (for searching it)."""
        out = []
        with self.connect(database) as conn:
            tables = [r[0] for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
            for t in tables:
                out += [repr(r) for r in conn.execute(f'SELECT * FROM "{t}"')]
        return "\n".join(out)


def _start_postgres() -> PostgresServer:
    bindir = pg_bindir()
    root = Path(tempfile.mkdtemp(prefix="sparsey-pg-"))
    password = f"pg-pw-{secrets.token_hex(12)}"
    pwfile = root / "pwfile"
    pwfile.write_text(password + "\n")
    pwfile.chmod(0o600)
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
        shutil.chown(pwfile, "postgres", "postgres")
    data = root / "data"
    subprocess.run(_as_postgres([str(bindir / "initdb"), "-D", str(data), "-U", "postgres",
                                 "--auth=scram-sha-256", f"--pwfile={pwfile}", "-E", "UTF8",
                                 "--locale=C", "--no-sync"]),
                   check=True, capture_output=True, text=True)
    pwfile.unlink()
    last = ""
    for _ in range(3):  # another process may take the free port before the server does
        port = free_port()
        opts = (f"-h 127.0.0.1 -p {port} -k {root} -c fsync=off -c synchronous_commit=off "
                "-c full_page_writes=off")
        run = subprocess.run(_as_postgres([str(bindir / "pg_ctl"), "-D", str(data), "-l",
                                           str(root / "server.log"), "-w", "-t", "60", "-o",
                                           opts, "start"]), capture_output=True, text=True)
        if run.returncode == 0:
            return PostgresServer(port=port, password=password, root=root, bindir=bindir)
        last = run.stdout + run.stderr
    log = (root / "server.log").read_text() if (root / "server.log").exists() else ""
    shutil.rmtree(root, ignore_errors=True)
    pytest.fail(f"PostgreSQL did not start: {last.strip()} {log[-2000:]}")


def _stop_postgres(server: PostgresServer) -> None:
    subprocess.run(_as_postgres([str(server.bindir / "pg_ctl"), "-D", str(server.root / "data"),
                                 "-m", "immediate", "-w", "stop"]), capture_output=True)
    shutil.rmtree(server.root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the session; its password is set in $SPARSEY_TEST_PG_PASSWORD."""
    server = _start_postgres()
    old = os.environ.get(PG_PASSWORD_ENV)
    os.environ[PG_PASSWORD_ENV] = server.password
    try:
        yield server
    finally:
        if old is None:
            os.environ.pop(PG_PASSWORD_ENV, None)
        else:
            os.environ[PG_PASSWORD_ENV] = old
        _stop_postgres(server)


@pytest.fixture
def pg_database(postgres_server: PostgresServer) -> str:
    """A fresh database on the session's server."""
    return postgres_server.create_database()


# -- Firestore emulator ------------------------------------------------------------------------

@dataclass
class FirestoreEmulator:
    """A running emulator process; `host` is what FIRESTORE_EMULATOR_HOST must hold."""

    proc: subprocess.Popen[str]
    host: str
    stderr: list[str] = field(default_factory=list)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()


def start_firestore_emulator() -> FirestoreEmulator:
    """Start .ci/firestore-emulator.mjs on 127.0.0.1 and a free port; wait until it listens."""
    node = shutil.which("node")
    if node is None or not EMULATOR_PACKAGE.is_dir():
        pytest.fail(f"node or @firestore-emulator/server is missing; {INSTALL_HINT}")
    proc = subprocess.Popen([node, str(LAUNCHER), "--exit-on-stdin-close"], cwd=LAUNCHER.parent,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    first: list[str] = []
    reader = threading.Thread(target=lambda: first.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout=30)
    line = first[0].strip() if first else ""
    if not line.startswith("listening 127.0.0.1:"):
        proc.kill()
        err = proc.stderr.read() if proc.poll() is not None else "(no answer in 30 s)"
        pytest.fail(f"the Firestore emulator did not start: {line} {err}")
    emulator = FirestoreEmulator(proc=proc, host=line.removeprefix("listening "))
    # Drain stderr so a chatty emulator never blocks on a full pipe.
    threading.Thread(target=lambda: emulator.stderr.extend(proc.stderr), daemon=True).start()
    return emulator


@pytest.fixture(scope="session")
def firestore_emulator() -> Iterator[FirestoreEmulator]:
    """One emulator for the session; tests keep apart by using their own project id."""
    emulator = start_firestore_emulator()
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture
def firestore_env(firestore_emulator: FirestoreEmulator, monkeypatch: pytest.MonkeyPatch
                  ) -> dict[str, Any]:
    """FIRESTORE_EMULATOR_HOST set for this test, and a store entry with its own project."""
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", firestore_emulator.host)
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    return {"name": "firestore", "project_id": f"test-{secrets.token_hex(6)}"}


# -- a service-account key file (for the key-path code and the secret-leak tests) ------------

def write_service_account_key(path: Path, project_id: str) -> dict[str, str]:
    """A well-formed service-account key with a fresh RSA key; returns its JSON fields.

    firebase-admin parses it exactly as it would a downloaded key; it grants nothing (no
    Google account knows it), so its contents are safe to plant and search for.
    """
    import json

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    key = {
        "type": "service_account",
        "project_id": project_id,
        "private_key_id": secrets.token_hex(20),
        "private_key": pem,
        "client_email": f"sparsey-test@{project_id}.iam.gserviceaccount.com",
        "client_id": str(secrets.randbits(64)),
        "token_uri": "https://oauth2.googleapis.com/token",
    }
    path.write_text(json.dumps(key))
    path.chmod(0o600)
    return key
