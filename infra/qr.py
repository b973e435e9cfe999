"""A ticket's QR code, drawn one way wherever it is drawn: the mailer's PNG attachment, and
the gateway's SVG, PNG and printed tickets. Error correction M, 8 pixels a module, the
standard quiet zone of 4 modules.

segno encodes the token and picks the mask; the PNG is written here, a row at a time:
segno's PNG writer goes pixel by pixel in Python and took longer than the encoding itself,
and the mailer draws one for every confirmation of a rush."""

from __future__ import annotations

import io
import struct
import zlib

import segno

ERROR = "m"
SCALE = 8
BORDER = 4
_DARK, _LIGHT = "0", "1"
"""A pixel's bit: in 1-bit greyscale 0 is black and 1 white."""
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_GREY_1_BIT = (1, 0, 0, 0, 0)
"""IHDR after the size: 1 bit a pixel, greyscale, deflate, no filter, no interlace."""


def qr_code(token: str) -> segno.QRCode:
    return segno.make_qr(token, error=ERROR)


def qr_svg(token: str) -> bytes:
    out = io.BytesIO()
    qr_code(token).save(out, kind="svg", scale=SCALE, border=BORDER, xmldecl=False)
    return out.getvalue()


def qr_png(token: str) -> bytes:
    """The code as a 1-bit greyscale PNG, black on white."""
    matrix = qr_code(token).matrix
    side = (len(matrix) + 2 * BORDER) * SCALE
    row_bytes = (side + 7) // 8
    padding = row_bytes * 8 - side
    margin = _LIGHT * (BORDER * SCALE)
    dark, light = _DARK * SCALE, _LIGHT * SCALE
    quiet = _row(_LIGHT * side + _LIGHT * padding, row_bytes)
    rows = [quiet] * (BORDER * SCALE)
    for modules in matrix:
        bits = margin + "".join(dark if m else light for m in modules) + margin + _LIGHT * padding
        rows.extend([_row(bits, row_bytes)] * SCALE)
    rows.extend([quiet] * (BORDER * SCALE))
    header = struct.pack(">IIBBBBB", side, side, *_GREY_1_BIT)
    return b"".join(
        (
            _PNG_SIGNATURE,
            _chunk(b"IHDR", header),
            _chunk(b"IDAT", zlib.compress(b"".join(rows))),
            _chunk(b"IEND", b""),
        )
    )


def _row(bits: str, size: int) -> bytes:
    """One scanline: its filter type (none), then the pixels, 8 to a byte."""
    return b"\x00" + int(bits, 2).to_bytes(size, "big")


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
