"""The reporting database `butterfly_reporting`: the archive of every event, for analysts and
for refilling a wiped broker."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Integer, MetaData, String, Table, Text
from sqlalchemy.dialects.mysql import DATETIME, LONGTEXT

from infra.db import consumer_positions_table

metadata = MetaData()

event_archive = Table(
    "event_archive",
    metadata,
    Column("event_id", String(36), primary_key=True),
    Column("topic", String(200), nullable=False),
    Column("partition_no", Integer, nullable=False),
    Column("source_offset", BigInteger, nullable=False),
    Column("event_type", String(100), nullable=False),
    Column("schema_version", Integer, nullable=False),
    Column("message_key", String(400), nullable=False),
    Column("occurred_at", DATETIME(fsp=6), nullable=False),
    Column("correlation_id", String(36), nullable=False),
    Column("causation_id", String(36), nullable=True),
    Column("actor", String(200), nullable=False),
    Column("payload", LONGTEXT().with_variant(Text(), "sqlite"), nullable=False),
    Column("envelope", LONGTEXT().with_variant(Text(), "sqlite"), nullable=False),
    Index("ix_event_archive_order", "topic", "partition_no", "source_offset"),
    Index("ix_event_archive_type", "event_type", "occurred_at"),
)

consumer_positions = consumer_positions_table(metadata)
