"""The optimization pages' blocks: a table or a list of blocks placed with one line where a page would loop, each
reading its rows from the facts (site_build/facts/) and marking the records whose numbers it shows."""

from __future__ import annotations

from typing import Any

from markupsafe import Markup, escape

from site_build.facts import llama_bwd, opt, run, summary, train, upd
from site_build.format import html_words
from site_build.macros.charts import update_picture
from site_build.macros.numbers import matrix, num, shape, token, value, vector
from site_build.macros.registry import MacroError, PageContext, macro
from site_build.macros.text import count_words, text_name, word_list


def _md(x: Any) -> str:
    """`x` as a page's `{{ x }}` writes it: escaped unless it is Markup already (the page environment autoescapes)."""
    return str(escape(x))


@macro
def tensor_table(ctx: PageContext) -> Markup:
    """The optimizer page's table of every parameter tensor (opt.tensors): its shape, whether it decays, its largest
    change, its mean change in units of η, how many of its weights moved by about η, and its largest gradient."""

    lines = [r"| tensor | shape | decays | max $\lvert\Delta\theta\rvert$ | mean $\lvert\Delta\theta\rvert/\eta$ "
             r"| within 1% of $\eta$ | max $\lvert g\rvert$ |", "|---|---|---|---|---|---|---|"]
    for t in opt.tensors(ctx.trace):
        lines.append(f"| `{_md(t.name)}` | {shape(ctx, t.name)} | {'yes' if t.decays else 'no'} | "
                     f"{num(t.max_change, 6)} | {num(t.mean_change_lr)} | {t.near} of {t.size} | {num(t.max_grad)} |")
    return Markup("\n".join(lines))


@macro
def tensor_pictures(ctx: PageContext) -> Markup:
    """Every parameter tensor's update as a picture, under a heading per group (the embeddings, each block, the
    final norm, the output layer): its shape, how it moved (upd.tensor_summary; a llama run's in brief,
    upd.tensor_brief) and update_picture."""

    llama = run.llama(ctx.trace)
    summary = upd.tensor_brief if llama else upd.tensor_summary
    out = []
    for heading, tensors in (llama_bwd.groups if llama else upd.groups)(ctx.trace):
        out.append(f"### {_md(heading)}")
        for t in tensors:
            out += [f"#### `{_md(t.name)}`", f"{shape(ctx, t.name)}, {_md(summary(ctx.trace, t.name))}",
                    str(update_picture(ctx, t.name))]
    return Markup("\n\n".join(out))


# per_text's labels: none, `Text 1:`, `Text 1, “the cat sat”:`, each with the spacing the pages' loops gave it (kept:
# the notebook has the page's Markdown as it is), `Text 1: ` and a blank line, or a line break
LABELS = {"": "", "name": " \n\n", "text": "\n"}


@macro
def per_text(ctx: PageContext, names: Any, label: str = "") -> Markup:
    """The records `names` (one name or a list) for every text of the batch, text by text: a matrix, or a vector for
    a record with one axis past the batch. With several texts each text's blocks follow a label: `label="name"`
    writes `Text 1:`, `label="text"` `Text 1, “the cat sat”:`, `""` none."""

    names = [names] if isinstance(names, str) else names
    if not isinstance(names, (list, tuple)) or not names or not all(isinstance(n, str) for n in names):
        raise MacroError(f"bad argument names={names!r} for per_text(): give a record name or a list of them")
    if label not in LABELS:
        raise MacroError(f"bad argument label={label!r} for per_text(): give one of {', '.join(map(repr, LABELS))}")
    texts = run.B(ctx.trace)
    out = []
    for b in range(texts):
        blocks = "\n\n".join(str((vector if len(ctx.record(n).axes) == 2 else matrix)(ctx, n, batch=b)) for n in names)
        words = f", “{html_words(ctx.trace.config['data']['texts'][b])}”:" if label == "text" else ":"
        head = text_name(b, capital=True) + words if label and texts > 1 else ""
        out.append(head + LABELS[label] + blocks)
    return Markup("\n\n".join(out))


def _by_place(ctx: PageContext, head: str, probs: tuple[str, str], rows: list[tuple[int, int, str, str]]) -> Markup:
    """A table of places of the batch, a row each: its text (a column only when the batch holds several), its
    position, the cells `rows` give, the probability of its target in the records `probs` (before, after), and a last
    cell; `rows` are (text, position, the first cells, the last cell)."""

    several = run.B(ctx.trace) > 1
    lines = [f"| {'text | ' if several else ''}position | {head} |",
             f"|{'---|' if several else ''}---|" + "---|" * (head.count("|") + 1)]
    lines += [f"| {f'{b + 1} | ' if several else ''}{t} | {first} | {value(ctx, probs[0], (b, t))} | "
              f"{value(ctx, probs[1], (b, t))} | {last} |" for b, t, first, last in rows]
    return Markup("\n".join(lines))


