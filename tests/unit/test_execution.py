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


# --------------------------------------------------------------------------- execution under decision latency

SPEC8 = ActionSpec(chunk_length=8)
H8 = SPEC8.chunk_length
ACTION_TOL = 1e-6  # float32 sums of a few actions
ROW = 0.001  # tag unit: a tagged action's dx is plan * ROW, its dy row * ROW


def tagged8(plan: int) -> np.ndarray:
    """In-bounds chunk of SPEC8 whose rows identify (plan, row); small enough that no clamp touches it."""
    c = np.zeros((H8, A), np.float32)
    c[:, 0] = ROW * plan
    c[:, 1] = ROW * np.arange(H8)
    c[:, SPEC8.gripper_index] = 0.5
    return c


def tag(action: np.ndarray) -> tuple[int, int]:
    return round(float(action[0]) / ROW), round(float(action[1]) / ROW)


def test_lead_steps_make_a_plan_due_before_the_takeover() -> None:
    ex = ChunkExecutor(SPEC8, ExecutorConfig(replan_every=4, lead_steps=2))
    assert ex.needs_plan and ex.replan_step is None and ex.horizon == 4
    ex.add_chunk(tagged8(0))
    assert ex.replan_step == 4
    due = []
    for _ in range(4):
        due.append(ex.needs_plan)
        ex.next_action()
    assert due == [False, False, True, True]  # due 2 steps before the takeover at step 4
    ex.add_chunk(tagged8(1), start=2)  # planned from step 2's observation, landing at step 4
    assert ex.replan_step == 8 and not ex.needs_plan
    assert tag(ex.next_action()) == (1, 2)  # its first 2 actions belonged to steps already executed


@pytest.mark.parametrize(("replan", "lead", "horizon", "due_after"), [
    (4, 0, 4, 4),  # no lead: the synchronous cadence
    (4, 4, 4, 0),  # a lead as long as the horizon: due right at the takeover
    (8, 3, 5, 2),  # the chunk's actions from index 3 on run out after 5 steps
    (8, 8, 1, 0),  # a lead beyond the chunk: one step each
])
def test_horizon_shrinks_so_the_chunk_never_runs_out(replan: int, lead: int, horizon: int, due_after: int) -> None:
    ex = ChunkExecutor(SPEC8, ExecutorConfig(replan_every=replan, lead_steps=lead))
    assert ex.horizon == horizon
    ex.add_chunk(tagged8(0))
    steps = 0
    while not ex.needs_plan:
        ex.next_action()
        steps += 1
    assert steps == due_after and ex.replan_step == horizon


def _catch_up_run(blend: int, d: int, seed: int = 0, spec: ActionSpec = SPEC8):
    """Old chunk from step 0; at step 4 a new chunk planned at step 4 - d lands. -> (new chunk, executed (T, A),
    the start step)."""
    rng = np.random.default_rng(seed)
    h = spec.chunk_length

    def chunk() -> np.ndarray:
        c = rng.uniform(-0.005, 0.005, (h, A)).astype(np.float32)  # clamps never bind, even corrected
        c[:, spec.gripper_index] = rng.uniform(0, 1, h)
        return c

    ex = ChunkExecutor(spec, ExecutorConfig(replan_every=h, blend_steps=blend))
    ex.add_chunk(chunk())
    executed = [ex.next_action() for _ in range(4)]
    new = chunk()
    ex.add_chunk(new, start=4 - d)
    while ex.covers_step():
        executed.append(ex.next_action())
    return new, np.array(executed), 4 - d


@pytest.mark.parametrize(("blend", "d"), [(1, 1), (2, 2), (3, 1), (2, 3)])
def test_catch_up_restores_the_new_chunks_planned_path(blend: int, d: int) -> None:
    """After d skipped and `blend` corrected steps, the motion executed since the observation equals what the
    new chunk planned for those steps; from there on its actions run unchanged."""
    new, executed, start = _catch_up_run(blend, d)
    motion = [i for i in range(A) if i != SPEC8.gripper_index]
    n = d + blend
    np.testing.assert_allclose(executed[start:start + n, motion].sum(axis=0), new[:n, motion].sum(axis=0),
                               rtol=0, atol=ACTION_TOL)
    np.testing.assert_array_equal(executed[start + n:], new[n:])  # untouched after the catch-up
    # equal shares, and the gripper is the new chunk's
    shares = executed[start + d:start + n, motion] - new[d:n, motion]
    np.testing.assert_allclose(shares, np.broadcast_to(shares[0], shares.shape), rtol=0, atol=ACTION_TOL)
    np.testing.assert_array_equal(executed[start + d:, SPEC8.gripper_index], new[d:, SPEC8.gripper_index])


def test_catch_up_is_capped_at_the_chunks_end() -> None:
    new, executed, start = _catch_up_run(blend=3, d=3, spec=SPEC)  # 4-step chunks: 1 action left to correct
    motion = [i for i in range(A) if i != SPEC.gripper_index]
    assert len(executed) == start + HC
    np.testing.assert_allclose(executed[start:, motion].sum(axis=0), new[:, motion].sum(axis=0),
                               rtol=0, atol=ACTION_TOL)


def test_no_catch_up_for_a_chunk_that_starts_now_or_without_blend_steps() -> None:
    new, executed, start = _catch_up_run(blend=2, d=0)
    np.testing.assert_array_equal(executed[start:], new)
    new, executed, start = _catch_up_run(blend=0, d=2)
    np.testing.assert_array_equal(executed[4:], new[2:])


