"""Topic names and message keys: what lands on which partition."""

from __future__ import annotations

import uuid
from dataclasses import dataclass


@dataclass(frozen=True)
class Topics:
    """Every topic name, under one prefix so test runs and environments never collide."""

    prefix: str = "butterfly."

    @property
    def registration_commands(self) -> str:
        return f"{self.prefix}registration.commands"

    @property
    def registration_events(self) -> str:
        return f"{self.prefix}registration.events"

    @property
    def lodging_commands(self) -> str:
        return f"{self.prefix}lodging.commands"

    @property
    def lodging_events(self) -> str:
        return f"{self.prefix}lodging.events"

    @property
    def partner_lodging_events(self) -> str:
        """The lodging partner's own feed, in its own format (the bridge translates it)."""
        return f"{self.prefix}partner.lodging.events"

    @property
    def account_commands(self) -> str:
        return f"{self.prefix}accounts.commands"

    @property
    def account_events(self) -> str:
        return f"{self.prefix}accounts.events"

    @property
    def dead_letter(self) -> str:
        return f"{self.prefix}dead-letter"

    def all(self) -> tuple[str, ...]:
        return (
            self.registration_commands,
            self.registration_events,
            self.lodging_commands,
            self.lodging_events,
            self.partner_lodging_events,
            self.account_commands,
            self.account_events,
            self.dead_letter,
        )

    def event_topics(self) -> tuple[str, ...]:
        """Topics that are the system of record: kept forever."""
        return (self.registration_events, self.lodging_events, self.account_events)


def registration_key(convention_id: uuid.UUID) -> str:
    """Everything about one convention's registrations lands on one partition."""
    return str(convention_id)


def lodging_key(convention_id: uuid.UUID) -> str:
    """A convention's lodging lands on the partition its registrations land on."""
    return str(convention_id)


def account_key(email_key: str) -> str:
    """Everything about one account lands on the partition of its e-mail identity."""
    return email_key
