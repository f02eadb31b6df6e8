"""The report's PDF layout with fpdf2 (A4, core fonts, the HTML report's SVG charts embedded).

Content comes from the same context as the HTML report (``report.report_context``), so the two say
the same things; every string goes through the transliteration ``report.pdf_text`` because the
core fonts only know Windows-1252.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any, cast

from fpdf import FPDF
from fpdf.enums import XPos, YPos

from conveyor.packs.assess.report_charts import SvgChart, money

TEXT = (31, 41, 51)
MUTED = (97, 110, 124)
DANGER = (185, 28, 28)
BANNER = (254, 226, 226)
RULE = (223, 227, 232)
SEVERITY_RGB = {
    "critical": (127, 29, 29),
    "high": (220, 38, 38),
    "medium": (180, 83, 9),
    "low": (37, 99, 235),
    "info": (97, 110, 124),
}
MAX_FINDINGS_PER_SECTION = 40  # the enterprise example raises hundreds; the HTML has them all
MAX_RECOMMENDATIONS = 60
MAX_PARAGRAPH = 600  # characters; the HTML and JSON have the whole text


class ReportPdf(FPDF):
    """An A4 report; :meth:`render` lays out one report context."""

    def __init__(self, text: Callable[[str], str]) -> None:
        super().__init__(orientation="portrait", unit="mm", format="A4")
        self._t = text
        self._footer_title = ""
        self.set_margins(15, 15, 15)
        self.set_auto_page_break(auto=True, margin=15)
        self.core_fonts_encoding = "windows-1252"
        self.set_title("Assessment report")
        self.set_creator("Conveyor assess pack")

    # fpdf2 calls footer() on every page.
    def footer(self) -> None:
        self.set_y(-11)
        self.set_font("helvetica", size=8)
        self.set_text_color(*MUTED)
        self.cell(
            0, 5, self._t(f"{self._footer_title}  ·  page {self.page_no()}/{{nb}}"), align="C"
        )

    def _para(
        self,
        text: str,
        size: float = 10,
        colour: tuple[int, int, int] = TEXT,
        style: str = "",
        h: float = 5,
        fill: bool = False,
    ) -> None:
        if len(text) > MAX_PARAGRAPH:
            text = text[: MAX_PARAGRAPH - 1] + "…"
        self.set_font("helvetica", style=style, size=size)
        self.set_text_color(*colour)
        width = self.w - self.l_margin - self.r_margin
        for line in self._wrap(self._t(text), width - 2 * self.c_margin):
            self.cell(0, h, line, fill=fill, new_x=XPos.LMARGIN, new_y=YPos.NEXT)

    def _wrap(self, text: str, width: float) -> list[str]:
        """``text`` broken into lines of at most ``width`` mm at the current font, between
        words (a word wider than a line is cut). fpdf2's multi_cell does this too, but in time
        quadratic in a line's length: seconds for the enterprise example's report."""
        # The core font's widths (1/1000 of the size) straight from its table: fpdf2's
        # get_string_width costs a tenth of a millisecond a call.
        font = self.current_font
        assert font is not None  # _para sets it
        widths = cast(dict[str, int], font.cw)
        scale = self.font_size / 1000

        def measure(word: str) -> float:
            return sum(widths.get(c, 600) for c in word) * scale

        space = measure(" ")
        lines: list[str] = []
        for paragraph in text.split("\n"):
            line: list[str] = []
            used = 0.0
            for word in paragraph.split(" "):
                size = measure(word)
                while size > width:  # cut a very long word where it reaches the edge
                    if line:
                        lines.append(" ".join(line))
                        line, used = [], 0.0
                    cut = max(1, int(len(word) * width / size))
                    lines.append(word[:cut])
                    word = word[cut:]
                    size = measure(word)
                if line and used + space + size > width:
                    lines.append(" ".join(line))
                    line, used = [], 0.0
                used += (space if line else 0.0) + size
                line.append(word)
            lines.append(" ".join(line))
        return lines

    def _heading(self, text: str, size: float = 13) -> None:
        if self.get_y() > self.h - 40:
            self.add_page()
        self.ln(3)
        self._para(text, size=size, style="B", h=7)
        self.set_draw_color(*RULE)
        self.line(self.l_margin, self.get_y(), self.w - self.r_margin, self.get_y())
        self.ln(2)

    def _chart(self, chart: SvgChart) -> None:
        width = self.w - self.l_margin - self.r_margin
        # The SVG is 720 units wide; its height in mm at this width:
        height_units = float(str(chart.svg).split('height="', 1)[1].split('"', 1)[0])
        height = width * height_units / 720
        if self.get_y() + height + 12 > self.h - self.b_margin:
            self.add_page()
        self._para(chart.title, size=10, style="B")
        svg = self._t(str(chart.svg)).encode("cp1252", "replace")
        self.image(io.BytesIO(svg), x=self.l_margin, w=width)
        if chart.note:
            self._para(chart.note, size=8, colour=MUTED, h=4)
        self.ln(2)

    def render(self, ctx: dict[str, Any]) -> None:
        """Lay out the report: header, partial banner, figures, charts, recommendations,
        per-analyzer sections."""
        a, s = ctx["a"], ctx["s"]
        self._footer_title = f"{a.name} ({a.id})"
        self.alias_nb_pages()
        self.add_page()
        self._para("Assessment report", size=18, style="B", h=9)
        self._para(f"{a.name} · {a.organisation} · {ctx['created']}", size=10, colour=MUTED)
        self._para(
            f"{a.instances:,} instances, {a.gpus:,} GPUs, {a.workloads} workloads, "
            f"{a.datasets} datasets in {len(a.regions)} regions; budget "
            f"{money(a.monthly_budget_usd)}/month; frameworks: "
            f"{', '.join(a.frameworks) or 'none'}",
            size=10,
        )
        self.ln(2)
        if s.partial:
            self.set_fill_color(*BANNER)
            missing = ", ".join(
                f"{ctx['roles'].get(n, n)} ({s.missing_status[n]})" for n in s.missing
            )
            banner = f"Partial report: missing {missing}. Their findings are not included."
            self._para(banner, colour=DANGER, style="B", h=6, fill=True)
            self.ln(2)
        gross = s.gross_monthly_saving_usd
        upto = f" (up to {money(gross)})" if gross > s.total_monthly_saving_usd else ""
        self._para(
            f"Estimated saving {money(s.total_monthly_saving_usd)}/month{upto} · "
            f"{len(s.recommendations)} recommendations from {s.findings_total} findings · "
            f"{len(s.completed)} analyzers completed",
            size=11,
            style="B",
        )
        self._heading("Charts")
        for chart in ctx["charts"]:
            self._chart(chart)
        self._heading("Ranked recommendations")
        if not s.recommendations:
            self._para("No recommendations.", colour=MUTED)
        for rec in s.recommendations[:MAX_RECOMMENDATIONS]:
            self._recommendation(rec, ctx["roles"])
        if len(s.recommendations) > MAX_RECOMMENDATIONS:
            rest = len(s.recommendations) - MAX_RECOMMENDATIONS
            self._para(f"… and {rest} more in the HTML and JSON reports.", colour=MUTED)
        for section in ctx["sections"]:
            self._section(section)

    def _recommendation(self, rec: Any, roles: dict[str, str]) -> None:
        if self.get_y() > self.h - 35:
            self.add_page()
        saving = f" · saves {money(rec.monthly_saving_usd)}/month" if rec.monthly_saving_usd else ""
        if rec.monthly_saving_usd and not rec.counted:
            saving += " (overlaps a larger one)"
        head = f"{rec.rank}. [{rec.severity.upper()}] {rec.title}{saving}"
        self._para(head, colour=SEVERITY_RGB[rec.severity], style="B")
        self._para(rec.recommendation, size=9)
        by = ", ".join(roles.get(n, n) for n in rec.analyzers)
        extra = f" · rules: {'; '.join(rec.rules)}" if rec.rules else ""
        evidence = ", ".join(rec.evidence[:6]) + (" …" if len(rec.evidence) > 6 else "")
        self._para(f"{by}{extra} · evidence: {evidence or '—'}", size=8, colour=MUTED, h=4)
        self.ln(1.5)

    def _section(self, section: dict[str, Any]) -> None:
        self._heading(f"{section['role']} — {section['status']}", size=11)
        result = section["result"]
        if result is None:
            self._para("No result: the analyzer did not run.", colour=MUTED)
            return
        if result.error:
            self._para(f"Error: {result.error}", size=9, colour=DANGER)
        self._para(result.summary, size=10)
        if section["facts"]:
            facts = " · ".join(f"{k}: {v}" for k, v in section["facts"])
            self._para(facts, size=8, colour=MUTED, h=4)
        findings = section["findings"]
        for f in findings[:MAX_FINDINGS_PER_SECTION]:
            head = f"[{f.severity}] {f.title}"
            self._para(head, size=9, colour=SEVERITY_RGB[f.severity], style="B", h=4.5)
            self._para(f.recommendation, size=8.5, h=4)
        if len(findings) > MAX_FINDINGS_PER_SECTION:
            more = len(findings) - MAX_FINDINGS_PER_SECTION
            self._para(
                f"… and {more} more findings in the HTML and JSON reports.", size=8, colour=MUTED
            )
