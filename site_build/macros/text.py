"""Macros and filters for text from the config (words, training texts) and for the words that follow the numbers.

Config text is data, never markup: these escape it for the page (`text`, `code`, `word_list`, `and_list`) or for
LaTeX text mode (`latex_escape`, `| tex`, `latex_text`), with engine.notation's escaper, the one of the project.

A sentence whose words depend on the config gets them from here: `count(3, "head")` (3 heads),
`counted(2, "head")` (two heads), `plural`, `agree` (is/are), `ordinal` (first, 13th), `all_of` (both heads),
`each_of`, `and_list` (1, 5 and 7), `text_name(0)` (text 1: readers count texts from 1), `claim` (stop the
build when a sentence is false for the config), `symbols_table`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from markupsafe import Markup

from site_build import format as fmt
from site_build.figures import Split
from site_build.macros.blocks import Other, Parts
from site_build.macros.registry import MacroError, PageContext, filter, macro


@macro(context=False)
@filter("text")
def text(value: object) -> Markup:
    """`{{ s | text }}`: config text escaped for the page (right-to-left text isolated)."""
    return fmt.html_words(value)


@macro(context=False)
@filter("code")
def code(value: object) -> Markup:
    """`{{ word | code }}`: config text as a code span."""
    return fmt.html_code(value)


@macro(context=False)
def word_list(words: object, sep: str = " ", quoted: bool = False) -> Markup:
    """Several config words, each isolated on its own, joined by `sep`; `quoted`: each in “curly quotes”."""
    if quoted and not isinstance(words, (str, bytes)):
        return Markup(fmt.html_text(sep).join(Markup(f"“{fmt.html_words(w)}”") for w in words))  # type: ignore
    return fmt.html_word_list(words, sep)


@macro(context=False)
@filter("tex")
def latex_escape(value: object) -> Markup:
    """`$\\text{ {{ word | tex }} }$`: config text escaped for LaTeX text mode (`<pad>`, `$`, `{}` as themselves).

    Markup, so Jinja's HTML autoescape leaves it alone: it goes to KaTeX and holds none of `< > &` raw."""
    return Markup(fmt.latex_escape(value))


@macro(context=False)
def latex_text(value: object) -> Markup:
    """Config text as a complete LaTeX text-mode group: `\\text{...}`."""
    return Markup(fmt.latex_text(value))


@macro(name="count", context=False)
def count_words(n: Any, noun: str, plural: str | None = None) -> str:
    """`1 position`, `3 positions`: a number with its noun, singular for exactly one (`count(T, "position")`)."""
    return fmt.counted(n, noun, plural)


@macro
def split(ctx: PageContext, sentence: Any) -> Markup:
    """A sentence that splits a total into parts, from a fact (`{{ split(opt.moved) }}`, a figures.Split): its text,
    marked with the total and the parts (`data-total`, `data-parts`) so that a check can add them up. The parts
    must add up to the total here already."""
    if not isinstance(sentence, Split):
        raise MacroError(f"bad argument {sentence!r} for split(): give a fact that splits a total, such as opt.moved")
    if sum(sentence.parts) != sentence.total or not sentence.parts:
        raise MacroError(f"split(): the parts {list(sentence.parts)} of “{sentence.text}” add up to "
                         f"{sum(sentence.parts)}, not to its total {sentence.total}")
    if "\n" in sentence.text:
        raise MacroError(f"split(): “{sentence.text}” spans several lines; write it on one")
    parts = " ".join(map(str, sentence.parts))
    return ctx.place(Parts(sentence.total, sentence.parts, sentence.text),
                     f'<span class="split" data-total="{sentence.total}" data-parts="{parts}">{sentence.text}</span>')


@macro(name="span", context=False)
def span_words(first: Any, last: Any, sep: str = " to ") -> str:
    """`3 to 7`, or just `3` when the range holds one number (`columns {{ span(a, b) }}`)."""
    return str(first) if first == last else f"{first}{sep}{last}"


# -- words that follow the numbers: counts, plurals, ordinals, lists, texts ------------------------------------------
NUMBER_WORDS = ["no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
                "twelve"]
ORDINAL_WORDS = ["zeroth", "first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth",
                 "tenth", "eleventh", "twelfth"]


def _whole(n: Any, what: str) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise MacroError(f"bad argument {n!r} for {what}(): give a whole number")
    return int(n)


