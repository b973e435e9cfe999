"""The rush: more registrations than seats, some re-using an e-mail, some retried with the
same Idempotency-Key; no seat may be sold twice and none lost. Sent by rawhttp (wrk cannot
repeat an e-mail or a key), against Butterfly and, for comparison, against the rival."""

from __future__ import annotations

import argparse
import asyncio
import random
import secrets
import threading
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tests.perf.common import (
    DECIDED,
    errors,
    latency_summary,
    line,
    mismatch,
    ms,
    percentile,
    section,
)
from tests.perf.loadgen import Answer, Shot, client_cpu, run_clients, split
from tests.perf.stack import CpuMeter, cpu_report
from tests.perf.targets import Target


def rush_shots(
    n: int, repeat_share: float, retry_share: float, rng: random.Random, tag: str
) -> tuple[list[Shot], int]:
    """N shots: distinct registrations (some re-using an earlier e-mail) plus retries of
    earlier ones with the same Idempotency-Key and body, each placed after its original.
    Returns the shots and how many distinct registrations they hold."""
    retries = round(n * retry_share)
    originals = n - retries
    emails: list[str] = []
    for i in range(originals):
        if i and rng.random() < repeat_share:
            emails.append(emails[rng.randrange(i)])
        else:
            emails.append(f"rush-{tag}-{i}@bench.example")
    order = list(range(originals))
    for _ in range(retries):
        original = rng.randrange(originals)
        order.insert(rng.randint(order.index(original) + 1, len(order)), original)
    return [
        Shot(i, emails[o], f"Attendee {o}", f"rush-{tag}-{o}") for i, o in enumerate(order)
    ], originals


@dataclass(frozen=True)
class RushFigures:
    decisions_per_s: float
    p99: float
    mismatches: int


@dataclass(frozen=True)
class Rush:
    """The rush's requests, generated once so Butterfly and the rival get the same load."""

    shots: list[Shot]
    distinct: int
    tag: str


def make_rush(args: argparse.Namespace) -> Rush:
    tag = secrets.token_hex(3)
    rng = random.Random(args.seed)
    shots, distinct = rush_shots(args.requests, args.repeat_share, args.retry_share, rng, tag)
    return Rush(shots, distinct, tag)


async def rush_phase(
    target: Target,
    rush: Rush,
    args: argparse.Namespace,
    abort: threading.Event,
    title: str,
    about: str = "",
) -> RushFigures:
    shots, distinct = rush.shots, rush.distinct
    emails = len({shot.email for shot in shots})
    expected_sold = min(args.quota, emails)
    section(
        f"{title}: {len(shots)} POSTs = {distinct} registrations ({distinct - emails} "
        f"re-using an e-mail) + {len(shots) - distinct} retries with the same "
        f"Idempotency-Key; Q={args.quota}, C={args.connections}, "
        f"rawhttp in {args.clients} process(es)"
    )
    if about:
        line("server", about)
    convention_id = await target.create(f"Rush {rush.tag}", args.quota)
    path = f"/api/v1/conventions/{convention_id}/registrations"
    jobs = split(target.base_url, path, shots, args.clients, args.connections, 0)
    meter = CpuMeter.start(target.processes())
    run = await asyncio.to_thread(run_clients, jobs, abort)
    spent = meter.spent()
    answers = run.answers
    first_sent = min(a.sent for a in answers)
    last_answer = max(a.answered for a in answers)
    settled_at = await target.settle(convention_id, answers)
    decided_at = max([a.answered for a in answers if a.status in DECIDED] + [settled_at or 0])
    rows, counts = await target.listing(convention_id)
    decided = sum(1 for row in rows if row["status"] != "pending")
    statuses = Counter(a.status for a in answers)
    wall = last_answer - first_sent
    line("answered", f"{len(answers)} requests in {wall:.2f} s = {len(answers) / wall:.0f} req/s")
    how = (
        "every POST answered with its decision"
        if settled_at is None
        else "until the last 202 was seen decided"
    )
    decisions_per_s = decided / (decided_at - first_sent)
    line(
        "decided",
        f"{decided} registrations in {decided_at - first_sent:.2f} s = "
        f"{decisions_per_s:.0f} decisions/s ({how})",
    )
    latencies = [a.answered - a.sent for a in answers]
    line("latency", latency_summary(latencies))
    for status in sorted(statuses):
        by_status = [a.answered - a.sent for a in answers if a.status == status]
        line(f"  {status or 'no answer'}", f"{len(by_status)}: {latency_summary(by_status)}")
    reasons = Counter(a.detail for a in answers if a.status == 409)
    other = Counter(f"{a.status} {a.detail}" for a in answers if a.status not in (201, 202, 409))
    line(
        "answers",
        f"201 confirmed {statuses[201]}, 409 rejected {statuses[409]} "
        f"({', '.join(f'{r} {n}' for r, n in reasons.most_common())}), "
        f"202 pending {statuses[202]}, other {sum(other.values())}",
    )
    for text, count in other.most_common(5):
        line("  other", f"{count} x {text}")
    client_cpu(run)
    cpu_report(spent, ("rawhttp", run.cpu), decided)
    mismatches = rush_checks(counts, args.quota, expected_sold, shots, answers, rows)
    p99 = percentile(sorted(latencies), 99) if latencies else 0.0
    return RushFigures(decisions_per_s, p99, mismatches)


