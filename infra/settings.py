"""Typed settings, one class per concern, read from the environment (and `.env`).

The real environment wins over `.env`; `BUTTERFLY_ENV_FILE` names another env file, or none
when empty. `get_settings()` is cached; tests build their own `Settings(...)` and pass it to
the composition root instead.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import URL, make_url

from infra.replicas import VARIABLE as REPLICAS_VARIABLE
from infra.replicas import parse_replicas
from schemas.tickets import SigningKey, parse_keys

ENV_PREFIX = "BUTTERFLY_"
TICKET_KEYS_VARIABLE = "BUTTERFLY_TICKET_KEYS"
MAX_PORT = 65535


class HttpSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = 8000
    decision_wait_seconds: float = 5.0
    max_body_bytes: int = 64 * 1024


class KafkaSettings(BaseModel):
    bootstrap_servers: str = ""
    """Empty means: start (or reuse) the embedded broker."""
    topic_prefix: str = "butterfly."
    partitions: int = 6
    embedded_port: int = 19092


class DatabaseSettings(BaseModel):
    url: str = "mysql+asyncmy://root@127.0.0.1:3306/"
    """The server; each database name below is appended to it."""
    write_name: str = "butterfly_write"
    read_name: str = "butterfly_read"
    reporting_name: str = "butterfly_reporting"
    pool_size: int = 10

    def server_url(self) -> URL:
        url = make_url(self.url)
        if url.drivername in ("mysql", "mariadb", "mysql+pymysql", "mariadb+pymysql"):
            url = url.set(drivername="mysql+asyncmy")
        return url.set(database=None)

    def url_for(self, name: str) -> URL:
        return self.server_url().set(database=name)

    @property
    def write_url(self) -> URL:
        return self.url_for(self.write_name)

    @property
    def read_url(self) -> URL:
        return self.url_for(self.read_name)

    @property
    def reporting_url(self) -> URL:
        return self.url_for(self.reporting_name)

    def names(self) -> tuple[str, str, str]:
        return (self.write_name, self.read_name, self.reporting_name)


ENV_FILE_VARIABLE = "BUTTERFLY_ENV_FILE"
DEFAULT_ENV_FILE = ".env"
ENV_FILE_DESCRIPTION = (
    "The env file read after the environment (the environment wins); only the real "
    "environment sets it, never an env file. Empty: none (tests, and the roles they start, "
    "read none)."
)


def env_file_from_environment() -> str | None:
    """The env file `Settings()` reads: `BUTTERFLY_ENV_FILE` (only from the real environment,
    never from an env file), `.env` when unset, none when set but empty."""
    return os.environ.get(ENV_FILE_VARIABLE, DEFAULT_ENV_FILE) or None


Port = Annotated[int, Field(ge=1, le=MAX_PORT)]
AtLeastOne = Annotated[int, Field(ge=1)]
Rate = Annotated[float, Field(ge=0, le=1)]
Positive = Annotated[float, Field(gt=0)]


class Settings(BaseSettings):
    """Everything a Butterfly process needs to know, from `BUTTERFLY_*` and a few plain names.

    Values come from keyword arguments, then the environment, then an env file: the one
    `_env_file=` names (`None`: none), otherwise `BUTTERFLY_ENV_FILE` as the environment holds
    it when the object is built (default `.env` in the working directory; empty: none). Tests
    pass `_env_file=None`, and the processes they start get `BUTTERFLY_ENV_FILE=""`, so a
    developer's `.env` never reaches them.

    Each field's docstring is its description: README's settings table is made from them
    (`settings_table()`, `python -m infra.settings`).
    """

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=None,
        env_file_encoding="utf-8",
        env_nested_delimiter="__",
        extra="ignore",
        use_attribute_docstrings=True,
    )

    kafka_bootstrap_servers: str = Field(default="", validation_alias="KAFKA_BOOTSTRAP_SERVERS")
    """The Kafka brokers, `host:port[,host:port…]`. Empty: the embedded broker, which
    `butterfly dev` starts (or reuses) on `embedded_kafka_port` and every other subcommand
    expects there. Set, `butterfly dev` stops, saying so, if it does not answer."""
    kafka_idempotence: bool = False
    """On for a real Kafka cluster: each producer then gets a producer id and numbers its
    records, so a retried send is never written twice nor reordered within a partition. Off
    for the embedded broker, which does not support it."""
    database_url: str = Field(
        default="mysql+asyncmy://root@127.0.0.1:3306/", validation_alias="DATABASE_URL"
    )
    """The MariaDB server; each database name (`db_prefix`) is appended to it. Set, `butterfly
    dev` stops, saying so, if it does not answer; unset, `butterfly dev` uses this default if
    it answers, else a project-local `mariadbd`, else a Docker container."""
    redis_url: str = Field(default="", validation_alias="REDIS_URL")
    """The Redis every gateway shares for sessions and login counters. Empty: 127.0.0.1:6379,
    which `butterfly dev` replaces with a project-local `redis-server` when nothing answers
    there. Set, `butterfly dev` stops, saying so, if it does not answer."""
    admin_token: str = ""
    """The bearer token admin calls send (`Authorization: Bearer …`, e.g. to
    `/api/v1/admin/*`); the gateway does not start without it. `butterfly dev` makes one when
    it is unset."""
    http_host: str = "127.0.0.1"
    """The address the gateway, the simulators and each role's metrics listen on."""
    http_port: Port = 8000
    """Where the gateway listens (HAProxy, when `make run` runs more than one gateway)."""
    public_url: str = ""
    """The gateway's address as outside systems reach it (where the payment provider sends
    its notifications, and where mails link to); empty: the address the gateway listens on."""
    metrics_port: int = Field(default=0, ge=0, le=MAX_PORT)
    """Where a role other than the gateway serves its Prometheus metrics (on `http_host`);
    0: nowhere. One port per process: roles sharing a host need one each. The gateway serves
    them at `GET /metrics` on its own port instead. Under `make run` it is the first of the
    ports its roles get, one each (base, base + 1, …)."""
    partitions: AtLeastOne = 6
    """Partitions of the topics `butterfly topics` and `butterfly dev` create; fixed once a
    topic exists (docs/SCALING.md)."""
    topic_replication: int = Field(default=1, ge=1, le=16)
    """Copies of each partition `butterfly topics` creates topics with: 1 on the embedded
    broker; 3 on a three-broker cluster with `min.insync.replicas=2` (deploy/)."""
    topic_prefix: str = "butterfly."
    """Prefix of every topic and consumer group."""
    embedded_kafka_port: Port = 19092
    """The embedded broker's port."""
    db_prefix: str = "butterfly"
    """Prefix of the database names: `<prefix>_write`, `<prefix>_read` and
    `<prefix>_reporting`, and the simulators' `<prefix>_partner` and `<prefix>_payments`."""
    redis_namespace: str = "butterfly"
    """Prefix of every Redis key, so test runs and `make run` never share keys."""
    session_idle_minutes: Positive = 60 * 24 * 14
    """A session not used for this long ends; each use starts the count again."""
    login_attempts_per_account: AtLeastOne = 5
    """Failed logins one account may take per `login_window_seconds` before it must wait
    (429)."""
    login_attempts_per_address: AtLeastOne = 20
    """Failed logins one client address may make per `login_window_seconds`, across accounts."""
    login_window_seconds: Positive = 300
    """The window failed logins are counted over."""
    decision_wait_seconds: float = Field(default=5.0, ge=0)
    """How long a write waits for its decision before answering 202 (a client's
    `Prefer: wait=N` can shorten it)."""
    max_in_flight: AtLeastOne = 4096
    """Requests a gateway process serves at once; past that it answers 503 at once."""
    shed_latency_ms: Positive = 200.0
    """The latency a gateway process keeps its answers to: it lets in at most as many
    requests at once as it answers in this time, and answers 503 past that."""
    shed_floor: AtLeastOne = 200
    """Requests a gateway process always lets in at once (while its answer rate is unknown,
    or low), up to `max_in_flight`."""
    stall_seconds: Positive = 30.0
    """A consumer with lag and no progress for this long makes /health answer 503."""
    dedup_retention_hours: Positive = 14 * 24
    """De-duplication records (decided commands, applied events, command outcomes) are kept
    at least this long, and never less than the command topic keeps its records (for ever
    when the broker does not say)."""
    log_level: str = "INFO"
    """The lowest level logged: DEBUG, INFO, WARNING, ERROR or CRITICAL, in any case (stdlib
    loggers such as aiokafka's: WARNING at least)."""
    log_format: Literal["auto", "console", "json"] = "auto"
    """How logs are rendered on stderr: JSON lines, or for a person at a terminal; `auto`:
    console when stderr is a terminal, JSON lines otherwise."""
    run_dir: str = ".run"
    """Where `make run` keeps what it makes: the admin token, the ticket keys, the embedded
    broker's log, a project-local MariaDB or Redis, the dev mails."""
    replicas: str = ""
    """`role:count[,role:count…]`: how many processes of each role `make run` runs (see
    `infra.replicas`; 1 to 16; deciders, projectors, the bridge, the mailer and the
    gateway); unnamed roles run once. More than one gateway: HAProxy listens on `http_port`
    in front of them."""
    mail_dir: str = ""
    """Where the dev mail sink (`butterfly mailer`) writes the mails as .eml files; empty:
    `mail` in the run directory."""
    partner_port: Port = 8100
    """Where the lodging partner simulator (`butterfly partner-sim`) listens."""
    partner_latency_ms: float = Field(default=0.0, ge=0, le=60_000)
    """Added to every partner API request."""
    partner_error_rate: Rate = 0.0
    """Share of partner API requests answered 503 without taking effect."""
    partner_timeout_rate: Rate = 0.0
    """Share of partner API requests that take effect but are answered 504 only after
    `partner_timeout_seconds`."""
    partner_timeout_seconds: float = Field(default=10.0, ge=0, le=300)
    """How long the partner takes to answer 504 to a request picked by
    `partner_timeout_rate`."""
    partner_duplicate_rate: Rate = 0.0
    """Share of partner events published twice."""
    partner_reorder_rate: Rate = 0.0
    """Share of partner events held back `partner_reorder_delay_seconds`, so later ones
    overtake them."""
    partner_reorder_delay_seconds: float = Field(default=1.0, ge=0, le=3600)
    """How long a partner event picked by `partner_reorder_rate` is held back."""
    partner_outage_seconds: float = Field(default=0.0, ge=0, le=3600)
    """The partner API answers 503 to everything for this long after the simulator starts."""
    partner_seed: int = 0
    """Seeds the partner's misbehaviour, so a run with the same faults misbehaves the same."""
    partner_url: str = ""
    """Where the lodging process manager calls the partner; empty: the simulator on
    `partner_port` of `http_host`."""
    lodging_call_timeout_seconds: Positive = 5.0
    """A partner call not answered in this long counts as failed (and is retried with the
    same idempotency key)."""
    lodging_concurrency: AtLeastOne = 32
    """Partner calls one lodging process makes at once."""
    lodging_circuit_failures: AtLeastOne = 5
    """Consecutive failed partner calls that open the circuit breaker."""
    lodging_circuit_open_seconds: Positive = 5.0
    """How long an open circuit makes no calls before one probe call tries the partner."""
    lodging_give_up_seconds: Positive = 900.0
    """A step still failing after this long is parked for an admin to retry."""
    payment_sim_port: Port = 8200
    """Where the payment provider simulator (`butterfly payment-sim`) listens."""
    payment_provider_url: str = ""
    """Where the gateway and the order clock call the payment provider; empty: the
    simulator on `payment_sim_port` of `http_host`."""
    payment_webhook_secret: str = "whsec_butterfly_dev_only"  # noqa: S105 (dev default, documented)
    """The secret the provider signs its notifications with and the gateway checks them
    against. The default is for dev and tests only: set a real one wherever money moves."""
    payment_call_timeout_seconds: Positive = 5.0
    """A payment provider call not answered in this long counts as failed."""
    reporting_pseudonym_key: str = "butterfly-reporting-dev-only"
    """The HMAC key of the reporting database's account pseudonyms: with it an e-mail can be
    tested against a pseudonym, so keep it out of analysts' hands. Changing it changes every
    pseudonym (rebuild the reporting projection afterwards)."""
    analyst_password: str = "analyst-dev-only"  # noqa: S105 (dev default, documented)
    """The password the reporting migrations give the read-only `analyst` database user."""
    ticket_keys: str = ""
    """`kid:seed[,kid:seed…]`, the Ed25519 keys of tickets (`schemas.tickets`; a seed is 32
    bytes, base64url): the first signs, every one verifies (keep a retired key listed while
    its tickets are out). Empty: no tickets (the ticket and check-in routes answer 503, mails
    go without a ticket). `python -m schemas.tickets` makes a key; `make run` keeps one in
    `.run/ticket_keys`."""

    @field_validator("log_level")
    @classmethod
    def _log_level_known(cls, value: str) -> str:
        level = value.upper()
        if level not in logging.getLevelNamesMapping():
            raise ValueError("not a log level: DEBUG, INFO, WARNING, ERROR or CRITICAL")
        return level

    @field_validator("ticket_keys")
    @classmethod
    def _ticket_keys_read(cls, value: str) -> str:
        try:
            parse_keys(value)
        except ValueError as exc:
            raise ValueError(f"{TICKET_KEYS_VARIABLE}: {exc}") from None
        return value

    @field_validator("replicas")
    @classmethod
    def _replicas_read(cls, value: str) -> str:
        try:
            parse_replicas(value)
        except ValueError as exc:
            raise ValueError(f"{REPLICAS_VARIABLE}: {exc}") from None
        return value

    @property
    def ticket_signing_keys(self) -> tuple[SigningKey, ...]:
        """The ticket keys, the signing one first; empty when none are set."""
        return parse_keys(self.ticket_keys)

    @property
    def replica_counts(self) -> dict[str, int]:
        """The roles `replicas` names, with their counts."""
        return parse_replicas(self.replicas)

    @property
    def mail_folder(self) -> Path:
        return Path(self.mail_dir) if self.mail_dir else Path(self.run_dir) / "mail"

    @property
    def site_url(self) -> str:
        """Where people reach the gateway (links in mails): `public_url`, else the address
        it listens on."""
        return self.public_url.rstrip("/") or f"http://{self.http_host}:{self.http_port}"

    @property
    def partner_base_url(self) -> str:
        return self.partner_url.rstrip("/") or f"http://{self.http_host}:{self.partner_port}"

    @property
    def payment_provider_base_url(self) -> str:
        return (
            self.payment_provider_url.rstrip("/")
            or f"http://{self.http_host}:{self.payment_sim_port}"
        )

    def __init__(self, **values: Any) -> None:
        values.setdefault("_env_file", env_file_from_environment())
        super().__init__(**values)

    @property
    def http(self) -> HttpSettings:
        return HttpSettings(
            host=self.http_host,
            port=self.http_port,
            decision_wait_seconds=self.decision_wait_seconds,
        )

    @property
    def kafka(self) -> KafkaSettings:
        return KafkaSettings(
            bootstrap_servers=self.kafka_bootstrap_servers,
            topic_prefix=self.topic_prefix,
            partitions=self.partitions,
            embedded_port=self.embedded_kafka_port,
        )

    @property
    def db(self) -> DatabaseSettings:
        return DatabaseSettings(
            url=self.database_url,
            write_name=f"{self.db_prefix}_write",
            read_name=f"{self.db_prefix}_read",
            reporting_name=f"{self.db_prefix}_reporting",
        )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


