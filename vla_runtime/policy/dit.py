"""DiT action head with in-context conditioning (CogACT-style).

Token sequence: [condition, timestep, a_1 ... a_H]; a plain pre-norm
transformer attends over all of it and the action tokens predict the noise.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """Sinusoidal embedding of diffusion timesteps t (B,) -> (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return emb if dim % 2 == 0 else torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)


class DiTHead(nn.Module):
    def __init__(self, action_dim: int, horizon: int, d_model: int, layers: int, heads: int, mlp_ratio: float,
                 dropout: float) -> None:
        super().__init__()
        self.d_model = d_model
        self.action_in = nn.Linear(action_dim, d_model)
        self.time_mlp = nn.Sequential(nn.Linear(d_model, d_model), nn.SiLU(), nn.Linear(d_model, d_model))
        self.pos = nn.Parameter(torch.zeros(1, horizon + 2, d_model))
        nn.init.normal_(self.pos, std=0.02)
        layer = nn.TransformerEncoderLayer(d_model, heads, int(d_model * mlp_ratio), dropout, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.action_out = nn.Linear(d_model, action_dim)
        nn.init.zeros_(self.action_out.weight)
        nn.init.zeros_(self.action_out.bias)

    def forward(self, noisy: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """noisy (B, H, A), t (B,), cond (B, d_model) -> predicted noise (B, H, A)."""
        t_tok = self.time_mlp(timestep_embedding(t, self.d_model))
        tokens = torch.cat([cond[:, None], t_tok[:, None], self.action_in(noisy)], dim=1) + self.pos
        h = self.norm(self.blocks(tokens))
        return self.action_out(h[:, 2:])


def dit_forward_static(head: DiTHead, noisy: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
    """`DiTHead.forward` written for export: the same weights and maths, but every reshape uses the known
    token count, width and head count (batch as -1), so the exported graph carries no runtime shape
    arithmetic (Shape/Gather/Concat chains) and one fused qkv projection per layer. On the 2-core CPU
    that overhead, not the matmuls, was most of onnxruntime's time."""
    d = head.d_model
    t_tok = head.time_mlp(timestep_embedding(t, d))
    x = torch.cat([cond[:, None], t_tok[:, None], head.action_in(noisy)], dim=1) + head.pos  # (B, T, d)
    tokens = x.shape[1]
    for layer in head.blocks.layers:
        attn = layer.self_attn
        heads = attn.num_heads
        hd = d // heads
        qkv = nn.functional.linear(layer.norm1(x), attn.in_proj_weight, attn.in_proj_bias)  # (B, T, 3d)
        qkv = qkv.reshape(-1, tokens, 3, heads, hd).permute(2, 0, 3, 1, 4)  # (3, B, heads, T, hd)
        scores = torch.matmul(qkv[0], qkv[1].transpose(-1, -2)) * (hd ** -0.5)  # (B, heads, T, T)
        mixed = torch.matmul(scores.softmax(-1), qkv[2]).transpose(1, 2).reshape(-1, tokens, d)
        x = x + attn.out_proj(mixed)
        x = x + layer.linear2(layer.activation(layer.linear1(layer.norm2(x))))
    return head.action_out(head.norm(x)[:, 2:])
