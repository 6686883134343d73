"""Chat tab: talk to the ToolGen agent and watch every step as it happens.

Each agent event becomes a chat message the moment it is yielded: the thought; the tool call (its token as
code, its arguments as JSON) in a collapsible message that spins while the call runs and is marked done
with its duration when the observation arrives; the beam's ranked alternatives nested one click below it;
the observation; the final answer. Each browser session keeps one `core.agent.Conversation` (in `CONVERSATIONS`,
where the model runs; the session holds its key): the model's context and the tool state (files, orders, …) carry
over between messages until "New conversation". A message
that ends without a final answer (a limit was hit) ends the conversation. One message is answered at a time; a
second one sent meanwhile is refused with that reason. Model work queues in the "model" concurrency group, and the
queue shows each waiting user their position and an estimate.
"""

from __future__ import annotations

import html
import json
import math
import re
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field

import gradio as gr

from core.agent import (
    ActionEvent,
    AgentConfig,
    AgentEvent,
    ArgumentsEvent,
    Conversation,
    ErrorEvent,
    FinalAnswerEvent,
    ObservationEvent,
    ThoughtEvent,
)
from core.bfcl import BACKEND_DOCS
from core.executors import BfclExecutor, Executor
from core.executors.toolbench import ToolBenchSimulator
from core.indexing import FINISH
from core.model import ToolGenModel

from .beam import format_prob
from .inputs import ChatHistory, IntSlider, Text
from .model_worker import on_model_worker
from .shared import MODEL_EVENTS, Workbench, esc, user_errors

EXAMPLES = [
    "List the files in my home folder.",
    "Show me what is written in notes.txt.",
    "Create a new folder called drafts.",
    "What is the current stock price of NVDA?",
    "What is the square root of 1764?",
]
MAX_SHOWN_CHARS = 4000  # observation text shown per message (the agent's events keep it whole)
MAX_MESSAGE = 2000  # characters per user message
_MARKDOWN_PUNCTUATION = re.compile(r"([\\`*_{}\[\]()#+\-.!|~$])")


def md_text(text: str) -> str:
    """Model or tool text made inert for the chat's Markdown: `&`, `<`, `>` HTML-escaped (quotes kept, so no
    `&#…;` entity meets the next step), then every Markdown punctuation mark backslash-escaped."""
    return _MARKDOWN_PUNCTUATION.sub(r"\\\1", html.escape(text, quote=False))


def pre(text: str) -> str:
    """A preformatted block showing `text` literally."""
    return f"<pre>{esc(text)}</pre>"


