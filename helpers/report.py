"""PDF building blocks for the training and QC reports (fpdf2 with the DejaVu fonts).

DejaVu ships with matplotlib (``matplotlib/mpl-data/fonts/ttf``), so no font is downloaded, and
it covers what reports about cells contain: ``µm``, Greek letters (``α``, ``γ``), arrows and
comparison signs (``→``, ``≥``, ``×``), dashes and accented names. The core PDF fonts cover
Latin-1 only; reports built on them crash on these characters.

Page layout: A4 portrait, 20 mm side margins (170 mm of text width), the title block on page 1,
the title in small print at the top of later pages and "page N of M" in every footer.

Typical use::

    document = Report("Training report: cells_1", subtitle="Run folder: /content/gdrive/...")
    document.heading("Dataset")
    document.key_value_table([("Images", 120), ("Pixel size", "0.65 µm")])
    document.figure(plots / "class_counts.png", width_mm=150, caption="Boxes per class")
    document.save(run_folder / "training_report.pdf")
"""

from __future__ import annotations

import importlib.util
import math
import os
import pathlib
import re
import warnings
from typing import Any, Sequence

import fpdf
from fpdf import fonts as fpdf_fonts

from helpers import errors

PAGE_FORMAT = "A4"
MARGIN_MM = 20.0
TOP_MARGIN_MM = 18.0
BOTTOM_MARGIN_MM = 18.0
FONT_FAMILY = "DejaVu"
MONO_FAMILY = "DejaVuMono"
FONT_FILES = {  # (family, style) -> file name in matplotlib/mpl-data/fonts/ttf
    (FONT_FAMILY, ""): "DejaVuSans.ttf",
    (FONT_FAMILY, "B"): "DejaVuSans-Bold.ttf",
    (FONT_FAMILY, "I"): "DejaVuSans-Oblique.ttf",
    (MONO_FAMILY, ""): "DejaVuSansMono.ttf",
}
BODY_SIZE_PT = 10
LINE_HEIGHT_MM = 5.0
TABLE_SIZE_PT = 9
SMALLEST_TABLE_SIZE_PT = 7  # tables shrink to this before a word is split across lines
CELL_PADDING_MM = 3.6  # left + right cell padding (1.5 mm each) and a little air
LONGEST_UNBROKEN_FRACTION = 0.45  # words longer than this share of a table's width (paths) may still break
MONO_SIZE_PT = 8
KEY_COLUMN_FRACTION = 0.34
HEADING_KEEP_WITH_NEXT_MM = 25.0  # a heading needs this much room below it, or it starts a new page
LIGHT_GREY = (242, 242, 242)
ANSWER_FILL = (226, 236, 250)  # light blue: the result on page 1
WARNING_FILL = (255, 240, 200)  # light amber: read this before trusting the figures
TEXT_GREY = (110, 110, 110)
CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def font_folder() -> pathlib.Path:
    """The folder of matplotlib's bundled TTF fonts (found without importing matplotlib).

    Raises:
        HelpersError: matplotlib or its DejaVu fonts are missing.
    """
    spec = importlib.util.find_spec("matplotlib")
    folder = pathlib.Path(spec.origin).parent / "mpl-data" / "fonts" / "ttf" if spec and spec.origin else None
    if folder is None or not (folder / "DejaVuSans.ttf").is_file():
        raise errors.HelpersError(f"DejaVu fonts not found (looked in {folder}): the PDF reports need them. "
                                  f"Reinstall matplotlib: pip install --force-reinstall matplotlib")
    return folder


def clean_text(value: Any) -> str:
    """Any value as text a PDF can show: None -> "", floats shortened, tabs -> spaces, no control characters."""
    if value is None:
        return ""
    if isinstance(value, float):
        text = "nan" if math.isnan(value) else f"{value:.6g}"
    else:
        text = str(value)
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\t", "    ")
    return CONTROL_CHARACTERS.sub("", text)


class _Document(fpdf.FPDF):
    """fpdf2 document with the running title in the header and page numbers in the footer."""

    def __init__(self, running_title: str):
        super().__init__(orientation="portrait", unit="mm", format=PAGE_FORMAT)
        self.running_title = running_title

    def header(self) -> None:
        if self.page_no() > 1:
            self.set_font(FONT_FAMILY, "", 8)
            self.set_text_color(*TEXT_GREY)
            self.set_y(8)
            self.cell(0, 4, self.running_title[:120], align="L")
            self.set_text_color(0, 0, 0)
            self.set_y(TOP_MARGIN_MM)

    def footer(self) -> None:
        self.set_y(-12)
        self.set_font(FONT_FAMILY, "", 8)
        self.set_text_color(*TEXT_GREY)
        self.cell(0, 4, f"Page {self.page_no()} of {{nb}}", align="C")
        self.set_text_color(0, 0, 0)


