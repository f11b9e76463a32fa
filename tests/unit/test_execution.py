"""Chunk execution: replanning cadence, CogACT adaptive ensemble, per-step safety clamps."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vla_runtime.execution import ChunkExecutor, ExecutorConfig, adaptive_ensemble, average_chunks
from vla_runtime.types import ActionSpec

pytestmark = pytest.mark.unit

SPEC = ActionSpec(chunk_length=4)
HC, A = SPEC.chunk_length, SPEC.dim


# --------------------------------------------------------------------------- adaptive_ensemble


def test_adaptive_ensemble_hand_computed_example() -> None:
    preds = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])  # newest first
    # cos(newest, pred_j) = [1, 0, 1/sqrt(2) = 0.70710678]
    # alpha = 1: exp -> [2.71828183, 1.0, 2.02811498], sum 5.74639681
    # softmax weights  -> [0.47304109, 0.17402209, 0.35293681]
    # weighted mean    -> [w0 + w2, w1 + w2] = [0.82597791, 0.52695891]
    out = adaptive_ensemble(preds, alpha=1.0)
    np.testing.assert_allclose(out, [0.82597791, 0.52695891], rtol=0, atol=1e-7)


def test_adaptive_ensemble_downweights_a_disagreeing_prediction() -> None:
    preds = np.array([[3.0, 4.0], [4.0, 3.0], [-3.0, -4.0]])
    # cos = [1, 24/25 = 0.96, -1]; alpha = 2: exp(2 cos) = [7.3890561, 6.82095847, 0.13533528]
    # weights = [0.51508372, 0.4754822, 0.00943409]
    # mean = 0.51508372*[3,4] + 0.4754822*[4,3] + 0.00943409*[-3,-4] = [3.41887767, 3.4490451]
    out = adaptive_ensemble(preds, alpha=2.0)
    np.testing.assert_allclose(out, [3.41887767, 3.4490451], rtol=0, atol=1e-7)


def test_adaptive_ensemble_alpha_zero_is_the_plain_mean() -> None:
    preds = np.random.default_rng(0).normal(size=(5, A))
    np.testing.assert_allclose(adaptive_ensemble(preds, 0.0), preds.mean(axis=0), rtol=0, atol=1e-12)


def test_adaptive_ensemble_single_prediction_returns_itself() -> None:
    pred = np.random.default_rng(1).normal(size=(1, A))
    for alpha in (0.0, 0.1, 5.0):
        np.testing.assert_allclose(adaptive_ensemble(pred, alpha), pred[0], rtol=0, atol=1e-12)


def test_adaptive_ensemble_zero_vectors_do_not_produce_nan() -> None:
    preds = np.array([[0.0, 0.0], [1.0, 2.0], [3.0, 0.0]])
    out = adaptive_ensemble(preds, alpha=3.0)
    np.testing.assert_allclose(out, preds.mean(axis=0), atol=1e-12)  # all similarities 0 -> equal weights


# --------------------------------------------------------------------------- helpers


def tagged_chunk(plan: int) -> np.ndarray:
    """In-bounds chunk whose rows identify (plan, row); small enough that no clamp touches it."""
    c = np.zeros((HC, A), np.float32)
    c[:, 0] = 0.001 * plan
    c[:, 1] = 0.002 * np.arange(HC)
    c[:, 3] = 0.01 * plan
    c[:, SPEC.gripper_index] = np.linspace(0.1, 0.9, HC)
    return c


def random_chunk(rng: np.random.Generator) -> np.ndarray:
    """In-bounds random chunk with translation norm <= 0.03 and rotations <= 0.1 (so clamps do not apply)."""
    c = rng.uniform(-0.017, 0.017, size=(HC, A)).astype(np.float32)
    c[:, 3:6] = rng.uniform(-0.1, 0.1, size=(HC, 3))
    c[:, SPEC.gripper_index] = rng.uniform(0, 1, size=HC)
    return c


def drive(executor: ChunkExecutor, steps: int, make_chunk) -> tuple[list[int], list[np.ndarray], list[np.ndarray]]:
    """Run the control loop; return the plan steps, the chunks given and the actions returned."""
    plans, chunks, actions = [], [], []
    for t in range(steps):
        if executor.needs_plan:
            chunk = make_chunk(len(plans))
            executor.add_chunk(chunk)
            plans.append(t)
            chunks.append(chunk)
        actions.append(executor.next_action())
    return plans, chunks, actions


# --------------------------------------------------------------------------- replanning


@pytest.mark.parametrize("k", [1, 2, 3, 4])
@pytest.mark.parametrize("ensemble", [False, True])
def test_replans_exactly_every_k_steps(k: int, ensemble: bool) -> None:
    ex = ChunkExecutor(SPEC, ExecutorConfig(replan_every=k, ensemble=ensemble))
    assert ex.needs_plan
    plans, _, actions = drive(ex, 13, tagged_chunk)
    assert plans == list(range(0, 13, k))
    assert all(a.shape == (A,) and a.dtype == np.float32 for a in actions)


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_without_ensemble_plays_rows_in_order_and_switches_to_the_newest_chunk(k: int) -> None:
    ex = ChunkExecutor(SPEC, ExecutorConfig(replan_every=k, ensemble=False))
    plans, chunks, actions = drive(ex, 12, tagged_chunk)
    for t, action in enumerate(actions):
        p = max(i for i, start in enumerate(plans) if start <= t)  # the newest chunk at step t
        np.testing.assert_array_equal(action, chunks[p][t - plans[p]], err_msg=f"step {t}")


@pytest.mark.parametrize("k", [1, 2])
def test_ensemble_combines_every_chunk_covering_the_step(k: int) -> None:
    rng = np.random.default_rng(0)
    alpha = 3.0
    ex = ChunkExecutor(SPEC, ExecutorConfig(replan_every=k, ensemble=True, ensemble_alpha=alpha))
    plans, chunks, actions = drive(ex, 10, lambda _: random_chunk(rng))
    nontrivial = 0
    for t, action in enumerate(actions):
        covering = [p for p, start in enumerate(plans) if start <= t < start + HC]
        rows = np.stack([chunks[p][t - plans[p]] for p in reversed(covering)])  # newest first
        assert len(rows) == min(t // k + 1, math.ceil(HC / k))
        expected = adaptive_ensemble(rows, alpha)
        np.testing.assert_allclose(action, expected, rtol=0, atol=1e-6, err_msg=f"step {t}")
        if len(rows) > 1 and not np.allclose(expected, rows.mean(axis=0), atol=1e-5):
            nontrivial += 1
    assert nontrivial > 0  # the weights really differ from a plain mean


def test_needs_a_new_plan_once_the_chunk_runs_out() -> None:
    ex = ChunkExecutor(SPEC, ExecutorConfig(replan_every=HC))
    ex.add_chunk(tagged_chunk(0))
    for _ in range(HC):
        assert not ex.needs_plan
        ex.next_action()
    assert ex.needs_plan
    with pytest.raises(RuntimeError, match="add_chunk"):
        ex.next_action()


def test_reset_forgets_chunks() -> None:
    ex = ChunkExecutor(SPEC, ExecutorConfig(replan_every=2, ensemble=True))
    ex.add_chunk(tagged_chunk(0))
    ex.next_action()
    ex.reset()
    assert ex.needs_plan
    with pytest.raises(RuntimeError):
        ex.next_action()
    ex.add_chunk(tagged_chunk(5))
    np.testing.assert_array_equal(ex.next_action(), tagged_chunk(5)[0])


# --------------------------------------------------------------------------- clamps


def test_translation_norm_is_limited_and_keeps_its_direction() -> None:
    ex = ChunkExecutor(SPEC, ExecutorConfig(max_translation=0.03))
    a = np.array([0.03, -0.03, 0.03, 0.0, 0.0, 0.0, 0.5], np.float32)
    out = ex.clamp(a)
    assert np.linalg.norm(out[:3]) == pytest.approx(0.03, rel=1e-6)
    np.testing.assert_allclose(out[:3] / np.linalg.norm(out[:3]), a[:3] / np.linalg.norm(a[:3]), atol=1e-6)
    np.testing.assert_array_equal(out[3:], a[3:])
    small = np.array([0.01, 0.0, -0.01, 0.0, 0.0, 0.0, 0.5], np.float32)
    np.testing.assert_array_equal(ex.clamp(small), small)  # under the limit: untouched
    tight = ChunkExecutor(SPEC, ExecutorConfig(max_translation=0.005)).clamp(small)
    assert np.linalg.norm(tight[:3]) == pytest.approx(0.005, rel=1e-6)


def test_rotation_is_limited_per_axis_and_gripper_clipped() -> None:
    ex = ChunkExecutor(SPEC, ExecutorConfig(max_rotation=0.1))
    out = ex.clamp(np.array([0.0, 0.0, 0.0, 0.2, -0.15, 0.05, 1.7]))
    np.testing.assert_allclose(out[3:6], [0.1, -0.1, 0.05], atol=1e-7)
    assert out[SPEC.gripper_index] == 1.0
    assert ex.clamp(np.array([0.0] * 6 + [-0.4]))[SPEC.gripper_index] == 0.0
    assert out.dtype == np.float32


def test_clamps_apply_to_executed_actions() -> None:
    ex = ChunkExecutor(SPEC, ExecutorConfig(replan_every=1, max_translation=0.02, max_rotation=0.05))
    chunk = np.tile(np.array([0.03, 0.03, 0.0, 0.2, -0.2, 0.0, 2.0], np.float32), (HC, 1))
    ex.add_chunk(chunk)  # out-of-bound gripper is clipped (the documented validate behaviour), not rejected
    out = ex.next_action()
    assert np.linalg.norm(out[:3]) == pytest.approx(0.02, rel=1e-6)
    np.testing.assert_allclose(out[3:6], [0.05, -0.05, 0.0], atol=1e-7)
    assert out[SPEC.gripper_index] == 1.0
    assert np.all(out >= SPEC.low_array()) and np.all(out <= SPEC.high_array())


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_non_finite_chunk_is_rejected(bad: float) -> None:
    ex = ChunkExecutor(SPEC)
    chunk = tagged_chunk(0)
    chunk[2, 1] = bad
    with pytest.raises(ValueError, match="NaN or inf"):
        ex.add_chunk(chunk)
    assert ex.needs_plan  # nothing was queued


@pytest.mark.parametrize("shape", [(HC - 1, A), (HC + 1, A), (HC, A - 1), (A,), (1, HC, A)])
def test_wrong_chunk_shape_is_rejected(shape: tuple[int, ...]) -> None:
    ex = ChunkExecutor(SPEC)
    with pytest.raises(ValueError, match="shape|chunk must be"):
        ex.add_chunk(np.zeros(shape, np.float32))
    assert ex.needs_plan


def test_next_action_without_a_chunk_raises() -> None:
    with pytest.raises(RuntimeError, match="no chunk"):
        ChunkExecutor(SPEC).next_action()


def test_replan_every_longer_than_the_chunk_is_rejected() -> None:
    with pytest.raises(ValueError, match=f"replan_every={HC + 1}.*{HC}"):
        ChunkExecutor(SPEC, ExecutorConfig(replan_every=HC + 1))
    ChunkExecutor(SPEC, ExecutorConfig(replan_every=HC))  # equal is fine


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"replan_every": 0}, "replan_every"),
        ({"ensemble_alpha": math.nan}, "ensemble_alpha"),
        ({"ensemble_alpha": math.inf}, "ensemble_alpha"),
        ({"max_translation": 0.0}, "translation=0.0"),
        ({"max_rotation": -0.1}, "rotation=-0.1"),
        ({"max_translation": math.nan}, "translation=nan"),
    ],
)
def test_executor_config_validation(kw: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ExecutorConfig(**kw)


def test_average_chunks_means_motion_and_votes_the_gripper() -> None:
    samples = np.zeros((3, 2, 7), np.float32)
    samples[:, :, 0] = [[0.03, 0.0], [0.0, 0.0], [0.03, 0.03]]  # dx per sample and step
    samples[:, :, 6] = [[1.0, 0.0], [0.9, 0.2], [0.0, 0.6]]  # step 0: 2 of 3 open; step 1: 1 of 3 open
    chunk = average_chunks(samples, gripper_index=6)
    np.testing.assert_allclose(chunk[:, 0], [0.02, 0.01], atol=1e-7)
    assert chunk[:, 6].tolist() == [1.0, 0.0]  # voted, not the 0.63 / 0.27 means
    assert chunk.shape == (2, 7)


def test_average_of_one_sample_is_that_sample_and_bad_shapes_fail() -> None:
    one = np.random.default_rng(0).uniform(0, 0.03, (1, 8, 7)).astype(np.float32)
    one[0, :, 6] = 1.0
    np.testing.assert_array_equal(average_chunks(one, 6), one[0])
    with pytest.raises(ValueError, match=r"\(8, 7\)"):
        average_chunks(one[0], 6)


# --------------------------------------------------------------------------- asynchronous planning


def test_chunk_started_in_the_past_skips_the_steps_executed_meanwhile() -> None:
    ex = ChunkExecutor(SPEC, ExecutorConfig(replan_every=2))
    first = np.zeros((HC, A), np.float32)
    first[:, 0] = 0.001 * np.arange(HC)
    ex.add_chunk(first)
    ex.next_action(), ex.next_action()
    assert ex.step == 2 and ex.needs_plan
    planned_at = ex.step  # an observation taken now; the plan arrives one step later
    ex.next_action()
    second = np.zeros((HC, A), np.float32)
    second[:, 0] = 0.01 * (1 + np.arange(HC))
    ex.add_chunk(second, start=planned_at)
    assert not ex.needs_plan
    # step 3 is the second action of the new chunk (its first belonged to step 2, already executed)
    assert ex.next_action()[0] == pytest.approx(0.02)
    assert ex.covers_step()
    ex.next_action(), ex.next_action()
    assert not ex.covers_step()  # the planner is late: the node holds instead of guessing
    with pytest.raises(RuntimeError, match="no chunk covers"):
        ex.next_action()


def test_chunk_start_in_the_future_is_refused() -> None:
    ex = ChunkExecutor(SPEC)
    with pytest.raises(ValueError, match="chunk start 3"):
        ex.add_chunk(np.zeros((HC, A), np.float32), start=3)


def test_reconfiguring_keeps_the_replan_rule_and_the_queue() -> None:
    ex = ChunkExecutor(SPEC, ExecutorConfig(replan_every=2))
    ex.add_chunk(np.zeros((HC, A), np.float32))
    with pytest.raises(ValueError, match=f"replan_every={HC + 1} exceeds the chunk length {HC}"):
        ex.configure(ExecutorConfig(replan_every=HC + 1))
    assert ex.config.replan_every == 2
    ex.configure(ExecutorConfig(replan_every=1, max_translation=0.01))
    a = ex.next_action()  # the queued chunk survives; the new clamp applies
    assert ex.needs_plan and a.shape == (A,)