@dataclass
class ChatRenderer:
    """Turns the agent's events into chat messages (dicts in Gradio's messages format), updating in place."""

    prefix: str  # makes message ids unique within the conversation
    messages: list[dict] = field(default_factory=list)
    _calls: dict[tuple[int, int], dict] = field(default_factory=dict)
    _started: dict[tuple[int, int], float] = field(default_factory=dict)
    answered: bool = False

    def _add(self, content: str, **metadata) -> dict:
        message = {"role": "assistant", "content": content}
        if metadata:
            message["metadata"] = metadata
        self.messages.append(message)
        return message

    def add(self, event: AgentEvent) -> None:
        """Render one event."""
        key = (event.turn, event.step)
        if isinstance(event, ThoughtEvent):
            self._add(f"💭 {md_text(event.text)}" if event.text else "💭 *(no thought)*")
        elif isinstance(event, ActionEvent):
            self._action(key, event)
        elif isinstance(event, ArgumentsEvent):
            call = self._calls[key]
            problems = "".join(f"\n- ⚠️ {md_text(p)}" for p in event.problems)
            call["content"] += f"\n\n**Action Input**\n{pre(json.dumps(event.arguments, ensure_ascii=False, indent=1))}"
            if problems:
                call["content"] += f"\n\nArguments that break the tool's schema (sent anyway):{problems}"
            self._started[key] = time.perf_counter()
        elif isinstance(event, ObservationEvent):
            self._finish_call(key)
            label = "📄 Observation" if event.ok else "❌ Observation (error)"
            if not event.executed:
                label += ", not executed"
            shown = (
                event.content
                if len(event.content) <= MAX_SHOWN_CHARS
                else event.content[:MAX_SHOWN_CHARS] + f"\n… [{len(event.content) - MAX_SHOWN_CHARS} more characters]"
            )
            self._add(pre(shown), title=label)
        elif isinstance(event, FinalAnswerEvent):
            self._finish_call(key)
            self._add(f"✅ {md_text(event.text)}")
            self.answered = True
        elif isinstance(event, ErrorEvent):
            self._add(
                f"{md_text(event.message)}\n\n*Recovery:* {md_text(event.recovery)}",
                title="⚠️ Recovered from an error",
                status="done",
            )

    def _action(self, key: tuple[int, int], event: ActionEvent) -> None:
        call_id = f"{self.prefix}-{event.turn}-{event.step}"
        title = "🏁 Finish" if event.tool_id == FINISH else f"🛠️ {md_text(event.code)}"
        self._calls[key] = self._add(
            f"**Action** <code>{esc(event.code)}</code> · log P {event.log_prob:.3f}",
            title=title,
            id=call_id,
            status="pending",
        )
        rows = "".join(
            f"<tr><td>{rank}</td><td><code>{esc(code)}</code></td><td>{lp:.3f}</td>"
            f"<td>{format_prob(math.exp(lp))}</td></tr>"
            for rank, (_, code, lp) in enumerate(event.alternatives, start=1)
        )
        self._add(
            f"<table><tr><th>#</th><th>tool</th><th>log P</th><th>P</th></tr>{rows}</table>",
            title=f"Beam alternatives ({len(event.alternatives)})",
            parent_id=call_id,
            status="done",
        )

    def _finish_call(self, key: tuple[int, int]) -> None:
        call = self._calls.get(key)
        if call is not None:
            call["metadata"]["status"] = "done"
            if key in self._started:
                call["metadata"]["duration"] = round(time.perf_counter() - self._started[key], 2)


class Conversations:
    """The conversations of this process by session key, most recently used last; beyond `limit` the least recently
    used one that is not answering is dropped. They live where the model runs (the model worker, when one runs):
    a browser session's `gr.State` holds only its key, so the model context and tool state never travel."""

    def __init__(self, limit: int = 256):
        self.limit = limit
        self._by_key: OrderedDict[str, Conversation] = OrderedDict()

    def get(self, key: str) -> Conversation | None:
        conversation = self._by_key.get(key)
        if conversation is not None:
            self._by_key.move_to_end(key)
        return conversation

    def put(self, key: str, conversation: Conversation) -> None:
        self._by_key[key] = conversation
        self._by_key.move_to_end(key)
        idle = [k for k, c in self._by_key.items() if not c.answering]
        for old in idle[: max(0, len(self._by_key) - self.limit)]:
            del self._by_key[old]

    def __len__(self) -> int:
        return len(self._by_key)


CONVERSATIONS = Conversations()


def make_executor(corpus: str) -> Executor:
    """A fresh executor for a catalog from `corpus`: the ToolBench simulator for ToolBench tools, else the BFCL
    backends on their demo state (tools without a backend are validated, not run)."""
    return ToolBenchSimulator() if corpus == "toolbench" else BfclExecutor()


def executable_pool(toolgen: ToolGenModel, executor: Executor) -> tuple[str, ...] | None:
    """The catalog's tools a live BFCL backend of `executor` can run; None (every tool) for other executors."""
    if not isinstance(executor, BfclExecutor):
        return None
    return tuple(t.id for t in toolgen.catalog if t.tool_name in BACKEND_DOCS and t.tool_name in executor.instances)


def user_text(content) -> str:
    """The text of a chat input, whether a string or Gradio's list of `{"type": "text", …}` parts."""
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content if isinstance(part, dict))


