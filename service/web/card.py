"""The served version's model card as HTML: what a person wants to know about the model, from its
manifest and its report, without reading JSON. Pure: a manifest and a catalog in, a string out.

Every metric cell carries its exact value in `data-value` (the text is rounded for reading), so a
test can compare the page with the manifest.
"""
from __future__ import annotations

from html import escape
from pathlib import PurePosixPath
from urllib.parse import quote

from artifact.manifest import Manifest
from service.web.files import ReportFile

PLOT_CAPTIONS = {  # training/plots.py's file names, in the order the lecture reads them
    "loss": "training loss (log10, mean per 1,000 steps)",
    "activations": "tanh outputs per layer, at init and at the end: mean, std, % saturated",
    "activation_grads": "gradients at the tanh outputs per layer, at init and at the end",
    "weight_grads": "weight gradients per layer, with their grad:data ratios",
    "update_ratio": "log10 update:data ratio per weight over training (about -3 is healthy)",
}
WARNING_TITLES = {
    "initial_loss_high": "initial loss too high",
    "tanh_saturated_at_init": "tanh saturated at init",
    "update_ratio_out_of_range": "update:data ratio out of range",
}


def file_url(version: str, path: str) -> str:
    return f"/model/files/{quote(version, safe='')}/{quote(path)}"


def corpus_description(m: Manifest) -> str | None:
    """The manifest's words for its corpus (e.g. which names a family model learned), if it has any."""
    description = m.description  # stored at publish; older manifests: derived from their corpus fingerprint
    return description.strip() or None if isinstance(description, str) else None


def model_picker(names: list[str], chosen: str) -> str:
    """Links to every served model's card (the one shown is marked)."""
    current = ' aria-current="page"'
    links = [f'<a href="/model/card?model={quote(n)}"{current if n == chosen else ""}>{escape(n)}</a>'
             for n in names]
    return f'<nav id="models" aria-label="models">Models: {" · ".join(links)}</nav>' if len(names) > 1 else ""


def render_card(m: Manifest, catalog: dict[str, ReportFile], refused: str | None = None,
                models: list[str] = (), examples: tuple[int, list[str]] | None = None) -> str:
    """The <main> of the card page; models: every served model's name; examples: (seed, names) the
    model generated."""
    parts = [model_picker(list(models), m.name), f"<h1>{escape(m.name)} <small>{escape(m.version)}</small></h1>"]
    description = corpus_description(m)
    if description:
        parts.append(f'<p id="corpus-description">{escape(description)}</p>')
    if refused:
        parts.append(f'<p class="notice" id="refused">The last reload was refused and this version keeps '
                     f"serving: {escape(refused)}</p>")
    if examples:
        seed, names = examples
        parts.append(f'<p id="examples">Names it writes (seed {seed}, unique): '
                     + ", ".join(f"<strong>{escape(n)}</strong>" for n in names)
                     + ' &mdash; <a href="/">ask for more</a></p>')
    facts = [_summary(m), _corpus(m), _metrics(m), _health(m), _architecture(m), _verification(m), _teacher(m),
             _training(m)]
    parts += [f'<div class="facts">{"".join(facts)}</div>', _plots(m, catalog)]
    return "\n".join(parts)


def _rows(pairs) -> str:
    return "".join(f"<tr><th>{escape(str(k))}</th><td>{v}</td></tr>" for k, v in pairs)


def _table(pairs, id_: str) -> str:
    return f'<div class="scroll"><table id="{id_}" class="kv">{_rows(pairs)}</table></div>'


def _section(id_: str, title: str, body: str) -> str:
    return f'<section id="{id_}"><h2>{escape(title)}</h2>{body}</section>'


def _text(v) -> str:
    return "—" if v is None else escape(str(v))


def _count(v) -> str:
    return f"{v:,}" if isinstance(v, int) else _text(v)


