"""How the dashboard writes docstrings and times (conveyor.web.formatting)."""

from __future__ import annotations

from datetime import UTC, datetime

from conveyor.web.formatting import doc_summary, format_time, iso_time


def test_doc_summary_is_the_first_paragraph_with_code_spans_as_code() -> None:
    doc = """Delete batches failed more than ``older_than_days`` ago (default
        ``CONVEYOR_X``); see `steps` <b>here</b>.

        Second paragraph, not shown.
    """
    assert str(doc_summary(doc)) == (
        "Delete batches failed more than <code>older_than_days</code> ago (default "
        "<code>CONVEYOR_X</code>); see <code>steps</code> &lt;b&gt;here&lt;/b&gt;."
    )


def test_doc_summary_escapes_inside_code_spans_and_takes_no_doc() -> None:
    assert str(doc_summary("Run `<script>` once")) == "Run <code>&lt;script&gt;</code> once"
    assert str(doc_summary(None)) == ""
    assert str(doc_summary("a ` lone backquote")) == "a ` lone backquote"


def test_times_from_json_text_read_as_times_from_the_ledger() -> None:
    moment = datetime(2026, 12, 4, 17, 1, 49, 123000, tzinfo=UTC)
    assert format_time(moment.isoformat()) == format_time(moment) == "2026-12-04 17:01:49"
    assert iso_time(moment.isoformat()) == moment.isoformat()
    assert format_time(None) == "—" and iso_time(None) == ""
