"""The ticket's QR code as a PNG: the same pixels segno would draw, in a fraction of the time
(the mailer draws one per confirmation)."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from infra.qr import BORDER, SCALE, qr_code, qr_png

TOKENS = (
    "x",
    "BT1.eyJyIjoiMDAwIn0.c2ln",
    "BT1." + "A" * 120 + "." + "B" * 86,
)


@pytest.mark.parametrize("token", TOKENS, ids=["one-letter", "short", "ticket-sized"])
def test_the_png_has_segnos_own_pixels(token: str) -> None:
    theirs = io.BytesIO()
    qr_code(token).save(theirs, kind="png", scale=SCALE, border=BORDER)
    ours = Image.open(io.BytesIO(qr_png(token)))
    expected = Image.open(theirs)
    assert ours.size == expected.size
    assert ours.convert("L").tobytes() == expected.convert("L").tobytes()


def test_the_quiet_zone_is_white_and_the_finder_pattern_black() -> None:
    image = Image.open(io.BytesIO(qr_png(TOKENS[2]))).convert("L")
    margin = BORDER * SCALE
    assert image.getpixel((0, 0)) == image.getpixel((margin - 1, margin - 1)) == 255
    assert image.getpixel((margin, margin)) == 0