SECRETS = frozenset(
    {
        "admin_token",
        "database_url",
        "redis_url",
        "payment_webhook_secret",
        "reporting_pseudonym_key",
        "analyst_password",
        "ticket_keys",
    }
)
"""Settings whose value is never printed (the URLs can carry a password)."""

DEFAULT_SHOWN_AS = {
    "kafka_bootstrap_servers": "the embedded broker",
    "redis_url": "`redis://127.0.0.1:6379/0`, or one `butterfly dev` starts",
    "admin_token": "made by `butterfly dev`, kept in `.run/admin_token`",
    "public_url": "the gateway's own address: `http://BUTTERFLY_HTTP_HOST:BUTTERFLY_HTTP_PORT`",
    "metrics_port": "`0` (none)",
    "session_idle_minutes": "`20160` (14 days)",
    "dedup_retention_hours": "`336` (14 days)",
    "replicas": "every role once",
    "mail_dir": "`.run/mail` (`mail` in `BUTTERFLY_RUN_DIR`)",
    "partner_url": "the simulator on `BUTTERFLY_PARTNER_PORT`",
    "payment_provider_url": "the simulator on `BUTTERFLY_PAYMENT_SIM_PORT`",
    "ticket_keys": "made by `butterfly dev`, kept in `.run/ticket_keys`",
}
"""The defaults a value cannot say: made elsewhere, or worth a word."""

