"""Why the agent refuses: the first action of held-out BFCL single-turn tasks, read from the model.

For each task the agent writes its first thought (greedy, as in `python -m eval agent`); then, at the Action
position, one forward pass gives the full-vocabulary log-probs of <<Finish>> and of the best offered tool (the
constrained Action takes whichever is higher; one-token codes) and the unconstrained top token (an offered tool,
another catalog tool, Finish, or text). Two counterfactual thoughts are scored the same way: the training template
naming the gold function (`core.examples.call_thought`) and an empty thought.

    python scripts/refusal_probe.py --model models/toolgen-bfcl --calls 40 --irrelevance 20 [--split train] > probe.json
    python scripts/refusal_probe.py --model models/toolgen-bfcl --split train --record assets/model   # sets the margin
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import Counter

import torch

from core.agent import AgentConfig, run_agent
from core.bfcl import function_name, load_bfcl_catalog, load_bfcl_entries
from core.examples import call_thought
from core.executors import BfclExecutor
from core.model import ToolGenModel, update_info
from core.prompts import ACTION, THOUGHT, agent_prompt, encode
from core.splits import spread
from eval.agent_datasets import bfcl_single_tasks

MARGINS = (0, 1, 2, 3, 4, 5, 6, 7, 8)


@torch.inference_mode()
def action_scores(toolgen: ToolGenModel, query: str, thought: str, pool: list[str]) -> dict:
    """Finish vs the best offered tool at the Action position after `thought`."""
    prompt = agent_prompt(toolgen.tokenizer, query) + encode(toolgen.tokenizer, THOUGHT + thought + ACTION)
    logits = toolgen.model(input_ids=torch.tensor([prompt]), logits_to_keep=1).logits[0, -1].float()
    log_probs = torch.log_softmax(logits, dim=-1)
    finish, offered = toolgen.finish_token_id, {toolgen.code_ids(t)[0]: t for t in pool}
    best = max(offered, key=lambda i: float(log_probs[i]))
    top = int(log_probs.argmax())
    codes = {toolgen.code_ids(t)[0] for t in toolgen.catalog.ids}
    kind = "offered" if top in offered else "finish" if top == finish else "other tool" if top in codes else "text"
    return {
        "top": kind,
        "gap": round(float(log_probs[finish] - log_probs[best]), 2),  # > 0: the constrained Action is Finish
        "best_offered": offered[best],
    }


def probe(toolgen: ToolGenModel, task, entry) -> dict:
    text, pool = task.turns[0]
    events = run_agent(toolgen, text, BfclExecutor({}, ()), pool, AgentConfig(max_steps=1))
    thought = next(e.text for e in events if e.kind == "thought")
    by_name = {function_name(toolgen.catalog[t]): t for t in pool}
    gold = [name for item in (entry.ground_truth or []) for name in item]
    named = thought.removeprefix("I should use ").split(" to ")[0].strip(" .")
    row = {
        "id": task.id,
        "pool": len(pool),
        "thought": thought[:120],
        "names_offered": named in by_name,
        "greedy": action_scores(toolgen, text, thought, list(pool)),
        "empty": action_scores(toolgen, text, "", list(pool)),
    }
    if gold and gold[0] in by_name:
        row["gold_named"] = action_scores(toolgen, text, call_thought(toolgen.catalog[by_name[gold[0]]]), list(pool))
    return row


def summary(rows: list[dict]) -> dict:
    out = {"tasks": len(rows), "thought names an offered function": sum(r["names_offered"] for r in rows)}
    for condition in ("greedy", "gold_named", "empty"):
        scored = [r[condition] for r in rows if condition in r]
        if not scored:
            continue
        gaps = [s["gap"] for s in scored]
        out[condition] = {
            "scored": len(scored),
            "finish_chosen": sum(g > 0 for g in gaps),
            "median_gap": round(statistics.median(gaps), 2),
            "unconstrained_top": dict(Counter(s["top"] for s in scored)),
            "finish_chosen_with_margin": {m: sum(g > m for g in gaps) for m in MARGINS},
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--calls", type=int, default=40, help="held-out tasks that need a call (spread evenly)")
    parser.add_argument("--irrelevance", type=int, default=20, help="held-out irrelevance tasks (spread evenly)")
    parser.add_argument(
        "--split", choices=("test", "train"), default="test", help="train: choose --finish-margin on these, not test"
    )
    parser.add_argument(
        "--record",
        nargs="*",
        metavar="DIR",
        help="with --split train: write the margin that decides call-or-refuse best on these tasks (balanced "
        "accuracy over MARGINS) into the toolgen.json of --model and of each DIR (e.g. its compact export)",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    toolgen = ToolGenModel.load(args.model)
    entries = {e.id: e for e in load_bfcl_entries()}
    tasks = [t for t in bfcl_single_tasks(load_bfcl_catalog(), args.split, None) if t.id in entries]
    report = {}
    for group, count in (("needs a call", args.calls), ("irrelevance", args.irrelevance)):
        kind = "irrelevance" if group == "irrelevance" else "ast"
        chosen = spread([t for t in tasks if entries[t.id].kind == kind], count)
        rows = [probe(toolgen, task, entries[task.id]) for task in chosen]
        report[group] = {"summary": summary(rows), "rows": rows}
    if args.record is not None:
        if args.split != "train":
            raise SystemExit("--record chooses the margin on training tasks: add --split train")
        report["chosen_margin"] = record_margin(report, [args.model, *args.record])
    print(json.dumps(report, indent=1))


def record_margin(report: dict, directories: list[str]) -> float:
    """The margin in MARGINS with the best balanced accuracy of the first action's call-or-refuse decision (a task
    that needs a call should not start with Finish, an irrelevance task should), written into each model's
    toolgen.json as `finish_margin`, which `core.agent` then uses by default."""
    calls = [r["greedy"]["gap"] for r in report["needs a call"]["rows"]]
    refusals = [r["greedy"]["gap"] for r in report["irrelevance"]["rows"]]

    def accuracy(m: float) -> float:
        return (sum(g <= m for g in calls) / len(calls) + sum(g > m for g in refusals) / len(refusals)) / 2

    chosen = float(max(MARGINS, key=lambda m: (accuracy(m), -m)))  # ties: the smaller margin
    for directory in directories:
        update_info(directory, {"finish_margin": chosen})
    return chosen


if __name__ == "__main__":
    main()
