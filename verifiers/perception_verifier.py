"""`PerceptionVerifier`: an action verifier with its own perception (the steering issue's item 1).

The token verifier (`ActionVerifier`) scores the policy's own conditioning token, so whatever the policy's
encoder missed (the wrong object, a misjudged position) its verifier misses too. This one encodes the
camera image, the instruction and proprio with an encoder of its own: a copy of the policy's conditioning
stack (vision with FiLM, language projection, proprio MLP, fusion, object anchor head), initialised from
the policy's weights and trained further on the verifier's preference objective, so it may come to see
what the policy does not. The DiT head is dropped: the verifier never samples. It reads images, so it
runs in torch (like `HFVLMVerifier`); only token scorers export to ONNX.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from torch import nn

from verifiers.action_verifier import ActionVerifier, VerifierConfig
from verifiers.proposals import check_chunks
from vla_runtime.checkpoint import load_weights, parse_json_file, read_typed_config, require_files, write_checkpoint
from vla_runtime.policy.config import PolicyConfig
from vla_runtime.policy.model import VLAPolicy, check_observation, language_features
from vla_runtime.policy.normalize import Normalizer

CONFIG_TYPE = "vla_steering.perception_verifier"
FILES = ("config.json", "model.safetensors", "normalization.json")


@dataclass(frozen=True)
class PerceptionVerifierConfig:
    encoder: dict  # the `PolicyConfig` (as a dict) whose conditioning stack this verifier's encoder copies
    hidden: int = 256
    layers: int = 2

    def __post_init__(self) -> None:
        PolicyConfig.from_dict(self.encoder)  # validates, naming the bad key
        for name in ("hidden", "layers"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {getattr(self, name)!r}")

    @cached_property
    def policy_config(self) -> PolicyConfig:
        return PolicyConfig.from_dict(self.encoder)

    @property
    def horizon(self) -> int:
        return self.policy_config.horizon

    @property
    def action_dim(self) -> int:
        return self.policy_config.action_dim


class PerceptionVerifier(nn.Module):
    name = "verifier"
    reads = "observation"  # images + instruction itself: steers any policy, a remote one included

    def __init__(self, config: PerceptionVerifierConfig, normalizer: Normalizer) -> None:
        super().__init__()
        self.config, self.normalizer = config, normalizer
        pc = config.policy_config
        self.encoder = VLAPolicy(pc, normalizer)
        del self.encoder.head  # the DiT: never sampled here
        # the token verifier's head, reading this verifier's own token instead of the policy's
        self.scorer = ActionVerifier(VerifierConfig(cond_dim=pc.d_model, horizon=pc.horizon,
                                                    action_dim=pc.action_dim, hidden=config.hidden,
                                                    layers=config.layers), normalizer)

    @classmethod
    def from_policy(cls, policy: VLAPolicy, hidden: int = 256, layers: int = 2) -> PerceptionVerifier:
        """A verifier whose encoder starts as a copy of `policy`'s conditioning stack."""
        model = cls(PerceptionVerifierConfig(policy.config.to_dict(), hidden, layers), policy.normalizer)
        own = {k: v for k, v in policy.state_dict().items() if not k.startswith("head.")}
        model.encoder.load_state_dict(own)
        return model

    def token(self, images: torch.Tensor, lang: torch.Tensor, proprio: torch.Tensor) -> torch.Tensor:
        """images (B, 3, h, w) in [0, 1], lang (B, language_dim), proprio (B, P) raw -> (B, d) the verifier's
        own token (its anchor estimated from each frame)."""
        return self.encoder.features(images, lang, proprio)[1]

    def head(self, token: torch.Tensor, chunks: torch.Tensor) -> torch.Tensor:
        """token (B, d), chunks (B, H, A) robot units -> scores (B,)."""
        return self.scorer(token, chunks)

    @torch.inference_mode()
    def score(self, ctx, candidates: np.ndarray) -> np.ndarray:
        """The `Scorer` contract: the decision's observation (ctx.observation) and candidates (m, H, A) ->
        (m,) float64 scores."""
        pc = self.config.policy_config
        c = check_chunks(candidates, pc.horizon, pc.action_dim)
        obs = getattr(ctx, "observation", None)
        if obs is None:
            raise ValueError("the perception verifier reads the observation: the decision's Context carries none")
        check_observation(pc, obs)
        images = self.encoder.images_to_tensor(obs.images[pc.camera][None])
        lang = language_features(pc, [obs.instruction])
        token = self.token(images, lang, torch.from_numpy(obs.proprio)[None])
        return self.head(token.expand(len(c), -1), torch.from_numpy(c)).double().numpy()

    def save_pretrained(self, out_dir: str | Path, model_card: str = "", overwrite: bool = False) -> Path:
        return write_checkpoint(out_dir, {"type": CONFIG_TYPE, **asdict(self.config)}, self.normalizer.to_dict(),
                                self.state_dict(), model_card, overwrite=overwrite)

    @classmethod
    def from_pretrained(cls, ckpt_dir: str | Path) -> PerceptionVerifier:
        path = Path(ckpt_dir)
        require_files(path, FILES, "perception verifier")
        config = read_typed_config(path, CONFIG_TYPE, PerceptionVerifierConfig, "perception verifier")
        normalizer = parse_json_file(path / "normalization.json", Normalizer.from_dict)
        pc = config.policy_config
        parse_json_file(path / "normalization.json", lambda _: normalizer.check_dims(pc.action_dim, pc.proprio_dim))
        model = cls(config, normalizer)
        load_weights(model, path / "model.safetensors")
        return model.eval()