@macro
def gain_table(ctx: PageContext) -> Markup:
    """Every target of the batch (summary.positions): its input and target, the probability of the right word
    before and after the step, and the change."""

    return _by_place(ctx, "input | target | before | after | change", ("loss.target_prob", "after.target_prob"), [
        (p.b, p.t, f"{token(ctx, p.t, batch=p.b)} | {html_words(p.target)}", num(p.change, sign=True))
        for p in summary.positions(ctx.trace)])


@macro
def place_table(ctx: PageContext) -> Markup:
    """Every target of the batch (train.places): the prefix the model sees, the target, the probability of the right
    word before and after the training run, and the best any model could give."""

    return _by_place(ctx, "prefix the model sees | target | before | after | best possible",
                     ("train.target_prob.before", "train.target_prob.after"),
                     [(p.b, p.t, f"{word_list(p.prefix)} | {html_words(p.target)}", f"{p.hit}/{p.same}")
                      for p in train.places(ctx.trace)])


@macro
def steepest_table(ctx: PageContext) -> Markup:
    """Every parameter tensor ordered by its largest gradient entry (summary.gradients): the entry, where it sits,
    and the tensor's mean |gradient|."""

    lines = [r"| tensor | $\max\lvert g\rvert$ | at | mean $\lvert g\rvert$ |", "|---|---|---|---|"]
    lines += [f"| `grad.{_md(r.name)}` | {value(ctx, 'grad.' + r.name, r.at)} | {_md(r.where)} | {num(r.mean)} |"
              for r in summary.gradients(ctx.trace)]
    return Markup("\n".join(lines))


@macro
def loss_table(ctx: PageContext) -> Markup:
    """The training run's loss at the steps train.loss_rows picks, each with its change from the step before."""

    lines = [r"| step $k$ | loss $\mathcal L^{\text{run}}_k$ | change from the step before |", "|---|---|---|"]
    lines += [f"| {k} | {value(ctx, 'train.loss', (k,))} | {num(change, digits=3, sign=True) if k > 0 else ''} |"
              for k, change in train.loss_rows(ctx.trace)]
    return Markup("\n".join(lines))


@macro
def generation_table(ctx: PageContext) -> Markup:
    """The greedy text, word by word (train.generation_rows): with the initial weights, with the trained ones, and the
    training text it comes closest to."""

    steps = train.steps(ctx.trace)
    after = "after " + count_words(steps, "step") if steps > 0 else "no training run"
    lines = [f"| $j$ | initial weights | {_md(after)} | {text_name(train.reference(ctx.trace))} |",
             "|---:|:---|:---|:---|"]
    lines += [f"| {j} | {value(ctx, 'train.generate.before', (j,))} {html_words(before)} | "
              f"{value(ctx, 'train.generate.after', (j,))} {html_words(after)} | "
              f"{html_words(ref) if ref is not None else ''} |"
              for j, before, after, ref in train.generation_rows(ctx.trace)]
    return Markup("\n".join(lines))


@macro
def trained_attention(ctx: PageContext) -> Markup:
    """The trained attention weights of every block and head the page does not show above it (train.attention_folds:
    block 0 without head 0), a closed fold-out per block."""

    out = []
    for layer, heads in train.attention_folds(ctx.trace):
        which = ", the other heads" if layer == 0 else ", every head"
        tables = "".join(f"{matrix(ctx, f'train.L{layer}.attn.weights.after', head=h)}\n\n" for h in heads)
        out.append(f'<details class="more"><summary>Block {layer}: the trained attention weights{which}</summary>\n\n'
                   f"{tables}</details>")
    return Markup("\n\n".join(out))


@macro
def value_list(ctx: PageContext, name: str, indices: Any) -> Markup:
    """Several elements of one record inline, as a sentence lists them: `a, b and c` (each a value())."""

    if not isinstance(indices, (list, tuple)) or not indices:
        raise MacroError(f"bad argument indices={indices!r} for value_list('{name}'): give a list of indices")
    shown = [str(value(ctx, name, i)) for i in indices]
    return Markup(shown[0] if len(shown) == 1 else ", ".join(shown[:-1]) + " and " + shown[-1])
