"""A ticket on paper: the PDFs a person prints, the attendee's ticket and the badge a station
hands out, with the QR code of `infra.qr` (SVG for pages, PNG inside the PDFs).

The QR code holds the token as it is (a regular QR code, error correction M: what a phone's
`BarcodeDetector` and a USB scanner read). PDF text is set in DejaVu Sans where the system
has it, so names in most scripts print; elsewhere in Helvetica, whose Latin-1 cannot say
everything: what it cannot is folded to its closest letters, or `?`.
"""

from __future__ import annotations

import functools
import io
import unicodedata
import uuid
from dataclasses import dataclass
from pathlib import Path

from fpdf import FPDF

from infra.qr import qr_png

UNICODE_FONTS = (
    Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"),
    Path("/usr/share/fonts/dejavu/DejaVuSans.ttf"),
    Path("/usr/share/fonts/TTF/DejaVuSans.ttf"),
)
A6 = (105.0, 148.0)
"""The ticket's page, portrait, in millimetres."""
BADGE = (148.0, 105.0)
"""The badge: A6 landscape."""


@dataclass(frozen=True)
class Printed:
    """What a ticket or badge says about its holder."""

    convention: str
    name: str
    badge_type: str
    registration_id: uuid.UUID


@functools.cache
def _unicode_font() -> Path | None:
    return next((path for path in UNICODE_FONTS if path.is_file()), None)


class _Page:
    def __init__(self, size: tuple[float, float]) -> None:
        self.pdf = FPDF(unit="mm", format=size)
        self.pdf.set_auto_page_break(auto=False)
        self.pdf.set_margins(8, 8, 8)
        self.pdf.add_page()
        font = _unicode_font()
        if font is not None:
            self.pdf.add_font("body", fname=str(font))
            self.family = "body"
        else:
            self.family = "helvetica"
        self.width = size[0] - 16

    def _text(self, text: str) -> str:
        if self.family != "helvetica":
            return text
        folded = unicodedata.normalize("NFKD", text)
        return (
            "".join(c for c in folded if not unicodedata.combining(c))
            .encode("latin-1", "replace")
            .decode("latin-1")
        )

    def line(self, text: str, size: float, *, height: float | None = None) -> None:
        self.pdf.set_font(self.family, size=size)
        self.pdf.multi_cell(
            self.width, height or size * 0.5, self._text(text), align="C", new_x="LMARGIN"
        )

    def gap(self, mm: float) -> None:
        self.pdf.ln(mm)

    def image(self, png: bytes, side: float) -> None:
        x = (self.pdf.w - side) / 2
        self.pdf.image(io.BytesIO(png), x=x, y=self.pdf.get_y(), w=side, h=side)
        self.pdf.set_y(self.pdf.get_y() + side)

    def output(self) -> bytes:
        return bytes(self.pdf.output())


def ticket_pdf(token: str, printed: Printed) -> bytes:
    """The attendee's ticket: the convention, their name and badge type, the QR code to show
    at the door, and the registration id."""
    page = _Page(A6)
    page.line(printed.convention, 16)
    page.gap(2)
    page.line(printed.name, 13)
    page.line(printed.badge_type, 11)
    page.gap(3)
    page.image(qr_png(token), 72)
    page.gap(3)
    page.line(f"Registration {printed.registration_id}", 7)
    page.line("Show this code at the door.", 8)
    return page.output()


def badge_pdf(printed: Printed) -> bytes:
    """The badge handed out at check-in: the name large, the badge type, the convention."""
    page = _Page(BADGE)
    page.gap(6)
    page.line(printed.convention, 14)
    page.gap(10)
    page.line(printed.name, 28, height=13)
    page.gap(6)
    page.line(printed.badge_type, 16)
    page.gap(14)
    page.line(str(printed.registration_id), 6)
    return page.output()
