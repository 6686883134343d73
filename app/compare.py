"""Retrieval comparison tab: ToolGen, BM25, embedding and fine-tuned embedding side by side.

A *run set* is the latest stored run with per-query results of every system on one (dataset, setting,
split). Pick one of its queries to see the stored ranked lists (gold tools highlighted), or type a new query
to rank it live over the loaded model's catalog. Below, the stored aggregate metrics with their 95% CIs,
filterable, as CSV.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

from eval.retrieval_eval import GOLD_UNSEEN, POOLED_GROUP, catalog_size_of
from eval.store import ResultsStore

from .inputs import IntSlider, Text
from .model_worker import on_model_worker
from .shared import BASELINES, MODEL_EVENTS, TOOLGEN_SYSTEMS, Workbench, esc, user_errors

SYSTEMS = TOOLGEN_SYSTEMS + BASELINES
DEFAULT_METRICS = ("ndcg@1", "ndcg@3", "ndcg@5", "recall@5", "mrr")
ALL = "(all)"
# The default dataset filter: each corpus's whole held-out set and its gold-unseen bucket, not every subset
OVERVIEW = "(overview)"
SCALE = "(scale curve)"  # the sets of `python -m eval scale`: metrics against the catalog size


@dataclass
class Ranking:
    """One system's answer to one query: ranked (tool id, score) pairs, or the error that stopped it."""

    system: str
    tools: list[tuple[str, float]] = field(default_factory=list)
    gold: frozenset[str] = frozenset()
    latency_ms: float | None = None
    error: str | None = None


def run_set_key(dataset: str, setting: str, split: str) -> str:
    """The dropdown value naming a run set."""
    return json.dumps([dataset, setting or "", split or ""])


def _run_ids(store: ResultsStore) -> dict[str, dict[str, int]]:
    """Run set key -> {system: id of its latest run with per-query results}."""
    sets: dict[str, dict[str, int]] = {}
    for run in store.latest_runs("query_results").itertuples():
        sets.setdefault(run_set_key(run.dataset, run.setting, run.split), {})[run.system] = int(run.id)
    return sets


def run_sets(store: ResultsStore) -> list[tuple[str, str]]:
    """(label, key) of every stored (dataset, setting, split) whose runs hold per-query results
    (agent runs store only metrics)."""
    choices = []
    for key, systems in _run_ids(store).items():
        dataset, setting, split = json.loads(key)
        choices.append((f"{dataset} · {setting or '-'} · {split or '-'} ({', '.join(systems)})", key))
    return choices


def _latest_runs(store: ResultsStore, key: str) -> dict[str, int]:
    """System -> id of its latest run in the run set `key`."""
    runs = _run_ids(store).get(key)
    if not runs:
        raise ValueError(f"no stored per-query results for the run set {key}")
    return runs


def stored_queries(store: ResultsStore, key: str) -> list[tuple[str, str]]:
    """(label, query id) of the queries of a run set (those its first system ranked)."""
    runs = _latest_runs(store, key)
    results = store.query_results(next(iter(runs.values())))
    return [(f"{r.query_id} — {r.query[:90]}", r.query_id) for r in results]


def stored_rankings(store: ResultsStore, key: str, query_id: str) -> tuple[str, list[Ranking]]:
    """The query text and every system's stored ranking of `query_id` in the run set `key`."""
    text, rankings = "", []
    for system, run_id in sorted(_latest_runs(store, key).items()):
        match = store.query_result(run_id, query_id)
        if match is None:
            rankings.append(Ranking(system, error="this run has no result for the query"))
            continue
        text = text or match.query
        rankings.append(
            Ranking(
                system,
                list(zip(match.ranked, match.scores or [float("nan")] * len(match.ranked))),
                frozenset(match.gold),
                match.latency_ms,
            )
        )
    return text, rankings


