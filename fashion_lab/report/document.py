"""A tiny document, rendered both as Markdown and as self-contained HTML (figures inlined)."""

from __future__ import annotations

import base64
import html
import math
import re

import pandas as pd

# Characters that make Markdown (or the HTML it may carry) do something: tags, entities, links, code spans,
# table cells. A backslash makes each plain text in CommonMark; < > & become entities.
_MD_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", "[": "\\[", "]": "\\]", "`": "\\`", "|": "\\|",
               "\\": "\\\\"}
_MD_PATTERN = re.compile("|".join(map(re.escape, _MD_ESCAPES)))
# At the start of a block these would open a heading, quote, list or thematic break.
_BLOCK_START = re.compile(r"^(\s*)([#=+*-]|\d+[.)])")


def md_text(value, block: bool = True) -> str:
    """Any text as inert Markdown: one line, no HTML, no link, no code span, no heading or list.

    Store values (run names, params, tags, failures) reach the report, and anyone who can write the
    store chooses them, so every text block is escaped here, on output."""
    text = " ".join(str(value).splitlines())  # a newline would start a new block: a heading, a link definition
    text = _MD_PATTERN.sub(lambda m: _MD_ESCAPES[m.group(0)], text)
    text = re.sub(r"(?i)javascript:", "javascript&#58;", text)  # an autolinker never sees a scheme
    # a table cell starts no block: "-5.0" stays as it is there
    return _BLOCK_START.sub(lambda m: m.group(1) + "\\" + m.group(2), text) if block else text


class Document:
    def __init__(self, title: str):
        self.title, self.blocks = title, []

    def h(self, text: str):
        self.blocks.append(("h", text))

    def p(self, text: str):
        self.blocks.append(("p", text))

    def bullets(self, items: list[str]):
        if items:
            self.blocks.append(("ul", items))

    def table(self, frame: pd.DataFrame, index: bool = False):
        if frame is not None and not frame.empty:
            self.blocks.append(("table", frame.reset_index() if index else frame))

    def code(self, text: str):
        self.blocks.append(("pre", text))

    def image(self, name: str, png: bytes, caption: str):
        self.blocks.append(("img", name, png, caption))

    @staticmethod
    def _fmt(value) -> str:
        if isinstance(value, float):
            if math.isnan(value):
                return ""
            if value.is_integer():
                return f"{value:g}"
            # 4 decimals for accuracies; small values (learning rates) keep 3 significant digits
            return f"{value:.4f}" if abs(value) >= 0.01 else f"{value:.3g}"
        return "" if value is None or value is pd.NaT else str(value)

    def markdown(self, image_dir: str) -> str:
        out = [f"# {md_text(self.title)}", ""]
        for block in self.blocks:
            kind = block[0]
            if kind == "h":
                out += [f"## {md_text(block[1])}", ""]
            elif kind == "p":
                out += [md_text(block[1]), ""]
            elif kind == "ul":
                out += [f"- {md_text(item)}" for item in block[1]] + [""]
            elif kind == "pre":
                fence = "`" * max(3, 1 + max(map(len, re.findall("`+", block[1])), default=0))
                out += [fence, block[1], fence, ""]  # a fence longer than any backtick run inside
            elif kind == "table":
                frame = block[1]
                out.append("| " + " | ".join(md_text(c, block=False) for c in frame.columns) + " |")
                out.append("|" + "---|" * len(frame.columns))
                for row in frame.itertuples(index=False):
                    out.append("| " + " | ".join(md_text(self._fmt(v), block=False) for v in row) + " |")
                out.append("")
            elif kind == "img":
                out += [f"![{md_text(block[3])}]({image_dir}/{block[1]})", ""]
        return "\n".join(out)

    def html(self) -> str:
        body = [f"<h1>{html.escape(self.title)}</h1>"]
        for block in self.blocks:
            kind = block[0]
            if kind == "h":
                body.append(f"<h2>{html.escape(block[1])}</h2>")
            elif kind == "p":
                body.append(f"<p>{html.escape(block[1])}</p>")
            elif kind == "ul":
                body.append("<ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in block[1]) + "</ul>")
            elif kind == "pre":
                body.append(f"<pre>{html.escape(block[1])}</pre>")
            elif kind == "table":
                frame = block[1].map(self._fmt)
                body.append(frame.to_html(index=False, escape=True, border=0, classes="t"))
            elif kind == "img":
                data = base64.b64encode(block[2]).decode()
                body.append(f'<figure><img alt="{html.escape(block[3])}" src="data:image/png;base64,{data}">'
                            f"<figcaption>{html.escape(block[3])}</figcaption></figure>")
        style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
                 "table.t{border-collapse:collapse;font-size:13px;margin:1em 0}"
                 "table.t td,table.t th{border:1px solid #ccc;padding:3px 6px;text-align:right}"
                 "img{max-width:100%}pre{background:#f4f4f4;padding:.5em;overflow-x:auto}")
        return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(self.title)}</title>"
                f"<style>{style}</style></head><body>{''.join(body)}</body></html>\n")
