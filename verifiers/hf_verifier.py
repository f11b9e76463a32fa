"""`HFVLMVerifier`: the action-verifier contract over any transformers image-text-to-text model.

RoboMonkey's verifier design: the VLM reads the camera image and a prompt holding the instruction
and the candidate chunk written as text; a linear reward head on the final token's last hidden
state gives the score. The base model is referenced by its local folder (like the policy's
language encoder), only the reward head (+ config) is our checkpoint, so a user points it at a
7B LLaVA on a GPU workstation and trains the head (or more) with the same synthetic-preference
pipeline as `ActionVerifier` (`fit_preferences`). Nothing is downloaded: the folder must exist.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
from torch import nn

from verifiers.preferences import PerturbConfig, nrmse, perturb, preference_loss, preference_pairs
from verifiers.proposals import check_chunks
from vla_runtime.checkpoint import load_weights, read_json, require_files, write_checkpoint
from vla_runtime.types import ActionSpec

CONFIG_TYPE = "vla_steering.hf_vlm_verifier"
FILES = ("config.json", "model.safetensors")
PROMPT = "<image> task: {instruction}. action: {action}. is this action right?"


@dataclass(frozen=True)
class HFVerifierConfig:
    base_model: str  # a local transformers folder (model + processor)
    camera: str = "static"
    decimals: int = 3  # digits of each action entry in the prompt
    prompt: str = PROMPT  # must hold {instruction} and {action}
    train_base: bool = False  # False: only the reward head trains (the base stays frozen)

    def __post_init__(self) -> None:
        if "{instruction}" not in self.prompt or "{action}" not in self.prompt:
            raise ValueError(f"prompt must contain {{instruction}} and {{action}}, got {self.prompt!r}")
        if not isinstance(self.decimals, int) or not 0 <= self.decimals <= 6:
            raise ValueError(f"decimals must be an integer in 0..6, got {self.decimals!r}")


def action_text(chunk: np.ndarray, spec: ActionSpec, decimals: int) -> str:
    """(H, A) -> 'dx 0.012 dy -0.003 ... gripper 1 | dx ...' : one step per '|' group."""
    steps = []
    for row in np.asarray(chunk, dtype=np.float64):
        steps.append(" ".join(f"{name} {v:.{decimals}f}" for name, v in zip(spec.names, row)))
    return " | ".join(steps)


class HFVLMVerifier(nn.Module):
    name = "verifier"
    reads = "observation"  # camera image + instruction: steers any policy

    def __init__(self, config: HFVerifierConfig, spec: ActionSpec) -> None:
        super().__init__()
        from transformers import AutoModelForImageTextToText, AutoProcessor

        base = Path(config.base_model)
        if not base.is_dir():
            raise FileNotFoundError(f"VLM folder {base} does not exist (nothing is downloaded: give a local folder)")
        self.config, self.spec = config, spec
        self.processor = AutoProcessor.from_pretrained(base)
        self.vlm = AutoModelForImageTextToText.from_pretrained(base)
        self.vlm.requires_grad_(config.train_base)
        text_cfg = getattr(self.vlm.config, "text_config", self.vlm.config)
        self.head = nn.Linear(text_cfg.hidden_size, 1)
        nn.init.normal_(self.head.weight, std=1.0 / math.sqrt(text_cfg.hidden_size))
        nn.init.zeros_(self.head.bias)

    def prompts(self, instructions: list[str], chunks: np.ndarray) -> list[str]:
        return [self.config.prompt.format(instruction=i, action=action_text(c, self.spec, self.config.decimals))
                for i, c in zip(instructions, chunks)]

    def forward(self, images: np.ndarray, instructions: list[str], chunks: np.ndarray) -> torch.Tensor:
        """images (B, H, W, 3) uint8, B instructions, chunks (B, H, A) robot units -> (B,) rewards."""
        b = len(chunks)
        if len(images) != b or len(instructions) != b:
            raise ValueError(f"need one image and instruction per chunk: {len(images)} images, "
                             f"{len(instructions)} instructions, {b} chunks")
        inputs = self.processor(images=list(images), text=self.prompts(instructions, chunks), return_tensors="pt",
                                padding=True)
        out = self.vlm(**inputs, output_hidden_states=True)
        hidden = out.hidden_states[-1]  # (B, T, D)
        mask = inputs["attention_mask"]
        last = (mask * torch.arange(mask.shape[1])).argmax(1)  # the final real token, whichever side pads
        return self.head(hidden[torch.arange(b), last].float()).squeeze(-1)

    @torch.inference_mode()
    def score(self, ctx, candidates: np.ndarray) -> np.ndarray:
        """The `Scorer` contract: reads the decision's observation (camera image + instruction)."""
        c = check_chunks(candidates, self.spec.chunk_length, self.spec.dim)
        obs = ctx.observation
        if obs is None or self.config.camera not in obs.images:
            raise ValueError(f"the VLM verifier reads camera {self.config.camera!r}; the context's observation "
                             f"has {sorted(obs.images) if obs is not None else 'none'}")
        image = obs.images[self.config.camera]
        return self(np.repeat(image[None], len(c), axis=0), [obs.instruction] * len(c), c).double().numpy()

    def save_pretrained(self, out_dir: str | Path, model_card: str = "", overwrite: bool = False) -> Path:
        """The reward head (and, when trained, the base weights) + config; the base folder is referenced."""
        tensors = {f"head.{k}": v for k, v in self.head.state_dict().items()}
        if self.config.train_base:
            tensors.update({f"vlm.{k}": v for k, v in self.vlm.state_dict().items()})
        return write_checkpoint(out_dir, {"type": CONFIG_TYPE, **asdict(self.config), "spec": self.spec.to_dict()},
                                None, tensors, model_card, overwrite=overwrite)

    @classmethod
    def from_pretrained(cls, ckpt_dir: str | Path) -> HFVLMVerifier:
        path = Path(ckpt_dir)
        require_files(path, FILES, "VLM verifier")
        raw = read_json(path / "config.json")
        if raw.pop("type", None) != CONFIG_TYPE or not isinstance(raw.get("spec"), dict):
            raise ValueError(f"{path / 'config.json'} is not a VLM-verifier config")
        missing = sorted({f.name for f in fields(HFVerifierConfig)} - set(raw))
        if missing:
            raise ValueError(f"{path / 'config.json'} is missing required keys {missing}")
        try:
            spec = ActionSpec.from_dict(raw.pop("spec"))
            config = HFVerifierConfig(**raw)
        except (TypeError, ValueError, KeyError) as exc:
            raise ValueError(f"{path / 'config.json'}: {exc}") from exc
        model = cls(config, spec)
        load_weights(_Saved(model), path / "model.safetensors")
        return model.eval()


