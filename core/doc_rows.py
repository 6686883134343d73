"""Documentation-conditioned tool rows: a tool's row is its own free row plus a learned projection of how the
model's frozen lower layers read the tool's documentation.

    row(t) = r(t) + P · f(doc(t))

f(doc) is the documentation put in the retrieval prompt (cut to `DOC_TOKENS` tokens) and read by the frozen lower
decoder layers: the state at the prompt's last position beside the mean state over the documentation's tokens,
centred on the catalog's mean and scaled to unit mean norm (`DocRows.standardise`). The lower layers are frozen in
every stage, so a trained model computes exactly the features its base did. In a stage with `StageConfig.doc_rows`
P is trained with the top layers and the free rows r(t) stay as they are (when they are trained too, the tools that
training queries name pull away from the rest: measured in the README); after the stage the rows r(t) + P·f(t) are
written into the embedding like any trained rows, so inference is unchanged. A tool that no training query names
then moves with the tools that are named, to where its documentation puts it, instead of keeping its initial row; a
tool added later gets its row from P without any training (`core.add_tools`). `DocRows` (centre, scale, P) travels
with the model (`ToolGenModel.doc_rows`) and is saved beside the checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .prompts import retrieval_prompt, truncate_tokens

DOC_TOKENS = 96
FILE = "doc_rows.safetensors"


def documentation_prompts(toolgen, tool_ids, max_tokens: int = DOC_TOKENS) -> list[tuple[int, ...]]:
    """Each tool's documentation (its first `max_tokens` tokens) as the user text of a retrieval prompt."""
    tokenizer = toolgen.tokenizer
    return [
        tuple(retrieval_prompt(tokenizer, truncate_tokens(tokenizer, toolgen.catalog[t].document(), max_tokens)))
        for t in tool_ids
    ]


def user_span(tokenizer) -> tuple[int, int]:
    """(tokens before, tokens after) the user text in a retrieval prompt of this tokenizer."""
    a, b = retrieval_prompt(tokenizer, "a"), retrieval_prompt(tokenizer, "b")
    before = next(i for i, (x, y) in enumerate(zip(a, b)) if x != y)
    return before, len(a) - before - 1


@dataclass
class DocRows:
    """What turns raw documentation features into rows: the standardisation (centre, scale) and P."""

    centre: torch.Tensor  # (features,)
    scale: float
    projection: torch.Tensor  # (hidden, features)

    @classmethod
    def fitted(cls, features: torch.Tensor, hidden: int) -> DocRows:
        """Standardisation fitted to a catalog's raw features, and P = 0 (rows start where they were)."""
        centre = features.mean(0)
        scale = (features - centre).norm(dim=1).mean().clamp_min(1e-6).item()
        return cls(centre, scale, torch.zeros(hidden, features.shape[1]))

    def standardise(self, features: torch.Tensor) -> torch.Tensor:
        return (features - self.centre) / self.scale

    def offsets(self, features: torch.Tensor) -> torch.Tensor:
        """P · f for raw features: what documentation adds to each row."""
        return self.standardise(features) @ self.projection.T

    def save(self, directory: Path | str) -> Path:
        path = Path(directory) / FILE
        tensors = {"centre": self.centre, "scale": torch.tensor(self.scale), "projection": self.projection}
        save_file({k: v.detach().float().contiguous().cpu() for k, v in tensors.items()}, str(path))
        return path

    @classmethod
    def load(cls, directory: Path | str) -> DocRows | None:
        """The checkpoint's DocRows, or None when it was built without documentation-conditioned rows."""
        path = Path(directory) / FILE
        if not path.exists():
            return None
        tensors = load_file(str(path))
        return cls(tensors["centre"], tensors["scale"].item(), tensors["projection"])
