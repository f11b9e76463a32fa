"""Small language-conditioned CNN (GroupNorm + FiLM) with spatial-softmax keypoints.

FiLM lets the instruction choose which object the features respond to; the
spatial softmax turns feature maps into image coordinates, which is what an
end-effector delta needs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn


class FiLMBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, groups: int, cond_dim: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1)
        self.norm = nn.GroupNorm(groups, c_out)
        self.film = nn.Linear(cond_dim, 2 * c_out)
        nn.init.zeros_(self.film.weight)
        nn.init.zeros_(self.film.bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h = self.norm(self.conv(x))
        scale, shift = self.film(cond)[:, :, None, None].chunk(2, dim=1)
        return F.silu(h * (1 + scale) + shift)


class SpatialSoftmax(nn.Module):
    """(B, C, H, W) -> (B, 2K) expected (x, y) in [-1, 1] of K learned keypoint maps."""

    def __init__(self, channels: int, keypoints: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(channels, keypoints, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        logits = self.proj(x).flatten(2)  # (B, K, H*W)
        attn = logits.softmax(-1)
        ys = torch.linspace(-1, 1, h, device=x.device, dtype=x.dtype)
        xs = torch.linspace(-1, 1, w, device=x.device, dtype=x.dtype)
        gy, gx = torch.meshgrid(ys, xs, indexing="ij")
        ex = (attn * gx.reshape(1, 1, -1)).sum(-1)
        ey = (attn * gy.reshape(1, 1, -1)).sum(-1)
        return torch.cat([ex, ey], dim=1)


class VisionEncoder(nn.Module):
    def __init__(self, channels: tuple[int, ...], groups: int, keypoints: int, cond_dim: int, out_dim: int,
                 strides: tuple[int, ...]) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, channels[0], 5, stride=2, padding=2), nn.GroupNorm(groups, channels[0]),
                                  nn.SiLU())
        if len(strides) != len(channels):
            raise ValueError(f"need one stride per block: channels {channels}, strides {strides}")
        blocks, c = [], channels[0]
        for c_out, stride in zip(channels, strides):
            blocks.append(FiLMBlock(c, c_out, stride=stride, groups=groups, cond_dim=cond_dim))
            c = c_out
        self.blocks = nn.ModuleList(blocks)
        self.keypoints = SpatialSoftmax(c, keypoints)
        self.out = nn.Sequential(nn.Linear(2 * keypoints + c, out_dim), nn.SiLU(), nn.Linear(out_dim, out_dim))

    def forward(self, image: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """image (B, 3, H, W) in [-1, 1], cond (B, cond_dim) -> (B, out_dim)."""
        return self.features(image, cond)[0]

    def features(self, image: torch.Tensor, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """-> ((B, out_dim), the last feature map (B, C, h, w): what role grounding attends over)."""
        h = self.stem(image)
        for block in self.blocks:
            h = block(h, cond)
        return self.out(torch.cat([self.keypoints(h), h.mean(dim=(2, 3))], dim=1)), h


def augment(images: torch.Tensor, shift: int, jitter: float, generator: torch.Generator | None) -> torch.Tensor:
    """Random shift (replicate-pad + crop) and per-image brightness/contrast jitter; images (B, 3, H, W) [0, 1]."""
    b, _, h, w = images.shape
    out = images
    if shift > 0:
        padded = F.pad(images, (shift, shift, shift, shift), mode="replicate")
        dx = torch.randint(0, 2 * shift + 1, (b,), generator=generator)
        dy = torch.randint(0, 2 * shift + 1, (b,), generator=generator)
        out = torch.stack([padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(b)])
    if jitter > 0:
        bright = 1 + jitter * (2 * torch.rand(b, 1, 1, 1, generator=generator) - 1)
        contrast = 1 + jitter * (2 * torch.rand(b, 1, 1, 1, generator=generator) - 1)
        mean = out.mean(dim=(1, 2, 3), keepdim=True)
        out = ((out - mean) * contrast + mean) * bright
    return out.clamp(0, 1)
