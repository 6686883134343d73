"""Beam inspector tab: one query through the constrained beam search, every step laid open.

For each decoding step it shows every live beam's best next tokens before the constraint (the ones the
trie removed are struck out) and after it, then the final ranked tools with their documentation, a chart
of P(tool | query), and the tree of code prefixes the search explored (one level for atomic codes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import gradio as gr
import plotly.graph_objects as go

from core.decoding import BeamTrace, DecodeResult, TokenOption
from core.indexing import parse_tool_token
from core.tools import ToolCatalog

from .inputs import IntSlider, Text
from .model_worker import on_model_worker
from .shared import MODEL_EVENTS, ModelUnavailable, Workbench, esc, user_errors

POOL_MODES = ("all tools", "a group", "custom list")
MAX_QUERY = 2000  # characters
MAX_CUSTOM_POOL = 100_000  # characters of the custom pool list


def parse_pool(catalog: ToolCatalog, mode: str, group: str | None = None, custom: str = "") -> list[str] | None:
    """The tool pool to decode over: None (all tools), one catalog category, or a custom list of tool ids
    or `<<tool&&api>>` tokens, one per line. Unknown ids raise ValueError naming them."""
    if mode == "all tools":
        return None
    if mode == "a group":
        pool = [t.id for t in catalog if t.category == group]
        if not pool:
            raise ValueError(f"no tools in group {group!r}: pick a group from the list")
        return pool
    if mode != "custom list":
        raise ValueError(f"unknown pool mode {mode!r}; choose from {', '.join(POOL_MODES)}")
    pool, unknown = [], []
    for line in (custom or "").splitlines():
        entry = line.strip()
        if not entry:
            continue
        tool_id = entry
        if entry.startswith("<<"):
            try:
                found = catalog.find(*parse_tool_token(entry))
                tool_id = found.id if found else entry
            except ValueError:
                pass
        (pool if tool_id in catalog else unknown).append(tool_id)
    if unknown:
        raise ValueError(f"{len(unknown)} unknown tool id(s) in the custom list, e.g. {unknown[:3]}")
    if not pool:
        raise ValueError("the custom list is empty: write one tool id or <<tool&&api>> token per line")
    return list(dict.fromkeys(pool))


def format_prob(p: float) -> str:
    """A probability as a percentage, or in scientific notation when it is below 0.1%."""
    return f"{p:.1%}" if p >= 1e-3 else f"{p:.2e}"


def _token(text: str | None, token_id: int) -> str:
    shown = repr(text)[1:-1] if text is not None else f"#{token_id}"  # makes spaces/newlines visible
    return f'<code class="tok" title="token id {token_id}">{esc(shown)}</code>'


def _options_table(options: list[TokenOption], caption: str) -> str:
    rows = "".join(
        f'<tr class="{"" if o.allowed else "removed"}"><td>{_token(o.text, o.token_id)}</td>'
        f'<td class="num">{format_prob(o.prob)}</td>'
        f"<td>{'allowed' if o.allowed else 'removed by the constraint'}</td></tr>"
        for o in options
    )
    return (
        f'<table class="wb-table"><caption>{esc(caption)}</caption>'
        f"<tr><th>token</th><th>P</th><th></th></tr>{rows}</table>"
    )


def _beam_html(beam: BeamTrace) -> str:
    prefix_text = beam.prefix_text or [None] * len(beam.prefix)
    prefix = "".join(_token(t, i) for t, i in zip(prefix_text, beam.prefix)) or "<em>(start)</em>"
    return (
        f'<div class="wb-beam"><div>prefix {prefix} · log P {beam.log_prob:.3f} · the trie allows '
        f"{beam.allowed_count} token(s) holding {format_prob(beam.allowed_mass)} of the model's probability</div>"
        f'<div class="wb-cols">{_options_table(beam.before_mask, "best tokens of the model")}'
        f"{_options_table(beam.after_mask, 'best allowed tokens')}</div></div>"
    )


def steps_html(result: DecodeResult) -> str:
    """Every decoding step: its live beams with their before/after-constraint token lists."""
    parts = []
    for step in result.steps:
        completed = ", ".join(esc(t) for t in step.completed) or "none"
        parts.append(
            f'<details class="wb-step" {"open" if step.step == 0 else ""}><summary>step {step.step}: '
            f"{len(step.beams)} live beam(s), {len(step.kept)} kept, codes completed: {completed}</summary>"
            + "".join(_beam_html(b) for b in step.beams)
            + "</details>"
        )
    return "".join(parts) or "<p>No steps were recorded.</p>"


def ranked_html(result: DecodeResult, catalog: ToolCatalog, codes: dict[str, str]) -> str:
    """The ranked tools with their code, log-prob and documentation (collapsed)."""
    items = []
    for rank, c in enumerate(result.candidates, start=1):
        tool = catalog[c.tool_id]
        items.append(
            f'<details class="wb-tool"><summary><b>{rank}.</b> <code>{esc(codes[c.tool_id])}</code> '
            f"log P {c.log_prob:.3f}</summary><pre>{esc(tool.document())}</pre></details>"
        )
    return "".join(items) or "<p>No tool was decoded.</p>"


@dataclass
class _Node:
    token_id: int
    log_prob: float | None = None
    note: str = ""
    children: dict[int, _Node] = field(default_factory=dict)


def prefix_tree(result: DecodeResult, code_ids: dict[str, tuple[int, ...]]) -> _Node:
    """The prefixes the search explored: every beam, every completed code, the ranked tools marked."""
    root = _Node(-1)

    def node_at(prefix) -> _Node:
        node = root
        for token in prefix:
            node = node.children.setdefault(token, _Node(token))
        return node

    for step in result.steps:
        for beam in step.beams:
            node_at(beam.prefix).log_prob = beam.log_prob
        for tool_id in step.completed:
            node_at(code_ids[tool_id]).note = f"{tool_id} (completed, outside the top k)"
    for rank, c in enumerate(result.candidates, start=1):
        node = node_at(c.token_ids)
        node.log_prob, node.note = c.log_prob, f"#{rank} {c.tool_id}"
    return root


def tree_html(root: _Node, decode) -> str:
    """Nested lists of prefix tree nodes: token, log-prob, and what completed there."""

    def render(node: _Node) -> str:
        label = _token(decode(node.token_id), node.token_id)
        if node.log_prob is not None:
            label += f" <span class='muted'>log P {node.log_prob:.3f}</span>"
        if node.note:
            ranked = node.note.startswith("#")
            label += f" <b>{esc(node.note)}</b>" if ranked else f" <span class='muted'>{esc(node.note)}</span>"
        return f"<li>{label}{children(node)}</li>"

    def children(node: _Node) -> str:
        ordered = sorted(node.children.values(), key=lambda n: -(n.log_prob if n.log_prob is not None else -1e9))
        return f"<ul>{''.join(render(n) for n in ordered)}</ul>" if ordered else ""

    return f'<div class="wb-tree">(prompt){children(root)}</div>'


def score_figure(result: DecodeResult, codes: dict[str, str]) -> go.Figure:
    """Bar chart of P(code | query) of the ranked tools."""
    probs = [math.exp(c.log_prob) for c in result.candidates]
    labels = [f"{rank}. {c.tool_id}" for rank, c in enumerate(result.candidates, start=1)]
    figure = go.Figure(
        go.Bar(
            x=labels,
            y=probs,
            text=[format_prob(p) for p in probs],
            textposition="outside",
            customdata=[[codes[c.tool_id], c.log_prob] for c in result.candidates],
            hovertemplate="%{customdata[0]}<br>P = %{y:.3g}<br>log P = %{customdata[1]:.3f}<extra></extra>",
        )
    )
    mass = result.steps[0].beams[0].allowed_mass if result.steps and result.steps[0].beams else None
    title = "P(tool code | query) of the ranked tools"
    if mass is not None:
        title += f" — valid first tokens hold {format_prob(mass)} of the model's probability"
    figure.update_traces(cliponaxis=False)
    figure.update_layout(
        title=dict(text=title, font=dict(size=13)),
        yaxis_title="probability",
        yaxis_range=[0, max(probs, default=1) * 1.2],
        margin=dict(l=40, r=10, t=50, b=10),
        height=360,
        template="plotly_white",
    )
    return figure


def inspect_query(
    workbench: Workbench, query: str, num_beams: int, k: int, pool_mode: str, group: str | None = None, custom: str = ""
) -> tuple[str, go.Figure, str, str]:
    """Run the inspector: (ranked tools HTML, score chart, per-step HTML, prefix tree HTML)."""
    toolgen = workbench.toolgen()
    pool = parse_pool(toolgen.catalog, pool_mode, group, custom)
    result = workbench.retriever().inspect(query, k=int(k), pool=pool, num_beams=int(num_beams))
    codes = {c.tool_id: toolgen.indexing.code(c.tool_id) for c in result.candidates}
    code_ids = {t: toolgen.code_ids(t) for step in result.steps for t in step.completed}
    code_ids.update({c.tool_id: tuple(c.token_ids) for c in result.candidates})
    decode = lambda token_id: toolgen.tokenizer.decode([token_id])  # noqa: E731
    return (
        ranked_html(result, toolgen.catalog, codes),
        score_figure(result, codes),
        steps_html(result),
        tree_html(prefix_tree(result, code_ids), decode),
    )


def groups(workbench: Workbench) -> list[str]:
    """The catalog's tool categories, for the group picker."""
    return sorted({t.category for t in workbench.catalog})