@macro(name="number_word", context=False)
def number_word(n: Any) -> str:
    """`one`, `two`, ..., `twelve`, then digits: `{{ number_word(H) }} heads`."""
    n = _whole(n, "number_word")
    return NUMBER_WORDS[n] if 0 <= n < len(NUMBER_WORDS) else str(n)


@macro(name="plural", context=False)
def plural_noun(n: Any, noun: str, plural: str | None = None) -> str:
    """The noun alone, singular for exactly one: `{{ plural(H, "head") }}`, `{{ plural(k, "entry", "entries") }}`."""
    return noun if n == 1 else fmt.plural_of(noun, plural)


@macro(name="agree", context=False)
def agree(n: Any, singular: str, plural: str) -> str:
    """A verb that agrees with a count: `{{ agree(n, "is", "are") }}`, `{{ agree(n, "has", "have") }}`."""
    return singular if n == 1 else plural


@macro(name="counted", context=False)
def counted(n: Any, noun: str, plural: str | None = None) -> str:
    """`one head`, `three heads`, `13 heads`: the number in words up to twelve, with its noun."""
    return f"{number_word(n)} {plural_noun(n, noun, plural)}"


@macro(name="ordinal", context=False)
def ordinal(n: Any, words: bool = True) -> str:
    """`first`, `second`, ..., `twelfth`, then `13th`, `21st`; `words=false` gives `1st`, `2nd`, `3rd`."""
    n = _whole(n, "ordinal")
    if words and 0 <= n < len(ORDINAL_WORDS):
        return ORDINAL_WORDS[n]
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


@macro(name="all_of", context=False)
def all_of(n: Any, noun: str, plural: str | None = None) -> str:
    """`the single head`, `both heads`, `all three heads`: every one of n things."""
    n = _whole(n, "all_of")
    if n == 1:
        return f"the single {noun}"
    if n == 2:
        return f"both {fmt.plural_of(noun, plural)}"
    return f"all {number_word(n)} {fmt.plural_of(noun, plural)}"


@macro(name="each_of", context=False)
def each_of(n: Any, noun: str, plural: str | None = None) -> str:
    """`the head`, `each of the two heads`, `each of the three heads`."""
    n = _whole(n, "each_of")
    return f"the {noun}" if n == 1 else f"each of the {number_word(n)} {fmt.plural_of(noun, plural)}"


@macro(name="and_list", context=False)
def and_list(items: Any, conj: str = "and", quote: bool = False) -> Markup:
    """`1`, `1 and 5`, `1, 5 and 7`: items joined for a sentence; config words are escaped, `quote=true` puts each
    in quotes: `{{ and_list(positions) }}`, `{{ and_list(words, quote=true) }}`."""
    if isinstance(items, (str, bytes)) or not isinstance(items, (list, tuple, range)):
        raise MacroError(f"bad argument {items!r} for and_list(): give a list")
    if not items:
        raise MacroError("and_list() of an empty list: guard the sentence with {% if items %}")
    parts = [fmt.html_words(x) for x in items]
    if quote:
        parts = [Markup(f"“{p}”") for p in parts]
    if len(parts) == 1:
        return Markup(parts[0])
    return Markup(", ").join(parts[:-1]) + Markup(f" {fmt.html_text(conj)} ") + parts[-1]


@macro(name="text_name", context=False)
def text_name(b: Any, capital: bool = False) -> str:
    """A text of the batch as readers count it, from 1: `text_name(0)` gives `text 1` (the trace's batch index 0)."""
    b = _whole(b, "text_name")
    return f"{'Text' if capital else 'text'} {b + 1}"


@macro(name="claim", context=False)
def claim(holds: Any, sentence: str) -> str:
    """Stop the build when a sentence the page is about to say is false for this config: `{{ claim(x > 0, "...") }}`.

    Returns nothing; put it right before the sentence it guards. Prefer computing the wording (`{% if %}`); use
    this where the page has only one wording and the config could make it false."""
    if not isinstance(sentence, str) or not sentence.strip():
        raise MacroError("claim() needs the sentence it guards, as text")
    if not holds:
        raise MacroError(f"this sentence is false for this config: {sentence}")
    return ""


