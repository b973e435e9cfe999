"""How many processes of each role `make run` runs: `BUTTERFLY_REPLICAS`, e.g.
`gateway:2,decider.registration:2,projector.website:2`.

A role that consumes through a consumer group splits the partitions among its processes (the
broker assigns them, and the stored epochs fence out a member that lost one); gateways hold
nothing of their own (sessions and login counters are in Redis) and share the public port
through HAProxy. The mailer claims its rows of the mail outbox with `SELECT … FOR UPDATE
SKIP LOCKED`, so several mailers share the mails between them. The other roles that poll a
table rather than a group would each do all the work, so they run once.
"""

from __future__ import annotations

from collections.abc import Mapping

VARIABLE = "BUTTERFLY_REPLICAS"
MAX_REPLICAS = 16

SCALABLE = (
    "gateway",
    "decider.registration",
    "decider.lodging",
    "decider.accounts",
    "projector.website",
    "projector.reporting",
    "projector.lodging",
    "projector.accounts",
    "projector.orders",
    "bridge",
    "mailer",
)
"""Roles that may run as several processes."""

SINGLE = {
    "clock": "the order clock reads every due order at each tick: two clocks would be safe "
    "(expiry ids derive from the order, refunds carry their id to the provider) but would "
    "both do all of it, sending every expiry and refund call twice",
    "relay": "the outbox relay polls whole outbox tables: a second one would publish the same "
    "rows again",
    "partner-sim": "the lodging partner simulator stands for one outside system",
    "payment-sim": "the payment provider simulator stands for one outside system",
}
"""Roles that run once, and why."""


def parse_replicas(text: str) -> dict[str, int]:
    """`"gateway:2, decider.registration:3"` -> `{"gateway": 2, "decider.registration": 3}`;
    empty: `{}`. ValueError names what is wrong: an unknown role, a role that runs once, a
    count that is not a whole number from 1 to `MAX_REPLICAS`, a role named twice."""
    counts: dict[str, int] = {}
    for entry in text.split(","):
        entry = entry.strip()
        if not entry:
            continue
        name, colon, count = (part.strip() for part in entry.partition(":"))
        if not colon:
            raise ValueError(f"{entry!r} is not role:count (e.g. gateway:2)")
        if name in counts:
            raise ValueError(f"{name} is named twice")
        try:
            number = int(count)
        except ValueError:
            raise ValueError(f"{entry!r}: the count must be a whole number") from None
        counts[name] = number
    check_replicas(counts)
    return counts


def check_replicas(counts: Mapping[str, int]) -> None:
    """ValueError unless every role in `counts` may run that many processes."""
    for name, count in counts.items():
        if name in SINGLE:
            raise ValueError(f"{name} runs once: {SINGLE[name]}")
        if name not in SCALABLE:
            raise ValueError(f"unknown role {name!r}; roles with replicas: {', '.join(SCALABLE)}")
        if not 1 <= count <= MAX_REPLICAS:
            raise ValueError(f"{name}:{count}: a count is from 1 to {MAX_REPLICAS}")


def replica_names(name: str, count: int) -> list[str]:
    """The process names of a role: its own name when it runs once, `name#1`… otherwise."""
    return [name] if count == 1 else [f"{name}#{index}" for index in range(1, count + 1)]