class Report:
    """A PDF report assembled block by block, then written with ``save``.

    Args:
        title: shown large on page 1 and in small print at the top of later pages.
        subtitle: an optional line under the title (e.g. the run folder).
    """

    def __init__(self, title: str, subtitle: str | None = None):
        self.title = clean_text(title)
        self.pdf = _Document(self.title)
        folder = font_folder()
        for (family, style), file_name in FONT_FILES.items():
            self.pdf.add_font(family, style, str(folder / file_name))
        self.pdf.set_margins(MARGIN_MM, TOP_MARGIN_MM, MARGIN_MM)
        self.pdf.set_auto_page_break(True, margin=BOTTOM_MARGIN_MM)
        self.pdf.set_title(self.title)
        self.pdf.set_creator("DL4Cells helpers")
        self.pdf.add_page()
        self.pdf.set_font(FONT_FAMILY, "B", 18)
        self._write_lines(self.title, line_height=8.5)
        if subtitle:
            self.pdf.set_font(FONT_FAMILY, "", 10)
            self.pdf.set_text_color(*TEXT_GREY)
            self._write_lines(clean_text(subtitle), line_height=5)
            self.pdf.set_text_color(0, 0, 0)
        self.pdf.ln(2)
        self._rule()
        self.pdf.ln(3)
        self._body_font()

    # ----- helpers ------------------------------------------------------------------------
    @property
    def text_width_mm(self) -> float:
        """Width between the margins (170 mm on A4)."""
        return self.pdf.epw

    def _body_font(self) -> None:
        self.pdf.set_font(FONT_FAMILY, "", BODY_SIZE_PT)

    def _rule(self) -> None:
        """A thin grey line across the text width."""
        self.pdf.set_draw_color(180, 180, 180)
        self.pdf.line(self.pdf.l_margin, self.pdf.get_y(), self.pdf.l_margin + self.text_width_mm, self.pdf.get_y())
        self.pdf.set_draw_color(0, 0, 0)

    def _write_lines(self, text: str, line_height: float = LINE_HEIGHT_MM, align: str = "L") -> None:
        """Wrapped text across the text width (long words and paths are broken, never overflow)."""
        self.pdf.set_x(self.pdf.l_margin)
        self.pdf.multi_cell(self.text_width_mm, line_height, text, align=align,
                            new_x=fpdf.XPos.LMARGIN, new_y=fpdf.YPos.NEXT)

    def _room_left_mm(self) -> float:
        return self.pdf.page_break_trigger - self.pdf.get_y()

    # ----- blocks -------------------------------------------------------------------------
    def heading(self, text: str, keep_with_next_mm: float = HEADING_KEEP_WITH_NEXT_MM) -> None:
        """A section heading; starts a new page rather than sit alone at the bottom of one.

        ``keep_with_next_mm``: room needed below the heading (e.g. a figure's height), else a new page.
        """
        if self._room_left_mm() < keep_with_next_mm:
            self.pdf.add_page()
        else:
            self.pdf.ln(3)
        self.pdf.set_font(FONT_FAMILY, "B", 13)
        self._write_lines(clean_text(text), line_height=7)
        self.pdf.ln(1)
        self._body_font()

    def paragraph(self, text: str) -> None:
        """A paragraph of body text, wrapped to the page width."""
        self._body_font()
        self._write_lines(clean_text(text))
        self.pdf.ln(2)

    def callout(self, lines: Sequence[Any], warning: bool = False) -> None:
        """A shaded box of short paragraphs (the answer on page 1, or a warning), the first in bold.

        Args:
            lines: one paragraph each; empty ones are left out.
            warning: amber instead of blue, for what a reader must know before trusting the figures.
        """
        lines = [clean_text(line) for line in lines if line]
        if not lines:
            return
        self.pdf.set_fill_color(*(WARNING_FILL if warning else ANSWER_FILL))
        for index, line in enumerate(lines):
            self.pdf.set_font(FONT_FAMILY, "B" if index == 0 else "", BODY_SIZE_PT + (1 if index == 0 and not warning else 0))
            self.pdf.set_x(self.pdf.l_margin)
            top, bottom = (2.0 if index == 0 else 0.5), (2.0 if index == len(lines) - 1 else 0.5)
            self.pdf.multi_cell(self.text_width_mm, LINE_HEIGHT_MM + 0.5, line, fill=True, align="L",
                                new_x=fpdf.XPos.LMARGIN, new_y=fpdf.YPos.NEXT, padding=(top, 3, bottom, 3))
        self.pdf.set_fill_color(255, 255, 255)  # tables drawn later take the current fill colour
        self.pdf.ln(3)
        self._body_font()

    def bullet_list(self, items: Sequence[Any]) -> None:
        """One indented paragraph per item, each with a bullet."""
        self._body_font()
        indent = 5.0
        for item in items:
            self.pdf.set_x(self.pdf.l_margin)
            self.pdf.cell(indent, LINE_HEIGHT_MM, "•")
            self.pdf.multi_cell(self.text_width_mm - indent, LINE_HEIGHT_MM, clean_text(item), align="L",
                                new_x=fpdf.XPos.LMARGIN, new_y=fpdf.YPos.NEXT)
            self.pdf.ln(0.8)
        self.pdf.ln(1.2)

    def key_value_table(self, rows: Sequence[tuple[str, Any]]) -> None:
        """A two-column table: names (bold) on the left, values on the right; both wrap."""
        if not rows:
            return
        key_width = self.text_width_mm * KEY_COLUMN_FRACTION
        self.pdf.set_font(FONT_FAMILY, "", TABLE_SIZE_PT)
        bold = fpdf_fonts.FontFace(emphasis="BOLD")
        with self.pdf.table(col_widths=(key_width, self.text_width_mm - key_width), width=self.text_width_mm,
                            first_row_as_headings=False, text_align="LEFT", line_height=4.5,
                            borders_layout="HORIZONTAL_LINES", padding=(1, 1.5), align="LEFT") as table:
            for key, value in rows:
                row = table.row()
                row.cell(clean_text(key), style=bold)
                row.cell(clean_text(value))
        self.pdf.ln(3)
        self._body_font()

    def table(self, header: Sequence[str], rows: Sequence[Sequence[Any]],
              column_widths_mm: Sequence[float] | None = None) -> None:
        """A table with a bold header row that is repeated on every page it spans; cells wrap.

        Args:
            header: column titles, length C.
            rows: R rows of at most C values (shorter rows are padded with empty cells).
            column_widths_mm: C widths in mm (scaled to fit the text width); default: equal widths.

        Raises:
            ValueError: a row has more values than the header has columns, or the widths do not
                match the columns.
        """
        columns = len(header)
        if column_widths_mm is not None and len(column_widths_mm) != columns:
            raise ValueError(f"table: {len(column_widths_mm)} column widths for {columns} columns")
        for index, values in enumerate(rows):
            if len(values) > columns:
                raise ValueError(f"table: row {index} has {len(values)} values for {columns} columns")
        texts = [[clean_text(title) for title in header]] + [[clean_text(value) for value in values]
                                                             + [""] * (columns - len(values)) for values in rows]
        total_width = (min(sum(column_widths_mm), self.text_width_mm) if column_widths_mm is not None
                       else self.text_width_mm)
        font_size, widths = self._fit_columns(texts, total_width, column_widths_mm)
        self.pdf.set_font(FONT_FAMILY, "", font_size)
        headings_style = fpdf_fonts.FontFace(emphasis="BOLD", fill_color=(225, 225, 225))
        with self.pdf.table(col_widths=widths, width=total_width, text_align="LEFT", line_height=font_size * 0.5,
                            headings_style=headings_style, repeat_headings=1, cell_fill_color=LIGHT_GREY,
                            cell_fill_mode="ROWS", padding=(1, 1.5), align="LEFT") as table:
            for values in texts:
                table.row(values)
        self.pdf.ln(3)
        self._body_font()

    def _fit_columns(self, texts: Sequence[Sequence[str]], total_width: float,
                     wanted_mm: Sequence[float] | None) -> tuple[float, list[float]]:
        """(font size in pt, C column widths in mm) so that no word is split across lines.

        Each column is at least as wide as its longest word (header in bold) plus the cell padding;
        the width left over goes to the columns in proportion to ``wanted_mm`` (default: their
        longest text). When the longest words do not fit at ``TABLE_SIZE_PT`` the font shrinks to
        ``SMALLEST_TABLE_SIZE_PT``; a word wider than ``LONGEST_UNBROKEN_FRACTION`` of the table (a
        path) is still broken rather than squeeze every other column.
        """
        longest_allowed = total_width * LONGEST_UNBROKEN_FRACTION
        for font_size in range(TABLE_SIZE_PT, SMALLEST_TABLE_SIZE_PT - 1, -1):
            minimum, natural = self._text_widths(texts, font_size)
            minimum = [min(width, longest_allowed) + CELL_PADDING_MM for width in minimum]
            if sum(minimum) <= total_width or font_size == SMALLEST_TABLE_SIZE_PT:
                break
        wanted = list(wanted_mm) if wanted_mm is not None else [min(width, longest_allowed) + CELL_PADDING_MM
                                                                for width in natural]
        spare = total_width - sum(minimum)
        if spare <= 0:
            return font_size, minimum
        # Grow each column towards its wanted share; what is left is shared like the wanted widths.
        scale = total_width / sum(wanted)
        growth = [max(0.0, want * scale - low) for want, low in zip(wanted, minimum)]
        if sum(growth) == 0:
            growth = wanted
        return font_size, [low + spare * grow / sum(growth) for low, grow in zip(minimum, growth)]

    def _text_widths(self, texts: Sequence[Sequence[str]], font_size: float) -> tuple[list[float], list[float]]:
        """Per column: (longest word, longest whole cell) in mm at ``font_size``; row 0 is the bold header."""
        columns = len(texts[0])
        longest_word, longest_text = [0.0] * columns, [0.0] * columns
        for row_index, row in enumerate(texts):
            self.pdf.set_font(FONT_FAMILY, "B" if row_index == 0 else "", font_size)
            for column, text in enumerate(row):
                words = text.split() or [""]
                longest_word[column] = max(longest_word[column], *(self.pdf.get_string_width(word) for word in words))
                longest_text[column] = max(longest_text[column], max(self.pdf.get_string_width(line)
                                                                     for line in text.split("\n")))
        return longest_word, longest_text

    def figure(self, path: str | pathlib.Path, width_mm: float = 170, caption: str | None = None) -> None:
        """An image (PNG/JPEG), centred, aspect ratio kept; starts a new page when it does not fit.

        Args:
            path: the image file.
            width_mm: wanted width; reduced to the text width, and further when the image would
                be taller than a page.
            caption: optional italic line under the image.

        A missing file is shown as a visible line in the report (and a warning), so one lost plot
        never costs the whole report.
        """
        path = pathlib.Path(path)
        if not path.is_file():
            warnings.warn(f"report figure not found: {path}", stacklevel=2)
            self.paragraph(f"[Figure missing: {path}]")
            return
        from PIL import Image  # local: only figures need it

        with Image.open(path) as image:
            pixel_width, pixel_height = image.size
        caption_height = 6.0 if caption else 0.0
        page_height = self.pdf.page_break_trigger - self.pdf.t_margin - caption_height - 2
        width = min(float(width_mm), self.text_width_mm)
        height = width * pixel_height / pixel_width
        if height > page_height:
            width, height = width * page_height / height, page_height
        if self._room_left_mm() < height + caption_height + 2:
            self.pdf.add_page()
        x = self.pdf.l_margin + (self.text_width_mm - width) / 2
        self.pdf.image(str(path), x=x, y=self.pdf.get_y(), w=width, h=height)
        self.pdf.set_y(self.pdf.get_y() + height + 1)
        if caption:
            self.pdf.set_font(FONT_FAMILY, "I", 9)
            self._write_lines(clean_text(caption), line_height=4.5, align="C")
        self.pdf.ln(3)
        self._body_font()

    def preformatted(self, text: str) -> None:
        """Monospaced text on a light grey background, line breaks kept (e.g. config.yaml verbatim)."""
        self.pdf.set_font(MONO_FAMILY, "", MONO_SIZE_PT)
        self.pdf.set_fill_color(*LIGHT_GREY)
        self.pdf.set_x(self.pdf.l_margin)
        self.pdf.multi_cell(self.text_width_mm, 3.8, clean_text(text).rstrip("\n"), fill=True, align="L",
                            new_x=fpdf.XPos.LMARGIN, new_y=fpdf.YPos.NEXT, padding=(1.5, 2))
        self.pdf.set_fill_color(255, 255, 255)
        self.pdf.ln(3)
        self._body_font()

    def page_break(self) -> None:
        """Continue on a new page."""
        self.pdf.add_page()

    def save(self, path: str | pathlib.Path) -> pathlib.Path:
        """Write the PDF (creating the folder); the file appears complete or not at all.

        Saving closes the document: blocks added afterwards raise fpdf's error. Saving again
        writes the same PDF.

        Returns:
            ``path`` as a ``pathlib.Path``.
        """
        path = pathlib.Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = bytes(self.pdf.output())
        # Written beside the target (same file system) then renamed: a crash leaves no half PDF.
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            temporary.write_bytes(data)
            os.replace(temporary, path)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        return path