def _size_value(trace: Any, key: str) -> Any:
    """The value of one of notation.SIZES in this build (None for an index or a symbol without a value)."""
    from engine.layers import GELU_C
    from engine.tape import EPS

    cfg, ids = trace.config, np.asarray(trace["input_ids"])
    m, o = cfg["model"], cfg["optimizer"]
    table = {"model.vocab": len(trace.labels["vocab"]), "model.d_model": m["d_model"],
             "model.n_heads": m["n_heads"], "head_dim": m["d_model"] // m["n_heads"], "model.d_ff": m["d_ff"],
             "model.n_layers": m["n_layers"], "texts": ids.shape[0], "positions": ids.shape[1],
             "targets": int((np.asarray(trace["targets"]) >= 0).sum()), "train_steps": cfg["train_steps"],
             "optimizer.lr": o["lr"], "optimizer.weight_decay": o["weight_decay"], "optimizer.eps": o["eps"],
             "optimizer.momentum": o["momentum"], "eps_ln": EPS, "gelu_c": GELU_C,
             "model.n_kv_heads": m.get("n_kv_heads"), "model.rope_theta": m.get("rope_theta"),
             "model.norm_eps": m.get("norm_eps")}
    if key == "optimizer.betas":
        return f"{fmt.tex_number(o['betas'][0])},\\ {fmt.tex_number(o['betas'][1])}"
    value = table.get(key)
    return None if value is None else fmt.tex_number(value)


def _prose(ctx: PageContext, words: str) -> str:
    """Plain words with `$...$` formulas, as HTML with the formulas typeset (a table cell outside Markdown)."""
    parts = words.split("$")
    return "".join(ctx.slot(p, False) if k % 2 else str(fmt.html_text(p)) for k, p in enumerate(parts))


@macro
def symbols_table(ctx: PageContext, part: str = "records") -> Markup:
    """The site's notation, generated from the trace and engine/notation.py: `part="sizes"` the sizes, constants and
    indices (with their value in this build); `part="records"` one row per kind of record (symbol, meaning, shape,
    record name; a block's records once, named for block 0; an optimizer intermediate once for every tensor)."""
    from engine import notation

    if part == "sizes":
        rows = []
        for tex, words, key in notation.sizes(ctx.trace.config["model"].get("arch", "gpt2")):
            value = _size_value(ctx.trace, key) if key else None
            shown = ctx.slot(value, False) if value is not None else ""
            rows.append(f"<tr><td>{ctx.slot(tex, False)}</td><td>{_prose(ctx, words)}</td><td>{shown}</td></tr>")
        head = "<tr><th scope='col'>symbol</th><th scope='col'>meaning</th><th scope='col'>in this build</th></tr>"
        return ctx.place(Other("the table of sizes and their symbols"),
                         f'<div class="table-wrap"><table class="symbols"><thead>{head}</thead><tbody>'
                         f'{"".join(rows)}</tbody></table></div>')
    if part != "records":
        raise MacroError(f"bad argument part={part!r} for symbols_table(): give 'sizes' or 'records'")
    seen: set[str] = set()
    rows = []
    for rec in ctx.trace.records:
        key = notation.generic(rec.name)
        head, _, rest = key.partition(".")
        family = key
        if head in ("opt", "updated"):
            family = f"{head}.{rest.partition('.')[0]}" if head == "opt" else "updated"
        if family in seen:
            continue
        seen.add(family)
        if head == "opt":
            kind = rest.partition(".")[0]
            shown_name, meaning, shape = f"opt.{kind}.θ", notation.OPT_MEANINGS[f"opt.{kind}"], "the shape of θ"
        elif head == "updated":
            shown_name, meaning, shape = "updated.θ", "every parameter θ after the step: θ′", "the shape of θ"
        else:
            shown_name = rec.name
            meaning = notation.meaning(rec.name, tied="lm_head.weight" not in ctx.trace,
                                       arch=ctx.trace.config["model"].get("arch", "gpt2"))
            shape = fmt.describe_shape(rec.value.shape, rec.axes)
        symbol = ctx.slot(rec.symbol, False) if rec.symbol else ""
        where = "every block" if notation._LAYER.search(rec.name) else ""
        name_html = f"<code>{fmt.html_text(shown_name)}</code>"
        if where:
            name_html += f" <span class='at'>({where})</span>"
        rows.append(f"<tr><td>{symbol}</td><td>{fmt.html_text(meaning)}</td><td>{fmt.html_text(shape)}</td>"
                    f"<td>{name_html}</td></tr>")
    head = ("<tr><th scope='col'>symbol</th><th scope='col'>meaning</th><th scope='col'>shape</th>"
            "<th scope='col'>record</th></tr>")
    return ctx.place(Other("the table of records and their symbols"),
                     f'<div class="table-wrap"><table class="symbols"><thead>{head}</thead><tbody>'
                     f'{"".join(rows)}</tbody></table></div>')