def build(demo: gr.Blocks, workbench: Workbench) -> None:
    """The tab's components and events (call inside a `gr.Tab`)."""
    with gr.Row():
        query = Text(
            label="Query",
            placeholder="e.g. list the files in my home folder",
            max_length=MAX_QUERY,
            scale=4,
            elem_id="beam-query",
        )
        run = gr.Button("Inspect", variant="primary", scale=1, elem_id="beam-run")
    with gr.Row():
        beams = IntSlider(1, 16, value=5, step=1, label="beams")
        k = IntSlider(1, 20, value=5, step=1, label="k (tools returned)")
        pool_mode = gr.Radio(list(POOL_MODES), value="all tools", label="pool")
    with gr.Row():
        group = gr.Dropdown([], label="group (tool category)", allow_custom_value=True)  # checked by parse_pool
        custom = Text(
            label="custom pool: one tool id or <<tool&&api>> token per line", lines=3, max_length=MAX_CUSTOM_POOL
        )
    with gr.Row():
        with gr.Column(scale=1):
            gr.Markdown("#### Ranked tools")
            ranked = gr.HTML(elem_id="beam-ranked")
        with gr.Column(scale=1):
            chart = gr.Plot(label="score distribution")
    gr.Markdown("#### Decoding steps")
    steps = gr.HTML()
    gr.Markdown("#### Prefix tree")
    tree = gr.HTML()

    @user_errors
    @on_model_worker
    def inspect(query_text, num_beams, top_k, mode, group_name, custom_list):
        return inspect_query(workbench, query_text, num_beams, top_k, mode, group_name, custom_list)

    gr.on(
        [run.click, query.submit],
        inspect,
        [query, beams, k, pool_mode, group, custom],
        [ranked, chart, steps, tree],
        api_name="inspect",
        **MODEL_EVENTS,
    )

    def fill_groups():
        try:
            return gr.Dropdown(choices=groups(workbench))
        except ModelUnavailable:  # the Inspect button reports why
            return gr.Dropdown(choices=[])

    demo.load(fill_groups, None, group, api_name=False)
