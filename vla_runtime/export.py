"""`vla export onnx`: the policy's and the scorers' graphs as ONNX, with dynamic batch and their metadata.

Graphs (every input/output float32 unless named):
- `encoder.onnx`: images (B, 3, H, W) in [0, 1] (resized), lang (B, L) the cached instruction embedding (a
  role-grounding policy: (B, 1 + tokens, L), `model.language_features`),
  proprio (B, P) raw [, anchor (B, 4) metres and anchor_given (B, 1) 1 = use it, 0 = estimate it: anchor
  policies] -> cond (B, d) [, anchor_used (B, 4)].
- `denoiser.onnx`: x (B, H, A) noisy normalised chunk, t (B,) int64 timestep, cond (B, d) -> eps (B, H, A).
- `sampler.onnx`: the whole DDIM loop unrolled (timesteps, the per-dimension x0 bound, classifier-free
  guidance when the policy uses it, un-normalisation and the ActionSpec clip): cond (1, d), noise (N, H, A)
  -> actions (N, H, A) robot units. The noise is an input, so every backend gives the same actions for
  the same generator.
- `sampler_s{k}.onnx`: the same with k DDIM steps, for each k of `sample_steps` other than the policy's own
  (steering's `--steps`: cheaper candidates; `export.json` maps step counts to graphs under `samplers`).
- `verifier.onnx`, `value.onnx`: cond (1, d), chunks (M, H, A) robot units -> scores (M,).

The folder also holds `export.json` (format, opset, graph IO, the policy's fingerprint, action spec and
normalisation) and the checkpoints' `config.json` / `normalization.json`, so a backend needs nothing else.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import warnings
from functools import partial
from pathlib import Path

import torch
from torch import nn

from vla_runtime.checkpoint import weights_fingerprint
from vla_runtime.io import check_output_dir, make_tmp_sibling, manifest_is, replace_dir
from vla_runtime.policy.config import check_steps
from vla_runtime.policy.dit import dit_forward_static
from vla_runtime.policy.language import LANGUAGE_TOKENS

OPSET = 17
FORMAT = "vla_steering.onnx_export"
VERSION = 2  # 2: `samplers` (step count -> graph); v1 folders, which have only `sampler`, still load
READABLE_VERSIONS = (1, 2)
is_export = manifest_is("export.json", "format", FORMAT)  # what `vla export onnx --out` may replace


class EncoderGraph(nn.Module):
    """The encoder from resized images onwards; an anchor policy's anchor is chosen per row by a mask, so one
    graph serves the first decision of an episode (estimate) and the later ones (the latched anchor)."""

    def __init__(self, policy) -> None:
        super().__init__()
        self.policy = policy

    def forward(self, images, lang, proprio, *rest):
        p = self.policy
        wrist = rest[0] if p.config.wrist_camera else None
        vis, cond = p.fused_features(images, lang, proprio, wrist)
        if p.anchor_mlp is None:
            return cond
        anchor, given = rest[-2], rest[-1]
        estimate = p.object_xy(vis)
        used = given * anchor + (1 - given) * estimate
        return p.add_anchor(vis, cond, proprio, used)[0], used


class DenoiserGraph(nn.Module):
    def __init__(self, policy) -> None:
        super().__init__()
        self.head = policy.head

    def forward(self, x, t, cond):
        return dit_forward_static(self.head, x, t, cond)


class SamplerGraph(nn.Module):
    """`VLAPolicy.sample` after the noise is drawn: one cond token, N noise chunks -> N chunks in robot units;
    steps: DDIM steps, unrolled (None: the policy's own)."""

    def __init__(self, policy, steps: int | None = None) -> None:
        super().__init__()
        self.policy = policy
        self.steps = steps
        spec = policy.config.action_spec
        self.register_buffer("low", torch.as_tensor(spec.low_array(), dtype=torch.float32), persistent=False)
        self.register_buffer("high", torch.as_tensor(spec.high_array(), dtype=torch.float32), persistent=False)

    def forward(self, cond, noise):
        x = self.policy.denoise(cond, noise, head=partial(dit_forward_static, self.policy.head), steps=self.steps)
        return torch.clamp(self.policy.normalizer.unnormalize_actions(x), self.low, self.high)


class ScorerGraph(nn.Module):
    """A token scorer on one decision: cond (1, d) for every candidate chunk (M, H, A) -> (M,)."""

    def __init__(self, scorer) -> None:
        super().__init__()
        self.scorer = scorer

    def forward(self, cond, chunks):
        return self.scorer(cond.expand(chunks.shape[0], -1), chunks)


def _export(module: nn.Module, args: tuple, path: Path, inputs: dict[str, tuple], outputs: dict[str, tuple],
            meta: dict[str, str]) -> dict:
    """inputs/outputs: name -> shape with str for dynamic axes. Writes the graph, checks it, embeds meta."""
    import onnx

    dynamic = {name: {i: d for i, d in enumerate(shape) if isinstance(d, str)}
               for name, shape in {**inputs, **outputs}.items()}
    # Traced with grad enabled: under no_grad, eval TransformerEncoderLayers take a fused fast path
    # (`aten::_transformer_encoder_layer_fwd`) that has no ONNX form.
    with torch.enable_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # the unrolled loop's constants are meant
        # The TorchScript exporter on purpose: tracing bakes the DDIM timesteps in as constants, which is
        # what unrolling the loop means; it warns that torch.export is now the default.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(module.eval(), args, str(path), input_names=list(inputs), output_names=list(outputs),
                          dynamic_axes={k: v for k, v in dynamic.items() if v}, opset_version=OPSET, dynamo=False)
    model = onnx.load(str(path))
    for key, value in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return {"file": path.name, "inputs": {k: list(v) for k, v in inputs.items()},
            "outputs": {k: list(v) for k, v in outputs.items()}, "sha256": _sha256(path)}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def export_onnx(policy_dir: str | Path, out_dir: str | Path, scorers: dict | None = None,
                replace: bool = True, overwrite: bool = False,
                sample_steps: tuple[int, ...] = ()) -> Path:
    """Export the policy and `scorers` (name -> (loaded token scorer, its checkpoint folder), checked against
    this policy by the caller: `verifiers.steering.load_scorer`) into `out_dir`. Written in a temp sibling
    folder and renamed into place, so a failed export never leaves a half-written folder behind.
    replace=True: `out_dir` is checked first (`io.check_output_dir`): only a previous export is replaced
    unless `overwrite`, and never a folder holding an input. replace=False: an existing `out_dir` wins
    (concurrent processes exporting the same cached key). sample_steps: the step counts a sampler graph is
    exported for besides the policy's own (`--steps` of steering: cheaper candidates)."""
    from vla_runtime.policy.model import VLAPolicy

    out = Path(out_dir)
    if replace:
        inputs = [policy_dir, *(folder for _, folder in (scorers or {}).values())]
        check_output_dir(out, is_export, "ONNX export", inputs=inputs, overwrite=overwrite)
    policy = VLAPolicy.from_pretrained(policy_dir)
    cfg = policy.config
    for k in sample_steps:
        check_steps(k, cfg.train_timesteps, "sample_steps")
    fingerprint = weights_fingerprint(policy)
    h, w = cfg.image_size
    H, A, d, P, L = cfg.horizon, cfg.action_dim, cfg.d_model, cfg.proprio_dim, cfg.language_dim
    meta = {"vla_steering.format": FORMAT, "vla_steering.policy_fingerprint": fingerprint,
            "vla_steering.action_spec": json.dumps(cfg.action_spec.to_dict()),
            "vla_steering.normalization": json.dumps(policy.normalizer.to_dict())}
    tmp = make_tmp_sibling(out)
    try:
        graphs = {}
        # lang: (B, L) sentence embeddings, or (B, 1 + tokens, L) with the token states (role grounding)
        lang_shape = ("B", 1 + LANGUAGE_TOKENS, L) if cfg.role_grounding else ("B", L)
        enc_in: dict[str, tuple] = {"images": ("B", 3, h, w), "lang": lang_shape, "proprio": ("B", P)}
        lang = torch.randn(2, 1 + LANGUAGE_TOKENS, L) if cfg.role_grounding else torch.randn(2, L)
        args: list[torch.Tensor] = [torch.rand(2, 3, h, w), lang, torch.randn(2, P)]
        if cfg.wrist_camera:
            wh, ww = cfg.wrist_image_size
            enc_in["wrist"] = ("B", 3, wh, ww)
            args.append(torch.rand(2, 3, wh, ww))
        enc_out: dict[str, tuple] = {"cond": ("B", d)}
        if policy.anchor_mlp is not None:
            enc_in |= {"anchor": ("B", 4), "anchor_given": ("B", 1)}
            args += [torch.randn(2, 4), torch.tensor([[1.0], [0.0]])]
            enc_out["anchor_used"] = ("B", 4)
        graphs["encoder"] = _export(EncoderGraph(policy), tuple(args), tmp / "encoder.onnx", enc_in, enc_out, meta)
        graphs["denoiser"] = _export(
            DenoiserGraph(policy), (torch.randn(2, H, A), torch.tensor([50, 10]), torch.randn(2, d)),
            tmp / "denoiser.onnx", {"x": ("B", H, A), "t": ("B",), "cond": ("B", d)}, {"eps": ("B", H, A)}, meta)
        samplers = {str(k): "sampler" if k == cfg.inference_steps else f"sampler_s{k}"
                    for k in sorted({cfg.inference_steps, *sample_steps})}  # steps -> graph name
        for k, name in samplers.items():
            graphs[name] = _export(
                SamplerGraph(policy, int(k)), (torch.randn(1, d), torch.randn(3, H, A)), tmp / f"{name}.onnx",
                {"cond": (1, d), "noise": ("N", H, A)}, {"actions": ("N", H, A)}, meta)
        for name, (scorer, folder) in (scorers or {}).items():
            if name not in ("verifier", "value"):
                raise ValueError(f"only the verifier and the value function export, not {name!r}")
            if not isinstance(scorer, nn.Module) or not hasattr(scorer.config, "cond_dim"):
                raise ValueError(f"{name} {folder} does not score the policy's token; only token scorers export")
            graphs[name] = _export(ScorerGraph(scorer), (torch.randn(1, d), torch.randn(5, H, A)),
                                   tmp / f"{name}.onnx", {"cond": (1, d), "chunks": ("M", H, A)},
                                   {"scores": ("M",)}, meta)
            (tmp / name).mkdir()
            for f in ("config.json", "normalization.json"):
                shutil.copy2(Path(folder) / f, tmp / name / f)
        for f in ("config.json", "normalization.json"):
            shutil.copy2(Path(policy_dir) / f, tmp / f)
        manifest = {"format": FORMAT, "version": VERSION, "opset": OPSET, "torch": torch.__version__,
                    "policy": {"source": str(Path(policy_dir)), "fingerprint": fingerprint},
                    "action_spec": cfg.action_spec.to_dict(), "normalization": policy.normalizer.to_dict(),
                    "anchor": policy.anchor_mlp is not None, "graphs": graphs, "samplers": samplers}
        (tmp / "export.json").write_text(json.dumps(manifest, indent=2) + "\n")
        if replace:
            replace_dir(tmp, out)
        else:
            try:
                tmp.rename(out)
            except OSError:
                if not (out / "export.json").is_file():
                    raise
                shutil.rmtree(tmp, ignore_errors=True)  # another process exported the same key first
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def read_manifest(export_dir: str | Path) -> dict:
    """export.json of an export folder; a missing or foreign folder fails with the path."""
    path = Path(export_dir) / "export.json"
    if not path.is_file():
        raise FileNotFoundError(f"{export_dir} is not an ONNX export (no export.json); run `vla export onnx`")
    manifest = json.loads(path.read_text())
    if manifest.get("format") != FORMAT or manifest.get("version") not in READABLE_VERSIONS:
        raise ValueError(f"{path}: format {manifest.get('format')!r} v{manifest.get('version')}, "
                         f"expected {FORMAT!r} v{' or v'.join(map(str, READABLE_VERSIONS))}")
    return manifest


def sampler_graphs(manifest: dict, inference_steps: int) -> dict[int, str]:
    """DDIM step count -> the sampler graph's name (a v1 export has only the policy's own)."""
    return {int(k): v for k, v in manifest.get("samplers", {str(inference_steps): "sampler"}).items()}
