"""Real daphne processes for system tests, each on its own 127.0.0.1 port.

A stack has its own database (a fresh PostgreSQL database when DATABASE_URL names one,
else a temporary SQLite file), migrated by a subprocess, so these tests share nothing with
pytest-django's test database. All processes of a stack share that database and, when
REDIS_URL is set, one Redis channel layer under a prefix of their own.
"""

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dj_database_url
import httpx
import psycopg2

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def live_database(tmp_dir: Path) -> Iterator[str]:
    url = os.environ.get("DATABASE_URL", "")
    config = dj_database_url.parse(url) if url else {}
    if config.get("ENGINE") != "django.db.backends.postgresql":
        yield f"sqlite:///{tmp_dir / 'live.sqlite3'}"
        return
    name = f"chat_live_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(
        dbname=config["NAME"],
        user=config["USER"],
        password=config["PASSWORD"],
        host=config["HOST"],
        port=config["PORT"] or 5432,
    )
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')
    try:
        yield url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def stop_process(process: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL if it has not exited within 10 s."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def server_command(server: str, port: int, app: str = "server.asgi:application") -> list[str]:
    """The command serving `app` on 127.0.0.1:`port` under one of the ASGI servers.

    daphne, through `server.serve`, is the product's; uvicorn and granian are measured by
    the benches (`--server`), and granian serves from a worker process of its own.
    """
    address = ("127.0.0.1", str(port))
    return {
        "daphne": [sys.executable, "-m", "server.serve", "-b", address[0], "-p", address[1], app],
        "uvicorn": [
            *(sys.executable, "-m", "uvicorn", "--host", address[0], "--port", address[1]),
            *("--loop", "uvloop", "--http", "httptools", "--ws", "websockets"),
            *("--backlog", "4096", "--log-level", "warning", app),
        ],
        "granian": [
            *(sys.executable, "-m", "granian", "--interface", "asgi", "--loop", "uvloop"),
            *("--host", address[0], "--port", address[1], "--backlog", "4096"),
            *("--backpressure", "100000", "--log-level", "warning", app),
        ],
    }[server]


SERVERS = ("daphne", "uvicorn", "granian")


class LiveServer:
    def __init__(
        self,
        env: dict[str, str],
        log: Path,
        *,
        healthy: bool = True,
        server: str = "daphne",
        startup_timeout: float = 30,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}/graphql/"
        self.log = log
        self._log_file = log.open("wb")
        self.process = subprocess.Popen(
            server_command(server, self.port),
            cwd=ROOT,
            env=env,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
        )
        self._wait_until_answering({200} if healthy else {200, 503}, startup_timeout)

    def _wait_until_answering(self, statuses: set[int], timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"daphne exited: {self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=5).status_code in statuses:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"daphne did not become healthy: {self.log.read_text()[-3000:]}")

    def graphql(self, query: str, variables: dict | None = None, token: str | None = None):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = httpx.post(
            f"{self.url}/graphql/",
            json={"query": query, "variables": variables or {}},
            headers=headers,
            timeout=10,
        )
        return response.json()

    def register(self, name: str = "Live") -> str:
        """A new account's token."""
        email = f"{name.lower()}-{uuid.uuid4().hex[:8]}@example.com"
        result = self.graphql(
            "mutation($e: String!, $n: String!) { register(email: $e, displayName: $n, "
            'password: "correct horse battery staple") { ... on AuthPayload { token } } }',
            {"e": email, "n": name},
        )
        if not (result.get("data") or {}).get("register"):
            raise AssertionError(f"registration failed: {result}")
        return result["data"]["register"]["token"]

    def rss(self) -> int:
        """The process's resident memory, in bytes."""
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        kilobytes = next(line for line in status.splitlines() if line.startswith("VmRSS:"))
        return int(kilobytes.split()[1]) * 1024

    def terminate(self) -> None:
        """SIGTERM, as a deploy sends it."""
        self.process.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """Die as a crashed process does: no shutdown code runs."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)
        self._log_file.close()

    def stop(self) -> None:
        stop_process(self.process)
        self._log_file.close()


class LiveStack:
    """One database, one channel layer, and as many daphne processes as asked for."""

    def __init__(
        self, tmp_dir: Path, database_url: str, *, psycopg3: bool = False, **settings: str
    ) -> None:
        self.tmp_dir = tmp_dir
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("PYTEST")},
            "DJANGO_SETTINGS_MODULE": "server.settings",
            "DATABASE_URL": database_url,
            "DEBUG": "false",
            "SECRET_KEY": "live-tests-secret",
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "GRAPHIQL": "true",
            "SECURE_COOKIES": "false",
            "CHANNEL_LAYER_PREFIX": f"live-{uuid.uuid4().hex[:8]}",
            "MEDIA_ROOT": str(tmp_dir / "media"),
            "PYTHONUNBUFFERED": "1",
            **settings,
        }
        if psycopg3:
            self.env = with_psycopg3(self.env)
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput", "-v0"],
            cwd=ROOT,
            env=self.env,
            check=True,
        )
        self.servers: list[LiveServer] = []

    def start(
        self, server: str | None = None, *, startup_timeout: float = 30, **settings: str
    ) -> LiveServer:
        """A server process; LIVE_SERVER=uvicorn (or granian) runs the tier under another."""
        server = server or os.environ.get("LIVE_SERVER", "daphne")
        log = self.tmp_dir / f"{server}-{len(self.servers)}.log"
        live = LiveServer(
            {**self.env, **settings}, log, server=server, startup_timeout=startup_timeout
        )
        self.servers.append(live)
        return live

    def stop(self) -> None:
        for server in self.servers:
            server.stop()


class DbWorker:
    """`python manage.py db_worker` on a stack's database, as the README runs it beside
    daphne."""

    def __init__(self, stack: LiveStack, *, interval: float = 0.1) -> None:
        self._log = (stack.tmp_dir / "db_worker.log").open("ab")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "manage.py",
                "db_worker",
                "--interval",
                str(interval),
                "--no-startup-delay",
            ],
            cwd=ROOT,
            env=stack.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def stop(self) -> None:
        """SIGTERM, as a deploy stops it: it finishes the task in hand and exits."""
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(30)
        self._log.close()


class PrivateRedis:
    """A redis-server of the test's own on a free port, to stop and start at will."""

    def __init__(self, tmp_dir: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.tmp_dir = tmp_dir
        self.process: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.tmp_dir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.process = None


# psycopg 3 and its pool live outside the virtualenv (`make psycopg3`): installed in it,
# Django would prefer psycopg 3 over psycopg2-binary, the default driver, everywhere.
PSYCOPG3 = ROOT / ".make" / "psycopg3"


def with_psycopg3(env: dict[str, str]) -> dict[str, str]:
    """`env` for a process that imports psycopg 3 (for DATABASE_POOL_SIZE)."""
    if not (PSYCOPG3 / "psycopg_pool").is_dir():
        raise RuntimeError(f"psycopg 3 is not in {PSYCOPG3}: run `make psycopg3`")
    path = os.pathsep.join(p for p in (str(PSYCOPG3), env.get("PYTHONPATH", "")) if p)
    return {**env, "PYTHONPATH": path}


class PgBouncer:
    """A real PgBouncer in transaction mode in front of DATABASE_URL's server.

    It refuses to run as root, so as root it switches to the `postgres` user and its
    files sit in a directory that user can read.
    """

    def __init__(self, database_url: str, *, pool_size: int = 10) -> None:
        binary = next(
            (p for p in ("/usr/sbin/pgbouncer", "/usr/bin/pgbouncer") if Path(p).exists()), None
        )
        if binary is None:
            raise RuntimeError("pgbouncer is not installed: run `make pgbouncer`")
        config = dj_database_url.parse(database_url)
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="pgbouncer-"))
        self.dir.chmod(0o777)
        user = config["USER"] or "postgres"
        (self.dir / "users.txt").write_text(f'"{user}" ""\n')
        (self.dir / "pgbouncer.ini").write_text(
            "[databases]\n"
            f"* = host={config['HOST'] or '127.0.0.1'} port={config['PORT'] or 5432}\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {self.port}\nunix_socket_dir =\n"
            f"auth_type = trust\nauth_file = {self.dir / 'users.txt'}\nadmin_users = {user}\n"
            f"pool_mode = transaction\ndefault_pool_size = {pool_size}\n"
            "max_client_conn = 2000\nignore_startup_parameters = extra_float_digits,options\n"
            f"logfile = {self.dir / 'pgbouncer.log'}\n"
        )
        for path in self.dir.iterdir():
            path.chmod(0o644)
        command = [binary, str(self.dir / "pgbouncer.ini")]
        if os.geteuid() == 0:
            command[1:1] = ["-u", "postgres"]
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
        )
        self.url = f"postgres://{user}@127.0.0.1:{self.port}/{config['NAME']}"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                psycopg2.connect(self.url, connect_timeout=2).close()
                return
            except psycopg2.OperationalError:
                if self.process.poll() is not None:
                    break
                time.sleep(0.1)
        self.stop()
        log = self.dir / "pgbouncer.log"
        raise RuntimeError(f"pgbouncer did not start: {log.read_text() if log.exists() else ''}")

    def server_connections(self) -> int:
        """Connections PgBouncer holds open to PostgreSQL (SHOW POOLS on its console)."""
        console = psycopg2.connect(self.url.rsplit("/", 1)[0] + "/pgbouncer")
        console.autocommit = True
        try:
            with console.cursor() as cursor:
                cursor.execute("SHOW POOLS")
                names = [c.name for c in cursor.description]
                rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
        finally:
            console.close()
        return sum(
            row["sv_active"] + row["sv_idle"] + row["sv_used"] + row["sv_tested"] + row["sv_login"]
            for row in rows
            if row["database"] != "pgbouncer"
        )

    def stop(self) -> None:
        stop_process(self.process)
