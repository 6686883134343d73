"""The trainer of all three ToolGen stages: one `accelerate` loop, the same code on CPU, one GPU or several
(`accelerate launch -m core build ...`).

What is trained: the top `train_layers` decoder layers with the final norm, and the embedding rows of the
added tokens (tool codes, END, `<<Finish>>`). Everything else is frozen, which is what makes it fast:

- Frozen lower layers: their output for an input sequence is computed once, without gradients, and
  cached (keyed by the token ids), so it is reused across epochs, across stages sharing prompts, and by
  `code_logits` (evaluation).
- Logits only at target positions, over the whole vocabulary (`head="full"`) or over the code tokens
  only (`head="codes"`: a softmax over the tools, the ranking the constrained decoder uses).
- The input-side lookup of the added rows is detached: tool tokens are targets, so no gradient runs
  back through every layer to reach them; as inputs (agent trajectories) they keep their value from the
  start of the stage. The trained rows are written back into the tied embedding after each stage.
- A prefix shared by a whole batch (chat template and system prompt) goes through the lower layers once;
  the batch continues from its keys/values.
- Length bucketing with right padding: under causal attention no real token looks at a pad, so batches
  need no padding mask.

Several processes (`accelerate launch`, DDP or DeepSpeed) share each optimizer step: a step's global batch is
`num_processes x grad_accumulation` consecutive length batches, each process runs its own share of them, and the
loss is the cross-entropy summed over the global batch's target tokens divided by their count (the processes'
gradients are averaged, so each scales its part by the number of processes). One process with
`grad_accumulation=N` therefore trains the same weights as N processes (tests/test_distributed.py), and one process
with the default `grad_accumulation=1` computes what it always did: the mean over its batch.

Interrupted runs resume: `train(..., state_path=P)` saves the stage's state into the folder P every
`checkpoint_every_s` seconds (`accelerator.save_state`: trained weights as safetensors, the optimizer; and
`progress.json`: stage, config, step, losses) and continues from there (`accelerator.load_state`) when called
again with the same P, stage and config.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from accelerate import Accelerator, DistributedType
from torch import nn
from tqdm.auto import tqdm
from transformers import DynamicCache
from transformers.masking_utils import create_causal_mask

from .doc_rows import DocRows, documentation_prompts, user_span
from .examples import Example
from .indexing import FINISH
from .runtime import train_bf16
from .splits import spread

HEADS = ("full", "codes")
PAD_MULTIPLE = 16
MIN_SHARED_PREFIX = 4
PROBE = 256  # examples (evenly spread) whose loss is reported before and after each stage
PROGRESS_FILE = "progress.json"  # in a stage-state folder, beside accelerate's files


@dataclass
class StageConfig:
    """Hyper-parameters of one training stage."""

    epochs: int = 1
    lr: float = 3e-4  # top decoder layers and final norm
    rows_lr: float = 3e-3  # rows of the added tokens
    head: str = "full"  # "full" vocabulary or "codes" (code tokens only; stages 1 and 2)
    batch_tokens: int = 2048  # padded tokens per batch
    max_batch: int = 32  # sequences per batch
    max_len: int = 1024  # longer sequences keep their first max_len tokens
    warmup: float = 0.05  # share of the steps with a linear warm-up, then cosine decay to 0
    weight_decay: float = 0.0
    seed: int = 0
    distill: float = 0.0  # weight of the teacher's soft targets (`Trainer.train(soft_targets=…)`; core/soft_targets.py)
    doc_rows: bool = False  # rows = the free rows, kept, + a trained projection of the documentation (core/doc_rows.py)

    def __post_init__(self):
        if self.head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {self.head!r}")
        if self.epochs < 1 or self.batch_tokens < 1 or self.max_batch < 1 or self.max_len < 2 or self.distill < 0:
            raise ValueError(f"bad stage config: {self}")


@dataclass(frozen=True)
class _Row:
    """An example as the trainer sees it: inputs, the positions whose next token is scored, those tokens, and a
    teacher's distribution (token id, probability) over the token at the first scored position, if any."""

    inputs: tuple[int, ...]
    positions: tuple[int, ...]
    labels: tuple[int, ...]
    soft: tuple[tuple[int, float], ...] = ()