def report_unanswered(answers: Sequence[Answer], shots: Sequence[Shot], listed: int) -> int:
    """Print the registrations none of whose requests got an HTTP answer; returns how many."""
    key_of = {shot.index: shot.key for shot in shots}
    reached = {key_of[a.index] for a in answers if a.status in (201, 202, 409)}
    unanswered = {key_of[a.index] for a in answers} - reached
    if unanswered:
        errors(
            f"{len(unanswered)} registrations got no answer at all (see 'no answer' above); "
            f"{max(listed - len(reached), 0)} of them reached the read model anyway"
        )
    return len(unanswered)


def rush_checks(
    counts: Mapping[str, int],
    quota: int,
    expected_sold: int,
    shots: Sequence[Shot],
    answers: Sequence[Answer],
    rows: Sequence[dict[str, Any]],
) -> int:
    """Print the rush's consistency checks; returns how many failed."""
    by_status = Counter(str(row["status"]) for row in rows)
    confirmed_emails = [
        str(row["email"]).casefold() for row in rows if row["status"] == "confirmed"
    ]
    confirmed_ids = {str(row["registration_id"]) for row in rows if row["status"] == "confirmed"}
    key_of = {shot.index: shot.key for shot in shots}
    per_key: dict[str, set[tuple[int, str]]] = {}
    for a in answers:
        if a.status in DECIDED:
            per_key.setdefault(key_of[a.index], set()).add((a.status, a.registration_id))
    answered_confirmed = {a.registration_id for a in answers if a.status == 201}
    unanswered = report_unanswered(answers, shots, len(rows))
    checks = [
        ("confirmed rows (admin listing)", by_status["confirmed"], expected_sold),
        ("sold", counts["sold"], expected_sold),
        ("remaining", counts["remaining"], quota - expected_sold),
        ("pending rows", by_status["pending"], 0),
        (
            "e-mails holding two confirmed seats",
            len(confirmed_emails) - len(set(confirmed_emails)),
            0,
        ),
        (
            "registrations answered 201 but not confirmed",
            len(answered_confirmed - confirmed_ids),
            0,
        ),
        (
            "retries answered unlike their original",
            sum(1 for outcomes in per_key.values() if len(outcomes) > 1),
            0,
        ),
        ("registrations listed", len(rows), len({shot.key for shot in shots}) - unanswered),
    ]
    for name, got, expected in checks:
        if got == expected:
            line("check", f"{name}: {got} (ok)")
        else:
            mismatch(f"{name}: {got}, expected {expected}")
    if quota != expected_sold:
        line("note", f"only {expected_sold} distinct e-mails for {quota} seats")
    return sum(1 for _, got, expected in checks if got != expected)


def compare(ours: RushFigures, theirs: RushFigures) -> None:
    section("Butterfly against the rival, same rush")
    line(
        "ratio",
        f"Butterfly / rival: {ours.decisions_per_s / max(theirs.decisions_per_s, 1e-9):.2f}\u00d7 "
        f"decisions/s ({ours.decisions_per_s:.0f} / {theirs.decisions_per_s:.0f}), "
        f"p99 {ours.p99 / max(theirs.p99, 1e-9):.2f}\u00d7 ({ms(ours.p99)} / {ms(theirs.p99)})",
    )
