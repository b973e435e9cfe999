"""The mailer on a migrated write database: every unsent `mail_outbox` row becomes one `.eml`
file, once, and is marked sent; a file left by a crash before the row was marked is
rewritten under the same name, never doubled."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime
from email import policy
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, select

from consumers.accounts.mailer import Mailer, latest_mail_to
from consumers.accounts.tables import mail_outbox
from infra.settings import Settings
from tests.conftest import StackFactory
from tests.support import count, engine_for, eventually

pytestmark = pytest.mark.integration


def outbox_row(n: int) -> dict[str, Any]:
    return {
        "mail_id": str(uuid.uuid4()),
        "to_address": f"user{n}@example.org",
        "subject": f"Verify your address ({n})",
        "body": f"Hello {n}, open https://butterfly.invalid/verify?token=t{n}\n",
        "created_at": datetime(2027, 1, 10, 9, 0, n),
    }


async def unsent(settings: Settings) -> int:
    async with engine_for(settings.db.write_url) as engine:
        return await count(engine, mail_outbox, mail_outbox.c.sent_at.is_(None))


async def run_until_sent(settings: Settings, folder: Path) -> None:
    async with engine_for(settings.db.write_url) as engine:
        mailer = Mailer(engine, folder, poll_seconds=0.05)
        task = asyncio.create_task(mailer.run())
        try:
            await eventually(lambda: unsent(settings), lambda n: n == 0, what="every mail sent")
        finally:
            mailer.stop()
            await asyncio.wait_for(task, 10)


async def test_outbox_rows_become_mail_files_exactly_once(
    make_settings: StackFactory, tmp_path: Path
) -> None:
    settings = await make_settings()
    folder = tmp_path / "mail"
    rows = [outbox_row(n) for n in range(5)]
    async with engine_for(settings.db.write_url) as engine, engine.begin() as conn:
        await conn.execute(insert(mail_outbox), rows)
        seqs = {
            row.mail_id: row.seq
            for row in await conn.execute(select(mail_outbox.c.mail_id, mail_outbox.c.seq))
        }
    names = [f"{seqs[row['mail_id']]:08d}-{row['mail_id']}.eml" for row in rows]
    folder.mkdir()
    (folder / names[0]).write_bytes(b"written before a crash, row never marked sent")

    await run_until_sent(settings, folder)

    assert sorted(path.name for path in folder.iterdir()) == sorted(names)
    for row, name in zip(rows, names, strict=True):
        message = BytesParser(policy=policy.default).parsebytes((folder / name).read_bytes())
        assert message["To"] == row["to_address"]
        assert message["Subject"] == row["subject"]
        assert message["From"] == "Butterfly <no-reply@butterfly.invalid>"
        assert message["Message-ID"] == f"<{row['mail_id']}@butterfly.invalid>"
        assert message.get_content().splitlines() == row["body"].splitlines()
    found = latest_mail_to(folder, "USER3@example.org")
    assert found is not None
    assert found["Subject"] == rows[3]["subject"]

    written = {path.name: path.stat().st_mtime_ns for path in folder.iterdir()}
    later = outbox_row(9)
    async with engine_for(settings.db.write_url) as engine, engine.begin() as conn:
        await conn.execute(insert(mail_outbox), [later])
    await run_until_sent(settings, folder)
    again = {path.name: path.stat().st_mtime_ns for path in folder.iterdir()}
    assert len(again) == len(written) + 1
    assert {name: again[name] for name in written} == written
    newest = latest_mail_to(folder, later["to_address"])
    assert newest is not None
    assert newest["Subject"] == later["subject"]
