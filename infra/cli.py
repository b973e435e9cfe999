"""`butterfly`: one command, a subcommand per role and per operation."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import uuid
from collections.abc import Coroutine, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog
import uvloop

from infra.bootstrap import DECIDERS, PROJECTORS
from infra.logging import configure_logging
from infra.metrics import serve_metrics
from infra.runtime import tune_garbage_collection
from infra.settings import Settings, settings_or_exit
from projections.replay import REPLAYABLE

if TYPE_CHECKING:
    from infra.pipeline.health import PartitionProgress
    from producers.dead_letters import DeadLetterEntry

log = structlog.get_logger("butterfly")


KEEP_ALIVE_MARGIN_SECONDS = 10
"""Idle connections stay open this much longer than a decision wait: a client's other
connections sit idle while one request waits for its decision, and with uvicorn's 5 s
default the server closed them just as the client reused them ("server disconnected")."""


def _gateway(settings: Settings, args: argparse.Namespace) -> None:
    import uvicorn

    if not settings.admin_token:
        sys.exit("butterfly gateway: set BUTTERFLY_ADMIN_TOKEN (admin calls need it).")
    uvicorn.run(
        "infra.asgi:app",
        host=args.host or settings.http_host,
        port=args.port or settings.http_port,
        workers=args.workers,
        access_log=False,
        log_level="warning",
        log_config=None,  # uvicorn's own lines go through infra.logging's renderer
        timeout_graceful_shutdown=10,
        timeout_keep_alive=int(settings.decision_wait_seconds) + KEEP_ALIVE_MARGIN_SECONDS,
        loop="uvloop",
        http="httptools",
        backlog=4096,
    )


def _run_role(settings: Settings, main: Coroutine[Any, Any, None]) -> None:
    """Long-running roles run on uvloop: their time goes to sockets (Kafka, MariaDB), where
    uvloop's event loop costs a fraction of asyncio's; see infra.runtime for their garbage
    collection. Each serves its metrics on `BUTTERFLY_METRICS_PORT` when that is set."""
    tune_garbage_collection()
    try:
        serve_metrics(settings.metrics_port, settings.http_host)
    except OSError as exc:
        main.close()
        sys.exit(
            f"butterfly: cannot serve metrics on {settings.http_host}:{settings.metrics_port} "
            f"(BUTTERFLY_METRICS_PORT): {exc.strerror or exc}"
        )
    if settings.metrics_port:
        log.info("metrics_serving", host=settings.http_host, port=settings.metrics_port)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main)


def _decider(settings: Settings, args: argparse.Namespace) -> None:
    from infra.bootstrap import build_decider, serve

    _run_role(settings, serve(lambda: build_decider(settings, args.name)))


def _projector(settings: Settings, args: argparse.Namespace) -> None:
    from infra.bootstrap import build_projector, serve

    _run_role(settings, serve(lambda: build_projector(settings, args.name)))


def _relay(settings: Settings, args: argparse.Namespace) -> None:
    from infra.bootstrap import relay_role, run_until_signalled

    async def main() -> None:
        async with relay_role(settings) as relay:
            await run_until_signalled(relay.run, relay.stop)

    _run_role(settings, main())


def _mailer(settings: Settings, args: argparse.Namespace) -> None:
    from infra.bootstrap import mailer_role, run_until_signalled

    async def main() -> None:
        async with mailer_role(settings) as mailer:
            await run_until_signalled(mailer.run, mailer.stop)

    _run_role(settings, main())


def _bridge(settings: Settings, args: argparse.Namespace) -> None:
    from infra.bootstrap import build_bridge, serve

    _run_role(settings, serve(lambda: build_bridge(settings)))


def _lodging_reconcile(settings: Settings, args: argparse.Namespace) -> None:
    from infra.lodging_ops import reconcile

    try:
        convention_id = uuid.UUID(args.convention)
    except ValueError:
        sys.exit(f"butterfly lodging reconcile: {args.convention!r} is not a convention id")
    report = asyncio.run(reconcile(settings, convention_id, repair=not args.dry_run))
    print(report)


def _partner_sim(settings: Settings, args: argparse.Namespace) -> None:
    from infra.simulators.lodging.api import run_partner_sim

    run_partner_sim(settings, args.port or settings.partner_port)


def _payment_sim(settings: Settings, args: argparse.Namespace) -> None:
    from infra.simulators.payments.api import run_payment_sim

    run_payment_sim(settings, args.port or settings.payment_sim_port)


def _clock(settings: Settings, args: argparse.Namespace) -> None:
    from infra.bootstrap import clock_role, run_until_signalled

    async def main() -> None:
        async with clock_role(settings) as clock:
            await run_until_signalled(clock.run, clock.stop)

    _run_role(settings, main())


def _migrate(settings: Settings, args: argparse.Namespace) -> None:
    from infra.migrate import migrate

    asyncio.run(migrate(settings))
    log.info("migrated", databases=settings.db.names())


def _topics(settings: Settings, args: argparse.Namespace) -> None:
    from infra.bootstrap import topics_of
    from producers.kafka import ensure_topics

    topics = topics_of(settings)
    created = asyncio.run(
        ensure_topics(
            settings.kafka_bootstrap_servers,
            topics=topics.all(),
            kept_forever=topics.event_topics(),
            partitions=settings.partitions,
            replication_factor=settings.topic_replication,
        )
    )
    log.info("topics_ready", topics=topics.all(), created=created)


def _rebuild(settings: Settings, args: argparse.Namespace) -> None:
    from projections.progress import Progress
    from projections.rebuild import rebuild_website, reset_projection

    if args.name == "write":
        _rebuild_write(settings, args)
        return
    if args.name == "website":
        report = asyncio.run(rebuild_website(settings, progress=Progress("rebuild website ")))
        log.info(
            "projection_rebuilt",
            projection=args.name,
            records=report.records,
            events=report.events,
            rows=report.rows,
            set_aside=report.set_aside,
            seconds=round(report.seconds, 2),
            events_per_second=round(report.events_per_second),
            next_step="start `butterfly projector website`: it resumes after the rebuild",
        )
        return
    asyncio.run(reset_projection(settings, args.name))
    log.info(
        "projection_reset",
        projection=args.name,
        next_step=f"start `butterfly projector {args.name}` to replay every event",
    )


def _rebuild_write(settings: Settings, args: argparse.Namespace) -> None:
    """Compare the decider tables with the state folded from the event topics; exits 1 on
    any difference (nothing is written)."""
    from infra.rebuild_write import rebuild_write

    report = asyncio.run(rebuild_write(settings))
    if args.json:
        print(json.dumps(report.as_json(), indent=2))
    else:
        for line in report.lines():
            print(line)
    if not report.ok:
        sys.exit(1)


def _restore(settings: Settings, args: argparse.Namespace) -> None:
    from infra.restore import RestoreRefused, restore
    from projections.progress import Progress

    label = "restore (dry run) " if args.dry_run else "restore "
    try:
        report = asyncio.run(restore(settings, dry_run=args.dry_run, progress=Progress(label)))
    except RestoreRefused as exc:
        sys.exit(f"butterfly restore: {exc}")
    print(report.render())


def _replay(settings: Settings, args: argparse.Namespace) -> None:
    from projections.progress import Progress
    from projections.replay import replay

    report = asyncio.run(
        replay(
            settings,
            args.name,
            progress=Progress(f"replay {args.name} "),
            force=args.force,
            drop_old=args.drop_old,
        )
    )
    print(
        f"{'table':<28} {'live rows':>10} {'live checksum':>14} {'green rows':>10} "
        f"{'green checksum':>14}  equal"
    )
    for check in report.checks:
        print(
            f"{check.table:<28} {check.live_rows:>10} {check.live_checksum!s:>14} "
            f"{check.green_rows:>10} {check.green_checksum!s:>14}  "
            f"{'yes' if check.equal else 'NO'}"
        )
    if not report.comparable:
        print(
            "the live projector was behind the replay: the tables were not compared at the "
            "same positions"
        )
    if report.swapped:
        kept = f"; the old tables are in {report.old}" if report.old else ""
        print(f"swapped in the replayed {args.name} tables{kept}")
        return
    sys.exit(
        f"not swapped: the replayed tables do not match the live ones (kept in {report.green}; "
        "drop that database when done, or replay with --force)"
    )


def _dev(settings: Settings, args: argparse.Namespace) -> None:
    from infra.dev import run_dev

    asyncio.run(run_dev(settings, fresh=args.fresh))


def _status(settings: Settings, args: argparse.Namespace) -> None:
    from infra.bootstrap import build_consumer_watch
    from infra.db import make_engine

    async def read() -> list[PartitionProgress]:
        watch = build_consumer_watch(
            settings, make_engine(settings.db.read_url, pool_size=1), observe=False
        )
        try:
            return await asyncio.wait_for(watch.progress(), timeout=15)
        finally:
            await watch.close()

    try:
        progress = asyncio.run(read())
    except Exception as exc:
        sys.exit(f"butterfly status: cannot read consumer progress: {exc!r}")
    if args.json:
        for p in progress:
            print(json.dumps(p.as_json()))
    else:
        print(_status_table(progress))
    stalled = [p for p in progress if p.stalled]
    if stalled:
        sys.exit(
            f"{len(stalled)} partition(s) stalled: lag and no progress for "
            f"{settings.stall_seconds:g} s (see the role's log; `butterfly dlq list`)"
        )


def _status_table(progress: list[PartitionProgress]) -> str:
    now = datetime.now(UTC).replace(tzinfo=None)
    lines = [f"{'GROUP':<40} {'PARTITION':<44} {'LAG':>7} {'LAST PROGRESS':>14} {'DEAD':>5}  STATE"]
    for p in progress:
        age = (
            "never"
            if p.progress_at is None
            else f"{(now - p.progress_at).total_seconds():.0f} s ago"
        )
        state = "STALLED" if p.stalled else ("behind" if p.lag else "ok")
        lines.append(
            f"{p.group:<40} {p.topic + '[' + str(p.partition) + ']':<44} {p.lag:>7} "
            f"{age:>14} {p.dead_letters:>5}  {state}"
        )
    return "\n".join(lines)


def _dead_letters(settings: Settings, action: str) -> tuple[str, list[DeadLetterEntry]]:
    from infra.bootstrap import topics_of
    from producers.dead_letters import read_dead_letters

    topic = topics_of(settings).dead_letter
    try:
        return topic, asyncio.run(read_dead_letters(settings.kafka_bootstrap_servers, topic))
    except TimeoutError as exc:
        sys.exit(f"butterfly dlq {action}: {exc}")


def _dlq_list(settings: Settings, args: argparse.Namespace) -> None:
    topic, entries = _dead_letters(settings, "list")
    for entry in entries:
        if args.json:
            print(json.dumps(_dead_letter_json(entry), ensure_ascii=False))
        else:
            print(_dead_letter_line(entry))
    if not args.json:
        print(f"{len(entries)} dead letter(s) in {topic}")


def _dead_letter_line(entry: DeadLetterEntry) -> str:
    error = " ".join((entry.error or "").split())
    if len(error) > 120:
        error = error[:119] + "…"
    source = f"{entry.source_topic or '?'}[{_or_q(entry.source_partition)}]"
    return (
        f"{entry.id}  {source}@{_or_q(entry.source_offset)}  {entry.consumer_group or '?'}  "
        f"{entry.message_type or '?'}  {entry.error_class or '?'}: {error}"
    )


def _or_q(value: int | None) -> str:
    return "?" if value is None else str(value)


def _dead_letter_json(entry: DeadLetterEntry) -> dict[str, object]:
    return {
        "id": entry.id,
        "dead_letter_topic": entry.dead_letter_topic,
        "timestamp": entry.timestamp.isoformat(),
        "source_topic": entry.source_topic,
        "source_partition": entry.source_partition,
        "source_offset": entry.source_offset,
        "consumer_group": entry.consumer_group,
        "type": entry.message_type,
        "error_class": entry.error_class,
        "error": entry.error,
        "key": entry.key,
        "value": entry.value.decode(errors="replace"),
        "headers": {name: value.decode(errors="replace") for name, value in entry.headers},
    }


def _dlq_replay(settings: Settings, args: argparse.Namespace) -> None:
    from producers.dead_letters import replay

    topic, entries = _dead_letters(settings, "replay")
    if args.all:
        chosen = [entry for entry in entries if entry.source_topic]
        skipped = len(entries) - len(chosen)
        if skipped:
            print(f"skipping {skipped} dead letter(s) that name no source topic")
    else:
        by_id = {entry.id: entry for entry in entries}
        unknown = [i for i in args.ids if i not in by_id]
        if unknown:
            sys.exit(
                f"butterfly dlq replay: no dead letter {', '.join(unknown)} in {topic} "
                "(`butterfly dlq list` shows the ids)"
            )
        chosen = [by_id[i] for i in dict.fromkeys(args.ids)]
    try:
        replayed = asyncio.run(
            replay(settings.kafka_bootstrap_servers, chosen, idempotence=settings.kafka_idempotence)
        )
    except ValueError as exc:
        sys.exit(f"butterfly dlq replay: {exc}")
    print(f"replayed {replayed} dead letter(s) from {topic}")


def _trace(settings: Settings, args: argparse.Namespace) -> None:
    from infra.trace import as_json, collect_trace, render_text

    try:
        correlation_id = str(uuid.UUID(args.correlation_id))
    except ValueError:
        sys.exit(f"butterfly trace: {args.correlation_id!r} is not a correlation id (a UUID)")
    log_file = Path(args.logs) if args.logs else None
    if log_file is not None and not log_file.is_file():
        sys.exit(f"butterfly trace: no log file {log_file}")
    try:
        trace = asyncio.run(collect_trace(settings, correlation_id, log_file=log_file))
    except TimeoutError:
        sys.exit("butterfly trace: could not read the command topics in time")
    if not trace.items:
        sys.exit(
            f"butterfly trace: nothing carries correlation id {correlation_id} (no command "
            "on the command topics, no event in the archive"
            + (", no line in the log file)" if log_file else ")")
        )
    if args.json:
        for item in as_json(trace):
            print(json.dumps(item, ensure_ascii=False, default=str))
    else:
        print(render_text(trace))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="butterfly", description="Butterfly convention registration: roles and operations."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("dev", help="start services, migrate, create topics and run every role")
    p.add_argument(
        "--fresh",
        action="store_true",
        help="drop the dev databases first (done anyway with a new embedded broker when "
        "there is no event archive to refill it from)",
    )
    p.set_defaults(func=_dev)

    p = sub.add_parser("gateway", help="serve the HTTP API")
    p.add_argument("--host", default=None)
    p.add_argument("--port", type=int, default=None)
    p.add_argument("--workers", type=int, default=1, help="gateway processes sharing the port")
    p.set_defaults(func=_gateway)

    p = sub.add_parser("decider", help="run a decider (domain rules) as a consumer-group member")
    p.add_argument("name", choices=DECIDERS)
    p.set_defaults(func=_decider)

    p = sub.add_parser("projector", help="run a projector building read models")
    p.add_argument("name", choices=PROJECTORS)
    p.set_defaults(func=_projector)

    p = sub.add_parser("relay", help="republish outbox events whose publisher died")
    p.set_defaults(func=_relay)

    p = sub.add_parser(
        "mailer", help="deliver the mails decisions send (dev: .eml files in BUTTERFLY_MAIL_DIR)"
    )
    p.set_defaults(func=_mailer)

    p = sub.add_parser(
        "bridge", help="translate the lodging partner's events into lodging commands"
    )
    p.set_defaults(func=_bridge)

    p = sub.add_parser("lodging", help="lodging operations")
    lodging = p.add_subparsers(dest="lodging_command", required=True, metavar="ACTION")
    q = lodging.add_parser(
        "reconcile",
        help="compare a convention's bookings with the partner's, report every drift and "
        "repair it (partner-side orphans cancelled; our side corrected through the decider)",
    )
    q.add_argument("convention", metavar="CONVENTION", help="the convention id")
    q.add_argument("--dry-run", action="store_true", help="report only, change nothing")
    q.set_defaults(func=_lodging_reconcile)

    p = sub.add_parser(
        "partner-sim",
        help="run the lodging partner simulator (a housing bureau with its own API, "
        "database and topic)",
    )
    p.add_argument("--port", type=int, default=None, help="default: BUTTERFLY_PARTNER_PORT")
    p.set_defaults(func=_partner_sim)

    p = sub.add_parser(
        "payment-sim",
        help="run the payment provider simulator (a card processor with its own API, "
        "database and signed notifications)",
    )
    p.add_argument("--port", type=int, default=None, help="default: BUTTERFLY_PAYMENT_SIM_PORT")
    p.set_defaults(func=_payment_sim)

    p = sub.add_parser(
        "clock",
        help="expire unpaid orders and waitlist offers whose time ran out, and ask the "
        "payment provider for the refunds decided",
    )
    p.set_defaults(func=_clock)

    p = sub.add_parser("migrate", help="create the databases and apply migrations")
    p.set_defaults(func=_migrate)

    p = sub.add_parser("topics", help="create missing topics")
    p.set_defaults(func=_topics)

    p = sub.add_parser(
        "rebuild",
        help="rebuild a projection from the topics (stop that projector first): website "
        "is rebuilt here and now; the others are emptied, and their projector replays every "
        "event; `write` folds the deciders' state from their event topics and compares it "
        "with the decider tables (exits 1 on any difference)",
    )
    p.add_argument("name", choices=(*PROJECTORS, "write"))
    p.add_argument("--json", action="store_true", help="write: the comparison as JSON")
    p.set_defaults(func=_rebuild)

    p = sub.add_parser(
        "restore",
        help="refill a wiped broker from the event archive (refused when the event topics "
        "hold records), then move every consumer group's stored positions onto the refilled "
        "topics (command topics start again at 0)",
    )
    p.add_argument("--dry-run", action="store_true", help="say what it would do, change nothing")
    p.set_defaults(func=_restore)

    p = sub.add_parser(
        "replay",
        help="rebuild a projection from the topics into fresh tables while its projector "
        "runs, compare every table's rows and checksum with the live one, and swap them in",
    )
    p.add_argument("name", choices=REPLAYABLE)
    p.add_argument(
        "--force",
        action="store_true",
        help="swap even if a table differs (a live projector behind the replay is fenced out "
        "of the partitions it was behind on until its group rebalances)",
    )
    p.add_argument(
        "--drop-old", action="store_true", help="drop the replaced tables instead of keeping them"
    )
    p.set_defaults(func=_replay)

    p = sub.add_parser(
        "status",
        help="lag, last progress and dead letters per consumer group and partition "
        "(exits 1 if a partition is stalled)",
    )
    p.add_argument("--json", action="store_true", help="one JSON object per partition")
    p.set_defaults(func=_status)

    p = sub.add_parser("dlq", help="list or replay the records consumers dead-lettered")
    dlq = p.add_subparsers(dest="dlq_command", required=True, metavar="ACTION")
    q = dlq.add_parser("list", help="one line per dead letter: id, source, group, type, error")
    q.add_argument("--json", action="store_true", help="print JSON lines instead")
    q.set_defaults(func=_dlq_list)
    q = dlq.add_parser(
        "replay", help="send dead letters back to the topic they came from, in their order"
    )
    chosen = q.add_mutually_exclusive_group(required=True)
    chosen.add_argument(
        "ids", nargs="*", default=[], metavar="ID", help="PARTITION:OFFSET, as `list` shows"
    )
    chosen.add_argument("--all", action="store_true", help="every dead letter")
    q.set_defaults(func=_dlq_replay)

    p = sub.add_parser(
        "trace",
        help="everything one request caused, in causal order with timings: its commands "
        "(and dead letters) from the broker, its events from the archive, its log lines",
    )
    p.add_argument("correlation_id", metavar="CORRELATION_ID")
    p.add_argument("--logs", metavar="FILE", help="a JSON-lines log file to take lines from")
    p.add_argument("--json", action="store_true", help="one JSON object per item, in order")
    p.set_defaults(func=_trace)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    settings = settings_or_exit()
    if args.command != "dev" and not settings.kafka_bootstrap_servers:
        embedded = f"127.0.0.1:{settings.embedded_kafka_port}"
        settings = settings.model_copy(update={"kafka_bootstrap_servers": embedded})
    configure_logging(
        args.command
        if args.command != "decider" and args.command != "projector"
        else f"{args.command}.{args.name}",
        settings.log_level,
        settings.log_format,
    )
    args.func(settings, args)


if __name__ == "__main__":
    main()
