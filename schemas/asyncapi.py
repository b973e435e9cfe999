"""The event contract as an AsyncAPI 3.0 document, generated from the message schemas.

Every topic is a channel. A message of Butterfly's own topics is the envelope with its
`payload` replaced by the schema of its type, the `type` and `schema_version` fixed, and the
Kafka headers and key it travels with; the partner's topic is described in the partner's own
format; the dead-letter topic carries any record byte for byte, with the headers that say
where it came from and why it was set aside.

The document is generated, never edited: `python -m schemas.asyncapi` rewrites
`docs/asyncapi.json`, the gateway serves the same document at `/schema/asyncapi.json`, and a
test checks the published messages against it.
"""

from __future__ import annotations

import inspect
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from schemas.accounts import ACCOUNT_COMMANDS, ACCOUNT_EVENTS, AccountMessage
from schemas.checkin import CHECKIN_COMMANDS, CHECKIN_EVENTS
from schemas.envelope import (
    HEADER_CONSUMER_GROUP,
    HEADER_CORRELATION_ID,
    HEADER_ERROR,
    HEADER_ERROR_CLASS,
    HEADER_SCHEMA_VERSION,
    HEADER_SOURCE_OFFSET,
    HEADER_SOURCE_PARTITION,
    HEADER_SOURCE_TOPIC,
    HEADER_TYPE,
    Envelope,
)
from schemas.lodging import LODGING_COMMANDS, LODGING_EVENTS
from schemas.orders import ORDER_COMMANDS, ORDER_EVENTS
from schemas.partner import DATA_OF, PartnerEvent
from schemas.registration import COMMANDS, EVENTS, Message
from schemas.registry import UPCASTERS
from schemas.topics import Topics

ASYNCAPI_VERSION = "3.0.0"
KAFKA_BINDING_VERSION = "0.5.0"
DOCUMENT_PATH = Path(__file__).resolve().parent.parent / "docs" / "asyncapi.json"
SCHEMAS = "#/components/schemas/"

ContractMessage = type[Message] | type[AccountMessage]


# --- the document ---------------------------------------------------------------------------


def channel_messages(topics: Topics) -> dict[str, tuple[str, tuple[ContractMessage, ...]]]:
    """Channel name -> (topic, the message types Butterfly publishes to it)."""
    return {
        "registrationCommands": (
            topics.registration_commands,
            COMMANDS + ORDER_COMMANDS + CHECKIN_COMMANDS,
        ),
        "registrationEvents": (
            topics.registration_events,
            EVENTS + ORDER_EVENTS + CHECKIN_EVENTS,
        ),
        "lodgingCommands": (topics.lodging_commands, LODGING_COMMANDS),
        "lodgingEvents": (topics.lodging_events, LODGING_EVENTS),
        "accountCommands": (topics.account_commands, ACCOUNT_COMMANDS),
        "accountEvents": (topics.account_events, ACCOUNT_EVENTS),
    }


def asyncapi_document(topic_prefix: str = Topics.prefix) -> dict[str, Any]:
    """The AsyncAPI document of every topic under `topic_prefix`."""
    topics = Topics(topic_prefix)
    envelope_channels = channel_messages(topics)
    contract: list[type[BaseModel]] = [Envelope, PartnerEvent, *DATA_OF.values()]
    for _, classes in envelope_channels.values():
        contract.extend(classes)
    refs, definitions = models_json_schema(
        [(cls, "validation") for cls in dict.fromkeys(contract)],
        ref_template=SCHEMAS + "{model}",
    )

    def ref(cls: type[BaseModel]) -> str:
        return str(refs[(cls, "validation")]["$ref"])

    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for name, (topic, classes) in envelope_channels.items():
        key = _email_key_schema() if name.startswith("account") else _uuid_key_schema()
        for cls in classes:
            messages[cls.message_type] = _envelope_message(cls, ref(Envelope), ref(cls), key)
        _add_channel(channels, operations, name, topic, [c.message_type for c in classes])
    for type_name, data in DATA_OF.items():
        messages[_partner_message_name(type_name)] = _partner_message(
            type_name, ref(PartnerEvent), ref(data)
        )
    _add_channel(
        channels,
        operations,
        "partnerLodgingEvents",
        topics.partner_lodging_events,
        [_partner_message_name(t) for t in DATA_OF],
        action="receive",
        description="The lodging partner's own feed, in its own format; the partner bridge "
        "turns each event into a lodging command.",
    )
    messages["DeadLetter"] = _dead_letter_message()
    _add_channel(
        channels,
        operations,
        "deadLetter",
        topics.dead_letter,
        ["DeadLetter"],
        description="Records a consumer could not handle, set aside byte for byte with "
        "the headers that say where they came from; `butterfly dlq replay` sends "
        "them back to their topic.",
    )
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "Butterfly events",
            "version": "1.0.0",
            "description": "Every Kafka topic of Butterfly. A message is a JSON envelope "
            "(id, type, schema version, time, correlation and causation ids, key, actor) "
            "around its payload; the `type`, `correlation_id` and `schema_version` headers "
            "repeat the envelope's so a record can be routed without decoding it. A newer "
            "version of a message comes with an upcaster: readers still accept the older "
            "versions each message lists.",
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": definitions["$defs"]},
    }


