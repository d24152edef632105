"""Rendering of the evidence report and the overview page: one Jinja environment,
HTML for both, PDF through WeasyPrint.

Why WeasyPrint for the PDF: it is a library (pip package, in-process, no
browser to ship in the server image or to spawn per download), it lays out
the same HTML and CSS as the HTML report, and it draws our inline SVG charts
natively.  It needs Pango (``libpango-1.0-0``), which the Dockerfile installs.
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2

from relay.admin.charts import build_charts, minutes
from relay.admin.figures import OUTCOME_LABELS, OUTCOMES
from relay.admin.report import Report, report_json
from relay.errors import ReportError

__all__ = ["add_filters", "duration", "render_html", "render_pdf", "template_env"]

TEMPLATES = Path(__file__).parent / "templates"
# Print layout, given to WeasyPrint apart so the HTML report itself holds no "@" at all
# (a reader can grep it for one to check that no address slipped in).
PAGE_CSS = (
    "@page { size: A4; margin: 16mm 14mm; "
    '@bottom-right { content: "page " counter(page) " of " counter(pages); '
    "font-size: 8pt; color: #5b6475; } }"
)


def _utc(epoch: float | None) -> str:
    if epoch is None:
        return "—"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M UTC")


def duration(seconds: float | None) -> str:
    """``95`` → ``1 min 35 s``; ``7300`` → ``2 h 1 min``; None → ``—``."""
    if seconds is None:
        return "—"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    hours, rest = divmod(whole, 3600)
    mins, secs = divmod(rest, 60)
    if hours >= 24:
        return f"{hours // 24} d {hours % 24} h"
    if hours:
        return f"{hours} h {mins} min"
    return f"{mins} min {secs} s" if secs else f"{mins} min"


def add_filters(env: jinja2.Environment) -> None:
    """Give ``env`` (the report's, or the admin app's) what the overview templates use."""
    env.filters["utc"] = _utc
    env.filters["duration"] = duration
    env.filters["minutes"] = minutes
    env.globals.update(outcomes=OUTCOMES, outcome_labels=OUTCOME_LABELS)


@functools.cache
def template_env() -> jinja2.Environment:
    """The environment of report.html (autoescaped, strict about undefined names)."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    add_filters(env)
    return env


def _values(report: Report) -> dict[str, Any]:
    return {
        "report": report,
        "f": report.figures,
        "charts": build_charts(report.figures),
        "data": report_json(report),
    }


def render_html(report: Report) -> str:
    """The stand-alone HTML report (styles inline, no external resource)."""
    return template_env().get_template("report.html").render(**_values(report))


def render_pdf(report: Report) -> bytes:
    """The report as PDF (A4); raises ReportError if WeasyPrint cannot be loaded."""
    try:
        import weasyprint
    except (ImportError, OSError) as exc:  # OSError: Pango missing
        raise ReportError(f"PDF output needs WeasyPrint and Pango: {exc}") from exc
    page = weasyprint.CSS(string=PAGE_CSS)
    html = weasyprint.HTML(string=render_html(report), base_url=str(TEMPLATES))
    pdf: bytes = html.write_pdf(stylesheets=[page])
    return pdf
