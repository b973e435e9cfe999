"""Reading a stock key back: the waitlist events name what they hold or free by
`schemas.catalogue.stock_key`, and a projector counts it against the badge type, the option
or the option's variant it names."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Stock:
    kind: str
    """`badge` or `option`; anything else counts against nothing."""
    code: str
    variant: str | None = None


def parse_stock_key(key: str) -> Stock:
    """The inverse of `schemas.catalogue.stock_key`: `badge:FULL`, `option:TSHIRT`,
    `option:TSHIRT/L`. A variant is only read for an option (codes hold no `/`)."""
    kind, _, rest = key.partition(":")
    if kind == "option":
        code, _, variant = rest.partition("/")
        return Stock(kind, code, variant or None)
    return Stock(kind, rest)
