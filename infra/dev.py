"""`butterfly dev` (what `make run` runs): find or start the broker, MariaDB and Redis,
migrate, create topics, then run every role as its own process until Ctrl-C or SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import sys
import textwrap
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx
import structlog

from infra.balancer import BACKEND_HOST, Balancer, prepare_balancer
from infra.logging import LOG_FORMAT_VARIABLE, chosen_rendering
from infra.migrate import drop_databases, migrate
from infra.replicas import check_replicas, replica_names
from infra.restore import RestoreRefused, archived_events, nonempty_partitions, restore
from infra.services import (
    ServiceUnavailable,
    StoppableService,
    ensure_kafka,
    ensure_mariadb,
    ensure_redis,
    port_in_use,
    redis_url_for_display,
)
from infra.settings import Settings
from infra.simulators.lodging.store import database_name as partner_database
from infra.simulators.lodging.store import drop_store
from infra.simulators.payments.store import database_name as payments_database
from infra.simulators.payments.store import drop_store as drop_payments_store
from infra.supervisor import Role, Supervisor
from producers.kafka import ensure_topics
from projections.progress import Progress
from schemas.tickets import new_seed, parse_keys
from schemas.topics import Topics

log = structlog.get_logger("butterfly.dev")


def admin_token(settings: Settings, run_dir: Path) -> str:
    """The configured token, or one made once and kept under the run folder."""
    if settings.admin_token:
        return settings.admin_token
    path = run_dir / "admin_token"
    if path.exists():
        return path.read_text().strip()
    token = secrets.token_urlsafe(24)
    path.write_text(token + "\n")
    path.chmod(0o600)
    return token


def ticket_keys(settings: Settings, run_dir: Path) -> str:
    """The configured ticket keys, or one key made once and kept under the run folder (so
    tickets already mailed keep verifying across restarts)."""
    if settings.ticket_keys:
        return settings.ticket_keys
    path = run_dir / "ticket_keys"
    if path.exists():
        kept = path.read_text().strip()
        try:
            parse_keys(kept)
        except ValueError as exc:
            sys.exit(f"butterfly dev: {path} (BUTTERFLY_TICKET_KEYS): {exc}")
        return kept
    keys = f"dev{secrets.token_hex(3)}:{new_seed()}"
    path.write_text(keys + "\n")
    path.chmod(0o600)
    return keys


BACKGROUND = 5
"""Niceness added to the roles nobody waits on in a registration rush (reports, lodging,
accounts, mail, the relay's safety net): when every role shares one machine's cores, the
gateway, the registration decider and the website projector, which a waiting client waits
on, come first."""
IDLE = 15
"""Niceness of the mailer: a mail can wait for the rush to pass (every decision's mail is in
the outbox, delivered once there is CPU to spare), and writing it costs about as much as
deciding the registration it tells of."""


BANNER_WIDTH = 100
METRICS_PORT_VARIABLE = "BUTTERFLY_METRICS_PORT"
MAX_PORT = 65535
METRICS_ON_HTTP_PORT = frozenset({"gateway", "partner-sim", "payment-sim"})
"""Roles that serve no metrics on a port of their own (the gateway answers `/metrics` on its
HTTP port): they get `BUTTERFLY_METRICS_PORT=0` rather than a port from the base."""


def dev_roles(
    env: dict[str, str],
    python: str = sys.executable,
    *,
    partner_port: int | None = None,
    payment_port: int | None = None,
    replicas: Mapping[str, int] | None = None,
    balancer: Balancer | None = None,
    metrics_base_port: int = 0,
) -> list[Role]:
    """Every role as its own process, `env` added to this process's environment; with a
    `partner_port`, the lodging partner simulator too, and with a `payment_port` the payment
    provider simulator. They are left out otherwise because each keeps a database of its own
    (`<db_prefix>_partner`, `<db_prefix>_payments`) that whoever starts it must also drop,
    and listens on a port of its own that must be free.

    `replicas` runs that many processes of a role (`infra.replicas`), named `role#1`…; more
    than one gateway needs a `balancer`, whose ports they listen on, and HAProxy runs as the
    role `haproxy`. With a `metrics_base_port`, each role that serves metrics on a port of
    its own gets the next port from it in `BUTTERFLY_METRICS_PORT`."""
    counts = dict(replicas or {})
    check_replicas(counts)
    gateways = counts.get("gateway", 1)
    behind = 0 if balancer is None else len(balancer.gateway_ports)
    if behind != (gateways if gateways > 1 else 0):
        raise ValueError(f"{gateways} gateway(s) but {behind} behind the balancer")
    cli = [python, "-m", "infra.cli"]
    roles = [
        Role("gateway", [*cli, "gateway"], env),
        Role("decider.registration", [*cli, "decider", "registration"], env),
        Role("projector.website", [*cli, "projector", "website"], env),
        Role("projector.reporting", [*cli, "projector", "reporting"], env, BACKGROUND),
        Role("relay", [*cli, "relay"], env, BACKGROUND),
        Role("decider.lodging", [*cli, "decider", "lodging"], env, BACKGROUND),
        Role("projector.lodging", [*cli, "projector", "lodging"], env, BACKGROUND),
        Role("bridge", [*cli, "bridge"], env, BACKGROUND),
        Role("decider.accounts", [*cli, "decider", "accounts"], env, BACKGROUND),
        Role("projector.accounts", [*cli, "projector", "accounts"], env, BACKGROUND),
        Role("projector.orders", [*cli, "projector", "orders"], env, BACKGROUND),
        Role("mailer", [*cli, "mailer"], env, IDLE),
        Role("clock", [*cli, "clock"], env, BACKGROUND),
    ]
    if partner_port is not None:
        roles.append(
            Role("partner-sim", [*cli, "partner-sim", "--port", str(partner_port)], env, BACKGROUND)
        )
    if payment_port is not None:
        roles.append(
            Role("payment-sim", [*cli, "payment-sim", "--port", str(payment_port)], env, BACKGROUND)
        )
    processes = [
        replica for role in roles for replica in _replicas(role, counts.get(role.name, 1), balancer)
    ]
    if metrics_base_port:
        processes = _with_metrics_ports(processes, metrics_base_port)
    if balancer is not None:
        processes.append(Role("haproxy", balancer.argv()))
    return processes


def _replicas(role: Role, count: int, balancer: Balancer | None) -> list[Role]:
    """`count` processes of `role`; the gateways behind `balancer` each on a port of its own
    on 127.0.0.1, taking `X-Forwarded-For` from HAProxy only."""
    names = replica_names(role.name, count)
    if role.name != "gateway" or balancer is None:
        return [Role(name, role.argv, role.env, role.nice) for name in names]
    env = {**(role.env or {}), "FORWARDED_ALLOW_IPS": BACKEND_HOST}
    return [
        Role(name, [*role.argv, "--host", BACKEND_HOST, "--port", str(port)], env, role.nice)
        for name, port in zip(names, balancer.gateway_ports, strict=True)
    ]


def _with_metrics_ports(roles: list[Role], base: int) -> list[Role]:
    numbered: list[Role] = []
    port = base
    for role in roles:
        given = 0
        if role.name.partition("#")[0] not in METRICS_ON_HTTP_PORT:
            given, port = port, port + 1
        if given > MAX_PORT:
            raise ValueError(f"{METRICS_PORT_VARIABLE}={base} leaves too few ports for the roles")
        env = {**(role.env or {}), METRICS_PORT_VARIABLE: str(given)}
        numbered.append(Role(role.name, role.argv, env, role.nice))
    return numbered


def metrics_ports(roles: Sequence[Role]) -> dict[str, int]:
    """The port each role serves its metrics on, as `dev_roles` gave them out."""
    found: dict[str, int] = {}
    for role in roles:
        port = int((role.env or {}).get(METRICS_PORT_VARIABLE, "0"))
        if port:
            found[role.name] = port
    return found


async def announce_ready(url: str, within: float = 120.0) -> None:
    """Say when every role is consuming (the gateway's readiness answer), or that it is not
    after `within` seconds."""
    deadline = time.monotonic() + within
    async with httpx.AsyncClient(timeout=5) as client:
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(url)).status_code == 200:
                    print("Butterfly is ready: every role is consuming.\n", flush=True)
                    return
            await asyncio.sleep(0.5)
    print(f"Butterfly is not ready after {within:g} s: see {url}\n", flush=True)


async def _restore_broker(settings: Settings, archived: int) -> None:
    """The broker is empty but the databases are not: refill it from the archive and keep
    them, rather than pair them with a broker they are ahead of."""
    log.info(
        "restoring_broker",
        reason="the event topics are empty and the event archive holds events: the broker "
        "is refilled from it and the databases are kept (`butterfly dev --fresh` starts "
        "from nothing)",
        events=archived,
    )
    try:
        report = await restore(settings, progress=Progress("restore "))
    except RestoreRefused as exc:
        sys.exit(f"butterfly dev: cannot refill the broker: {exc}")
    print(report.render(), flush=True)


async def run_dev(settings: Settings, *, fresh: bool = False) -> None:
    run_dir = Path(settings.run_dir).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    counts = settings.replica_counts
    balancer = await _balancer(settings, run_dir, counts.get("gateway", 1))
    started: list[StoppableService | None] = []
    try:
        try:
            bootstrap, broker = await ensure_kafka(settings, run_dir)
            started.append(broker)
            database_url, database = await ensure_mariadb(settings, run_dir)
            started.append(database)
            redis_url, redis = await ensure_redis(settings, run_dir)
            started.append(redis)
        except ServiceUnavailable as exc:
            sys.exit(f"butterfly dev: {exc}")
        settings = settings.model_copy(
            update={
                "kafka_bootstrap_servers": bootstrap,
                "database_url": database_url,
                "redis_url": redis_url,
            }
        )
        archived = 0 if fresh else await archived_events(settings)
        if fresh or (broker is not None and not archived):
            log.info(
                "fresh_databases",
                reason="--fresh"
                if fresh
                else "the embedded broker keeps nothing across restarts and there is no "
                "event archive to refill it from, so the databases start empty with it",
                databases=[
                    *settings.db.names(),
                    partner_database(settings),
                    payments_database(settings),
                ],
            )
            await drop_databases(settings)
            await drop_store(settings)
            await drop_payments_store(settings)
        await migrate(settings)
        topics = Topics(settings.topic_prefix)
        if archived and not await nonempty_partitions(bootstrap, topics.event_topics()):
            await _restore_broker(settings, archived)
        await ensure_topics(
            bootstrap,
            topics=topics.all(),
            kept_forever=topics.event_topics(),
            partitions=settings.partitions,
        )
        token = admin_token(settings, run_dir)
        tickets = ticket_keys(settings, run_dir)
        env = {
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "BUTTERFLY_REDIS_NAMESPACE": settings.redis_namespace,
            "BUTTERFLY_ADMIN_TOKEN": token,
            "BUTTERFLY_TICKET_KEYS": tickets,
            "BUTTERFLY_TOPIC_PREFIX": settings.topic_prefix,
            "BUTTERFLY_DB_PREFIX": settings.db_prefix,
            # The roles share this terminal (or file): they render the way `dev` does.
            LOG_FORMAT_VARIABLE: chosen_rendering(settings.log_format, sys.stderr),
        }
        roles = dev_roles(
            env,
            partner_port=settings.partner_port,
            payment_port=settings.payment_sim_port,
            replicas=counts,
            balancer=balancer,
            metrics_base_port=settings.metrics_port,
        )
        clash = _metrics_clash(settings, roles, balancer)
        if clash is not None:
            sys.exit(f"butterfly dev: {clash}")
        base = f"http://{settings.http_host}:{settings.http_port}"
        partner = f"http://{settings.http_host}:{settings.partner_port}/partner"
        payments = f"http://{settings.http_host}:{settings.payment_sim_port}"
        print(
            "\nButterfly is starting:\n"
            f"  Website    {base}/  (administration: {base}/admin)\n"
            f"  API        {base}/api/v1/conventions\n"
            f"  OpenAPI    {base}/schema/openapi.json  (Swagger UI: {base}/schema/swagger)\n"
            f"  Health     {base}/health  (ready: {base}/health/ready)\n"
            f"  Admin      Authorization: Bearer {token}\n"
            f"  Tickets    signed with key {tickets.split(':', 1)[0]} "
            f"({'BUTTERFLY_TICKET_KEYS' if settings.ticket_keys else run_dir / 'ticket_keys'})\n"
            f"  Partner    {partner}/v1  (lodging simulator; faults: {partner}/admin/faults)\n"
            f"  Payments   {payments}/v1  (payment simulator; chaos: {payments}/chaos)\n"
            f"  Mail       {settings.mail_folder.resolve()}  (mails as .eml files)\n"
            f"  Kafka      {bootstrap}\n"
            f"  MariaDB    {settings.db.server_url().render_as_string()} "
            f"({', '.join(settings.db.names())})\n"
            f"  Redis      {redis_url_for_display(redis_url)} "
            f"(keys under {settings.redis_namespace}:)\n"
            f"{_scale_lines(roles, counts, balancer)}"
            "  Ctrl-C stops everything.\n",
            flush=True,
        )
        announcing = asyncio.create_task(announce_ready(f"{base}/health/ready"))
        try:
            await Supervisor().run(roles)
        finally:
            announcing.cancel()
    finally:
        for service in reversed(started):
            if service is not None:
                service.stop()


async def _balancer(settings: Settings, run_dir: Path, gateways: int) -> Balancer | None:
    """HAProxy in front of the gateways when there are several; asked first, so a missing
    HAProxy stops `dev` before anything is started."""
    if gateways == 1:
        return None
    try:
        return await prepare_balancer(settings, run_dir, gateways)
    except ServiceUnavailable as exc:
        sys.exit(f"butterfly dev: {exc}")


def _metrics_clash(
    settings: Settings, roles: Sequence[Role], balancer: Balancer | None
) -> str | None:
    """Why the metrics ports cannot be had: one is another role's port, or is taken."""
    ports = metrics_ports(roles)
    if not ports:
        return None
    others = {
        settings.http_port,
        settings.partner_port,
        settings.payment_sim_port,
        settings.embedded_kafka_port,
        *(balancer.gateway_ports if balancer is not None else ()),
    }
    clashing = sorted(
        port for port in ports.values() if port in others or port_in_use(port, settings.http_host)
    )
    if not clashing:
        return None
    return (
        f"{METRICS_PORT_VARIABLE}={settings.metrics_port} gives the roles ports "
        f"{min(ports.values())}-{max(ports.values())}, and {', '.join(map(str, clashing))} "
        "is another service's or taken: choose another base"
    )


def _scale_lines(
    roles: Sequence[Role], counts: Mapping[str, int], balancer: Balancer | None
) -> str:
    """The startup banner's lines on replicas, the balancer and metrics ports; none when
    every role runs once and no metrics port is set."""
    lines = []
    if balancer is not None:
        gateways = ", ".join(
            f"{name} {BACKEND_HOST}:{port}"
            for name, port in zip(
                replica_names("gateway", len(balancer.gateway_ports)),
                balancer.gateway_ports,
                strict=True,
            )
        )
        lines.append(f"  Gateways   {gateways}")
        lines.append(f"  Balancer   HAProxy on {balancer.url} (config {balancer.config_path})")
    scaled = [
        f"{name} x{count}" for name, count in counts.items() if name != "gateway" and count > 1
    ]
    if scaled:
        lines.append(f"  Replicas   {', '.join(scaled)} (their partitions split among them)")
    ports = metrics_ports(roles)
    if ports:
        listed = ", ".join(f"{name} :{port}" for name, port in ports.items())
        lines.append(
            textwrap.fill(
                f"{listed} (gateways: /metrics on their HTTP port)",
                width=BANNER_WIDTH,
                initial_indent="  Metrics    ",
                subsequent_indent=" " * len("  Metrics    "),
                break_on_hyphens=False,
            )
        )
    return "".join(line + "\n" for line in lines)
