"""Checking Kafka records against the AsyncAPI document: the record's channel is the one
whose address is its topic, its message the one of that channel whose `type` header it
carries, and its value, headers and key must each match that message's schemas."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from schemas.envelope import HEADER_TYPE

DOCUMENT_URI = "urn:butterfly:asyncapi"


class Contract:
    """The document's messages by topic, each with validators for value, headers and key."""

    def __init__(self, document: dict[str, Any]) -> None:
        registry: Registry[Any] = Registry().with_resource(
            DOCUMENT_URI, Resource.from_contents(document, default_specification=DRAFT202012)
        )
        self.by_topic: dict[str, list[tuple[str, dict[str, Any]]]] = {}
        messages = document["components"]["messages"]
        for channel in document["channels"].values():
            names = [ref["$ref"].rsplit("/", 1)[-1] for ref in channel["messages"].values()]
            self.by_topic[channel["address"]] = [(name, messages[name]) for name in names]

        def validator(pointer: str) -> Draft202012Validator:
            return Draft202012Validator(
                {"$ref": f"{DOCUMENT_URI}#{pointer}"},
                registry=registry,
                format_checker=FormatChecker(),
            )

        self._validators = {
            name: (
                validator(f"/components/messages/{name}/payload"),
                validator(f"/components/messages/{name}/headers"),
                validator(f"/components/messages/{name}/bindings/kafka/key"),
            )
            for name in messages
        }

    def message_of(
        self, topic: str, headers: Sequence[tuple[str, bytes]] | None
    ) -> tuple[str | None, list[str]]:
        """The name of the message a record of `topic` with `headers` is, or why none is."""
        candidates = self.by_topic.get(topic)
        if candidates is None:
            return None, [f"{topic} is no channel of the document"]
        sent_as = _header_map(headers).get(HEADER_TYPE)
        if len(candidates) == 1 and "const" not in (
            candidates[0][1]["headers"]["properties"].get(HEADER_TYPE, {})
        ):
            return candidates[0][0], []
        for name, message in candidates:
            if message["headers"]["properties"][HEADER_TYPE]["const"] == sent_as:
                return name, []
        return None, [f"{topic} has no message with the type header {sent_as!r}"]

    def problems(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Sequence[tuple[str, bytes]] | None,
    ) -> list[str]:
        """Every way a record fails to match its message; empty if it matches."""
        name, problems = self.message_of(topic, headers)
        if name is None:
            return problems
        payload_check, headers_check, key_check = self._validators[name]
        where = f"{topic} {name}"
        found: list[str] = []
        found += [
            f"{where} header: {e.message}" for e in headers_check.iter_errors(_header_map(headers))
        ]
        found += [f"{where} key: {e.message}" for e in key_check.iter_errors(_text(key) or "")]
        if name == "DeadLetter":
            return found
        try:
            body = json.loads(value or b"")
        except ValueError as exc:
            return [*found, f"{where} value is not JSON: {exc}"]
        found += [
            f"{where} value at {'/'.join(str(p) for p in e.absolute_path)}: {e.message}"
            for e in payload_check.iter_errors(body)
        ]
        return found


def _header_map(headers: Sequence[tuple[str, bytes]] | None) -> dict[str, str]:
    return {name: value.decode(errors="replace") for name, value in headers or ()}


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode(errors="replace")
