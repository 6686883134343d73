"""Annotate tab: blind pairwise judging of two agent trajectories for the same query.

The systems are hidden and the sides shuffled; each annotator is offered only pairs they have not judged
(nor skipped in this session). A vote is written to the store at once; the store keeps one vote per
annotator and unordered pair, so a double submit or a second browser tab can never count twice. The
systems are never revealed, not even after the vote: telling a judge which style belongs to which system
would let them vote for a system rather than for a trajectory.

Who judges is settled by an `AnnotatorPolicy` (app/identity.py: Hugging Face sign-in, invite token or typed
name) on a session's first "Next pair", and the session stays that annotator. A `RateLimiter` caps votes per
annotator and per client address, names per address and draws per address (app/ratelimit.py). Each vote stores
salted fingerprints of its client address and session.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass

import gradio as gr

from eval.store import ResultsStore, StoredTrajectory

from .identity import MAX_NAME, AnnotatorPolicy
from .inputs import Text
from .ratelimit import RateLimiter, RateLimits
from .shared import esc, user_errors

CHOICES = {"A is better": "A", "B is better": "B", "Tie": "tie", "Both are bad": "both_bad"}
MAX_COMMENT = 2000
MAX_TOKEN = 200
_rng = random.SystemRandom()


@dataclass(frozen=True)
class Pair:
    """Two trajectories of one query in display order: `left` is shown as A, `right` as B."""

    query_id: str
    left: int
    right: int
    left_system: str
    right_system: str


def draw_pair(
    store: ResultsStore,
    annotator: str,
    skipped: set[tuple[int, int]] = frozenset(),
    rng: random.Random = _rng,
    unjudged: list[tuple[str, int, int]] | None = None,
) -> tuple[Pair, dict[int, StoredTrajectory]] | None:
    """A random pair `annotator` has neither judged nor skipped, sides shuffled, with its two trajectories by id;
    None when none is left. `unjudged`: `store.unjudged_pairs(annotator)` when the caller has it already."""
    unjudged = store.unjudged_pairs(annotator) if unjudged is None else unjudged
    open_pairs = [(q, a, b) for q, a, b in unjudged if (a, b) not in skipped]
    if not open_pairs:
        return None
    query_id, first, second = rng.choice(open_pairs)
    if rng.random() < 0.5:
        first, second = second, first
    shown = {t.id: t for t in store.trajectories(query_id=query_id) if t.id in (first, second)}
    return Pair(query_id, first, second, shown[first].system, shown[second].system), shown


def record_vote(
    store: ResultsStore,
    pair: Pair,
    annotator: str,
    choice: str,
    comment: str = "",
    *,
    client_hash: str | None = None,
    session_hash: str | None = None,
) -> bool:
    """Store `annotator`'s vote on `pair` (choice is a `CHOICES` label, about the displayed sides) with the
    fingerprints of where it came from. Returns False, storing nothing, if this annotator already judged the pair."""
    if choice not in CHOICES:
        raise ValueError(f"pick one of: {', '.join(CHOICES)}")
    comment = (comment or "").strip()
    if len(comment) > MAX_COMMENT:
        raise ValueError(f"the comment is longer than {MAX_COMMENT:,} characters")
    return store.add_vote(
        pair.left, pair.right, annotator, CHOICES[choice], comment, client_hash=client_hash, session_hash=session_hash
    )


def _value_html(value: object) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, indent=1)
    return f"<pre>{esc(text)}</pre>"


def _step_fields(step: object) -> list[tuple[str, object]]:
    """What a judge needs from one step. Agent events (core/agent.py) show their text; an action shows the tool
    id, never its code, which would give the system away (atomic vs semantic codes). Other dicts show whole."""
    if not isinstance(step, dict):
        return [("step", step)]
    kind = step.get("kind")
    if kind == "final_answer":  # shown once, below the steps
        return []
    if kind == "thought":
        return [("thought", step.get("text", ""))]
    if kind == "action":
        return [("action", step.get("tool_id", ""))]
    if kind == "arguments":
        return [("arguments", step.get("arguments", {}))] + [("problem", p) for p in step.get("problems", [])]
    if kind == "observation":
        return [("observation" if step.get("ok", True) else "observation (error)", step.get("content", ""))]
    if kind == "error":
        return [("format error", f"{step.get('message', '')} → {step.get('recovery', '')}")]
    return list(step.items())


def trajectory_html(trajectory: StoredTrajectory, side: str) -> str:
    """A trajectory's steps and final answer, every field escaped; the system is not shown."""
    rows = "".join(
        f"<dt>{esc(key)}</dt><dd>{_value_html(value)}</dd>"
        for step in trajectory.steps
        for key, value in _step_fields(step)
    )
    answer = esc(trajectory.final_answer) if trajectory.final_answer else "<em>no final answer</em>"
    return (
        f'<div class="wb-traj"><h3>{esc(side)}</h3>{f"<dl>{rows}</dl>" if rows else "<p><em>no steps</em></p>"}'
        f'<div class="wb-answer"><b>Final answer</b><pre>{answer}</pre></div></div>'
    )


