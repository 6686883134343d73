"""The ToolGen Workbench, a Gradio app with five tabs (one module each): chat, beam inspector, retrieval
comparison, annotation and leaderboard. `build_demo(workbench)` assembles them; `app.py` launches it.

Open a tab directly with `?tab=<id>`, the ids being the keys of `TABS`.
"""

from __future__ import annotations

import os

import gradio as gr

from . import annotate, beam, chat, compare, leaderboard
from .identity import AnnotatorPolicy
from .ratelimit import RateLimits
from .shared import Workbench

TABS = {
    "chat": "Chat",
    "beam": "Beam inspector",
    "compare": "Retrieval comparison",
    "annotate": "Annotate",
    "leaderboard": "Leaderboard",
}
THEME = gr.themes.Soft(primary_hue="indigo", secondary_hue="green")
CSS = """
.wb-table { border-collapse: collapse; font-size: 0.85rem; margin: 0.3rem 0; }
.wb-table caption { text-align: left; font-weight: 600; padding-bottom: 0.2rem; }
.wb-table td, .wb-table th { padding: 0.15rem 0.5rem; text-align: left;
  border-bottom: 1px solid var(--border-color-primary); }
.wb-table .num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.wb-table tr.removed td { text-decoration: line-through; color: var(--body-text-color-subdued); }
.wb-table tr.removed td:last-child { text-decoration: none; }
.wb-table tr.gold td { background: rgba(34, 197, 94, 0.18); font-weight: 600; }
.wb-cols { display: flex; flex-wrap: wrap; gap: 1rem; align-items: flex-start; }
.wb-col { flex: 1 1 14rem; min-width: 14rem; overflow-x: auto; }
.wb-col .wb-table { width: 100%; }
.wb-col .wb-table td:not(.num) { overflow-wrap: anywhere; }
.wb-beam { border-left: 3px solid var(--color-accent); padding-left: 0.6rem; margin: 0.5rem 0; }
.wb-step { margin: 0.4rem 0; }
.wb-tool pre, .wb-traj pre { white-space: pre-wrap; word-break: break-word; font-size: 0.8rem; margin: 0.2rem 0; }
.wb-tree ul { list-style: none; padding-left: 1.2rem; border-left: 1px dashed var(--border-color-primary); margin: 0; }
.wb-tree li { margin: 0.15rem 0; }
.wb-traj dt { font-weight: 600; margin-top: 0.3rem; }
.wb-traj dd { margin-left: 0.8rem; }
.wb-answer { margin-top: 0.6rem; padding: 0.4rem; background: var(--background-fill-secondary); border-radius: 6px; }
.wb-error { color: var(--error-text-color); }
.muted { color: var(--body-text-color-subdued); font-size: 0.85em; }
code.tok { background: var(--background-fill-secondary); padding: 0 0.25rem; border-radius: 4px; margin-right: 1px; }
"""


def oauth_enabled() -> bool:
    """True on a Hugging Face Space with `hf_oauth: true` (it sets OAUTH_CLIENT_ID)."""
    return bool(os.environ.get("OAUTH_CLIENT_ID"))


def build_demo(
    workbench: Workbench, policy: AnnotatorPolicy | None = None, limits: RateLimits | None = None
) -> gr.Blocks:
    """The whole app over `workbench`; `policy` says who may annotate as whom (default: typed names, a salt for
    this process only), `limits` the annotation rate limits (default: `RateLimits()`). Launch with
    `theme=THEME, css=CSS`."""
    with gr.Blocks(title="ToolGen Workbench") as demo:
        gr.Markdown(
            "# 🧰 ToolGen Workbench\nEvery tool is one token; a constrained beam search picks it. "
            f"Model: `{workbench.model_dir.name}` · results: `{workbench.store.path.name}`"
        )
        with gr.Tabs() as tabs:
            with gr.Tab(TABS["chat"], id="chat"):
                chat.build(workbench)
            with gr.Tab(TABS["beam"], id="beam"):
                beam.build(demo, workbench)
            with gr.Tab(TABS["compare"], id="compare"):
                compare.build(demo, workbench)
            with gr.Tab(TABS["annotate"], id="annotate"):
                annotate.build(workbench.store, policy or AnnotatorPolicy(), limits or RateLimits(), oauth_enabled())
            with gr.Tab(TABS["leaderboard"], id="leaderboard") as board:
                leaderboard.build(demo, board, workbench.store)

        def open_requested_tab(request: gr.Request):
            wanted = request.query_params.get("tab") if request else None
            return gr.Tabs(selected=wanted) if wanted in TABS else gr.skip()

        demo.load(open_requested_tab, None, tabs, api_name=False, queue=False)
    return demo
