"""Lodging operations run from the command line: `butterfly lodging reconcile CONVENTION`.

The reconciliation is the process manager's own (`consumers.lodging.reconcile`), run here
and now: orphans are cancelled at the partner directly, and the corrections to our side are
published as a `RecordReconciliation` command, so the lodging decider applies them like any
other decision (and the admin API shows the report).
"""

from __future__ import annotations

import uuid

from consumers.lodging.circuit import CircuitBreaker
from consumers.lodging.partner import PartnerClient
from consumers.lodging.reconcile import Reconciler, Reconciliation
from infra.bootstrap import producer_of, topics_of
from infra.db import make_engine
from infra.settings import Settings
from producers.kafka import OutgoingRecord, publish_all
from producers.outbox import utcnow
from schemas.lodging import RecordReconciliation, reply_command_id
from schemas.registry import wrap
from schemas.topics import lodging_key

ACTOR = "cli:lodging-reconcile"


async def reconcile(settings: Settings, convention_id: uuid.UUID, *, repair: bool) -> str:
    """Reconcile one convention; returns the report to print."""
    engine = make_engine(settings.db.write_url, pool_size=1)
    partner = PartnerClient(
        settings.partner_base_url,
        settings.lodging_call_timeout_seconds,
        CircuitBreaker(settings.lodging_circuit_failures, settings.lodging_circuit_open_seconds),
    )
    await partner.start()
    try:
        found = await Reconciler(engine, partner).reconcile(convention_id, repair=repair)
    finally:
        await partner.close()
        await engine.dispose()
    reconciliation_id = uuid.uuid4()
    if repair:
        await _record(settings, convention_id, reconciliation_id, found)
    return report(convention_id, reconciliation_id if repair else None, found)


async def _record(
    settings: Settings,
    convention_id: uuid.UUID,
    reconciliation_id: uuid.UUID,
    found: Reconciliation,
) -> None:
    command = RecordReconciliation(
        convention_id=convention_id,
        reconciliation_id=reconciliation_id,
        drifts=found.drifts,
        corrections=found.corrections,
    )
    envelope = wrap(
        command,
        message_id=reply_command_id(reconciliation_id, "reconcile"),
        occurred_at=utcnow(),
        correlation_id=reconciliation_id,
        causation_id=None,
        key=lodging_key(convention_id),
        actor=ACTOR,
    )
    producer = producer_of(settings)
    await producer.start()
    try:
        await publish_all(
            producer, [OutgoingRecord.of(topics_of(settings).lodging_commands, envelope)]
        )
    finally:
        await producer.stop()


def report(
    convention_id: uuid.UUID, reconciliation_id: uuid.UUID | None, found: Reconciliation
) -> str:
    lines = [f"convention {convention_id}: {len(found.drifts)} drift(s)"]
    for drift in found.drifts:
        subject = drift.request_id or drift.ack or "-"
        lines.append(f"  {drift.kind.value:<22} {subject}")
        lines.append(f"    ours:    {drift.ours}")
        lines.append(f"    partner: {drift.theirs}")
        lines.append(f"    repair:  {drift.repair}")
    if reconciliation_id is None:
        lines.append("dry run: nothing was changed")
    else:
        lines.append(
            f"{len(found.corrections)} correction(s) sent to the lodging decider as "
            f"reconciliation {reconciliation_id}"
        )
    return "\n".join(lines)