def test_catch_up_after_idle_steps_counts_the_hold_as_no_motion() -> None:
    ex = ChunkExecutor(SPEC8, ExecutorConfig(replan_every=4, blend_steps=2))
    holds = [ex.idle() for _ in range(3)]  # the first plan is late: the arm held for 3 steps
    assert all(not np.any(h[:6]) for h in holds)
    new = tagged8(1)
    ex.add_chunk(new, start=0)
    a3, a4, a5 = (ex.next_action() for _ in range(3))
    skipped = new[:3, 1].sum()  # dy of rows 0..2 (0 + 1 + 2) * ROW
    assert a3[1] == pytest.approx(new[3, 1] + skipped / 2, abs=ACTION_TOL)
    assert a4[1] == pytest.approx(new[4, 1] + skipped / 2, abs=ACTION_TOL)
    assert a5[1] == pytest.approx(new[5, 1], abs=ACTION_TOL)


def test_idle_holds_with_the_last_gripper_and_advances_the_step() -> None:
    ex = ChunkExecutor(SPEC, ExecutorConfig(replan_every=HC))
    first = ex.idle()  # before any action: no motion, gripper open
    np.testing.assert_array_equal(first, [0, 0, 0, 0, 0, 0, 1.0])
    assert ex.step == 1
    chunk = tagged_chunk(2)
    ex.add_chunk(chunk)
    ran = [ex.next_action() for _ in range(HC)]
    assert not ex.covers_step()
    hold = ex.idle()
    assert not np.any(hold[:SPEC.gripper_index]) and hold[SPEC.gripper_index] == ran[-1][SPEC.gripper_index]
    assert ex.step == 1 + HC + 1
    # the only switch is hold -> chunk: its jump is the chunk's first translation; holds themselves add none
    np.testing.assert_allclose(ex.boundary_jumps, [np.linalg.norm(ran[0][:3])], rtol=0, atol=ACTION_TOL)


def test_upcoming_lists_the_clamped_rest_of_the_newest_chunk() -> None:
    ex = ChunkExecutor(SPEC, ExecutorConfig(replan_every=2, max_translation=0.02))
    chunk = tagged_chunk(1)
    chunk[2, :3] = 0.03  # |dx, dy, dz| = 0.052 > 0.02: clamped
    ex.add_chunk(chunk)
    ex.next_action()
    up = ex.upcoming()
    assert up.shape == (HC - 1, A)
    assert np.linalg.norm(up[1, :3]) == pytest.approx(0.02, abs=ACTION_TOL)
    for row in up:
        np.testing.assert_array_equal(ex.next_action(), row)
    assert ex.upcoming().shape == (0, A)
    ens = ChunkExecutor(SPEC, ExecutorConfig(ensemble=True))
    ens.add_chunk(chunk)
    with pytest.raises(RuntimeError, match="ensemble"):
        ens.upcoming()


def test_boundary_jumps_record_each_switch_once_as_the_translation_change() -> None:
    ex = ChunkExecutor(SPEC, ExecutorConfig(replan_every=2))
    rng = np.random.default_rng(3)
    plans, _, actions = drive(ex, 9, lambda _: random_chunk(rng))
    assert plans == [0, 2, 4, 6, 8]
    want = [np.linalg.norm(actions[t][:3] - actions[t - 1][:3]) for t in plans[1:]]  # the first plan has no before
    np.testing.assert_allclose(ex.boundary_jumps, want, rtol=0, atol=ACTION_TOL)
    ex.add_chunk(random_chunk(rng))
    ex.add_chunk(random_chunk(rng))  # two arrivals before a step: still one switch
    ex.next_action()
    assert len(ex.boundary_jumps) == len(want) + 1
    ex.reset()
    assert ex.boundary_jumps == []


@pytest.mark.parametrize("blend", [0, 2])
def test_continuity_bounds_the_change_at_a_chunk_switch_only_with_blend(blend: int) -> None:
    cfg = ExecutorConfig(replan_every=2, blend_steps=blend)
    ex = ChunkExecutor(SPEC, cfg)
    forward, backward = np.zeros((HC, A), np.float32), np.zeros((HC, A), np.float32)
    forward[:, 0], backward[:, 0] = 0.03, -0.03  # the per-axis bound one way, then the other: a 0.06 m change
    ex.add_chunk(forward)
    ex.next_action(), ex.next_action()
    ex.add_chunk(backward)
    first = ex.next_action()
    jump = ex.boundary_jumps[-1]
    if blend:
        assert jump <= cfg.max_translation + ACTION_TOL
        np.testing.assert_allclose(first[0], 0.03 - cfg.max_translation, atol=ACTION_TOL)  # towards the new one
    else:
        assert jump == pytest.approx(0.06, abs=ACTION_TOL)
    np.testing.assert_allclose(ex.next_action()[0], -0.03, atol=ACTION_TOL)  # then the new chunk as planned


@pytest.mark.parametrize(("kw", "match"), [
    ({"lead_steps": -1}, "got -1 and 0"),
    ({"blend_steps": -2}, "got 0 and -2"),
    ({"blend_steps": 2, "ensemble": True}, "choose one"),
])
def test_latency_settings_are_validated(kw: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ExecutorConfig(**kw)
