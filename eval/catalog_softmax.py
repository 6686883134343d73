"""MiniLM fine-tuned against the whole catalog: each training query's softmax runs over every tool's document.

`retrievers.finetune_embedding` (MultipleNegativesRankingLoss) back-propagates through the documents of a batch:
on 2 CPU cores a step of 32 pairs with full documentations (up to 256 tokens) takes ~11 s, so a build's ~20k
retrieval pairs would take about two hours. Here the documents are embedded without gradient, by the model as it
is at the start of each epoch, and only the queries (a few dozen tokens) back-propagate; a query's negatives are
all the other tools of the catalog, not the other documents of its batch. Pairs that share a query train as one
example: each of its gold tools is a target, the other gold tools are left out of that target's softmax.
All of a build's pairs train in 24–32 minutes on the same CPU, to a stronger model (README, Evaluation → Retrieval).

    finetune_against_catalog(pairs, documents, out_dir)   # pairs: (query, document) with every document in documents
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from pathlib import Path

from .retrievers import _load_sentence_transformer, checked_pairs, default_model_path

SCALE = 20.0  # cosine similarity x 20: the logit scale of MultipleNegativesRankingLoss


def grouped(pairs: Sequence[tuple[str, str]], documents: Sequence[str]) -> list[tuple[str, list[int]]]:
    """(query, positions of its gold documents) for each distinct query, in first-seen order (a document that
    several tools share marks them all); ValueError for an empty text or a document missing from `documents`."""
    positions: dict[str, list[int]] = {}
    for i, document in enumerate(documents):
        positions.setdefault(document, []).append(i)
    golds: dict[str, list[int]] = {}
    for index, (query, document) in enumerate(checked_pairs(pairs)):
        if document not in positions:
            raise ValueError(f"training pair {index}: its document is not among the catalog's documents")
        gold = golds.setdefault(query, [])
        gold.extend(i for i in positions[document] if i not in gold)
    return list(golds.items())


def multi_gold_loss(logits, gold_mask):
    """Mean over (query, gold tool) of the cross-entropy of that tool against every non-gold tool of the query.
    `logits`, `gold_mask`: (queries, tools), the mask True at each query's gold tools."""
    import torch

    others = torch.logsumexp(logits.masked_fill(gold_mask, float("-inf")), dim=1, keepdim=True)
    per_gold = torch.logaddexp(others, logits) - logits
    return per_gold[gold_mask].mean()


def finetune_against_catalog(
    pairs: Sequence[tuple[str, str]],
    documents: Sequence[str],
    out_dir: str | Path,
    epochs: int = 2,
    batch_size: int = 64,
    learning_rate: float = 5e-5,
    base_model: str | Path | None = None,
    seed: int = 0,
    device: str | None = None,
) -> dict:
    """Fine-tune MiniLM on (query, tool document) pairs, each query scored against all `documents` (see the module
    docstring), and save it to `out_dir`. Returns a report: queries, documents, steps, seconds, last epoch's loss."""
    import torch
    from tqdm.auto import tqdm
    from transformers import get_linear_schedule_with_warmup

    examples = grouped(pairs, documents)
    if not examples:
        raise ValueError("no training pairs")
    torch.manual_seed(seed)
    model = _load_sentence_transformer(str(base_model or default_model_path()), device)
    batches_per_epoch = -(-len(examples) // batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate)
    schedule = get_linear_schedule_with_warmup(optimizer, batches_per_epoch * epochs // 10, batches_per_epoch * epochs)
    order, started, losses = list(range(len(examples))), time.time(), []
    for epoch in range(epochs):
        model.eval()  # encode() runs in inference mode: its tensors join autograd only as a copy
        embedded = model.encode(list(documents), batch_size=64, convert_to_tensor=True, normalize_embeddings=True)
        targets = embedded.clone()
        model.train()
        random.Random(f"{seed}:{epoch}").shuffle(order)
        losses = []
        bar = tqdm(range(0, len(order), batch_size), desc=f"MiniLM vs catalog, epoch {epoch + 1}/{epochs}")
        for start in bar:
            batch = [examples[i] for i in order[start : start + batch_size]]
            features = {  # tensors to the model's device; other entries (the input's modality) as they are
                k: v.to(model.device) if isinstance(v, torch.Tensor) else v
                for k, v in model.preprocess([q for q, _ in batch]).items()
            }
            queries = torch.nn.functional.normalize(model(features)["sentence_embedding"], dim=-1)
            gold_mask = torch.zeros(len(batch), len(documents), dtype=torch.bool, device=model.device)
            for row, (_, gold) in enumerate(batch):
                gold_mask[row, gold] = True
            loss = multi_gold_loss(SCALE * queries @ targets.T, gold_mask)
            loss.backward()
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
            losses.append(loss.item())
            bar.set_postfix(loss=f"{sum(losses[-20:]) / len(losses[-20:]):.3f}")
    model.save(str(out_dir))
    return {
        "queries": len(examples),
        "documents": len(documents),
        "steps": batches_per_epoch * epochs,
        "seconds": round(time.time() - started, 1),
        "last_epoch_loss": round(sum(losses) / len(losses), 4),
    }
