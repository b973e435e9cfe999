"""How `butterfly trace` arranges what it found: a tree by causation, log lines under the
message they name, other requests' lines and non-JSON lines left out."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from infra.trace import Trace, TraceItem, arrange, as_json, log_lines, render_text

T0 = datetime(2027, 1, 1, 12, 0, tzinfo=UTC)
CID = "5c3a1f4e-0000-4000-8000-000000000001"


def at(ms: int) -> datetime:
    return T0 + timedelta(milliseconds=ms)


def test_a_process_manager_chain_reads_as_a_tree_in_causal_order() -> None:
    command = TraceItem(at(0), "command", "RequestLodging", "l.commands", 0, 4, "c1")
    held = TraceItem(at(30), "event", "RoomHeld", "l.events", 0, 9, "e2", "c1")
    asked = TraceItem(at(20), "event", "LodgingRequested", "l.events", 0, 8, "e1", "c1")
    follow_up = TraceItem(at(50), "command", "ConfirmBooking", "l.commands", 0, 5, "c2", "e2")
    unrelated_log = TraceItem(at(5), "log", "request_received", details={"level": "info"})

    arranged = arrange([follow_up, held, unrelated_log, asked, command])

    assert [(i.type, i.depth) for i in arranged] == [
        ("RequestLodging", 0),
        ("LodgingRequested", 1),
        ("RoomHeld", 1),
        ("ConfirmBooking", 2),
        ("request_received", 0),
    ]


def test_log_lines_keep_only_this_request_and_hang_under_the_message_they_name() -> None:
    ours = {
        "timestamp": at(10).isoformat(),
        "level": "info",
        "role": "decider.registration",
        "message": "command_decided",
        "correlation_id": CID,
        "command_id": "c1",
    }
    theirs = {**ours, "correlation_id": "another"}
    text = "\n".join(
        [json.dumps(ours), json.dumps(theirs), f"12:00:00 [info] console line {CID}", "{"]
    )

    [line] = log_lines(text, CID)
    assert (line.kind, line.type, line.causation_id, line.at) == (
        "log",
        "command_decided",
        "c1",
        at(10),
    )
    command = TraceItem(at(0), "command", "RegisterAttendee", "r.commands", 1, 2, "c1")
    trace = Trace(CID, arrange([line, command]))
    assert [i.depth for i in trace.items] == [0, 1]

    text_out = render_text(trace)
    assert "1 command(s), 0 event(s), 0 dead letter(s), 1 log line(s)" in text_out
    assert "+0.010s" in text_out
    assert "command_id=c1" in text_out
    assert [i["offset_seconds"] for i in as_json(trace)] == [0.0, 0.01]
