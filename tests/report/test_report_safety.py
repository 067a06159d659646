"""A store's values are data in the report: no active Markdown or HTML, no shell trap in a shown command."""

from __future__ import annotations

import html
import re

import markdown  # Python-Markdown: installed with tensorboard (keras-tuner and tracking.tensorboard need it)

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


# --- the report folder: built beside report.out, swapped in whole ------------------------------

def _snapshot(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_failure_mid_build_leaves_the_previous_report_intact(store, tmp_path, monkeypatch):
    _planted_store(store)
    folder = build_report(store, tmp_path / "rep", progress=None)
    before = _snapshot(folder)
    assert {"runs.csv", "effects.csv", "report.md", "report.html"} <= set(before)

    def full_disk(self):
        raise OSError(28, "No space left on device")

    _planted_store(store)  # more runs since: a new runs.csv would differ from the old one
    monkeypatch.setattr(Document, "html", full_disk)  # after the CSVs, the plots and report.md are written
    try:
        build_report(store, tmp_path / "rep", progress=None)
    except OSError:
        pass
    else:
        raise AssertionError("the failure was swallowed")
    assert _snapshot(folder) == before  # not new CSVs beside the old HTML
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no half-built folder left


def test_a_symlink_in_the_report_folder_is_replaced_not_written_through(store, tmp_path):
    _planted_store(store)
    folder = build_report(store, tmp_path / "rep", progress=None)
    victim, victim_dir = tmp_path / "victim.txt", tmp_path / "elsewhere"
    victim.write_text("precious")
    victim_dir.mkdir()
    for name in ("report.html", "runs.csv"):
        (folder / name).unlink()
        (folder / name).symlink_to(victim)
    import shutil
    shutil.rmtree(folder / "plots")
    (folder / "plots").symlink_to(victim_dir)
    build_report(store, tmp_path / "rep", progress=None)
    assert victim.read_text() == "precious" and list(victim_dir.iterdir()) == []
    assert not any(p.is_symlink() for p in folder.iterdir()) and (folder / "report.html").stat().st_size > 1000


def test_report_out_that_is_a_link_or_holds_other_files_is_refused(store, tmp_path):
    from fashion_lab.report.output import UnsafeOutput

    _planted_store(store)
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "notes.txt").write_text("mine")
    for out, why in (("link", "is a symbolic link"), ("home", "holds files that are not a report's")):
        try:
            build_report(store, tmp_path / out, progress=None)
        except UnsafeOutput as error:
            assert why in str(error)
        else:
            raise AssertionError(f"report.out={out} was accepted")
    assert list((tmp_path / "real").iterdir()) == [] and (tmp_path / "home" / "notes.txt").read_text() == "mine"
