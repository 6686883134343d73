"""A scripted stand-in for a causal LM, so agent tests control every token the "model" writes."""

from types import SimpleNamespace

import torch

from core.executors.base import Observation
from core.indexing import FINISH
from core.prompts import Step, assistant_turn_ids, encode

WEATHER, FORECAST, LYRICS = "Weather&&current weather", "Weather&&forecast", "Music&&lyrics"


class _ScriptCache:
    """Stands in for a KV cache: it just remembers each row's token ids."""

    def __init__(self, rows):
        self.rows = rows

    def crop(self, tokens_to_remove):
        if tokens_to_remove:
            self.rows = [row[:tokens_to_remove] for row in self.rows]

    def reorder_cache(self, parents):
        self.rows = [list(self.rows[p]) for p in parents.tolist()]


class ScriptedLM(torch.nn.Module):
    """A causal LM stand-in whose next token is `script(all ids so far)` (logit +10, every other token -10)."""

    def __init__(self, vocab_size, script):
        super().__init__()
        self.vocab_size, self.script, self.longest = vocab_size, script, []
        self.config = SimpleNamespace(max_position_embeddings=8192)

    @property
    def device(self):
        return torch.device("cpu")

    def forward(
        self, input_ids, attention_mask=None, position_ids=None, past_key_values=None, use_cache=True, logits_to_keep=0
    ):
        rows = input_ids.tolist()
        if past_key_values is None:
            if attention_mask is not None:  # drop left padding
                rows = [row[len(row) - int(mask.sum()) :] for row, mask in zip(rows, attention_mask)]
            cache = _ScriptCache(rows)
        else:
            cache = past_key_values
            cache.rows = [old + new for old, new in zip(cache.rows, rows)]
        logits = torch.full((len(rows), 1, self.vocab_size), -10.0)
        for row, ids in enumerate(cache.rows):
            logits[row, 0, self.script(ids)] = 10.0
            self.longest = max(self.longest, ids, key=len)
        return SimpleNamespace(logits=logits, past_key_values=cache)


class TurnScript:
    """Plays assistant turn k (given as token ids) after the k-th assistant header; end of turn otherwise."""

    def __init__(self, tokenizer, turns):
        self.header = encode(tokenizer, "<|im_start|>assistant\n")
        self.turns, self.end = turns, tokenizer.convert_tokens_to_ids("<|im_end|>")

    def __call__(self, ids):
        n, starts = len(self.header), []
        for i in range(len(ids) - n + 1):
            if ids[i : i + n] == self.header:
                starts.append(i + n)
        written = ids[starts[-1] :]
        target = self.turns[min(len(starts) - 1, len(self.turns) - 1)]
        if written == target[: len(written)] and len(written) < len(target):
            return target[len(written)]
        return self.end


def turn(toolgen, thought, tool_id, arguments):
    """An assistant turn exactly as agent tuning renders it (core/prompts.py)."""
    return assistant_turn_ids(toolgen, Step(thought, tool_id, arguments))


class RecordingExecutor:
    def __init__(self, reply=lambda tool, arguments: Observation(content=f"sunny in {arguments.get('q')}")):
        self.reply, self.calls = reply, []

    def call(self, tool, arguments):
        self.calls.append((tool.id, arguments))
        return self.reply(tool, arguments)

    def reset(self):
        self.calls = []


def scripted(build, turns_spec):
    """A ToolGenModel playing `turns_spec` [(thought, tool id, arguments)]."""
    probe = build([[0]])
    return build([turn(probe, *spec) for spec in turns_spec])


TWO_ANSWERS = [
    ("a", WEATHER, {"q": "Oslo"}),
    ("b", FINISH, {"final_answer": "one"}),
    ("c", LYRICS, {"q": "song"}),
    ("d", FINISH, {"final_answer": "two"}),
]
