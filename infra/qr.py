"""A ticket's QR code, drawn one way wherever it is drawn: the mailer's PNG attachment, and
the gateway's SVG, PNG and printed tickets. Error correction M, 8 pixels a module, the
standard quiet zone of 4 modules.

The mailer draws one for every confirmation of a rush, so the PNG path is made quick. segno
encodes the token, but its choice of mask (ISO/IEC 18004 7.8.3: all eight masks applied and
scored, the lowest penalty wins) goes module by module in Python and took 8 of the 10 ms a
code cost. Here the eight masks are scored a row at a time (bytes, big integers, regular
expressions) by the same rules, so the code is the one segno would make: the same mask, the
same modules (tests/unit/test_qr.py checks both against segno). The PNG is written a
scanline at a time too: segno's writer went pixel by pixel.
"""

from __future__ import annotations

import functools
import io
import re
import struct
import zlib
from collections.abc import Sequence
from typing import Any

import segno
from segno import encoder as _segno_encoder

_encoder: Any = _segno_encoder
"""segno's encoder, whose functions carry no annotations: the layout and the format bits."""

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


def qr_modules(token: str) -> tuple[bytes, ...]:
    """The code's modules, a row of 0 (light) and 1 (dark) bytes each, without the quiet
    zone: `qr_code(token).matrix`, with the mask chosen by `_best_mask` instead of segno.

    segno lays the code out with mask 0; taking that mask off the data region gives the
    matrix segno scores each mask on; the best mask goes on, then the format and version
    information that name it."""
    first = segno.make_qr(token, error=ERROR, mask=0)
    template = _template(first.version)
    region = _regions(first.version)
    mask0 = region[0]
    unmasked = [_xor(bytes(row), mask0[i], template[i]) for i, row in enumerate(first.matrix)]
    best = _best_mask(unmasked, region)
    if best == 0:
        return tuple(bytes(row) for row in first.matrix)
    matrix = tuple(bytearray(_xor(row, region[best][i])) for i, row in enumerate(unmasked))
    error = _encoder.normalize_errorlevel(first.error)  # segno may have raised it from M
    _encoder.add_format_info(matrix, first.version, error, best)
    _encoder.add_version_info(matrix, first.version)
    return tuple(bytes(row) for row in matrix)


def _xor(row: bytes, pattern: bytes, keep: bytes | None = None) -> bytes:
    """`row` with `pattern` flipped into it; with `keep`, the function modules and the
    reserved format and version cells (non-2 in the template) taken from it instead."""
    flipped = (int.from_bytes(row, "big") ^ int.from_bytes(pattern, "big")).to_bytes(
        len(row), "big"
    )
    if keep is None:
        return flipped
    return bytes(k if k != 2 else f for k, f in zip(keep, flipped, strict=True))


@functools.cache
def _template(version: int) -> tuple[bytes, ...]:
    """The matrix before the codewords, as segno lays it out: function patterns (0 or 1),
    format and version cells reserved as 0, the data region 2."""
    size = _encoder.calc_matrix_size(version)
    matrix = _encoder.make_matrix(size, size)
    _encoder.add_finder_patterns(matrix, size, size)
    _encoder.add_alignment_patterns(matrix, size, size)
    return tuple(bytes(row) for row in matrix)


@functools.cache
def _regions(version: int) -> tuple[tuple[bytes, ...], ...]:
    """For each of the eight masks, its pattern on the data region, row by row (1: flip)."""
    template = _template(version)
    masks = _encoder.get_data_mask_functions(False)
    return tuple(
        tuple(
            bytes(int(cell == 2 and bool(fn(i, j))) for j, cell in enumerate(row))
            for i, row in enumerate(template)
        )
        for fn in masks
    )


def _best_mask(unmasked: Sequence[bytes], region: Sequence[Sequence[bytes]]) -> int:
    """The mask of the lowest penalty, the first of equals (as segno and the standard)."""
    scores = [
        _penalty([_xor(row, pattern[i]) for i, row in enumerate(unmasked)]) for pattern in region
    ]
    return scores.index(min(scores))


_RUN = re.compile(rb"\x00{5,}|\x01{5,}")
_FINDER_LIKE = b"\x01\x00\x01\x01\x01\x00\x01"


def _penalty(rows: Sequence[bytes]) -> int:
    """ISO/IEC 18004 7.8.3.1's penalty of a masked matrix (before its format information),
    scored as `segno.encoder.mask_scores` scores it: N1 runs of five or more, N2 2x2 blocks,
    N3 finder-like patterns, N4 the share of dark modules."""
    size = len(rows)
    columns = [bytes(column) for column in zip(*rows, strict=True)]
    runs = _RUN.findall(b"\x02".join((*rows, *columns)))  # 2: no run crosses a line's end
    n1 = sum(map(len, runs)) - 2 * len(runs)
    n2 = 0
    above = int.from_bytes(rows[0], "big")
    for row in rows[1:]:
        below = int.from_bytes(row, "big")
        differs = (above ^ (above >> 8)) | (below ^ (below >> 8)) | (above ^ below)
        n2 += differs.to_bytes(size, "big").count(0, 1)
        above = below
    n3 = sum(_finder_like(line, size) for line in (*rows, *columns))
    dark = sum(row.count(1) for row in rows)
    n4 = 10 * int(abs(dark / size**2 * 100 - 50) / 5)
    return n1 + 3 * n2 + n3 + n4


def _finder_like(line: bytes, size: int) -> int:
    """N3 of one row or column, matched as segno matches it."""
    count = 0
    index = line.find(_FINDER_LIKE)
    while index != -1:
        offset = index + 7
        if (
            index in (0, size - 7)
            or not any(line[max(index - 4, 0) : index])
            or not any(line[offset : offset + 4])
        ):
            count += 40
        else:
            offset = index + 4
        index = line.find(_FINDER_LIKE, offset)
    return count


def qr_svg(token: str) -> bytes:
    out = io.BytesIO()
    qr_code(token).save(out, kind="svg", scale=SCALE, border=BORDER, xmldecl=False)
    return out.getvalue()


def qr_png(token: str) -> bytes:
    """The code as a 1-bit greyscale PNG, black on white."""
    matrix = qr_modules(token)
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
