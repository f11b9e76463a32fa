"""`vla bench`: config validation, the analytic DiT FLOPs, and a tiny end-to-end run on the torch backend."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from tiny import TINY, uniform_normalizer

from verifiers.action_verifier import ActionVerifier, VerifierConfig
from verifiers.value import ValueConfig, ValueFunction
from vla_app.bench import BENCH_STAGES, BenchConfig, dit_flops, format_table, run_bench, write_plot
from vla_runtime.policy.model import VLAPolicy

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"backends": ("torch", "jax")},
     r"unknown backend\(s\) \['jax'\]; known: \['torch', 'onnx', 'tensorrt', 'remote'\]"),
    ({"backends": ()}, "at least one backend"),
    ({"backends": ("torch", "torch")}, "distinct"),
    ({"ns": (1, 0)}, r"ns must be .* got \(1, 0\)"),
    ({"ns": ()}, "ns must be"),
    ({"ns": (4, 4)}, "distinct"),
    ({"repeats": 0}, "repeats must be an integer >= 1, got 0"),
    ({"warmup": -1}, "warmup must be an integer >= 0, got -1"),
    ({"threads": 0}, "threads must be an integer >= 1, got 0"),
    ({"candidate_steps": 0}, "candidate_steps must be an integer >= 1, got 0"),
])
def test_config_rejects_bad_values(kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        BenchConfig(**kwargs)


def test_dit_flops_hand_example() -> None:
    # d=32, H=8 (T=10), A=7, f=int(32*4)=128, L=2, 4 steps.
    # Per token per layer: 2*4*32^2 = 8192 (projections) + 2*2*32*128 = 16384 (MLP) + 2*2*10*32 = 1280 (attention)
    # = 25856; x T=10 x L=2 = 517120. action_in + action_out: 2*(2*8*7*32) = 7168. Forward: 524288.
    # sample(3): 4 steps x 3 samples x 524288 = 6291456.
    assert dit_flops(TINY, 3) == 6_291_456.0
    assert dit_flops(dataclasses.replace(TINY, guidance_scale=2.0), 3) == 2 * 6_291_456.0  # cond + uncond batch
    with pytest.raises(ValueError, match="n must be >= 1, got 0"):
        dit_flops(TINY, 0)


@pytest.fixture
def tiny_checkpoints(tmp_path):
    torch.manual_seed(0)
    policy = VLAPolicy(TINY, uniform_normalizer()).eval()
    policy.save_pretrained(tmp_path / "policy")
    ActionVerifier(VerifierConfig(cond_dim=TINY.d_model, hidden=16, layers=1),
                   uniform_normalizer()).save_pretrained(tmp_path / "verifier")
    ValueFunction(ValueConfig(cond_dim=TINY.d_model, hidden=16, layers=1, bins=11),
                  uniform_normalizer()).save_pretrained(tmp_path / "value")
    return {name: str(tmp_path / name) for name in ("policy", "verifier", "value")}


def test_run_bench_torch_end_to_end(tiny_checkpoints, tmp_path) -> None:
    cfg = BenchConfig(backends=("torch",), ns=(1, 2), repeats=2, warmup=1, threads=1, **tiny_checkpoints)
    before = torch.get_num_threads()
    result = run_bench(cfg)
    assert torch.get_num_threads() == before
    json.dumps(result)  # JSON-serialisable as written by `vla bench --json`
    assert {"rows", "peak_gflops", "machine", "torch", "onnxruntime", "command"} <= set(result)
    assert result["peak_gflops"] > 0
    rows = result["rows"]
    assert {(r["n"], r["stage"]) for r in rows} == {(1, "act_unsteered")} | {
        (n, s) for n in (1, 2) for s in BENCH_STAGES if s != "act_unsteered"}
    for r in rows:
        assert r["backend"] == "torch"
        assert r["median_ms"] > 0 and r["p90_ms"] >= r["median_ms"]
        assert ("gflops" in r) == (r["stage"] in ("sample", "sample_cheap"))
    assert all(r["gflops"] > 0 for r in rows if "gflops" in r)
    cost = {c["n"]: c for c in result["steering_cost"]}
    ms = {(r["n"], r["stage"]): r["median_ms"] for r in rows}
    assert set(cost) == {1, 2}
    for n, c in cost.items():  # each act() row over the unsteered decision of the same run
        assert c["steered_vs_unsteered"] == pytest.approx(ms[(n, "act_steered")] / ms[(1, "act_unsteered")])
        assert c["mean_vs_unsteered"] == pytest.approx(ms[(n, "act_mean")] / ms[(1, "act_unsteered")])
        assert c["cheap_vs_unsteered"] == pytest.approx(ms[(n, "act_steered_cheap")] / ms[(1, "act_unsteered")])
    table = format_table(result)
    assert table.count("\n| torch |") == len(rows) + len(cost) and "act_steered" in table
    assert "| torch | 2 | " in table.split("Steering cost")[1]
    png = write_plot(result, tmp_path / "plots" / "latency.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 1000


def test_ratios_divide_each_backend_by_torch_measured_in_the_same_run(tiny_checkpoints, tmp_path,
                                                                       monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # the onnx backend exports into ./runs/onnx
    cfg = BenchConfig(backends=("torch", "onnx"), ns=(2,), repeats=2, warmup=1, threads=1, **tiny_checkpoints)
    result = run_bench(cfg)
    rows = result["rows"]
    torch_ms = {(r["n"], r["stage"]): r["median_ms"] for r in rows if r["backend"] == "torch"}
    onnx_rows = [r for r in rows if r["backend"] == "onnx"]
    assert {(r["n"], r["stage"]) for r in onnx_rows} == set(torch_ms)
    for r in onnx_rows:
        assert r["ratio_vs_torch"] == pytest.approx(r["median_ms"] / torch_ms[(r["n"], r["stage"])]), r
    assert any(abs(r["ratio_vs_torch"] - 1.0) > 1e-3 for r in onnx_rows)  # two runtimes never tie exactly
    assert "| onnx |" in format_table(result)


def test_the_remote_rows_time_the_served_policy_against_torch(tiny_checkpoints) -> None:
    pytest.importorskip("openpi_client", reason="openpi-client is not installed")
    cfg = BenchConfig(backends=("torch", "remote"), ns=(2,), repeats=2, warmup=1, threads=1, **tiny_checkpoints)
    result = run_bench(cfg)
    remote = {(r["n"], r["stage"]): r for r in result["rows"] if r["backend"] == "remote"}
    assert set(remote) == {(1, "act_unsteered"), (2, "act_mean")} | {(2, s) for s in ("encode", "sample",
                                                                                    "sample_cheap")}
    assert all(r["median_ms"] > 0 and "ratio_vs_torch" in r for r in remote.values())
    assert "| remote |" in format_table(result)