def respond(
    workbench: Workbench,
    message,
    history: list,
    conversation: Conversation | None,
    executable_only: bool,
    max_steps: int,
    num_beams: int,
):
    """Stream the agent's answer to `message` in `conversation` (None: a new one): yields (history, conversation)
    after every event."""
    text = user_text(message).strip()
    if not text:
        raise ValueError("type a message first")
    toolgen = workbench.toolgen()
    if conversation is not None and conversation.answering:
        raise ValueError(
            "the agent is still answering your previous message: wait for its final answer, then send this one"
        )
    if conversation is not None and not conversation.can_continue:
        raise ValueError(
            "the last message ended without a final answer, so the agent cannot go on: press New conversation"
        )
    executor = make_executor(workbench.corpus()) if conversation is None else conversation.executor
    pool = executable_pool(toolgen, executor) if executable_only else None
    notes = []
    if pool == ():
        notes.append(
            {
                "role": "assistant",
                "content": "*No tool of this model's catalog has a live backend: the agent may call any tool, "
                "and calls are checked against their schema but not run.*",
            }
        )
        pool = None
    if conversation is None:
        conversation = Conversation(toolgen, executor, pool)
    elif pool != conversation.pool:  # the pool's trie is rebuilt only when the setting changed
        conversation.pool = pool
    conversation.config = AgentConfig(max_steps=int(max_steps), num_beams=int(num_beams))
    history = list(history or []) + [{"role": "user", "content": md_text(text)}] + notes
    renderer = ChatRenderer(prefix=f"m{len(history)}")
    yield history, conversation
    for event in conversation.send(text):
        renderer.add(event)
        yield history + renderer.messages, conversation
    if not renderer.answered:
        renderer.messages.append(
            {
                "role": "assistant",
                "content": "*(the agent stopped without a final answer; press New conversation to start again)*",
            }
        )
        yield history + renderer.messages, conversation


def build(workbench: Workbench) -> None:
    """The tab's components and events (call inside a `gr.Tab`)."""
    conversation = gr.State(None)  # the key of this browser session's Conversation in CONVERSATIONS
    chatbot = ChatHistory(
        label="ToolGen agent",
        height=620,
        layout="panel",
        elem_id="chat-history",
        latex_delimiters=[],
        feedback_options=None,
        buttons=["copy_all"],
        placeholder="Ask for something the tools can do.",
    )
    with gr.Row():
        message = Text(
            placeholder="Ask the agent…",
            label="message",
            show_label=False,
            max_length=MAX_MESSAGE,
            scale=5,
            elem_id="chat-input",
        )
        send = gr.Button("Send", variant="primary", scale=1, elem_id="chat-send")
        new = gr.Button("New conversation", scale=1)
    with gr.Accordion("Settings", open=False):
        with gr.Row():
            executable_only = gr.Checkbox(True, label="executable tools only (BFCL backends)")
            max_steps = IntSlider(1, 10, value=4, step=1, label="max tool calls per message")
            beams = IntSlider(1, 10, value=5, step=1, label="beams for the Action")
    gr.Examples(EXAMPLES, inputs=message, label="Examples (BFCL file system, trading and math backends)")

    @user_errors
    @on_model_worker
    def chat(text, history, key, only_executable, steps, num_beams):
        key = key or secrets.token_hex(16)
        conversation = CONVERSATIONS.get(key)
        for shown, used in respond(workbench, text, history, conversation, only_executable, steps, num_beams):
            CONVERSATIONS.put(key, used)
            yield "", shown, key

    gr.on(
        [send.click, message.submit],
        chat,
        [message, chatbot, conversation, executable_only, max_steps, beams],
        [message, chatbot, conversation],
        api_name="chat",
        **MODEL_EVENTS,
    )

    @user_errors
    def new_conversation(key):
        return [], None  # the next message starts a Conversation under a new key; the old one ages out

    new.click(new_conversation, conversation, [chatbot, conversation], api_name="new_conversation")
