"""Typed settings, one class per concern, read from the environment (and `.env`).

The real environment wins over `.env`; `BUTTERFLY_ENV_FILE` names another env file, or none
when empty. `get_settings()` is cached; tests build their own `Settings(...)` and pass it to
the composition root instead.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import URL, make_url

from infra.replicas import VARIABLE as REPLICAS_VARIABLE
from infra.replicas import parse_replicas
from schemas.tickets import SigningKey, parse_keys

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


def env_file_from_environment() -> str | None:
    """The env file `Settings()` reads: `BUTTERFLY_ENV_FILE` (only from the real environment,
    never from an env file), `.env` when unset, none when set but empty."""
    return os.environ.get(ENV_FILE_VARIABLE, DEFAULT_ENV_FILE) or None


class Settings(BaseSettings):
    """Everything a Butterfly process needs to know, from `BUTTERFLY_*` and a few plain names.

    Values come from keyword arguments, then the environment, then an env file: the one
    `_env_file=` names (`None`: none), otherwise `BUTTERFLY_ENV_FILE` as the environment holds
    it when the object is built (default `.env` in the working directory; empty: none). Tests
    pass `_env_file=None`, and the processes they start get `BUTTERFLY_ENV_FILE=""`, so a
    developer's `.env` never reaches them.
    """

    model_config = SettingsConfigDict(
        env_prefix="BUTTERFLY_",
        env_file=None,
        env_file_encoding="utf-8",
        env_nested_delimiter="__",
        extra="ignore",
    )

    admin_token: str = Field(default="", min_length=0)
    http_port: int = 8000
    http_host: str = "127.0.0.1"
    metrics_port: int = 0
    """Where a role other than the gateway serves its Prometheus metrics (on `http_host`);
    0: nowhere. One port per process: roles sharing a host need one each. The gateway serves
    them at `GET /metrics` on its own port instead. Under `make run` it is the first of the
    ports its roles get, one each (base, base + 1, …)."""
    partitions: int = 6
    topic_replication: int = Field(default=1, ge=1, le=16)
    """Copies of each partition `butterfly topics` creates topics with: 1 on the embedded
    broker; 3 on a three-broker cluster with `min.insync.replicas=2` (deploy/)."""
    topic_prefix: str = "butterfly."
    db_prefix: str = "butterfly"
    kafka_bootstrap_servers: str = Field(default="", validation_alias="KAFKA_BOOTSTRAP_SERVERS")
    database_url: str = Field(
        default="mysql+asyncmy://root@127.0.0.1:3306/", validation_alias="DATABASE_URL"
    )
    embedded_kafka_port: int = 19092
    redis_url: str = Field(default="", validation_alias="REDIS_URL")
    """The Redis every gateway shares for sessions and rate limits; empty: find or start one."""
    redis_namespace: str = "butterfly"
    """Prefix of every Redis key, so test runs and `make run` never share keys."""
    session_idle_minutes: float = 60 * 24 * 14
    """A session not used for this long ends; each use starts the count again."""
    login_attempts_per_account: int = 5
    """Failed logins one account may take per `login_window_seconds` before it must wait."""
    login_attempts_per_address: int = 20
    """Failed logins one client address may make per `login_window_seconds`, across accounts."""
    login_window_seconds: float = 300
    decision_wait_seconds: float = 5.0
    max_in_flight: int = 4096
    """Requests a gateway process serves at once; past that it answers 503 at once."""
    shed_latency_ms: float = 200.0
    """The latency a gateway process keeps its answers to: it lets in at most as many
    requests at once as it answers in this time, and answers 503 past that."""
    shed_floor: int = 200
    """Requests a gateway process always lets in at once (while its answer rate is unknown,
    or low), up to `max_in_flight`."""
    stall_seconds: float = 30.0
    """A consumer with lag and no progress for this long makes /health answer 503."""
    dedup_retention_hours: float = 14 * 24
    """De-duplication records are kept at least this long, and never less than the command
    topic keeps its records."""
    log_level: str = "INFO"
    log_format: Literal["auto", "console", "json"] = "auto"
    """How logs are rendered on stderr: JSON lines, or for a person at a terminal; `auto`:
    console when stderr is a terminal, JSON lines otherwise."""
    run_dir: str = ".run"
    mail_dir: str = ""
    """Where the dev mail sink (`butterfly mailer`) writes the mails as .eml files; empty:
    `mail` in the run directory."""
    partner_port: int = 8100
    """Where the lodging partner simulator (`butterfly partner-sim`) listens."""
    partner_latency_ms: float = 0.0
    """Added to every partner API request."""
    partner_error_rate: float = 0.0
    """Share of partner API requests answered 503 without taking effect."""
    partner_timeout_rate: float = 0.0
    """Share of partner API requests that take effect but are answered 504 only after
    `partner_timeout_seconds`."""
    partner_timeout_seconds: float = 10.0
    partner_duplicate_rate: float = 0.0
    """Share of partner events published twice."""
    partner_reorder_rate: float = 0.0
    """Share of partner events held back `partner_reorder_delay_seconds`, so later ones
    overtake them."""
    partner_reorder_delay_seconds: float = 1.0
    partner_outage_seconds: float = 0.0
    """The partner API answers 503 to everything for this long after the simulator starts."""
    partner_seed: int = 0
    """Seeds the partner's misbehaviour, so a run with the same faults misbehaves the same."""
    partner_url: str = ""
    """Where the lodging process manager calls the partner; empty: the simulator on
    `partner_port` of `http_host`."""
    lodging_call_timeout_seconds: float = 5.0
    """A partner call not answered in this long counts as failed (and is retried with the
    same idempotency key)."""
    lodging_concurrency: int = 32
    """Partner calls one lodging process makes at once."""
    lodging_circuit_failures: int = 5
    """Consecutive failed partner calls that open the circuit breaker."""
    lodging_circuit_open_seconds: float = 5.0
    """How long an open circuit makes no calls before one probe call tries the partner."""
    lodging_give_up_seconds: float = 900.0
    """A step still failing after this long is parked for an admin to retry."""
    public_url: str = ""
    """The gateway's address as outside systems reach it (where the payment provider sends
    its notifications); empty: the address the gateway process listens on."""
    payment_sim_port: int = 8200
    """Where the payment provider simulator (`butterfly payment-sim`) listens."""
    payment_provider_url: str = ""
    """Where the gateway and the order clock call the payment provider; empty: the
    simulator on `payment_sim_port` of `http_host`."""
    payment_webhook_secret: str = "whsec_butterfly_dev_only"  # noqa: S105 (dev default, documented)
    """The secret the provider signs its notifications with and the gateway checks them
    against. The default is for dev and tests only: set a real one wherever money moves."""
    reporting_pseudonym_key: str = "butterfly-reporting-dev-only"
    """The HMAC key of the reporting database's account pseudonyms: with it an e-mail can be
    tested against a pseudonym, so keep it out of analysts' hands. Changing it changes every
    pseudonym (rebuild the reporting projection afterwards)."""
    analyst_password: str = "analyst-dev-only"  # noqa: S105 (dev default, documented)
    """The password the reporting migrations give the read-only `analyst` database user."""
    payment_call_timeout_seconds: float = 5.0
    """A payment provider call not answered in this long counts as failed."""
    ticket_keys: str = ""
    """`kid:seed[,kid:seed…]`, the Ed25519 keys of tickets (`schemas.tickets`): the first
    signs, every one verifies (keep a retired key listed while its tickets are out). Empty:
    no tickets (the ticket and check-in routes answer 503, mails go without a ticket).
    `python -m schemas.tickets` makes a key; `make run` keeps one in `.run/ticket_keys`."""

    @field_validator("metrics_port")
    @classmethod
    def _metrics_port_is_a_port(cls, value: int) -> int:
        if not 0 <= value <= MAX_PORT:
            raise ValueError(f"BUTTERFLY_METRICS_PORT: {value} is not a port (0 to {MAX_PORT})")
        return value

    @field_validator("ticket_keys")
    @classmethod
    def _ticket_keys_read(cls, value: str) -> str:
        try:
            parse_keys(value)
        except ValueError as exc:
            raise ValueError(f"{TICKET_KEYS_VARIABLE}: {exc}") from None
        return value

    @property
    def ticket_signing_keys(self) -> tuple[SigningKey, ...]:
        """The ticket keys, the signing one first; empty when none are set."""
        return parse_keys(self.ticket_keys)

    replicas: str = ""
    """`role:count[,role:count…]`: how many processes of each role `make run` runs (see
    `infra.replicas`); unnamed roles run once. More than one gateway: HAProxy listens on
    `http_port` in front of them."""

    @field_validator("replicas")
    @classmethod
    def _replicas_read(cls, value: str) -> str:
        try:
            parse_replicas(value)
        except ValueError as exc:
            raise ValueError(f"{REPLICAS_VARIABLE}: {exc}") from None
        return value

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