_FIELD_REFERENCE = re.compile(r"`([a-z_]+)`")


def variable_of(field: str) -> str:
    """The environment variable a field is read from: its alias, else prefix and name."""
    alias = Settings.model_fields[field].validation_alias
    return alias if isinstance(alias, str) else f"{ENV_PREFIX}{field.upper()}"


def _shown(default: object) -> str:
    if isinstance(default, bool):
        return f"`{str(default).lower()}`"
    if isinstance(default, float):
        return f"`{default:g}`"
    if default == "":
        return "empty"
    return f"`{default}`"


def _described(text: str) -> str:
    """One line, with the fields it names spelled as their variables."""
    line = " ".join(text.split())
    return _FIELD_REFERENCE.sub(
        lambda match: (
            f"`{variable_of(match[1])}`" if match[1] in Settings.model_fields else match[0]
        ),
        line,
    )


def _row(*cells: str) -> str:
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


def settings_table() -> str:
    """README's settings table: one markdown row per environment variable."""
    rows = [
        "| setting | default | what it does |",
        "|---|---|---|",
        _row(f"`{ENV_FILE_VARIABLE}`", f"`{DEFAULT_ENV_FILE}`", ENV_FILE_DESCRIPTION),
    ]
    for name, field in Settings.model_fields.items():
        default = DEFAULT_SHOWN_AS.get(name) or _shown(field.default)
        rows.append(_row(f"`{variable_of(name)}`", default, _described(field.description or "")))
    return "\n".join(rows)


def refusals(error: ValidationError) -> list[str]:
    """What `Settings()` refused, one line per problem, naming the environment variable and
    what is wrong with it; the value too, unless it is a secret."""
    fields = {variable_of(name): name for name in Settings.model_fields}
    fields.update({name: name for name in Settings.model_fields})
    lines: list[str] = []
    for problem in error.errors():
        location = str(problem["loc"][0]) if problem["loc"] else ""
        message = str(problem["msg"]).removeprefix("Value error, ")
        field = fields.get(location)
        if field is None:
            lines.append(f"bad settings: {message}")
            continue
        variable = variable_of(field)
        message = message.removeprefix(f"{variable}: ")
        shown = "" if field in SECRETS else f"={problem.get('input')!r}"
        lines.append(f"bad setting {variable}{shown}: {message}")
    return lines


def settings_or_exit() -> Settings:
    """`get_settings()`, or, when the environment holds a setting it refuses, a line per
    problem on stderr and exit status 2, without a traceback: how every process starts."""
    try:
        return get_settings()
    except ValidationError as exc:
        for line in refusals(exc):
            print(f"butterfly: {line}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    print(settings_table())
