"""The order read models in `butterfly_read`, beside the website's, in a metadata of their
own so the orders projector can be rebuilt (its tables emptied and refilled from
`registration.events`) without touching the others. Its consumer positions go to the
website's `consumer_positions` table under a group of its own.

Money is integer minor units in the convention's currency. Lists (badge types an option is
for, what a promo code applies to) are JSON text, only ever read whole.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
)
from sqlalchemy.dialects.mysql import DATETIME

metadata = MetaData()

order_policies = Table(
    "order_policies",
    metadata,
    Column("convention_id", String(36), primary_key=True),
    Column("currency", String(3), nullable=False),
    Column("hold_minutes", Integer, nullable=False),
    Column("offer_minutes", Integer, nullable=False),
    Column("refund_percent", Integer, nullable=False),
)

price_tiers = Table(
    "price_tiers",
    metadata,
    Column("convention_id", String(36), nullable=False),
    Column("badge_type", String(40), nullable=False),
    Column("position", Integer, nullable=False),
    Column("name", String(200), nullable=False),
    Column("price_cents", BigInteger, nullable=False),
    Column("until", DATETIME(fsp=6), nullable=True),
    Column("size", Integer, nullable=True),
    Column("sold", Integer, nullable=False),
    PrimaryKeyConstraint("convention_id", "badge_type", "position"),
)
"""A badge type's tiers in order; `sold` counts the seats held or paid at each (an expired
or cancelled one gives its place back). `until` is naive UTC."""

options = Table(
    "options",
    metadata,
    Column("convention_id", String(36), nullable=False),
    Column("code", String(40), nullable=False),
    Column("name", String(200), nullable=False),
    Column("price_cents", BigInteger, nullable=False),
    Column("quota", Integer, nullable=True),
    Column("taken", Integer, nullable=False),
    Column("max_per_registration", Integer, nullable=False),
    Column("badge_types", Text, nullable=False),
    Column("position", Integer, nullable=False),
    PrimaryKeyConstraint("convention_id", "code"),
)
"""`taken` counts units held by unpaid orders, paid, or offered to the waitlist."""

option_variants = Table(
    "option_variants",
    metadata,
    Column("convention_id", String(36), nullable=False),
    Column("option_code", String(40), nullable=False),
    Column("code", String(40), nullable=False),
    Column("name", String(200), nullable=False),
    Column("quota", Integer, nullable=True),
    Column("taken", Integer, nullable=False),
    Column("position", Integer, nullable=False),
    PrimaryKeyConstraint("convention_id", "option_code", "code"),
)

promo_codes = Table(
    "promo_codes",
    metadata,
    Column("convention_id", String(36), nullable=False),
    Column("code", String(40), nullable=False),
    Column("percent_off", Integer, nullable=True),
    Column("amount_off_cents", BigInteger, nullable=True),
    Column("badge_types", Text, nullable=False),
    Column("options", Text, nullable=False),
    Column("max_uses", Integer, nullable=True),
    Column("uses", Integer, nullable=False),
    Column("valid_from", DATETIME(fsp=6), nullable=True),
    Column("valid_until", DATETIME(fsp=6), nullable=True),
    Column("created_at", DATETIME(fsp=6), nullable=False),
    PrimaryKeyConstraint("convention_id", "code"),
)
"""`uses` counts orders holding the code, unpaid or paid (an expired one gives it back)."""

orders = Table(
    "orders",
    metadata,
    Column("order_id", String(36), primary_key=True),
    Column("registration_id", String(36), nullable=False),
    Column("convention_id", String(36), nullable=False),
    Column("status", String(16), nullable=False),
    Column("first", Boolean, nullable=False),
    Column("subtotal_cents", BigInteger, nullable=False),
    Column("discount_cents", BigInteger, nullable=False),
    Column("total_cents", BigInteger, nullable=False),
    Column("paid_cents", BigInteger, nullable=False),
    Column("refunded_cents", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("promo_code", String(40), nullable=True),
    Column("payment_id", String(64), nullable=True),
    Column("hold_until", DATETIME(fsp=6), nullable=True),
    Column("created_at", DATETIME(fsp=6), nullable=False),
    Column("updated_at", DATETIME(fsp=6), nullable=False),
    Index("ix_orders_registration", "registration_id", "created_at"),
    Index("ix_orders_convention", "convention_id", "status", "created_at"),
)
"""`status`: pending_payment, paid, expired or cancelled. `first` marks the order that
placed the registration; later ones added options. `refunded_cents` counts refunds issued."""

order_lines = Table(
    "order_lines",
    metadata,
    Column("order_id", String(36), nullable=False),
    Column("line_no", Integer, nullable=False),
    Column("registration_id", String(36), nullable=False),
    Column("convention_id", String(36), nullable=False),
    Column("kind", String(8), nullable=False),
    Column("code", String(40), nullable=False),
    Column("variant", String(40), nullable=True),
    Column("name", String(200), nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("removed", Integer, nullable=False),
    Column("unit_price_cents", BigInteger, nullable=False),
    Column("tier", String(200), nullable=True),
    Column("discount_cents", BigInteger, nullable=False),
    Column("total_cents", BigInteger, nullable=False),
    PrimaryKeyConstraint("order_id", "line_no"),
    Index("ix_order_lines_registration", "registration_id"),
)
"""Each line as priced; `removed` counts the option units given back since."""

payments = Table(
    "payments",
    metadata,
    Column("event_id", String(36), primary_key=True),
    Column("payment_id", String(64), nullable=False),
    Column("order_id", String(36), nullable=False),
    Column("registration_id", String(36), nullable=False),
    Column("convention_id", String(36), nullable=False),
    Column("status", String(16), nullable=False),
    Column("amount_cents", BigInteger, nullable=True),
    Column("currency", String(3), nullable=True),
    Column("recorded_at", DATETIME(fsp=6), nullable=False),
    Index("ix_payments_registration", "registration_id", "recorded_at"),
)
"""Every payment outcome applied: `paid` or `declined` (a decline does not say the amount:
NULL). A late or duplicate payment shows as its refund; an order a promo code brought to
nothing is paid without a payment."""

refunds = Table(
    "refunds",
    metadata,
    Column("refund_id", String(36), primary_key=True),
    Column("registration_id", String(36), nullable=False),
    Column("order_id", String(36), nullable=False),
    Column("convention_id", String(36), nullable=False),
    Column("payment_id", String(64), nullable=False),
    Column("amount_cents", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("reason", String(32), nullable=False),
    Column("status", String(16), nullable=False),
    Column("issued_at", DATETIME(fsp=6), nullable=False),
    Column("completed_at", DATETIME(fsp=6), nullable=True),
    Index("ix_refunds_registration", "registration_id", "issued_at"),
)

waitlist_entries = Table(
    "waitlist_entries",
    metadata,
    Column("entry_id", String(36), primary_key=True),
    Column("convention_id", String(36), nullable=False),
    Column("kind", String(8), nullable=False),
    Column("code", String(40), nullable=False),
    Column("variant", String(40), nullable=True),
    Column("stock", String(100), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("email", String(254), nullable=False),
    Column("email_key", String(254, collation="utf8mb4_bin"), nullable=True),
    Column("name", String(200), nullable=False),
    Column("account_id", String(36), nullable=True),
    Column("registration_id", String(36), nullable=True),
    Column("status", String(16), nullable=False),
    Column("offer_expires_at", DATETIME(fsp=6), nullable=True),
    Column("accepted_registration_id", String(36), nullable=True),
    Column("joined_at", DATETIME(fsp=6), nullable=False),
    Column("updated_at", DATETIME(fsp=6), nullable=False),
    Index("ix_waitlist_line", "convention_id", "stock", "status", "seq"),
    Index("ix_waitlist_account", "account_id"),
    Index("ix_waitlist_email_key", "email_key"),
)
"""`status`: waiting, offered, accepted, expired or left. A place in line is the count of
entries waiting or offered for the same stock with a `seq` not above the entry's."""

applied_events = Table(
    "order_applied_events",
    metadata,
    Column("event_id", String(36), primary_key=True),
    Column("applied_at", DATETIME(fsp=6), nullable=False),
    Index("ix_order_applied_events_applied_at", "applied_at"),
)
