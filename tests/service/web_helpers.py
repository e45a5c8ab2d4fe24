"""Helpers for the web page tests (in-process and in the browser): what a page holds, and which
numbers of a manifest its model card must show."""
from __future__ import annotations

from html.parser import HTMLParser

from artifact.manifest import members_listed

SPLITS = ("train", "val", "test")


class PageParts(HTMLParser):
    """The parts of an HTML page the tests check: metric cells, images, scripts, inline styles, text."""

    def __init__(self, html: str):
        super().__init__()
        self.metrics: dict[str, float] = {}
        self.images: list[dict[str, str]] = []
        self.scripts: list[dict[str, str]] = []
        self.styles = 0  # <style> elements and style="" attributes (the CSP allows neither)
        self.inline_handlers = 0  # onclick="" and the like
        self.chunks: list[str] = []
        self.feed(html)
        self.text = " ".join(" ".join(self.chunks).split())

    def handle_starttag(self, tag, attrs):
        a = {k: v or "" for k, v in attrs}
        if "data-metric" in a:
            self.metrics[a["data-metric"]] = float(a["data-value"])
        if tag == "img":
            self.images.append(a)
        if tag == "script":
            self.scripts.append(a)
        self.styles += (tag == "style") + ("style" in a)
        self.inline_handlers += sum(k.startswith("on") for k in a)

    def handle_data(self, data):
        self.chunks.append(data)


def expected_metrics(manifest: dict) -> dict[str, float]:
    """{data-metric key: value} every model card must show for this manifest (as a dict)."""
    x = members_listed(manifest["metrics"], manifest["training"])
    out = {f"served.{s}": x[s] for s in SPLITS}
    out["summary.val"] = x["val"]
    for k, member in enumerate(x["members"]):
        out.update({f"member{k}.{s}": member[s] for s in SPLITS})
        for kind in ("running", "calibrated"):
            if isinstance(member.get(kind), dict):
                out.update({f"member{k}.{kind}.{s}": member[kind][s] for s in SPLITS})
    v = x.get("verification") or {}
    out.update({f"verification.{key}": v[key] for key in ("fold_max_abs_diff", "onnx_max_abs_diff", "val_loss")
                if key in v})
    if manifest.get("teacher"):
        out["teacher.val"] = manifest["teacher"]["val"]
    return out
