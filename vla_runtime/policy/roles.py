"""Role-aware grounding: where the object to move is, and where it goes, read separately.

A two-object instruction ("put the orange cylinder on top of the yellow cylinder") names both roles with
the same kinds of words. A pooled sentence embedding mixes them, and a head reading it regresses to a
point between the two objects (`benchmarks/results/policy.md`: `stack` anchors 61 mm off). Here one
learned query per role attends over the language model's token states, so word order and role words
decide which phrase it takes, and that role's embedding then attends over the vision feature map: each
role gets its own spatial softmax (an image point and the features there) and its own xy head.
"""

from __future__ import annotations

import math

import torch
from torch import nn

ROLES = ("target", "goal")  # the order of the object head's output: target xy, goal xy


class RoleGrounding(nn.Module):
    def __init__(self, language_dim: int, channels: int, d: int, k: int = 64) -> None:
        """k: the width roles and pixels are compared in (and the attended features' width): the per-pixel
        projection is the module's main cost, so it is narrower than the model's d."""
        super().__init__()
        self.k = k
        self.queries = nn.Parameter(torch.randn(len(ROLES), k) / math.sqrt(k))  # (R, k)
        self.key = nn.Linear(language_dim, k)
        self.value = nn.Linear(language_dim, k)
        self.pixel = nn.Conv2d(channels, k, 1)
        self.heads = nn.ModuleList(nn.Sequential(nn.Linear(self.feature_dim, d), nn.SiLU(), nn.Linear(d, 2))
                                   for _ in ROLES)

    @property
    def feature_dim(self) -> int:
        """Per role: image point (2) + attended pixel features (k) + the role's language embedding (k)."""
        return 2 + 2 * self.k

    def forward(self, tokens: torch.Tensor, fmap: torch.Tensor) -> torch.Tensor:
        """tokens (B, L, language_dim), zero rows = padding; fmap (B, C, h, w) -> (B, R, feature_dim)."""
        valid = tokens.abs().sum(-1) > 0  # (B, L): a token state is never exactly zero
        scale = 1.0 / math.sqrt(self.k)
        logits = torch.einsum("rd,bld->brl", self.queries, self.key(tokens)) * scale
        logits = torch.where(valid[:, None, :], logits, torch.full_like(logits, -1e9))
        role = torch.einsum("brl,bld->brd", logits.softmax(-1), self.value(tokens))  # (B, R, k)
        h, w = fmap.shape[-2:]
        pixels = self.pixel(fmap).flatten(2)  # (B, k, h*w)
        where = (torch.einsum("brd,bdn->brn", role, pixels) * scale).softmax(-1)  # (B, R, h*w)
        ys = torch.linspace(-1, 1, h, dtype=fmap.dtype)
        xs = torch.linspace(-1, 1, w, dtype=fmap.dtype)
        gy, gx = torch.meshgrid(ys, xs, indexing="ij")
        grid = torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=-1)  # (h*w, 2) image x, y in [-1, 1]
        point = where @ grid  # (B, R, 2)
        seen = torch.einsum("brn,bdn->brd", where, pixels)  # (B, R, k)
        return torch.cat([point, seen, role], dim=-1)

    def xy(self, feats: torch.Tensor) -> torch.Tensor:
        """feats (B, R * feature_dim), flattened `forward` output -> (B, 2R) each role's xy in the object
        head's normalised units, target first."""
        per_role = feats.view(feats.shape[0], len(ROLES), self.feature_dim)
        return torch.cat([head(per_role[:, r]) for r, head in enumerate(self.heads)], dim=-1)