class _Saved(nn.Module):
    """The tensors a checkpoint holds: the head, plus the VLM when it was trained."""

    def __init__(self, model: HFVLMVerifier) -> None:
        super().__init__()
        self.head = model.head
        if model.config.train_base:
            self.vlm = model.vlm


def fit_preferences(verifier: HFVLMVerifier, images: np.ndarray, instructions: list[str], experts: np.ndarray,
                    low: np.ndarray, high: np.ndarray, steps: int, rng: np.random.Generator, lr: float = 1e-3,
                    candidates: int = 8, pairs: int = 8, alpha: float = 0.1,
                    perturb_config: PerturbConfig | None = None) -> list[float]:
    """The `vla train verifier` recipe on a VLM: per step one state (image, instruction, expert chunk (H, A)),
    `candidates` perturbations ranked by NRMSE to the expert, `pairs` preference pairs, RoboMonkey's loss.
    images (S, H, W, 3), experts (S, H, A); low/high the q01..q99 range. -> per-step losses."""
    params = [p for p in verifier.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr)
    losses = []
    verifier.train()
    for _ in range(steps):
        s = int(rng.integers(len(experts)))
        cands, _ = perturb(experts[s], candidates, verifier.spec, low, high, rng, perturb_config)
        cands = np.concatenate([experts[s][None], cands])
        win, lose, d_star = preference_pairs(nrmse(cands, experts[s], low, high), pairs, rng, min_gap=0.005)
        if len(win) == 0:
            continue
        r = verifier(np.repeat(images[s][None], len(cands), 0), [instructions[s]] * len(cands), cands)
        loss = preference_loss(r[win], r[lose], torch.from_numpy(d_star).float(), alpha)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    verifier.eval()
    return losses
