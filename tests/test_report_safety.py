"""A store's values are data in the report: no active Markdown or HTML, no shell trap in a shown command."""

from __future__ import annotations

import html
import re

import markdown

from conftest import compose

from fashion_lab.report.build import build_report
from fashion_lab.report.document import Document, md_text
from fashion_lab.report.sections import recorded_command

PLANTED = ["<script>alert(1)</script>", "<svg onload=alert(2)>", "ok\n# injected heading",
           "[x](javascript:alert(3))", "`code` | cell", "<javascript:alert(4)>"]


def _planted_store(uri: str) -> None:
    """Plain runs whose names, params, tags and failure reasons are the planted values."""
    from fashion_lab.record import tracking

    cfg = compose([f"tracking.uri={uri}"])
    client = tracking.client_for(cfg.tracking)
    exp = tracking.ensure_experiment(client, cfg.tracking)
    for i, value in enumerate(PLANTED):
        run = client.create_run(exp, run_name=value, tags={
            "fashion_lab.overrides": "tracking.run_name=`touch x` model.dense_units=$(id)",
            "fashion_lab.command": "fashion-lab train `touch x` $(id)", "fashion_lab.git_commit": value})
        tracking.log_params(client, run.info.run_id, {"optimizer.learning_rate": 0.01 * (i + 1),
                                                      "model.note": value})
        tracking.log_metrics(client, run.info.run_id, {"test_accuracy": 0.8, "best_val_accuracy": 0.8})
        client.set_terminated(run.info.run_id, "FINISHED")
    run = client.create_run(exp, run_name="broken\n[y](javascript:alert(5))")
    client.set_tag(run.info.run_id, "fashion_lab.failure", "<img src=x onerror=alert(6)>")
    client.set_terminated(run.info.run_id, "FAILED")


def _inert(rendered: str) -> None:
    """Rendered Markdown whose only tags are the document's own: no script, svg, img, link or injected h1."""
    tags = set(re.findall(r"<([a-zA-Z][a-zA-Z0-9]*)", rendered))
    assert tags <= {"h1", "h2", "p", "ul", "li", "table", "thead", "tbody", "tr", "th", "td", "img", "pre",
                    "code"}, tags
    assert "javascript:" not in rendered.replace("javascript&amp;#58;", "")
    assert "<a " not in rendered and "onload" not in re.sub(r"&lt;svg onload", "", rendered)
    assert rendered.count("<h1>") == 1 and "<h1>injected" not in rendered and "<h2>injected" not in rendered
    assert all("plots/" in img for img in re.findall(r"<img[^>]*>", rendered))  # only the report's own figures


def test_store_values_render_as_inert_markdown(store, tmp_path):
    _planted_store(store)
    folder = build_report(store, tmp_path / "rep", progress=None)
    md = (folder / "report.md").read_text()
    assert "\n# injected" not in md and "](javascript:" not in md and "<script>" not in md
    _inert(markdown.markdown(md, extensions=["tables", "fenced_code"]))
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in md  # still shown, as text


def test_md_text_neutralises_each_construct():
    for value in PLANTED + ["# title", "- item", "1. item", "> quote", "a\r\nb"]:
        doc = Document("t")
        doc.p(value)
        doc.bullets([value])
        _inert(markdown.markdown(doc.markdown("plots"), extensions=["tables"]))
    assert md_text("-5.0", block=False) == "-5.0"  # a table cell starts no block


def test_recorded_command_is_rebuilt_with_shell_quoting(store, tmp_path):
    assert recorded_command("tracking.run_name=`touch x` b=$(id) c=1") == \
        "fashion-lab train 'tracking.run_name=`touch' 'x`' 'b=$(id)' c=1"
    assert recorded_command("a=1", reproduces="abc") == "fashion-lab reproduce abc a=1"
    assert recorded_command(float("nan")) == "fashion-lab train"
    _planted_store(store)
    page = html.unescape((build_report(store, tmp_path / "rep", progress=None) / "report.html").read_text())
    assert "fashion-lab train `touch x` $(id)" not in page  # the store's own command tag is never shown
    assert "fashion-lab train 'tracking.run_name=`touch' 'x`' 'model.dense_units=$(id)'" in page
