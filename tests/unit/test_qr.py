"""The ticket's QR code as the mailer draws it: the code segno would make (the same mask and
modules, its mask chosen by the quicker scoring of `infra.qr`), and the same pixels in the
PNG."""

from __future__ import annotations

import io
import random
import string
from collections import Counter

import pytest
from PIL import Image

from infra.qr import BORDER, SCALE, qr_code, qr_modules, qr_png

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


def test_the_modules_and_the_mask_are_segnos_for_every_size_and_mask() -> None:
    rng = random.Random(14)
    alphabet = string.ascii_letters + string.digits + "-_."
    masks: Counter[int] = Counter()
    versions: set[int] = set()
    for n in range(160):
        length = (1, 20, 120, 239, 600, 1200)[n % 6]
        token = "".join(rng.choice(alphabet) for _ in range(length))
        code = qr_code(token)
        assert qr_modules(token) == tuple(bytes(row) for row in code.matrix), token
        masks[code.mask] += 1
        versions.add(code.version)
    # every mask chosen several times; versions with and without version information
    assert set(masks) == set(range(8))
    assert min(masks.values()) >= 5
    assert {1, 7, 29} <= versions
