"""A tiny document, rendered both as Markdown and as self-contained HTML (figures inlined)."""

from __future__ import annotations

import base64
import html
import math

import pandas as pd

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
        out = [f"# {self.title}", ""]
        for block in self.blocks:
            kind = block[0]
            if kind == "h":
                out += [f"## {block[1]}", ""]
            elif kind == "p":
                out += [block[1], ""]
            elif kind == "ul":
                out += [f"- {item}" for item in block[1]] + [""]
            elif kind == "pre":
                out += ["```", block[1], "```", ""]
            elif kind == "table":
                frame = block[1]
                out.append("| " + " | ".join(map(str, frame.columns)) + " |")
                out.append("|" + "---|" * len(frame.columns))
                for row in frame.itertuples(index=False):
                    out.append("| " + " | ".join(self._fmt(v).replace("|", "\\|") for v in row) + " |")
                out.append("")
            elif kind == "img":
                out += [f"![{block[3]}]({image_dir}/{block[1]})", ""]
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
