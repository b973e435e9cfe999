"""Prometheus metrics: every metric Butterfly exports, and how a role serves them.

The gateway answers `GET /metrics` on its own HTTP port (`gateway.metrics`); every other
long-running role serves the same text format on `BUTTERFLY_METRICS_PORT` when it is set
(`serve_metrics`, called once as the role starts). Names start with `butterfly_`; a metric
whose code runs in several roles (the consumer loop every decider, projector and the bridge
run on) carries a `role` label. Label values are always from a bounded set: a route template,
never a raw path; a message type, a reason from an enum, a topic and partition.

The default registry also carries prometheus_client's process and Python collectors (CPU,
memory, open files, garbage collection).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import REGISTRY

LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)
"""Seconds, from a millisecond (a batch of one record, a read from memory) to the longest a
request may wait for its decision and then some."""

HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED_ROUTE = "unmatched"
"""The route label of a request no route matched (404, 405): any path a client makes up
lands in this one series."""

# gateway -------------------------------------------------------------------------------------

HTTP_REQUESTS = Counter(
    "butterfly_http_requests_total",
    "HTTP requests answered by the gateway, by method, route template and status.",
    ("method", "route", "status"),
)
HTTP_REQUEST_SECONDS = Histogram(
    "butterfly_http_request_duration_seconds",
    "Time from a request's arrival to the end of its answer, by method, route template and status.",
    ("method", "route", "status"),
    buckets=LATENCY_BUCKETS,
)
HTTP_IN_FLIGHT = Gauge(
    "butterfly_http_requests_in_flight", "Requests the gateway process is answering now."
)
HTTP_SHED = Counter(
    "butterfly_http_requests_shed_total",
    "Requests the load shedder answered 503 at once, by route template.",
    ("route",),
)
DECISION_WAITS = Counter(
    "butterfly_decision_waits_total",
    "Writes that waited for their decision, by command type and outcome (accepted, rejected, "
    "or timeout: answered 202, still pending).",
    ("command", "outcome"),
)
DECISION_WAIT_SECONDS = Histogram(
    "butterfly_decision_wait_seconds",
    "How long a write waited for its decision, by outcome.",
    ("outcome",),
    buckets=LATENCY_BUCKETS,
)

# the exactly-once consumer loop (deciders, projectors, bridge) -------------------------------

CONSUMER_RECORDS = Counter(
    "butterfly_consumer_records_total",
    "Records a consumer applied (or set aside) and moved past, committed, by topic and partition.",
    ("role", "topic", "partition"),
)
CONSUMER_BATCHES = Counter(
    "butterfly_consumer_batches_total",
    "Batches (one partition's records of one poll) by outcome: committed; split (the batch "
    "failed and was retried one record at a time); fenced (another member holds the "
    "partition now).",
    ("role", "topic", "outcome"),
)
CONSUMER_BATCH_SECONDS = Histogram(
    "butterfly_consumer_batch_seconds",
    "Time to handle one batch: its transaction, retries and publishing.",
    ("role", "topic"),
    buckets=LATENCY_BUCKETS,
)
CONSUMER_DEAD_LETTERS = Counter(
    "butterfly_consumer_dead_letters_total",
    "Records a consumer sent to the dead-letter topic, by the topic they came from.",
    ("role", "topic"),
)
CONSUMER_LAG = Gauge(
    "butterfly_consumer_lag",
    "Records a partition holds beyond this member's position (high watermark minus "
    "position), for the partitions this member owns; updated per batch and every second.",
    ("role", "topic", "partition"),
)
OUTBOX_RELAYED = Counter(
    "butterfly_outbox_relayed_total",
    "Outbox events published by the relay (or by a decider taking a partition over) because "
    "the process that decided them did not, by outbox table.",
    ("outbox",),
)

# the registration decider ----------------------------------------------------------------------

REGISTRATION_DECISIONS = Counter(
    "butterfly_registration_decisions_total",
    "Commands the registration decider decided, committed, by command type and outcome "
    "(accepted, rejected, unchanged: nothing to do) with the rejection's reason.",
    ("command", "outcome", "reason"),
)

# lodging -------------------------------------------------------------------------------------

PARTNER_CIRCUIT_STATE = Gauge(
    "butterfly_lodging_partner_circuit_state",
    "The lodging partner's circuit breaker: 0 closed, 1 half-open, 2 open.",
)
PARTNER_CALL_SECONDS = Histogram(
    "butterfly_lodging_partner_call_seconds",
    "Lodging partner API calls, by operation and result (ok, refused: a 4xx, unavailable: "
    "no usable answer).",
    ("operation", "result"),
    buckets=LATENCY_BUCKETS,
)
PARTNER_CALL_FAILURES = Counter(
    "butterfly_lodging_partner_call_failures_total",
    "Lodging partner API calls that failed, by operation and kind (unavailable counts "
    "against the circuit breaker, refused does not).",
    ("operation", "kind"),
)

# mailer and order clock ------------------------------------------------------------------------

MAILS_DELIVERED = Counter("butterfly_mails_delivered_total", "Mails the mailer delivered.")
EXPIRIES_SENT = Counter(
    "butterfly_clock_expiries_sent_total",
    "Expiry commands the order clock sent, by command type (ExpireOrder, ExpireOffer).",
    ("command",),
)
REFUND_REQUESTS = Counter(
    "butterfly_clock_refund_requests_total",
    "Refunds the order clock asked the payment provider for, by result: paid, pending (the "
    "provider took it and will notify), unavailable, refused, failed.",
    ("result",),
)


def http_method(method: str) -> str:
    """A request's method as a label: one of the methods Butterfly answers, else `other`
    (a client may send any token as a method)."""
    upper = method.upper()
    return upper if upper in HTTP_METHODS else "other"


def route_label(path_template: str | None) -> str:
    """The route template a request matched (`/api/v1/registrations/{registration_id}`),
    or `unmatched`: never the raw path, whose ids would make a series per registration."""
    return path_template or UNMATCHED_ROUTE


def exposition(accept: str | None) -> tuple[bytes, str]:
    """The registry in the format the scraper asks for (Prometheus text by default, or
    OpenMetrics), with its content type: what `start_http_server` answers too."""
    encoder, content_type = choose_encoder(accept or "")
    return encoder(REGISTRY), content_type


def serve_metrics(port: int, host: str) -> None:
    """Serve the registry on `host:port` from a thread of its own (0: not at all). Raises
    OSError when the address cannot be bound."""
    if port:
        start_http_server(port, addr=host or "127.0.0.1")