# -- two functions the prose needs on trace numbers (a page cannot call NumPy's) ----------------------------------
@macro(name="log_of", context=False)
def log_of(x: Any) -> float:
    """The natural logarithm: `$\\log n_{\\text{vocab}} = {{ num(log_of(V)) }}$`."""
    x = float(x)
    if not x > 0:
        raise MacroError(f"log_of({x!r}): needs a positive number")
    return float(np.log(x))


@macro(name="exp_of", context=False)
def exp_of(x: Any) -> float:
    """e to the power x: the perplexity is `{{ num(exp_of(trace["loss"]), 2) }}`."""
    return float(np.exp(float(x)))


@macro
def trace_json_example(ctx: PageContext) -> Markup:
    """The start of this build's `trace.json`, abridged: the head and the first record, every name, shape and label
    taken from the trace (never typed, so it cannot disagree with the file), as an escaped code block."""
    import json

    from engine.trace import FORMAT, VERSION, _record_header

    tr = ctx.trace

    def j(x: Any) -> str:
        return json.dumps(x, ensure_ascii=False)

    labels = tr.labels
    key, first = next((k, v) for k, v in tr.index.items() if isinstance(v, dict))
    rec = _record_header(tr.records[0])
    head = {k: rec[k] for k in ("name", "op", "phase", "inputs", "axes", "shape", "dtype")}
    inner = ", ".join(f"{j(k)}: {j(v)}" for k, v in head.items())
    text = (
        f'{{"format": {j(FORMAT)}, "version": {VERSION},\n'
        ' "config": {...the resolved config: every key, defaults filled in...},\n'
        f' "labels": {{"vocab": [{j(labels["vocab"][0])}, ...], '
        f'"inputs": [[{", ".join(map(j, labels["inputs"][0][:2]))}, ...]], '
        f'"targets": [[{j(labels["targets"][0][0])}, ...]]}},\n'
        f' "index": {{{j(key)}: {j(first)}, ...,\n'
        '           "input_ids": "input_ids", "targets": "targets", "logits": "logits", "loss": "loss"},\n'
        ' "values": null,\n'
        ' "records": [\n'
        f" {{{inner},\n"
        f'  "formula": {j(rec["formula"][:12] + "...")}, "symbol": {j(rec["symbol"])}, "meta": {{...}}, '
        '"value": [[...], ...]},\n'
        " ...\n"
        " ]}"
    )
    return ctx.place(Other("an example of trace.json"),
                     f'<pre class="code"><code class="language-json">{fmt.html_text(text)}</code></pre>')


@macro
def state_dict_table(ctx: PageContext) -> Markup:
    """Every parameter tensor under its Hugging Face `state_dict` key, with the record the pages use, its shape and
    its number of weights, and the total."""
    rows, total = [], 0
    for key, names in ctx.trace.index.items():
        if not isinstance(names, dict):
            continue
        rec = ctx.trace.record(names["initial"])
        total += rec.value.size
        rows.append(f"<tr><td><code>{fmt.html_text(key)}</code></td><td><code>{fmt.html_text(names['initial'])}</code>"
                    f"</td><td>{fmt.html_text(fmt.describe_shape(rec.value.shape, rec.axes))}</td>"
                    f'<td class="n">{rec.value.size}</td></tr>')
    head = ("<tr><th scope='col'>Hugging Face key</th><th scope='col'>record</th><th scope='col'>shape</th>"
            "<th scope='col'>weights</th></tr>")
    foot = f"<tr><th scope='row' colspan='3'>total</th><td class='n'><strong>{total}</strong></td></tr>"
    return ctx.place(Other("the table of the checkpoint's tensors"),
                     f'<div class="table-wrap"><table class="state-dict"><thead>{head}</thead><tbody>'
                     f'{"".join(rows)}{foot}</tbody></table></div>')

