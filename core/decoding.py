"""Constrained decoding of tool codes with a KV cache: beam search (ranked tools) and sampling (one tool).

Works on a plain causal LM (`model(input_ids, attention_mask, position_ids, past_key_values)`) and
token-id prompts; no `generate`. Scores are the model's real log-probabilities: every step takes the
log-softmax over the FULL vocabulary and only then restricts it to the trie, so a candidate's `log_prob`
is log P(code | prompt), the sum over its tokens, and is comparable across prompts and tries.

Beam search (`constrained_beam_search`): the beam is `width = max(num_beams, top_k)` wide. Each step ranks
every allowed continuation of every live beam by cumulative log-prob and looks at the best `2 * width`:
those that complete a code become results, the best `width` of the others stay live. The search ends when
no beam is live, or when `top_k` results are in and no live beam scores above the `top_k`-th (log-probs
only fall, so none could still enter). So `top_k > num_beams` widens the beam to `top_k` (as HF `generate`
needs `num_beams >= num_return_sequences`): a request for k tools gets k tools whenever the trie holds k.
For one-token (atomic) codes every continuation completes at the first step, so the result is the exact
top-k of the masked distribution for any k, from the prompt's single forward pass. For multi-token codes
it is beam search: codes that fall out of the beam are never scored (the usual caveat).
Results are distinct tools: each tool has one code and beams never share a prefix.

A `first_step_bias` (one row over the vocabulary per prompt) is added to the first step's log-probabilities before
the search ranks them: a prior over tools (e.g. `core.retrieval`'s lexical prior) that the result's scores then include.

A `PromptPrefix` (the keys/values of the token ids every prompt starts with, e.g. the chat template and system
prompt) can be computed once and passed to the searches: each prompt then runs only its own remaining tokens.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import torch
from transformers import DynamicCache

from .constraint import NEG_INF, CodeTrie


@dataclass
class TokenOption:
    """One next-token option of a beam: the model's probability over the full vocabulary."""

    token_id: int
    text: str | None
    prob: float
    allowed: bool


@dataclass
class BeamTrace:
    """One live beam at one step: its prefix and its best next tokens before and after masking."""

    prefix: list[int]
    prefix_text: list[str] | None
    log_prob: float
    allowed_count: int  # how many tokens the trie allows next
    allowed_mass: float  # total model probability of those tokens
    before_mask: list[TokenOption]  # best tokens of the unconstrained distribution; `allowed` marks survivors
    after_mask: list[TokenOption]  # best allowed tokens


@dataclass
class StepTrace:
    """One decoding step: the live beams, the prefixes kept for the next step, the codes completed."""

    step: int
    beams: list[BeamTrace]
    kept: list[list[int]]
    completed: list[str]


@dataclass
class Candidate:
    """A decoded tool: its code tokens and log P(code | prompt) under the model."""

    tool_id: str
    log_prob: float
    token_ids: list[int]


@dataclass
class DecodeResult:
    """Ranked tools (best first), per-step traces, and cost counters of one decode."""

    candidates: list[Candidate]
    steps: list[StepTrace] = field(default_factory=list)
    forward_passes: int = 0
    mask_ms: list[float] = field(default_factory=list)  # time spent masking, per step (whole batch step)

    @property
    def best(self) -> Candidate | None:
        return self.candidates[0] if self.candidates else None

    @property
    def tool_ids(self) -> list[str]:
        return [c.tool_id for c in self.candidates]

    def to_dict(self) -> dict:
        """Plain JSON-serialisable dict."""
        return asdict(self)


@dataclass
class _Beam:
    prefix: tuple[int, ...]
    log_prob: float


