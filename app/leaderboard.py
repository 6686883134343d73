"""Leaderboard tab: the human votes summarised (win rates, Bradley–Terry ratings with bootstrap 95% CIs,
inter-annotator agreement: Fleiss' kappa and each annotator against the others' majority) and the stored retrieval
metrics. Votes of annotators an operator flagged (`python -m eval flag`) are left out. The tab serves the last
computed board at once and recomputes in the background when votes arrived (`app/refresh.py`)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import gradio as gr
import pandas as pd
import plotly.graph_objects as go

from eval.report import metrics_table
from eval.stats import annotator_agreement, bradley_terry, win_rates
from eval.store import ResultsStore

from .refresh import Refreshed
from .shared import user_errors

N_RESAMPLES = 1000
REFRESH_SECONDS = 30.0  # a new board is computed at most this often while votes arrive
VOTE_COLUMNS = ("system_a", "system_b", "vote", "trajectory_a", "trajectory_b", "annotator")
RATING_COLUMNS = ["system", "rating", "ci_low", "ci_high", "votes"]
PAIR_COLUMNS = ["system A", "system B", "A wins", "B wins", "ties", "both bad", "votes", "win rate A"]
AGREEMENT_COLUMNS = ["annotator", "votes", "compared", "agrees with others' majority", "Cohen's kappa vs majority"]


@dataclass
class Leaderboard:
    """Everything the tab shows, as tables."""

    ratings: pd.DataFrame
    pairs: pd.DataFrame
    agreement: pd.DataFrame
    summary: str
    retrieval: pd.DataFrame


def compute(store: ResultsStore, n_resamples: int = N_RESAMPLES, tables: Refreshed | None = None) -> Leaderboard:
    """Ratings, pairwise win rates and agreement from the votes of unflagged annotators (ties and both-bad count
    half), plus the latest retrieval metrics per (dataset, setting, split, system). With `tables`, a
    `Refreshed(vote_tables)`, the vote tables may be those of slightly older votes; the summary then says so."""
    votes = store.votes(include_flagged=False)
    flagged = store.flagged()
    retrieval = metrics_table(store)
    left_out = f" Votes of {len(flagged)} flagged annotator(s) are left out." if flagged else ""
    if votes.empty:
        return Leaderboard(
            pd.DataFrame(columns=RATING_COLUMNS),
            pd.DataFrame(columns=PAIR_COLUMNS),
            pd.DataFrame(columns=AGREEMENT_COLUMNS),
            "No votes yet: judge some pairs in the Annotate tab." + left_out,
            retrieval,
        )
    key = (tuple(votes[list(VOTE_COLUMNS)].itertuples(index=False, name=None)), n_resamples)
    shown, (ratings, pairs, agreement, summary) = tables.get(key) if tables is not None else (key, vote_tables(key))
    if shown != key:
        summary += (
            f" *This board counts {len(shown[0])} votes, the store now holds {len(key[0])}: while votes "
            f"arrive it is recomputed at most every {REFRESH_SECONDS:g} s; press Refresh to see it.*"
        )
    return Leaderboard(ratings, pairs, agreement, summary + left_out, retrieval)


def vote_tables(key: tuple[tuple, int]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, str]:
    """(ratings, pair win rates, per-annotator agreement, summary) of `(vote rows, n_resamples)`."""
    rows, n_resamples = key
    votes = pd.DataFrame(list(rows), columns=list(VOTE_COLUMNS))
    triples = list(zip(votes.system_a, votes.system_b, votes.vote))
    ratings = pd.DataFrame(
        [
            (r.system, round(r.rating, 1), round(r.ci_low, 1), round(r.ci_high, 1), r.n_votes)
            for r in bradley_terry(triples, n_resamples=n_resamples)
        ],
        columns=RATING_COLUMNS,
    )
    pairs = pd.DataFrame(
        [
            (w.system_a, w.system_b, w.wins_a, w.wins_b, w.ties, w.both_bad, w.n, round(w.win_rate_a, 3))
            for w in win_rates(triples)
        ],
        columns=PAIR_COLUMNS,
    )
    agreement = annotator_agreement(zip(zip(votes.trajectory_a, votes.trajectory_b), votes.annotator, votes.vote))
    annotators = pd.DataFrame(
        [
            (r.annotator, r.n_votes, r.n_compared, round(r.agreement, 3), round(r.kappa, 3))
            for r in agreement.annotators
        ],
        columns=AGREEMENT_COLUMNS,
    )
    annotators = annotators.sort_values(AGREEMENT_COLUMNS[3], na_position="last", kind="stable")
    if agreement.n_items == 0:
        fleiss = "n/a (no pair judged by two annotators yet)"
    elif math.isnan(agreement.fleiss_kappa):
        fleiss = f"undefined over {agreement.n_items} pairs (every rating is the same label)"
    else:
        fleiss = f"{agreement.fleiss_kappa:.3f} over {agreement.n_items} pairs judged by 2+ annotators"
    summary = (
        f"**{len(votes)} votes** by {votes.annotator.nunique()} annotator(s) on "
        f"{votes[['trajectory_a', 'trajectory_b']].drop_duplicates().shape[0]} pairs. "
        f"Fleiss' kappa: {fleiss}. Ratings: Bradley–Terry on the Elo scale (mean 1000), "
        f"95% CIs from {n_resamples} bootstrap resamples of the votes."
    )
    return ratings, pairs, annotators, summary


def ratings_figure(ratings: pd.DataFrame) -> go.Figure:
    """Ratings as points with their 95% CI as error bars, best on top."""
    figure = go.Figure()
    if not ratings.empty:
        ordered = ratings.iloc[::-1]
        figure.add_trace(
            go.Scatter(
                x=ordered.rating,
                y=ordered.system,
                mode="markers",
                marker=dict(size=10),
                error_x=dict(
                    type="data",
                    symmetric=False,
                    array=ordered.ci_high - ordered.rating,
                    arrayminus=ordered.rating - ordered.ci_low,
                ),
                hovertemplate="%{y}: %{x:.0f}<extra></extra>",
            )
        )
    figure.update_layout(
        title="Bradley–Terry rating (95% CI)",
        template="plotly_white",
        height=120 + 40 * len(ratings),
        margin=dict(l=10, r=10, t=40, b=30),
    )
    return figure


def build(demo: gr.Blocks, tab: gr.Tab, store: ResultsStore) -> None:
    """The tab's components and events (call inside `tab`); the board is computed when the tab opens."""
    with gr.Row():
        summary = gr.Markdown(elem_id="leaderboard-summary")
        refresh = gr.Button("Refresh", size="sm", scale=0, min_width=100)
    with gr.Row():
        chart = gr.Plot(show_label=False)
        ratings = gr.Dataframe(label="ratings", interactive=False)
    pairs = gr.Dataframe(label="win rate per system pair (ties and both-bad count half)", interactive=False)
    agreement = gr.Dataframe(
        label="each annotator against the others' majority label on the pairs they share "
        "(least agreeing first; click a column to sort)",
        interactive=False,
    )
    gr.Markdown("### Retrieval metrics (latest run per dataset, setting, split and system)")
    retrieval = gr.Dataframe(interactive=False)

    tables = Refreshed(vote_tables, REFRESH_SECONDS)  # this store's last board, recomputed in the background

    @user_errors
    def show():
        board = compute(store, tables=tables)
        return (
            board.summary,
            ratings_figure(board.ratings),
            board.ratings,
            board.pairs,
            board.agreement,
            board.retrieval,
        )

    outputs = [summary, chart, ratings, pairs, agreement, retrieval]
    # light (the bootstrap runs in the background, app/refresh.py): answered at once, outside the queue
    refresh.click(show, None, outputs, api_name="leaderboard", queue=False)
    gr.on([demo.load, tab.select], show, None, outputs, api_name=False, queue=False)