def build(store: ResultsStore, policy: AnnotatorPolicy, limits: RateLimits, oauth: bool) -> None:
    """The tab's components and events (call inside a `gr.Tab`). `policy`: who may judge as whom; `limits`: the
    rate limits; `oauth`: Hugging Face sign-in is available (a Space with `hf_oauth: true`)."""
    limiter = RateLimiter(limits)
    # server-side, per browser session; progress: (judged, judged + open) as counted when the pair was drawn
    session = gr.State({"annotator": None, "pair": None, "skipped": [], "progress": [0, 0]})
    invite = policy.mode == "invite"
    with gr.Row():
        name = Text(
            label=policy.prompt,
            placeholder="the token you were given" if invite else "annotator name",
            max_length=MAX_TOKEN if invite else MAX_NAME,
            type="password" if invite else "text",
            scale=3,
            visible=policy.mode != "oauth",
            elem_id="annotate-name",
        )
        if oauth and not invite:
            gr.LoginButton(scale=1)
        start = gr.Button("Next pair", variant="primary", scale=1, elem_id="annotate-next")
    status = gr.HTML(
        {
            "open": "Enter your name and press <b>Next pair</b>.",
            "invite": "Enter your invite token and press <b>Next pair</b>.",
            "oauth": "Sign in with Hugging Face and press <b>Next pair</b>.",
        }[policy.mode],
        elem_id="annotate-status",
    )
    query = gr.HTML()
    with gr.Row(equal_height=False):
        left = gr.HTML(elem_id="annotate-left")
        right = gr.HTML()
    with gr.Row():
        choice = gr.Radio(list(CHOICES), label="Which trajectory solves the task better?", scale=3)
        comment = Text(label="Comment (optional)", max_length=MAX_COMMENT, scale=3)
        submit = gr.Button("Submit vote", variant="primary", interactive=False, scale=1)

    @user_errors
    def next_pair(typed, state, request: gr.Request, profile: gr.OAuthProfile | None):
        annotator = policy.annotator(typed, profile)
        if state["annotator"] not in (None, annotator):
            raise ValueError(f"this session judges as {state['annotator']}: reload the page to judge as someone else")
        client = policy.client_hash(request)
        limiter.take(("client_draws", client), ("client_names", client, annotator))
        skipped = {tuple(p) for p in state["skipped"]}
        if state["pair"] is not None:  # moving on without a vote skips it
            skipped.add(tuple(sorted((state["pair"]["left"], state["pair"]["right"]))))
        unjudged = store.unjudged_pairs(annotator)
        drawn = draw_pair(store, annotator, skipped, unjudged=unjudged)
        pair, trajectories = drawn if drawn else (None, {})
        done = store.vote_count(annotator)
        total = done + len(unjudged)
        state = {
            "annotator": annotator,
            "pair": asdict(pair) if pair else None,
            "skipped": sorted(skipped),
            "progress": [done, total],
        }
        if pair is None:
            return (
                state,
                f"<b>{esc(annotator)}</b>: {done} of {total} pairs judged. Nothing left to judge, thank you!",
                "",
                "",
                "",
                gr.Button(interactive=False),
            )
        task = esc(trajectories[pair.left].query or pair.query_id)
        return (
            state,
            f"<b>{esc(annotator)}</b>: {done} of {total} pairs judged.",
            f"<b>Task:</b> {task}",
            trajectory_html(trajectories[pair.left], "A"),
            trajectory_html(trajectories[pair.right], "B"),
            gr.Button(interactive=True),
        )

    @user_errors
    def vote(picked, note, state, request: gr.Request):
        annotator = state["annotator"]  # who drew the pair votes on it, whatever the name box says now
        if state["pair"] is None:
            raise gr.Error("No pair is open: press Next pair.")
        if picked not in CHOICES:
            raise gr.Error(f"Pick one of: {', '.join(CHOICES)}.")
        client = policy.client_hash(request)
        limiter.take(("annotator_votes", annotator), ("client_votes", client))
        pair = Pair(**state["pair"])
        stored = record_vote(
            store, pair, annotator, picked, note, client_hash=client, session_hash=policy.session_hash(request)
        )
        # a vote moves its pair from open to judged: the count drawn with the pair, without querying the store again
        done, total = state["progress"]
        done += stored
        state = {**state, "pair": None, "progress": [done, total]}
        outcome = "Vote saved." if stored else "You had already judged this pair; your earlier vote stands."
        return (
            state,
            f"{outcome} <b>{esc(annotator)}</b>: {done} of {total} pairs judged. Press <b>Next pair</b> to continue.",
            None,
            "",
            gr.Button(interactive=False),
        )

    gr.on(
        [start.click, name.submit],
        next_pair,
        [name, session],
        [session, status, query, left, right, submit],
        api_name="next_pair",
        queue=False,
    )  # light: answered at once, never behind model work in the queue
    submit.click(
        vote, [choice, comment, session], [session, status, choice, comment, submit], api_name="vote", queue=False
    )