@dataclass(frozen=True)
class PromptPrefix:
    """The keys/values of `ids`, a token-id prefix that prompts share, computed once by `PromptPrefix.of`."""

    ids: tuple[int, ...]
    keys_values: tuple[tuple[torch.Tensor, torch.Tensor], ...]  # per layer, batch 1

    @classmethod
    def of(cls, model, ids: Sequence[int]) -> PromptPrefix:
        """Run `model` over `ids` once and keep its keys/values."""
        if not ids:
            raise ValueError("a prompt prefix holds at least one token id")
        with torch.inference_mode():
            out = model(input_ids=torch.tensor([list(ids)], device=model.device), use_cache=True, logits_to_keep=1)
        return cls(tuple(ids), tuple((layer.keys, layer.values) for layer in out.past_key_values.layers))

    def starts(self, prompt: Sequence[int]) -> bool:
        """Whether `prompt` begins with this prefix and goes on after it."""
        return len(prompt) > len(self.ids) and tuple(prompt[: len(self.ids)]) == self.ids

    def cache(self, rows: int) -> DynamicCache:
        """A KV cache holding the prefix for `rows` rows (views: the stored tensors are never written)."""
        return DynamicCache([(k.expand(rows, -1, -1, -1), v.expand(rows, -1, -1, -1)) for k, v in self.keys_values])


class _CachedForward:
    """Runs the model over left-padded prompts once, then one new token per row, reusing the KV cache.

    With a `prefix` that every prompt starts with, only the rest of each prompt is run, after the prefix's
    keys/values: rows are [prefix][padding][rest], the padding masked out."""

    def __init__(self, model, prompts: Sequence[Sequence[int]], prefix: PromptPrefix | None = None):
        if not prompts or any(len(p) == 0 for p in prompts):
            raise ValueError("every prompt must hold at least one token id")
        if prefix is not None and not all(prefix.starts(p) for p in prompts):
            raise ValueError("every prompt must begin with the prefix and go on after it")
        self.model = model
        device = model.device
        start = len(prefix.ids) if prefix is not None else 0
        rests = [list(p[start:]) for p in prompts]
        width = max(len(r) for r in rests)
        input_ids = torch.zeros((len(prompts), width), dtype=torch.long, device=device)
        self.attention = torch.zeros((len(prompts), start + width), dtype=torch.long, device=device)
        self.attention[:, :start] = 1
        for row, rest in enumerate(rests):
            input_ids[row, width - len(rest) :] = torch.tensor(rest, dtype=torch.long)
            self.attention[row, start + width - len(rest) :] = 1
        self.positions = torch.tensor([len(p) for p in prompts], dtype=torch.long, device=device)
        position_ids = (self.attention.cumsum(-1) - 1).clamp(min=0)[:, start:]
        out = model(
            input_ids=input_ids,
            attention_mask=self.attention,
            position_ids=position_ids,
            past_key_values=prefix.cache(len(prompts)) if prefix is not None else None,
            use_cache=True,
            logits_to_keep=1,
        )
        self.cache = out.past_key_values
        self.log_probs = torch.log_softmax(out.logits[:, -1].float(), dim=-1)
        self.passes = 1

    def advance(self, parents: Sequence[int], tokens: Sequence[int]) -> torch.Tensor:
        """Continue current rows `parents` (repeats allowed) with `tokens`; return next-token log-probs."""
        device = self.model.device
        parents = torch.tensor(list(parents), dtype=torch.long, device=device)
        self.cache.reorder_cache(parents)
        self.attention = torch.cat([self.attention[parents], self.attention.new_ones((len(parents), 1))], dim=1)
        positions = self.positions[parents]
        out = self.model(
            input_ids=torch.tensor(list(tokens), dtype=torch.long, device=device)[:, None],
            attention_mask=self.attention,
            position_ids=positions[:, None],
            past_key_values=self.cache,
            use_cache=True,
        )
        self.positions = positions + 1
        self.passes += 1
        self.log_probs = torch.log_softmax(out.logits[:, -1].float(), dim=-1)
        return self.log_probs


def _timed_mask(trie: CodeTrie, log_probs: torch.Tensor, prefixes: list[tuple[int, ...]]) -> tuple[torch.Tensor, float]:
    start = time.perf_counter()
    masked = trie.mask(log_probs, prefixes)
    return masked, (time.perf_counter() - start) * 1e3


def _check_trie(trie: CodeTrie) -> None:
    if len(trie) == 0:
        raise ValueError("the code trie holds no codes: nothing can be decoded")


def _token_text(tokenizer, token_id: int) -> str | None:
    return None if tokenizer is None else tokenizer.decode([token_id])