def _to_row(example: Example, max_len: int, soft: tuple[tuple[int, float], ...] = ()) -> _Row | None:
    inputs = example.ids[:-1][:max_len]
    scored = [(i - 1, example.ids[i]) for i in range(1, len(example.ids)) if example.mask[i] and i - 1 < max_len]
    if not scored:
        return None
    positions, labels = zip(*scored)
    return _Row(inputs, positions, labels, soft)


def decoder_parts(model) -> tuple[nn.ModuleList, nn.Module, nn.Module]:
    """(decoder layers, final norm, rotary embedding) of a Llama-style causal LM; TypeError otherwise."""
    inner = getattr(model, "model", None)
    parts = [getattr(inner, name, None) for name in ("layers", "norm", "rotary_emb")]
    if any(p is None for p in parts):
        raise TypeError(
            f"{type(model).__name__}: training needs a Llama-style decoder "
            "(model.model.layers, model.model.norm, model.model.rotary_emb)"
        )
    return parts[0], parts[1], parts[2]


def _run_layers(layers, rotary, config, hidden: torch.Tensor, cache: DynamicCache | None = None) -> torch.Tensor:
    """Run decoder `layers` over a right-padded batch of hidden states with causal attention, after the
    keys/values already in `cache` (a shared prefix) when one is given."""
    if len(layers) == 0:
        return hidden
    offset = cache.get_seq_length() if cache is not None else 0
    positions = torch.arange(offset, offset + hidden.shape[1], device=hidden.device).unsqueeze(0)
    rope = rotary(hidden, positions)
    mask = create_causal_mask(
        config=config, inputs_embeds=hidden, attention_mask=None, past_key_values=cache, position_ids=positions
    )
    for layer in layers:
        hidden = layer(
            hidden,
            attention_mask=mask,
            position_embeddings=rope,
            position_ids=positions,
            past_key_values=cache,
            use_cache=cache is not None,
        )
    return hidden


def _common_prefix(sequences: Sequence[tuple[int, ...]]) -> tuple[int, ...]:
    """The longest prefix shared by all sequences, leaving at least one token of each after it."""
    limit = min(len(s) for s in sequences) - 1
    first = sequences[0]
    length = 0
    while length < limit and all(s[length] == first[length] for s in sequences):
        length += 1
    return first[:length]


