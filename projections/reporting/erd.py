"""The star schema as a Mermaid `erDiagram`, drawn from the table definitions so the
diagram in `docs/REPORTING.md` cannot drift from the tables (a test compares them).

Run `python -m projections.reporting.erd` to rewrite the diagram in place.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Table

from projections.reporting import tables as t

DOC = Path(__file__).resolve().parents[2] / "docs" / "REPORTING.md"
BEGIN = "```mermaid"
END = "```"

RELATIONS: tuple[tuple[Table, Table, str], ...] = (
    (t.dim_convention, t.fact_registrations, "convention_id"),
    (t.dim_badge_type, t.fact_registrations, "convention_id, badge_type"),
    (t.dim_account, t.fact_registrations, "account_key"),
    (t.dim_date, t.fact_registrations, "created_on"),
    (t.fact_registrations, t.fact_order_lines, "registration_id"),
    (t.dim_option, t.fact_order_lines, "convention_id, code"),
    (t.dim_date, t.fact_order_lines, "ordered_on"),
    (t.fact_registrations, t.fact_payments, "registration_id"),
    (t.dim_date, t.fact_payments, "paid_on"),
    (t.fact_registrations, t.fact_refunds, "registration_id"),
    (t.dim_date, t.fact_refunds, "issued_on"),
    (t.dim_convention, t.fact_waitlist_entries, "convention_id"),
    (t.dim_account, t.fact_waitlist_entries, "account_key"),
    (t.dim_hotel, t.fact_lodging_nights, "convention_id, hotel_code"),
    (t.dim_date, t.fact_lodging_nights, "night"),
    (t.dim_hotel, t.fact_block_nights, "convention_id, hotel_code"),
    (t.dim_date, t.fact_block_nights, "night"),
    (t.dim_badge_type, t.fact_daily_sales, "convention_id, badge_type"),
    (t.dim_date, t.fact_daily_sales, "sale_date"),
    (t.dim_convention, t.dim_badge_type, "convention_id"),
    (t.dim_convention, t.dim_option, "convention_id"),
    (t.dim_convention, t.dim_hotel, "convention_id"),
)
"""Which dimension (or parent fact) each fact row points at, and by which columns: the
schema keeps no foreign keys (the projector writes facts before their dimensions may
exist), so the diagram says it."""


def _type(table: Table, name: str) -> str:
    return str(table.c[name].type.compile()).split("(")[0].replace(" ", "_").lower()


def mermaid_erd(tables: tuple[Table, ...] = t.STAR_TABLES) -> str:
    lines = [BEGIN, "erDiagram"]
    for table in tables:
        lines.append(f"    {table.name} {{")
        for column in table.columns:
            key = " PK" if column.primary_key else ""
            lines.append(f"        {_type(table, column.name)} {column.name}{key}")
        lines.append("    }")
    for parent, child, columns in RELATIONS:
        lines.append(f'    {parent.name} ||--o{{ {child.name} : "{columns}"')
    lines.append(END)
    return "\n".join(lines) + "\n"


def current_diagram(document: str) -> str:
    """The diagram block of the document, fences included."""
    start = document.index(BEGIN)
    end = document.index(END, start + len(BEGIN)) + len(END)
    return document[start:end] + "\n"


def rewrite(path: Path = DOC) -> None:
    document = path.read_text()
    path.write_text(document.replace(current_diagram(document), mermaid_erd(), 1))


if __name__ == "__main__":
    rewrite()