def _summary(m: Manifest) -> str:
    return _section("summary", "Summary", _table([
        ("name", _text(m.name)), ("version", _text(m.version)), ("created", _text(m.created)),
        ("vocabulary", f"<code>{escape(m.vocab)}</code> ({len(m.vocab)} symbols)"),
        ("context", f"{m.block_size} characters"),
        ("val loss", _loss(m.metrics.get("val"), "summary.val")),
    ], "summary-table"))


def _corpus(m: Manifest) -> str:
    c = m.corpus
    sizes = c.get("sizes") or {}
    return _section("corpus", "Corpus", _table([
        ("description", _text(corpus_description(m))),
        ("source", _text(c.get("source"))), _years(c),
        ("names", _count(sizes.get("names"))),
        ("examples (train / val / test)", " / ".join(_count(sizes.get(k)) for k in ("train", "val", "test"))),
        ("split seed", _text(c.get("seed"))),
        ("sha256", f'<code class="hash">{_text(c.get("sha256"))}</code>'),
    ], "corpus-table"))


def _years(c: dict) -> tuple[str, str]:
    """The corpus's year, or its span of years when the selection names one."""
    years = (c.get("selection") or {}).get("years")
    if isinstance(years, list) and len(years) == 2 and years[0] != years[1]:
        return "years", f"{_text(years[0])}-{_text(years[1])}"
    return "year", _text(c.get("year"))


def _architecture(m: Manifest) -> str:
    a = m.architecture
    pairs = [("parameters", f'<span id="parameters">{_count(a.get("parameters"))}</span>'),
             ("after folding BatchNorm", f'<span id="folded-parameters">{_count(a.get("folded_parameters"))}</span>'),
             ("members", _text(a.get("members") or 1) + (" (logits averaged)" if (a.get("members") or 1) > 1 else "")),
             ("ONNX opset", _text(a.get("onnx_opset")))]
    pairs += [(k, _text(v)) for k, v in (a.get("model") or {}).items()]
    return _section("architecture", "Architecture", _table(pairs, "architecture-table"))


def _teacher(m: Manifest) -> str:
    t = m.teacher
    if not t:
        return _section("teacher", "Teacher", "<p>None: trained from the corpus alone.</p>")
    return _section("teacher", "Teacher", "<p>Distilled from another model:</p>" + _table([
        ("name", _text(t.get("name"))), ("version", _text(t.get("version"))),
        ("val loss", _loss(t.get("val"), "teacher.val")), ("members", _text(t.get("members"))),
    ], "teacher-table"))  # not its source: a path on the training machine is none of a visitor's business


def _loss(v, key: str) -> str:
    if not isinstance(v, (int, float)):
        return "—"
    return f'<span data-metric="{escape(key)}" data-value="{v!r}">{v:.4f}</span>'


def _metrics(m: Manifest) -> str:
    """train/val/test rows; a column for the served model, each member, and its running and calibrated
    BatchNorm statistics."""
    x = m.metrics
    columns = [("served", "served model", x)]
    for k, member in enumerate(x["members"]):
        columns.append((f"member{k}", f"member {k}<br><small>seed {_text(member.get('seed'))}, "
                                      f"{_text(member.get('statistics'))} statistics</small>", member))
        for kind in ("running", "calibrated"):
            if isinstance(member.get(kind), dict):
                columns.append((f"member{k}.{kind}", f"member {k}<br><small>{kind} statistics</small>", member[kind]))
    head = "".join(f"<th>{label}</th>" for _, label, _ in columns)
    rows = "".join(f"<tr><th>{split}</th>" + "".join(f"<td>{_loss(values.get(split), f'{key}.{split}')}</td>"
                                                     for key, _, values in columns) + "</tr>"
                   for split in ("train", "val", "test"))
    note = (f"<p>Mean cross-entropy (nats per character) after {_count(x.get('steps'))} steps "
            f"({_text(x.get('seconds'))} s of training).</p>")
    return _section("metrics", "Loss", f'{note}<div class="scroll"><table id="metrics-table">'
                                       f"<tr><th></th>{head}</tr>{rows}</table></div>")