class TopStack(nn.Module):
    """The trained part: top decoder layers, final norm (trained with them), and the added-token rows.

    With `attach_documentation(features)` each added row becomes its free row plus `projection` times its
    documentation features (core/doc_rows.py); `current_rows()` is what the head uses and what is written back.

    `forward(hidden, positions, labels, head, count, soft, distill)` takes lower-layer states and returns the
    cross-entropy of `labels` at `positions` ((batch index, position) pairs), with logits over the whole vocabulary
    (head=None) or over the token ids in `head` (labels then index into `head`): the mean, or with `count` the
    sum divided by `count` (the target tokens of a global batch this batch is part of). With `soft` (which of the
    positions, target ids, their probabilities) `distill` times the cross-entropy against those distributions is
    added to the sum.
    """

    def __init__(self, model, n_layers: int, first_new: int):
        super().__init__()
        layers, norm, rotary = decoder_parts(model)
        self.layers = nn.ModuleList(layers[len(layers) - n_layers :])
        self.norm = norm
        self.config = model.config
        self.first_new = first_new
        weight = model.get_input_embeddings().weight
        self.rows = nn.Parameter(weight[first_new:].detach().clone())
        self._rotary = [rotary]  # in a list: shared with the model, not a submodule of this one
        self._base = [weight[:first_new]]  # frozen rows of the ordinary vocabulary (a view, no copy)
        self.register_buffer("doc_features", None)
        self.register_parameter("projection", None)

    def attach_documentation(self, features: torch.Tensor) -> None:
        """From now on row i is `rows[i] + projection @ features[i]`; the projection starts at 0."""
        self.doc_features = features
        self.projection = nn.Parameter(features.new_zeros(self.rows.shape[1], features.shape[1]))

    def current_rows(self) -> torch.Tensor:
        """The added tokens' rows as the head sees them."""
        if self.projection is None:
            return self.rows
        return self.rows + self.doc_features @ self.projection.T

    def head_weight(self, head: torch.Tensor | None) -> torch.Tensor | None:
        """Output rows of the ids in `head` (None: the caller uses the full vocabulary)."""
        if head is None:
            return None
        base, new = head[head < self.first_new], head[head >= self.first_new] - self.first_new
        return torch.cat([self._base[0][base], self.current_rows()[new]])

    def hidden_at(self, hidden: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Final-norm states at `positions` after the top layers."""
        hidden = _run_layers(self.layers, self._rotary[0], self.config, hidden)
        return self.norm(hidden[positions[:, 0], positions[:, 1]])

    def logits(self, states: torch.Tensor, head: torch.Tensor | None) -> torch.Tensor:
        if head is None:
            return torch.cat([states @ self._base[0].T, states @ self.current_rows().T], dim=-1)
        return states @ self.head_weight(head).T

    def forward(self, hidden, positions, labels, head=None, count=None, soft=None, distill: float = 0.0):
        logits = self.logits(self.hidden_at(hidden, positions), head).float()
        loss = F.cross_entropy(logits, labels, reduction="sum")
        if soft is not None and distill:
            at, ids, probs = soft
            loss = loss - distill * (probs * logits[at].log_softmax(-1).gather(1, ids)).sum()
        return loss / (len(labels) if count is None else count)


def first_added_id(toolgen) -> int:
    """The id of the first added token; all ids from there to the end of the vocabulary are added tokens (the
    tokens of tools taken out by `core.remove_tools` among them: their rows stay)."""
    first = min(toolgen.tokenizer.convert_tokens_to_ids(toolgen.indexing.new_tokens() + [FINISH]))
    added = toolgen.tokenizer.added_tokens_decoder
    if any(i not in added for i in range(first, len(toolgen.tokenizer))):
        raise ValueError("the added tool tokens are not the last rows of the vocabulary")
    return first


class Trainer:
    """Trains a `ToolGenModel` in place, stage after stage; the lower-layer cache lives across stages.

    train_layers: how many top decoder layers are trained (-1: all); bf16: autocast matmuls to bfloat16 (None:
    only where the device computes bf16 natively, `core.runtime.train_bf16`); cache_dtype: storage type of the
    cached lower-layer states; grad_accumulation: length batches each process runs per optimizer step (see the
    module docstring: 1 process with N trains what N processes with 1 do).
    """

    def __init__(
        self,
        toolgen,
        train_layers: int = 2,
        bf16: bool | None = None,
        accelerator: Accelerator | None = None,
        cache_dtype: torch.dtype = torch.bfloat16,
        checkpoint_every_s: float = 300.0,
        grad_accumulation: int = 1,
    ):
        self.toolgen = toolgen
        self.accelerator = accelerator or Accelerator()
        if grad_accumulation < 1:
            raise ValueError(f"grad_accumulation must be at least 1, got {grad_accumulation}")
        if grad_accumulation > 1 and self.accelerator.distributed_type == DistributedType.DEEPSPEED:
            raise ValueError(
                "DeepSpeed steps inside backward: set gradient_accumulation_steps in its config, not grad_accumulation"
            )
        self.grad_accumulation = grad_accumulation
        self.device = self.accelerator.device
        self.bf16 = train_bf16(self.device) if bf16 is None else bf16
        self.cache_dtype, self.checkpoint_every_s = cache_dtype, checkpoint_every_s
        model = toolgen.model.to(self.device).eval()
        model.requires_grad_(False)
        layers, _, self._rotary = decoder_parts(model)
        n_train = len(layers) if train_layers < 0 else min(train_layers, len(layers))
        self.lower = layers[: len(layers) - n_train]
        self.first_new = first_added_id(toolgen)
        top = TopStack(model, n_train, self.first_new)
        for parameter in top.layers.parameters():
            parameter.requires_grad_(True)
        if n_train:
            top.norm.requires_grad_(True)
        self.top = self.accelerator.prepare(top)
        self.cache: dict[tuple[int, ...], torch.Tensor] = {}
        self.lower_tokens = 0  # tokens pushed through the lower layers (cache misses)

    def train_only_rows(self, token_ids: Sequence[int]) -> None:
        """From now on only the rows of `token_ids` (added tokens) train: the other rows' gradients are zeroed, so
        AdamW (no weight decay in any preset) never moves them. Meant for a Trainer with `train_layers=0`."""
        top = self.accelerator.unwrap_model(self.top)
        keep = torch.zeros(top.rows.shape[0], 1, device=top.rows.device, dtype=top.rows.dtype)
        keep[[t - self.first_new for t in token_ids]] = 1
        top.rows.register_hook(lambda grad: grad * keep)

    # ------------------------------------------------------------ lower layers (frozen, cached)

    def _autocast(self):
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=self.bf16)

    @torch.no_grad()
    def _lower_states(self, sequences: Sequence[tuple[int, ...]]) -> torch.Tensor:
        """Right-padded (batch, length, hidden) lower-layer states of `sequences`, computing only cache misses."""
        missing = list(dict.fromkeys(s for s in sequences if s not in self.cache))
        if missing:
            for sequence, states in zip(missing, self._compute_lower(missing)):
                self.cache[sequence] = states.to(self.cache_dtype)
        width = _width(len(s) for s in sequences)
        out = torch.zeros(len(sequences), width, self.cache[sequences[0]].shape[-1], device=self.device)
        for i, sequence in enumerate(sequences):
            out[i, : len(sequence)] = self.cache[sequence]
        return out

    def _compute_lower(self, sequences: list[tuple[int, ...]]) -> list[torch.Tensor]:
        """Lower-layer states of each sequence. A prefix shared by the whole batch (the chat template and
        system prompt) is run once and its keys/values reused by every sequence."""
        model = self.toolgen.model
        embed = model.get_input_embeddings()
        prefix = _common_prefix(sequences) if len(sequences) > 1 and len(self.lower) else ()
        cache = None
        with self._autocast():
            if len(prefix) >= MIN_SHARED_PREFIX:
                cache = DynamicCache()
                ids = torch.tensor([prefix], device=self.device)
                shared = _run_layers(self.lower, self._rotary, model.config, embed(ids), cache)[0]
                cache = DynamicCache(
                    [
                        (layer.keys.expand(len(sequences), -1, -1, -1), layer.values.expand(len(sequences), -1, -1, -1))
                        for layer in cache.layers
                    ]
                )
            else:
                prefix = ()
            suffixes = [list(s[len(prefix) :]) for s in sequences]
            ids = _pad(suffixes, 0).to(self.device)
            hidden = _run_layers(self.lower, self._rotary, model.config, embed(ids), cache)
        self.lower_tokens += len(prefix) + sum(len(s) for s in suffixes)
        if prefix:
            return [torch.cat([shared, hidden[i, : len(s)]]) for i, s in enumerate(suffixes)]
        return [hidden[i, : len(s)] for i, s in enumerate(suffixes)]

    def _write_back(self) -> None:
        """Copy the trained rows into the (tied) embedding (and the projection, if any, into the model); drop cached
        states that used the old rows."""
        with torch.no_grad():
            rows = self.accelerator.unwrap_model(self.top).current_rows()
            self.toolgen.model.get_input_embeddings().weight[self.first_new :] = rows
        if self.doc_rows is not None:
            self.toolgen.doc_rows = self.doc_rows
        self.cache = {k: v for k, v in self.cache.items() if max(k) < self.first_new}

    # ------------------------------------------------------------ documentation-conditioned rows

    @torch.no_grad()
    def documentation_features(self, tool_ids: Sequence[str], batch: int = 32) -> torch.Tensor:
        """Raw documentation features of `tool_ids` (core/doc_rows.py): the lower layers' state at the last position
        of the documentation's retrieval prompt beside their mean state over the documentation; (n, 2 x hidden)."""
        prompts = documentation_prompts(self.toolgen, tool_ids)
        before, after = user_span(self.toolgen.tokenizer)
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        out = torch.empty(len(prompts), 2 * self.toolgen.model.config.hidden_size)
        chunks = range(0, len(order), batch)
        for start in tqdm(chunks, desc="documentation", disable=not self.accelerator.is_main_process, leave=False):
            chunk = order[start : start + batch]
            for i, states in zip(chunk, self._compute_lower([prompts[i] for i in chunk])):
                out[i] = torch.cat([states[-1], states[before : len(states) - after].mean(0)]).float().cpu()
        return out

    def _attach_documentation(self) -> None:
        """Give the head documentation-conditioned rows over the catalog's tools (once; atomic indexing only)."""
        top = self.accelerator.unwrap_model(self.top)
        if top.projection is not None:
            return
        if self.toolgen.indexing.scheme != "atomic":
            raise ValueError(f"doc_rows needs atomic indexing (one row per tool), not {self.toolgen.indexing.scheme}")
        ids = self.toolgen.catalog.ids
        raw = self.documentation_features(ids)
        self._doc_rows = DocRows.fitted(raw, top.rows.shape[1])
        features = torch.zeros(top.rows.shape[0], raw.shape[1])
        features[[self.toolgen.code_ids(t)[0] - self.first_new for t in ids]] = self._doc_rows.standardise(raw)
        top.attach_documentation(features.to(self.device))

    @property
    def doc_rows(self) -> DocRows | None:
        """The documentation projection as trained so far (None before a stage with `doc_rows`)."""
        top = self.accelerator.unwrap_model(self.top)
        if top.projection is None:
            return None
        return replace(self._doc_rows, projection=top.projection.detach().float().cpu().clone())

    # ------------------------------------------------------------ evaluation

    @torch.no_grad()
    def code_logits(
        self,
        prompts: Sequence[Sequence[int]],
        token_ids: Sequence[int],
        batch_tokens: int = 4096,
        desc: str = "scoring",
    ) -> torch.Tensor:
        """Logits of `token_ids` at the last position of each prompt: (len(prompts), len(token_ids)), CPU."""
        top = self.accelerator.unwrap_model(self.top)
        head = torch.tensor(list(token_ids), device=self.device)
        rows = [_Row(tuple(p), (len(p) - 1,), (0,)) for p in prompts]
        out = torch.empty(len(rows), len(token_ids))
        batches = _length_batches(rows, batch_tokens, 64, random.Random(0), shuffle=False)
        for batch in tqdm(batches, desc=desc, disable=not self.accelerator.is_main_process, leave=False):
            hidden = self._lower_states([rows[i].inputs for i in batch])
            positions = torch.tensor([[j, rows[i].positions[0]] for j, i in enumerate(batch)], device=self.device)
            with self._autocast():
                logits = top.logits(top.hidden_at(hidden, positions), head)
            out[batch] = logits.float().cpu()
        return out

    # ------------------------------------------------------------ training

    def train(
        self,
        examples: Sequence[Example],
        config: StageConfig,
        stage: str,
        state_path: Path | str | None = None,
        soft_targets: Mapping[str, Sequence[tuple[str, float]]] | None = None,
    ) -> dict:
        """Train on `examples` for `config.epochs`; returns a report (losses, tokens, tokens/s).

        With `state_path` (a folder), the run checkpoints there periodically and resumes from a matching saved
        state; the folder is removed when the stage completes. With `soft_targets` (example text -> [(tool id,
        probability)], core/soft_targets.py) and `config.distill` > 0, an example whose text has a distribution is
        also trained towards it at its first target (the tool's token; atomic indexing only).
        """
        soft = self._soft_ids(soft_targets if config.distill else None)
        if config.doc_rows:
            self._attach_documentation()
        rows = [r for r in (_to_row(e, config.max_len, soft.get(e.text, ())) for e in examples) if r is not None]
        if not rows:
            raise ValueError(f"stage {stage}: no training example has a target token")
        top = self.accelerator.unwrap_model(self.top)
        top.rows.requires_grad_(not config.doc_rows)  # documentation moves the rows; the free rows stay
        head, label_map = self._head(rows, config)
        groups = [
            {"params": [p for p in top.parameters() if p.requires_grad and p is not top.rows], "lr": config.lr},
            {"params": [top.rows] if top.rows.requires_grad else [], "lr": config.rows_lr},
        ]
        groups = [g for g in groups if g["params"]]
        for group in groups:
            group["base_lr"] = group["lr"]
        # The accelerator holds this stage's model and optimizer only, which is what save_state/load_state cover.
        self.accelerator.free_memory()
        self.top, optimizer = self.accelerator.prepare(top, torch.optim.AdamW(groups, weight_decay=config.weight_decay))
        plan = [
            self._steps(
                _length_batches(rows, config.batch_tokens, config.max_batch, random.Random(config.seed * 1000 + epoch))
            )
            for epoch in range(config.epochs)
        ]
        total = sum(len(p) for p in plan)
        probe = spread(rows, PROBE)
        probe_before = self.mean_loss(probe, head, label_map, config)
        progress = self._load_state(state_path, stage, config)
        step, losses = progress.get("step", 0), progress.get("losses", [])
        done_tokens, started, last_save = 0, time.time(), time.time()
        bar = tqdm(total=total, initial=step, desc=stage, disable=not self.accelerator.is_main_process)
        self.top.train()
        flat = [s for p in plan for s in p]
        world, rank = self.accelerator.num_processes, self.accelerator.process_index
        for index in range(step, total):
            global_batch = flat[index]
            count = sum(len(rows[i].labels) for batch in global_batch for i in batch)
            mine = global_batch[rank * self.grad_accumulation : (rank + 1) * self.grad_accumulation]
            self._set_lr(optimizer, index, total, config.warmup)
            step_loss = torch.zeros((), device=self.device)
            for position, batch in enumerate(mine):
                hidden = self._lower_states([rows[i].inputs for i in batch])
                positions, labels = _targets(rows, batch, label_map, self.device)
                targets = _soft_batch(rows, batch, label_map, self.device)
                last = position == len(mine) - 1  # gradients are averaged across processes after the last one
                with contextlib.nullcontext() if last else self.accelerator.no_sync(self.top):
                    with self._autocast():
                        loss = self.top(hidden, positions, labels, head, count, targets, config.distill)
                    self.accelerator.backward(loss * world)
                step_loss += loss.detach()
                done_tokens += sum(len(rows[i].inputs) for i in batch)
            self.accelerator.clip_grad_norm_([p for g in groups for p in g["params"]], 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(self.accelerator.reduce(step_loss, "sum").item())
            rate = done_tokens * world / max(time.time() - started, 1e-9)
            bar.update(1)
            bar.set_postfix(loss=f"{sum(losses[-20:]) / len(losses[-20:]):.3f}", tok_s=f"{rate:.0f}")
            if state_path and time.time() - last_save > self.checkpoint_every_s and index + 1 < total:
                self._save_state(state_path, stage, config, index + 1, losses)
                last_save = time.time()
        bar.close()
        seconds = time.time() - started
        self.top.eval()
        self._write_back()
        probe_after = self.mean_loss(probe, head, label_map, config)
        if state_path and self.accelerator.is_main_process and Path(state_path).exists():
            shutil.rmtree(state_path)
        tenth = max(1, len(losses) // 10)
        done_tokens = int(self.accelerator.reduce(torch.tensor(done_tokens, device=self.device), "sum").item())
        return {
            "stage": stage,
            "examples": len(rows),
            "epochs": config.epochs,
            "steps": total,
            "loss_first": sum(losses[:tenth]) / tenth,
            "loss_last": sum(losses[-tenth:]) / tenth,
            "probe_loss_before": round(probe_before, 4),
            "probe_loss_after": round(probe_after, 4),
            "tokens": done_tokens,
            "seconds": round(seconds, 1),
            "tokens_per_s": round(done_tokens / max(seconds, 1e-9), 1),
            "precision": "bfloat16" if self.bf16 else "float32",
            **self._layout(),
            "config": asdict(config),
        }

    @torch.no_grad()
    def mean_loss(self, rows: list[_Row], head, label_map, config: StageConfig) -> float:
        """Mean cross-entropy per target token over `rows` with the current weights (NaN for no rows)."""
        if not rows:
            return float("nan")
        top = self.accelerator.unwrap_model(self.top)
        total, count = 0.0, 0
        for batch in _length_batches(rows, config.batch_tokens, config.max_batch, random.Random(0), shuffle=False):
            hidden = self._lower_states([rows[i].inputs for i in batch])
            positions, labels = _targets(rows, batch, label_map, self.device)
            with self._autocast():
                logits = top.logits(top.hidden_at(hidden, positions), head)
            total += F.cross_entropy(logits.float(), labels, reduction="sum").item()
            count += len(labels)
        return total / count

    def _soft_ids(self, soft_targets) -> dict[str, tuple[tuple[int, float], ...]]:
        """`soft_targets` with each tool id replaced by its token id (tools outside the catalog are skipped)."""
        if not soft_targets:
            return {}
        if self.toolgen.indexing.scheme != "atomic":
            scheme = self.toolgen.indexing.scheme
            raise ValueError(f"distillation needs atomic indexing (one token per tool), not {scheme}")
        catalog = self.toolgen.catalog
        return {
            text: tuple((self.toolgen.code_ids(t)[0], p) for t, p in tools if t in catalog)
            for text, tools in soft_targets.items()
        }

    def _head(self, rows: list[_Row], config: StageConfig):
        """The code-token head (ids tensor, label -> index map) for head="codes", else (None, None)."""
        if config.head == "full":
            return None, None
        codes = self.toolgen.code_sequences(include_finish=True).values()
        ids = sorted({t for code in codes for t in code} | {t for r in rows for t in r.labels})
        return torch.tensor(ids, device=self.device), {t: i for i, t in enumerate(ids)}

    def _steps(self, batches: list[list[int]]) -> list[list[list[int]]]:
        """One epoch's optimizer steps, each its global batch: `num_processes x grad_accumulation` consecutive length
        batches, process r running the r-th `grad_accumulation` of them. Every process plans the same steps. The
        batches past the last whole step are left out of this epoch (a different few each epoch: batches are
        shuffled); an epoch with fewer batches than one step takes them again from the start."""
        size = self.accelerator.num_processes * self.grad_accumulation
        steps = max(1, len(batches) // size)
        return [[batches[(size * k + j) % len(batches)] for j in range(size)] for k in range(steps)]

    def _layout(self) -> dict:
        """How the steps are spread: processes and length batches per process and step."""
        return {"processes": self.accelerator.num_processes, "grad_accumulation": self.grad_accumulation}

    @staticmethod
    def _set_lr(optimizer, step: int, total: int, warmup: float) -> None:
        """Learning rate of `step`: linear warm-up over the first `warmup` share of the steps (step 0 already at
        1/warm), then cosine decay to 0. transformers' `get_cosine_schedule_with_warmup` gives step 0 a rate of 0,
        which shifts the warm-up by one step: it would not reproduce the README's builds."""
        warm = max(1, int(total * warmup))
        if step < warm:
            factor = (step + 1) / warm
        else:
            factor = 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))
        for group in optimizer.param_groups:
            group["lr"] = group["base_lr"] * factor

    def _save_state(self, path, stage: str, config: StageConfig, step: int, losses: list[float]) -> None:
        """Write the stage's state to the folder `path` (replaced whole: written beside it, then renamed)."""
        path = Path(path)
        partial = path.with_name(path.name + ".partial")
        if self.accelerator.is_main_process and partial.exists():
            shutil.rmtree(partial)
        self.accelerator.wait_for_everyone()
        self.accelerator.save_state(partial)
        self.accelerator.wait_for_everyone()
        if self.accelerator.is_main_process:
            progress = {"stage": stage, "config": asdict(config), "step": step, "losses": losses, **self._layout()}
            (partial / PROGRESS_FILE).write_text(json.dumps(progress), encoding="utf-8")
            if path.exists():
                shutil.rmtree(path)
            os.replace(partial, path)
        self.accelerator.wait_for_everyone()

    def _load_state(self, path, stage: str, config: StageConfig) -> dict:
        """The saved progress (step, losses) after restoring weights and optimizer from the folder `path`, when it
        holds a state of this stage and config, saved by as many processes with the same grad_accumulation (the steps
        are planned from both); else {} and nothing is restored."""
        progress_file = Path(path) / PROGRESS_FILE if path else None
        if progress_file is None or not progress_file.exists():
            return {}
        progress = json.loads(progress_file.read_text(encoding="utf-8"))
        if progress.get("stage") != stage or progress.get("config") != asdict(config):
            return {}
        if {key: progress.get(key, 1) for key in self._layout()} != self._layout():  # states saved before: 1 and 1
            return {}
        self.accelerator.load_state(path)
        return progress


def _width(lengths) -> int:
    """Padded batch width: the longest length rounded up to a multiple of PAD_MULTIPLE (few distinct shapes
    let the CPU kernels reuse their prepared plans)."""
    return -(-max(lengths) // PAD_MULTIPLE) * PAD_MULTIPLE


def _pad(sequences: list[list[int]], value: int) -> torch.Tensor:
    width = _width(len(s) for s in sequences)
    return torch.tensor([s + [value] * (width - len(s)) for s in sequences], dtype=torch.long)


def _targets(rows, batch, label_map, device):
    positions = [[j, p] for j, i in enumerate(batch) for p in rows[i].positions]
    labels = [label for i in batch for label in rows[i].labels]
    if label_map is not None:
        labels = [label_map[label] for label in labels]
    return torch.tensor(positions, device=device), torch.tensor(labels, device=device)


def _soft_batch(rows, batch, label_map, device):
    """The batch's soft targets for `TopStack.forward`: (index of each such row's first target among the batch's
    targets, its target ids (head indices with a codes head), their probabilities), padded with probability 0; None
    when no row of the batch has any."""
    at, ids, probs, offset = [], [], [], 0
    for i in batch:
        row = rows[i]
        if row.soft:
            at.append(offset)
            ids.append([label_map[t] if label_map is not None else t for t, _ in row.soft])
            probs.append([p for _, p in row.soft])
        offset += len(row.positions)
    if not at:
        return None
    width = max(len(r) for r in ids)
    ids = [r + [r[0]] * (width - len(r)) for r in ids]
    probs = [r + [0.0] * (width - len(r)) for r in probs]
    return torch.tensor(at, device=device), torch.tensor(ids, device=device), torch.tensor(probs, device=device)


def _length_batches(
    rows: list[_Row], batch_tokens: int, max_batch: int, rng: random.Random, shuffle: bool = True
) -> list[list[int]]:
    """Indices of `rows` grouped into batches of similar length (at most batch_tokens padded tokens)."""
    order = sorted(range(len(rows)), key=lambda i: (len(rows[i].inputs), rng.random() if shuffle else i))
    batches, current, width = [], [], 0
    for i in order:
        new_width = _width([width, len(rows[i].inputs)])
        if current and (new_width * (len(current) + 1) > batch_tokens or len(current) >= max_batch):
            batches.append(current)
            current, new_width = [], _width([len(rows[i].inputs)])
        current.append(i)
        width = new_width
    if current:
        batches.append(current)
    if shuffle:
        rng.shuffle(batches)
    return batches