def _add_channel(
    channels: dict[str, Any],
    operations: dict[str, Any],
    name: str,
    topic: str,
    message_names: Sequence[str],
    *,
    action: Literal["send", "receive"] = "send",
    description: str | None = None,
) -> None:
    channel: dict[str, Any] = {
        "address": topic,
        "messages": {m: {"$ref": f"#/components/messages/{m}"} for m in message_names},
    }
    if description is not None:
        channel["description"] = description
    channels[name] = channel
    operations[f"{action}{name[0].upper()}{name[1:]}"] = {
        "action": action,
        "channel": {"$ref": f"#/channels/{name}"},
        "messages": [{"$ref": f"#/channels/{name}/messages/{m}"} for m in message_names],
    }


def _envelope_message(
    cls: ContractMessage, envelope_ref: str, payload_ref: str, key: dict[str, Any]
) -> dict[str, Any]:
    version = cls.schema_version
    message: dict[str, Any] = {
        "name": cls.message_type,
        "title": cls.message_type,
        "contentType": "application/json",
        "headers": {
            "type": "object",
            "properties": {
                HEADER_TYPE: {"const": cls.message_type},
                HEADER_CORRELATION_ID: {"type": "string", "format": "uuid"},
                HEADER_SCHEMA_VERSION: {"const": str(version)},
            },
            "required": [HEADER_TYPE, HEADER_CORRELATION_ID, HEADER_SCHEMA_VERSION],
        },
        "payload": {
            "allOf": [{"$ref": envelope_ref}],
            "properties": {
                "type": {"const": cls.message_type},
                "schema_version": {"const": version},
                "payload": {"$ref": payload_ref},
            },
        },
        "bindings": {"kafka": {"key": key, "bindingVersion": KAFKA_BINDING_VERSION}},
        "x-schema-version": version,
    }
    summary = _summary(cls)
    if summary:
        message["summary"] = summary
    older = [v for v in range(1, version) if (cls.message_type, v) in UPCASTERS]
    if older:
        message["x-upcast-from-versions"] = older
    return message


def _partner_message_name(type_name: str) -> str:
    return "Partner" + "".join(part.capitalize() for part in type_name.split("."))


def _partner_message(type_name: str, event_ref: str, data_ref: str) -> dict[str, Any]:
    return {
        "name": _partner_message_name(type_name),
        "title": type_name,
        "contentType": "application/json",
        "headers": {
            "type": "object",
            "properties": {HEADER_TYPE: {"const": type_name}},
        },
        "payload": {
            "allOf": [{"$ref": event_ref}],
            "properties": {"type": {"const": type_name}, "data": {"$ref": data_ref}},
        },
        "bindings": {
            "kafka": {
                "key": {
                    "type": "string",
                    "format": "uuid",
                    "description": "The convention id",
                },
                "bindingVersion": KAFKA_BINDING_VERSION,
            }
        },
    }


def _dead_letter_message() -> dict[str, Any]:
    text = {"type": "string"}
    number = {"type": "string", "pattern": "^[0-9]+$"}
    return {
        "name": "DeadLetter",
        "title": "A record set aside",
        "summary": "The original record's value and headers, byte for byte, followed by "
        "the consumer's own headers.",
        "headers": {
            "type": "object",
            "properties": {
                HEADER_ERROR: {**text, "maxLength": 2000},
                HEADER_ERROR_CLASS: text,
                HEADER_SOURCE_TOPIC: text,
                HEADER_SOURCE_PARTITION: number,
                HEADER_SOURCE_OFFSET: number,
                HEADER_CONSUMER_GROUP: text,
            },
            "required": [
                HEADER_ERROR,
                HEADER_ERROR_CLASS,
                HEADER_SOURCE_TOPIC,
                HEADER_SOURCE_PARTITION,
                HEADER_SOURCE_OFFSET,
                HEADER_CONSUMER_GROUP,
            ],
        },
        "payload": {"description": "Whatever the original record held, JSON or not."},
        "bindings": {
            "kafka": {
                "key": {
                    "type": "string",
                    "description": "The original record's key, or `<topic>-<partition>` "
                    "for a record that had none",
                },
                "bindingVersion": KAFKA_BINDING_VERSION,
            }
        },
    }


def _uuid_key_schema() -> dict[str, Any]:
    return {
        "type": "string",
        "format": "uuid",
        "description": "The convention id: one convention's messages share a partition.",
    }


def _email_key_schema() -> dict[str, Any]:
    return {
        "type": "string",
        "minLength": 1,
        "description": "The e-mail identity key: one address's messages share a partition.",
    }


def _summary(cls: type[BaseModel]) -> str:
    """The first paragraph of a class's own docstring, on one line."""
    doc = cls.__dict__.get("__doc__")
    if not doc:
        return ""
    return " ".join(inspect.cleandoc(doc).split("\n\n")[0].split())


def render(document: dict[str, Any]) -> str:
    """The document as the committed file holds it: stable key order, one trailing newline."""
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Write the document of the default topics to `docs/asyncapi.json` (or the path given)."""
    args = list(sys.argv[1:] if argv is None else argv)
    path = Path(args[0]) if args else DOCUMENT_PATH
    path.write_text(render(asyncapi_document()), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