def _options(
    log_probs: torch.Tensor, masked: torch.Tensor, source: torch.Tensor, n: int, tokenizer
) -> list[TokenOption]:
    """The best `n` finite entries of `source` (one row), reported with their full-vocabulary probability."""
    values, ids = source.topk(min(n, source.numel()))
    return [
        TokenOption(i, _token_text(tokenizer, i), float(log_probs[i].exp()), bool(masked[i] > NEG_INF))
        for v, i in zip(values.tolist(), ids.tolist())
        if v > NEG_INF
    ]


def _beam_trace(beam: _Beam, log_probs: torch.Tensor, masked: torch.Tensor, n: int, tokenizer) -> BeamTrace:
    allowed = masked > NEG_INF
    return BeamTrace(
        prefix=list(beam.prefix),
        prefix_text=None if tokenizer is None else [_token_text(tokenizer, t) for t in beam.prefix],
        log_prob=beam.log_prob,
        allowed_count=int(allowed.sum()),
        allowed_mass=float(log_probs[allowed].exp().sum()),
        before_mask=_options(log_probs, masked, log_probs, n, tokenizer),
        after_mask=_options(log_probs, masked, masked, n, tokenizer),
    )


def constrained_beam_search_batch(
    model,
    prompts: Sequence[Sequence[int]],
    trie: CodeTrie,
    num_beams: int = 5,
    top_k: int | None = None,
    tokenizer=None,
    record_steps: bool = True,
    step_top_n: int = 10,
    prefix: PromptPrefix | None = None,
    first_step_bias: torch.Tensor | None = None,
) -> list[DecodeResult]:
    """Beam search over `trie` for several token-id prompts at once (left padding); one result per prompt.

    `top_k` (default `num_beams`) is how many tools to return; a larger `top_k` widens the beam to `top_k`.
    With `record_steps`, each result holds per-step traces (token texts when `tokenizer` is given).
    `prefix`: precomputed keys/values of the ids every prompt starts with (see `PromptPrefix`).
    `first_step_bias`: (prompts, vocabulary) added to the first step's log-probs (see the module docstring).
    """
    _check_trie(trie)
    if num_beams < 1 or (top_k is not None and top_k < 1):
        raise ValueError(f"num_beams ({num_beams}) and top_k ({top_k}) must be at least 1")
    k = top_k or num_beams
    width = max(num_beams, k)
    results = [DecodeResult(candidates=[]) for _ in prompts]
    with torch.inference_mode():
        forward = _CachedForward(model, prompts, prefix)
        beams = [[_Beam((), 0.0)] for _ in prompts]  # live beams per prompt; rows are these, flattened
        log_probs = forward.log_probs
        if first_step_bias is not None:
            log_probs = log_probs + first_step_bias.to(log_probs.device, log_probs.dtype)
        step = 0
        while True:
            masked, mask_ms = _timed_mask(trie, log_probs, [b.prefix for group in beams for b in group])
            cumulative = (
                masked + torch.tensor([b.log_prob for group in beams for b in group], device=masked.device)[:, None]
            )
            parents, tokens, next_beams, first_row = [], [], [], 0
            for group, result in zip(beams, results):
                rows = range(first_row, first_row + len(group))
                first_row += len(group)
                live, completed = [], []
                if group:
                    result.mask_ms.append(mask_ms)
                    live, completed = _expand(trie, group, cumulative[rows.start : rows.stop], width)
                    result.candidates = sorted(result.candidates + completed, key=lambda c: -c.log_prob)[:k]
                    if len(result.candidates) == k and live and live[0][0].log_prob <= result.candidates[-1].log_prob:
                        live = []  # no live beam can still enter the top k
                    if record_steps:
                        result.steps.append(
                            StepTrace(
                                step=step,
                                beams=[
                                    _beam_trace(b, log_probs[r], masked[r], step_top_n, tokenizer)
                                    for b, r in zip(group, rows)
                                ],
                                kept=[list(beam.prefix) for beam, _, _ in live],
                                completed=[c.tool_id for c in completed],
                            )
                        )
                parents += [rows[parent] for _, parent, _ in live]
                tokens += [token for _, _, token in live]
                next_beams.append([beam for beam, _, _ in live])
            beams = next_beams
            if not parents:
                break
            log_probs = forward.advance(parents, tokens)
            step += 1
    for result in results:
        result.forward_passes = forward.passes
    return results