def live_rankings(workbench: Workbench, query: str, systems: list[str], k: int, progress=None) -> list[Ranking]:
    """Rank `query` now with each chosen system over the model's catalog; a failing system reports its error."""
    if not query.strip():
        raise ValueError("type a query, or pick a stored one")
    rankings = []
    for index, system in enumerate(systems):
        if progress is not None:
            progress((index, len(systems)), desc=f"{system}: loading and ranking")
        try:
            retriever = workbench.retriever(system) if system in TOOLGEN_SYSTEMS else workbench.baseline(system)
            start = time.perf_counter()
            hits = retriever.retrieve(query, k=k)
            rankings.append(Ranking(system, hits, latency_ms=(time.perf_counter() - start) * 1000))
        except Exception as error:  # one broken baseline must not hide the others
            rankings.append(Ranking(system, error=f"{type(error).__name__}: {error}"))
    return rankings


def rankings_html(rankings: list[Ranking]) -> str:
    """One column per system: rank, tool id, score; gold tools highlighted."""
    columns = []
    for r in rankings:
        head = f"<h4>{esc(r.system)}</h4>"
        if r.error:
            columns.append(f'<div class="wb-col">{head}<p class="wb-error">{esc(r.error)}</p></div>')
            continue
        latency = f"{r.latency_ms:.0f} ms" if r.latency_ms is not None else "latency not stored"
        rows = "".join(
            f'<tr class="{"gold" if tool in r.gold else ""}"><td>{rank}</td><td>{esc(tool)}</td>'
            f'<td class="num">{score:.3f}</td></tr>'
            for rank, (tool, score) in enumerate(r.tools, start=1)
        )
        found = f" · {sum(t in r.gold for t, _ in r.tools)}/{len(r.gold)} gold found" if r.gold else ""
        columns.append(
            f'<div class="wb-col">{head}<div class="muted">{latency}{found}</div>'
            f'<table class="wb-table"><tr><th>#</th><th>tool</th><th>score</th></tr>{rows}</table></div>'
        )
    return f'<div class="wb-cols">{"".join(columns)}</div>'


def metrics_frame(store: ResultsStore, family: str = ALL, group: str = ALL, setting: str = ALL) -> pd.DataFrame:
    """Metrics of the latest run per (dataset, setting, split, system), filtered (`filtered_metrics`)."""
    return filtered_metrics(labelled_metrics(store), family, group, setting)


def labelled_metrics(store: ResultsStore) -> pd.DataFrame:
    """The latest runs' metrics with each dataset's family, group and catalog size (`tools`, NaN for the corpus's
    own catalog) as columns."""
    frame = store.metrics(latest=True)
    if not frame.empty:
        parts = frame.dataset.str.split(":", n=1)
        frame["family"], frame["group"] = parts.str[0], parts.str[1].fillna("")
        frame["tools"] = frame.dataset.map(catalog_size_of)
    return frame


def filtered_metrics(frame: pd.DataFrame, family: str = ALL, group: str = ALL, setting: str = ALL) -> pd.DataFrame:
    """`labelled_metrics` filtered. A dataset named `family:group` (e.g. `toolbench:G1_instruction`) matches family
    and group; `bfcl` is its own family. `OVERVIEW`: the whole sets (no group, or every ToolBench group together)
    and their gold-unseen buckets. `SCALE`: the sets over grown catalogs (`eval.scale`), every group together and
    its gold-unseen bucket, with their catalog size as the column `tools`."""
    if frame.empty:
        return frame
    grown = frame.tools.notna()
    if family == SCALE:
        subset = frame.dataset.str.partition("/")[2]
        frame = frame[grown & frame.group.str.startswith(POOLED_GROUP + "@") & subset.isin(["", GOLD_UNSEEN])]
    else:
        frame = frame[~grown]  # a grown catalog's runs belong to the scale curve only
    if family == OVERVIEW:
        group_of, subset = frame.group.str.partition("/")[0], frame.dataset.str.partition("/")[2]
        pooled = frame.family[group_of == POOLED_GROUP].unique()  # families reported with every group together
        whole = (group_of == "") | (group_of == POOLED_GROUP) | ~frame.family.isin(pooled)
        frame = frame[whole & subset.isin(["", GOLD_UNSEEN])]
    elif family not in (ALL, SCALE):
        frame = frame[frame.family == family]
    if group != ALL:
        frame = frame[frame.group == group]
    if setting != ALL:
        frame = frame[frame.setting == setting]
    columns = ["dataset", "family", "group", "setting", "split", "system", "name", "value", "ci_low", "ci_high"]
    return frame[columns + (["tools"] if family == SCALE else []) + ["run_id"]].reset_index(drop=True)