def _verification(m: Manifest) -> str:
    v = m.metrics.get("verification") or {}

    def diff(key: str) -> str:
        d = v.get(key)
        return f'<span data-metric="verification.{key}" data-value="{d!r}">{d:.3g}</span>' \
            if isinstance(d, (int, float)) else "—"
    return _section("verification", "Verification", "<p>The exported graph against the training model, "
                    "over the whole validation set.</p>" + _table([
                        ("examples", _count(v.get("examples"))),
                        ("folded vs unfolded (max abs diff of logits)", diff("fold_max_abs_diff")),
                        ("onnxruntime vs torch (max abs diff of logits)", diff("onnx_max_abs_diff")),
                        ("val loss through onnxruntime", _loss(v.get("val_loss"), "verification.val_loss")),
                    ], "verification-table"))


def _health(m: Manifest) -> str:
    warnings = m.health.get("warnings") or []
    if m.health.get("ok"):
        verdict = '<p class="verdict ok" id="verdict">Healthy: no diagnostic raised a warning.</p>'
    else:
        verdict = (f'<p class="verdict warn" id="verdict">{len(warnings)} warning'
                   f'{"" if len(warnings) == 1 else "s"} from the training diagnostics:</p>')
    items = "".join(
        f'<li class="warning"><strong>{escape(WARNING_TITLES.get(w.get("name"), str(w.get("name", "")).replace("_", " ")))}'
        f"</strong>: {escape(str(w.get('message', '')))}</li>" for w in warnings if isinstance(w, dict))
    return _section("health", "Health", verdict + (f'<ul id="warnings">{items}</ul>' if items else ""))


def _plots(m: Manifest, catalog: dict[str, ReportFile]) -> str:
    plots = [f for f in catalog.values() if f.is_plot]
    if not plots:
        return _section("plots", "Training report", "<p>This version ships no plots.</p>")
    groups: dict[str, list[ReportFile]] = {}
    for f in plots:
        groups.setdefault(PurePosixPath(f.path).parent.name, []).append(f)
    order = list(PLOT_CAPTIONS)
    body = []
    for group, files in groups.items():
        title = group.replace("-", " ") if group != "plots" else ""
        figures = []
        for f in sorted(files, key=lambda f: (order.index(s) if (s := PurePosixPath(f.path).stem) in order
                                               else len(order), f.path)):
            caption = PLOT_CAPTIONS.get(PurePosixPath(f.path).stem, PurePosixPath(f.path).stem.replace("_", " "))
            size = f' width="{f.size[0]}" height="{f.size[1]}"' if f.size else ""
            figures.append(f'<figure><img src="{file_url(m.version, f.path)}" alt="{escape(caption)}"{size}>'
                           f"<figcaption>{escape(caption)}</figcaption></figure>")
        body.append((f"<h3>{escape(title)}</h3>" if title else "") + f'<div class="plots">{"".join(figures)}</div>')
    links = [f'<a href="{file_url(m.version, f.path)}">{escape(f.path)}</a>'
             for f in catalog.values() if not f.is_plot]
    more = f'<p>The report as data: {", ".join(links)}.</p>' if links else ""
    intro = ("<p>The diagnostics of makemore part 3, at initialisation and at the end of training: healthy "
             "tanh layers have few saturated units, gradients of a similar size in every layer, and "
             "updates about a thousandth of the weights (log10 ratio near -3).</p>")
    return _section("plots", "Training report", intro + "".join(body) + more)


def _training(m: Manifest) -> str:
    shown = [(k, _text(v)) for k, v in m.training.items() if k != "teacher"]  # the Teacher section says it
    return _section("training", "Training recipe", _table(shown, "training-table"))