def _expand(
    trie: CodeTrie, group: list[_Beam], cumulative: torch.Tensor, width: int
) -> tuple[list[tuple[_Beam, int, int]], list[Candidate]]:
    """The best `2 * width` continuations of one prompt's beams, split into (live beam, parent index, token)
    triples (at most `width`) and completed codes."""
    live, completed = [], []
    values, indices = cumulative.flatten().topk(min(2 * width, cumulative.numel()))
    for value, index in zip(values.tolist(), indices.tolist()):
        if value == NEG_INF:
            break
        parent, token = divmod(index, cumulative.shape[1])
        prefix = group[parent].prefix + (token,)
        tool_id = trie.tool_at(prefix)
        if tool_id is not None:
            completed.append(Candidate(tool_id, value, list(prefix)))
        elif len(live) < width:
            live.append((_Beam(prefix, value), parent, token))
    return live, completed


def constrained_beam_search(
    model,
    prompt_ids: Sequence[int],
    trie: CodeTrie,
    num_beams: int = 5,
    top_k: int | None = None,
    tokenizer=None,
    record_steps: bool = True,
    step_top_n: int = 10,
    prefix: PromptPrefix | None = None,
    first_step_bias: torch.Tensor | None = None,
) -> DecodeResult:
    """Beam search over `trie` after one token-id prompt: the best `top_k` distinct tools with log-probs
    (`first_step_bias`: one row over the vocabulary, see `constrained_beam_search_batch`)."""
    bias = None if first_step_bias is None else first_step_bias.reshape(1, -1)
    return constrained_beam_search_batch(
        model, [prompt_ids], trie, num_beams, top_k, tokenizer, record_steps, step_top_n, prefix, bias
    )[0]


def top_single_token_codes(log_probs: torch.Tensor, trie: CodeTrie, top_k: int) -> list[Candidate]:
    """The best `top_k` codes of a trie whose codes are all one token (atomic indexing), from the next-token
    log-probs (1-D) after the prompt: exactly what `constrained_beam_search` returns for such a trie, for a
    caller that already has those log-probs (e.g. from its own KV cache)."""
    _check_trie(trie)
    if trie.depth != 1:
        raise ValueError(f"the trie's codes are up to {trie.depth} tokens long; use constrained_beam_search")
    masked = trie.mask(log_probs[None], [()])[0]
    values, ids = masked.topk(min(top_k, masked.numel()))
    return [
        Candidate(trie.tool_at((token,)), value, [token])
        for value, token in zip(values.tolist(), ids.tolist())
        if value > NEG_INF
    ]


def constrained_sample(
    model, prompt_ids: Sequence[int], trie: CodeTrie, temperature: float = 1.0, generator: torch.Generator | None = None
) -> DecodeResult:
    """Sample one code token by token from the model's distribution restricted to `trie`.

    Tokens are drawn from softmax(log-probs / temperature) over the allowed tokens; the returned
    candidate's `log_prob` is still the model's own (temperature 1) log P(code | prompt).
    """
    _check_trie(trie)
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    result = DecodeResult(candidates=[])
    prefix, log_prob = (), 0.0
    with torch.inference_mode():
        forward = _CachedForward(model, [prompt_ids])
        log_probs = forward.log_probs
        while True:
            masked, mask_ms = _timed_mask(trie, log_probs, [prefix])
            result.mask_ms.append(mask_ms)
            probs = torch.softmax(masked[0] / temperature, dim=-1)
            token = int(torch.multinomial(probs.to(generator.device) if generator else probs, 1, generator=generator))
            log_prob += float(log_probs[0, token])
            prefix += (token,)
            tool_id = trie.tool_at(prefix)
            if tool_id is not None:
                result.candidates = [Candidate(tool_id, log_prob, list(prefix))]
                break
            log_probs = forward.advance([0], [token])
    result.forward_passes = forward.passes
    return result