def metrics_figure(frame: pd.DataFrame, names: list[str]) -> go.Figure:
    """Grouped bars of the chosen metrics per system, 95% CI error bars, one panel per dataset/setting."""
    chosen = frame[frame.name.isin(names)].copy()
    if chosen.empty:
        return go.Figure().update_layout(
            title="no stored metrics match the filters", template="plotly_white", height=300
        )
    chosen["panel"] = chosen.dataset + " · " + chosen.setting
    chosen["plus"] = (chosen.ci_high - chosen.value).fillna(0)
    chosen["minus"] = (chosen.value - chosen.ci_low).fillna(0)
    panels = chosen.panel.nunique()
    figure = px.bar(
        chosen,
        x="name",
        y="value",
        color="system",
        barmode="group",
        error_y="plus",
        error_y_minus="minus",
        facet_col="panel",
        facet_col_wrap=2,
        template="plotly_white",
        category_orders={"name": [n for n in names if n in set(chosen.name)]},
        hover_data={"ci_low": ":.3f", "ci_high": ":.3f", "plus": False, "minus": False, "panel": False},
    )
    figure.for_each_annotation(lambda a: a.update(text=a.text.split("=", 1)[-1]))
    figure.update_layout(
        height=320 * ((panels + 1) // 2),
        margin=dict(l=40, r=10, t=40, b=10),
        yaxis_title="mean (95% CI)",
        legend_title_text="",
    )
    figure.update_xaxes(title_text="")
    return figure


def scale_figure(frame: pd.DataFrame, names: list[str]) -> go.Figure:
    """The scale curve: each chosen metric against the catalog size (log axis), one line per system, 95% CI error
    bars; all held-out queries beside the gold-unseen bucket."""
    chosen = frame[frame.name.isin(names)].copy()
    if chosen.empty:
        return go.Figure().update_layout(title="no scale runs stored (`python -m eval scale`)", template="plotly_white")
    chosen["queries"] = chosen.dataset.str.partition("/")[2].replace("", "all held-out queries")
    chosen["plus"], chosen["minus"] = chosen.ci_high - chosen.value, chosen.value - chosen.ci_low
    figure = px.line(
        chosen.sort_values("tools"),
        x="tools",
        y="value",
        color="system",
        markers=True,
        error_y="plus",
        error_y_minus="minus",
        facet_col="queries",
        facet_row="name",
        log_x=True,
        template="plotly_white",
    )
    figure.for_each_annotation(lambda a: a.update(text=a.text.split("=", 1)[-1]))
    rows = chosen.name.nunique()
    figure.update_layout(height=280 * rows + 60, margin=dict(l=40, r=10, t=40, b=10), legend_title_text="")
    return figure.update_xaxes(title_text="tools in the catalog")


def filter_choices(store: ResultsStore) -> tuple[list[str], list[str], list[str], list[str]]:
    """Choices of the family, group, setting and metric filters, from what is stored."""
    labelled = labelled_metrics(store)  # one query of the store for both filters below
    frame = filtered_metrics(labelled)
    if frame.empty:
        return [ALL], [ALL], [ALL], []
    family, group, setting = ([ALL] + sorted(set(frame[column]) - {""}) for column in ("family", "group", "setting"))
    scale = [SCALE] if not filtered_metrics(labelled, SCALE).empty else []
    return [OVERVIEW, *family, *scale], group, setting, sorted(set(frame.name))


def write_csv(frame: pd.DataFrame, directory: Path) -> Path:
    """`frame` as `metrics-<content hash>.csv` in `directory`; written atomically, so concurrent
    requests never see half a file and equal tables share one file."""
    text = frame.to_csv(index=False)
    path = directory / f"metrics-{hashlib.sha1(text.encode()).hexdigest()[:12]}.csv"
    if not path.exists():
        with tempfile.NamedTemporaryFile("w", suffix=".part", dir=directory, delete=False) as f:
            f.write(text)
        os.replace(f.name, path)
    return path


def build(demo: gr.Blocks, workbench: Workbench) -> None:
    """The tab's components and events (call inside a `gr.Tab`)."""
    store = workbench.store
    downloads = Path(tempfile.mkdtemp(prefix="workbench-csv-"))
    # choices arrive per session; values are checked by the backend functions, hence allow_custom_value
    per_session = dict(allow_custom_value=True)
    with gr.Row():
        run_set = gr.Dropdown([], label="stored run set", scale=2, elem_id="compare-run-set", **per_session)
        stored_query = gr.Dropdown([], label="stored query", scale=3, elem_id="compare-query", **per_session)
    with gr.Row():
        new_query = Text(
            label="…or a new query (ranked live over the model's catalog)",
            max_length=2000,
            scale=3,
            elem_id="compare-new",
        )
        systems = gr.CheckboxGroup(list(SYSTEMS), value=["toolgen", "bm25"], label="live systems", scale=2)
        k = IntSlider(1, 20, value=5, step=1, label="k", scale=1)
        rank_live = gr.Button("Rank", variant="primary", scale=1, elem_id="compare-rank")
    query_shown = gr.HTML()
    side_by_side = gr.HTML(elem_id="compare-side")
    gr.Markdown("### Aggregate metrics (latest run per system; error bars are bootstrap 95% CIs)")
    with gr.Row():
        family = gr.Dropdown([OVERVIEW, ALL], value=OVERVIEW, label="dataset", **per_session)
        group = gr.Dropdown([ALL], value=ALL, label="group", **per_session)
        setting = gr.Dropdown([ALL], value=ALL, label="setting", **per_session)
        names = gr.Dropdown(
            list(DEFAULT_METRICS),
            value=list(DEFAULT_METRICS),
            multiselect=True,
            label="metrics",
            scale=2,
            **per_session,
        )
    chart = gr.Plot(label="metrics per system", elem_id="compare-chart")
    table = gr.Dataframe(interactive=False, max_height=300)
    download = gr.DownloadButton("Download CSV", variant="secondary")

    @user_errors
    def refresh_sets():
        families, groups, settings, metric_names = filter_choices(store)
        return (
            gr.Dropdown(choices=run_sets(store)),
            gr.Dropdown(choices=families),
            gr.Dropdown(choices=groups),
            gr.Dropdown(choices=settings),
            gr.Dropdown(choices=metric_names, value=[n for n in DEFAULT_METRICS if n in metric_names]),
        )

    @user_errors
    def pick_run_set(key):
        return gr.Dropdown(choices=stored_queries(store, key) if key else [], value=None)

    @user_errors
    def show_stored(key, query_id):
        if not key or not query_id:
            return gr.skip(), gr.skip()
        text, rankings = stored_rankings(store, key, query_id)
        return f"<b>Query {esc(query_id)}:</b> {esc(text)}", rankings_html(rankings)

    @user_errors
    @on_model_worker
    def rank_new(query, chosen, top_k, progress=gr.Progress()):
        rankings = live_rankings(workbench, query, chosen, int(top_k), progress)
        shown = f"<b>New query:</b> {esc(query)} <span class='muted'>(no gold tools known)</span>"
        return shown, rankings_html(rankings)

    @user_errors
    def show_metrics(family_name, group_name, setting_name, metric_names):
        frame = metrics_frame(store, family_name or ALL, group_name or ALL, setting_name or ALL)
        draw = scale_figure if family_name == SCALE else metrics_figure
        return draw(frame, metric_names or []), frame.round(4), write_csv(frame, downloads)

    demo.load(refresh_sets, None, [run_set, family, group, setting, names], api_name=False).then(
        show_metrics, [family, group, setting, names], [chart, table, download], api_name=False
    )
    run_set.change(pick_run_set, run_set, stored_query, api_name=False)
    stored_query.change(show_stored, [run_set, stored_query], [query_shown, side_by_side], api_name="stored_rankings")
    gr.on(
        [rank_live.click, new_query.submit],
        rank_new,
        [new_query, systems, k],
        [query_shown, side_by_side],
        api_name="rank_live",
        **MODEL_EVENTS,
    )
    gr.on(
        [family.input, group.input, setting.input, names.input],
        show_metrics,
        [family, group, setting, names],
        [chart, table, download],
        api_name="metrics",
    )
