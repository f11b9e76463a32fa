"""The PyBullet arm env: gym contract, determinism, variations, input checks, IK, cameras, experts."""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator

import gymnasium
import numpy as np
import pybullet as p
import pytest
from gymnasium.utils.env_checker import check_env

from sim.arms import ARMS, DOWN_QUAT, IKSolver, get_arm_spec
from sim.camera import CameraPose, Lighting, camera_info, render
from sim.control import MAX_TILT, WORKSPACE_HIGH, tcp_yaw
from sim.env import ArmEnv, EnvConfig
from sim.experts import ExpertFactory
from sim.language import PARAPHRASE_TEMPLATES, TRAIN_TEMPLATES
from sim.tasks import TASKS, is_success, sample_task
from sim.variations import VARIATIONS, get_variation
from vla_app.runner import EpisodeJob, run_episode
from vla_runtime.types import backproject

pytestmark = pytest.mark.sim

SMALL = (32, 32)


def make_env(**kw) -> ArmEnv:
    kw.setdefault("image_size", SMALL)
    render_mode = kw.pop("render_mode", None)
    return ArmEnv(EnvConfig(**kw), render_mode=render_mode)


@pytest.fixture
def env() -> Iterator[ArmEnv]:
    e = make_env(task="pick_lift", render_images=False)
    yield e
    e.close()


def zero_action(gripper: float = 1.0) -> np.ndarray:
    a = np.zeros(7, np.float32)
    a[6] = gripper
    return a


# --------------------------------------------------------------------------- gym contract

# The only warning check_env may raise: an env built directly (not via gymnasium.make) has no spec.
EXPECTED_CHECKER_WARNINGS = ("spec",)


@pytest.mark.parametrize(("task", "wrist"), [("pick_lift", False), ("place_in", False), ("place_in", True)])
def test_gymnasium_env_checker_passes(task: str, wrist: bool) -> None:
    env = make_env(task=task, wrist_camera=wrist, render_mode="rgb_array")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            check_env(env, skip_render_check=False)
        unexpected = [str(w.message) for w in caught if not any(k in str(w.message) for k in EXPECTED_CHECKER_WARNINGS)]
        assert not unexpected, unexpected
        obs, info = env.reset(seed=1)
        assert env.observation_space.contains(obs)
        assert set(obs) == {"rgb", "proprio", "instruction", "depth"} | ({"wrist_rgb"} if wrist else set())
        obs, reward, _, _, info = env.step(env.action_space.sample())
        assert env.observation_space.contains(obs)
        assert isinstance(reward, float) and info["task"] == task and info["step"] == 1
        frame = env.render()
        assert frame.shape == (*SMALL, 3) and frame.dtype == np.uint8 and frame.std() > 0  # a real picture
        if wrist:
            assert obs["wrist_rgb"].std() > 0 and not np.array_equal(obs["wrist_rgb"], obs["rgb"])
    finally:
        env.close()


def test_registered_env_id_passes_the_checker_without_warnings() -> None:
    env = gymnasium.make("vla_steering/Arm-v0", config=EnvConfig(task="push_to", image_size=SMALL),
                         render_mode="rgb_array")
    try:
        assert isinstance(env.unwrapped, ArmEnv) and env.unwrapped.config.task == "push_to"
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            check_env(env.unwrapped, skip_render_check=False)
        assert not [str(w.message) for w in caught]
    finally:
        env.close()


def test_render_before_reset_and_bad_render_mode() -> None:
    env = make_env(render_images=False)
    try:
        with pytest.raises(RuntimeError, match="reset"):
            env.render()
    finally:
        env.close()
    with pytest.raises(ValueError, match="render_mode"):
        ArmEnv(EnvConfig(image_size=SMALL), render_mode="human")


# --------------------------------------------------------------------------- determinism


def _rollout(env: ArmEnv, seed: int, steps: int) -> tuple[list[dict], list[np.ndarray]]:
    obs, _ = env.reset(seed=seed)
    agent = ExpertFactory("expert")(seed)
    agent.reset(env)
    observations, actions = [obs], []
    for _ in range(steps):
        a = agent.act(env)
        actions.append(a)
        obs, *_ = env.step(a)
        observations.append(obs)
    return observations, actions


def _assert_obs_equal(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    assert a["instruction"] == b["instruction"]
    for k in ("rgb", "depth", "proprio"):
        assert a[k].dtype == b[k].dtype
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_same_seed_gives_bit_identical_episodes_across_instances_and_after_reuse() -> None:
    cfg = EnvConfig(task="stack", image_size=SMALL)
    a, b = ArmEnv(cfg), ArmEnv(cfg)
    try:
        _rollout(b, seed=11, steps=8)  # b has run another episode first: reset must rebuild everything
        obs_a, act_a = _rollout(a, seed=5, steps=6)
        obs_b, act_b = _rollout(b, seed=5, steps=6)
        for x, y in zip(obs_a, obs_b):
            _assert_obs_equal(x, y)
        for x, y in zip(act_a, act_b):
            np.testing.assert_array_equal(x, y)
        assert obs_a[0]["rgb"].std() > 0
        # the expert actually moves the arm, so the comparison covered real dynamics
        assert not np.array_equal(obs_a[0]["proprio"], obs_a[-1]["proprio"])
        # a different seed is a different scene
        obs_c, _ = _rollout(a, seed=6, steps=0)
        assert not np.array_equal(obs_c[0]["rgb"], obs_a[0]["rgb"])
        assert a.instance.objects != sample_task("stack", np.random.default_rng(5), get_variation("id")).objects
    finally:
        a.close()
        b.close()


def test_scene_is_a_pure_function_of_the_seed() -> None:
    var = get_variation("id")
    for task in TASKS:
        x = sample_task(task, np.random.default_rng(3), var)
        y = sample_task(task, np.random.default_rng(3), var)
        assert x == y
        z = sample_task(task, np.random.default_rng(4), var)
        assert [o.xy for o in x.objects] != [o.xy for o in z.objects]


# --------------------------------------------------------------------------- tasks x variations


def _template_regex(template: str) -> re.Pattern:
    parts = re.split(r"\{(\w+)\}", template)
    return re.compile("".join(re.escape(s) if i % 2 == 0 else f"(?P<{s}>.+)" for i, s in enumerate(parts)))


def _template_fills(instruction: str, templates: tuple[str, ...]) -> list[dict]:
    return [m.groupdict() for t in templates if (m := _template_regex(t).fullmatch(instruction))]


def _expected_fills(env: ArmEnv) -> dict:
    inst = env.instance
    want = {"obj": inst.objects[0].name}
    if inst.container is not None:
        want["container"] = inst.container.kind
    if inst.base_index is not None:
        want["base"] = inst.objects[inst.base_index].name
    if inst.goal_region is not None:
        want["region"] = inst.goal_region
    return want


MATRIX_SEED = 6  # resets for every task/variation pair (see test_every_scene_can_be_sampled)


@pytest.mark.parametrize("task", TASKS)
def test_every_variation_resets_steps_and_shifts_its_factor(task: str) -> None:
    id_env = make_env(task=task)
    try:
        id_env.reset(seed=MATRIX_SEED)
        id_inst = id_env.instance
        id_rgb = id_env.last_observation.images["static"]
        id_cam = id_env.last_observation.cameras["static"].pose_base_cam
        for var in VARIATIONS:
            rendered = var in ("appearance", "camera")
            env = id_env if var == "id" else make_env(task=task, variation=var, render_images=rendered)
            try:
                if var != "id":
                    env.reset(seed=MATRIX_SEED)
                obs, _, _, _, info = env.step(zero_action())
                assert env.observation_space.contains(obs), var
                inst = env.instance
                assert info["variation"] == var and info["task"] == task
                # language: paraphrase templates only (and always) for the paraphrase split
                fills_train = _template_fills(inst.instruction, TRAIN_TEMPLATES[task])
                fills_para = _template_fills(inst.instruction, PARAPHRASE_TEMPLATES[task])
                used = fills_para if var == "paraphrase" else fills_train
                unused = fills_train if var == "paraphrase" else fills_para
                assert not unused, (var, inst.instruction)
                assert _expected_fills(env) in used, (var, inst.instruction, used)
                # arm
                assert env.arm_spec.name == ("kuka" if var == "embodiment" else "panda"), var
                assert info["arm"] == env.arm_spec.name
                # distractors: two unseen meshes in the scene, and nowhere else
                urdfs = [o for o in inst.objects if o.urdf is not None]
                assert len(urdfs) == (2 if var == "distractors" else 0), var
                assert len(env.world.objects) == len(inst.objects)
                for spec, body in zip(inst.objects, env.world.objects):
                    pos = np.asarray(p.getBasePositionAndOrientation(body, physicsClientId=env.client)[0])
                    assert np.linalg.norm(pos[:2] - spec.xy) < 0.03, (var, spec.name)  # built where sampled
                # one factor at a time: these splits keep the id scene layout
                if var in ("camera", "appearance", "paraphrase", "embodiment"):
                    assert [o.xy for o in inst.objects] == [o.xy for o in id_inst.objects], var
                    assert [o.name for o in inst.objects] == [o.name for o in id_inst.objects], var
                cam = env.last_observation.cameras["static"].pose_base_cam
                if var == "camera":
                    assert np.abs(cam - id_cam).max() > 1e-3
                else:
                    np.testing.assert_array_equal(cam, id_cam, err_msg=var)
                if var == "appearance":
                    rgb = env.last_observation.images["static"].astype(int)
                    table_id, table_var = id_rgb[-4:].astype(int), rgb[-4:]  # bottom rows see only table
                    assert table_id[..., 0].mean() > table_id[..., 2].mean() + 30  # warm wood
                    assert np.abs(table_id.mean((0, 1)) - table_var.mean((0, 1))).max() > 30
                    assert [o.rgb for o in inst.objects] != [o.rgb for o in id_inst.objects]
            finally:
                if env is not id_env:
                    env.close()
    finally:
        id_env.close()


@pytest.mark.parametrize(
    ("task", "variation"),
    [
        (t, v)
        for t in TASKS
        for v in VARIATIONS
    ],
)
def test_every_scene_can_be_sampled(task: str, variation: str) -> None:
    var = get_variation(variation)
    for seed in range(40):
        inst = sample_task(task, np.random.default_rng(seed), var)
        assert inst.objects and inst.instruction


def test_distractor_scenes_reset_where_the_layout_is_crowded() -> None:
    """push_to fills the middle of the table (pads + corridor); unseen distractors must still fit."""
    env = make_env(task="push_to", variation="distractors", render_images=False)
    try:
        for seed in range(20):
            env.reset(seed=seed)
            assert sum(o.urdf is not None for o in env.instance.objects) == 2
    finally:
        env.close()


def test_embodiment_variation_forces_the_kuka_arm() -> None:
    cfg = EnvConfig(variation="embodiment", image_size=SMALL)
    assert cfg.effective_arm == "kuka"
    assert EnvConfig(variation="embodiment", arm="kuka", image_size=SMALL).effective_arm == "kuka"
    assert EnvConfig(arm="kuka", image_size=SMALL).effective_arm == "kuka"


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("kw", "bad", "known"),
    [
        ({"task": "juggle"}, "'juggle'", TASKS),
        ({"variation": "underwater"}, "'underwater'", tuple(VARIATIONS)),
        ({"arm": "ur5"}, "'ur5'", tuple(ARMS)),
    ],
)
def test_unknown_names_are_rejected_with_the_known_list(kw: dict, bad: str, known: tuple[str, ...]) -> None:
    with pytest.raises(ValueError) as exc:
        EnvConfig(image_size=SMALL, **kw)
    msg = str(exc.value)
    assert bad in msg
    for name in known:
        assert name in msg


@pytest.mark.parametrize(
    "kw",
    [
        {"image_size": (8, 32)},
        {"image_size": (32, 15)},
        {"image_size": (2048, 32)},
        {"image_size": (0, 0)},
        {"image_size": (-32, 32)},
        {"image_size": (32,)},
        {"max_steps": 0},
    ],
)
def test_invalid_config_values_raise(kw: dict) -> None:
    with pytest.raises(ValueError):
        EnvConfig(**kw)


@pytest.mark.parametrize(
    ("action", "match"),
    [
        (np.zeros(6), "shape"),
        (np.zeros(8), "shape"),
        (np.zeros((2, 7)), "shape"),
        (np.zeros(()), "shape"),
        (np.array([0.0, np.nan, 0, 0, 0, 0, 1]), "NaN"),
        (np.array([0.0, 0, 0, 0, 0, np.inf, 1]), "NaN or inf"),
    ],
)
def test_bad_action_raises_and_leaves_the_env_untouched(env: ArmEnv, action: np.ndarray, match: str) -> None:
    env.reset(seed=0)
    env.step(np.array([0.01, 0.0, 0.0, 0, 0, 0, 1]))
    pos0, quat0 = env.target_pose
    proprio0 = env.proprio().copy()
    steps0 = env.steps
    with pytest.raises(ValueError, match=match):
        env.step(action)
    pos1, quat1 = env.target_pose
    np.testing.assert_array_equal(pos0, pos1)
    np.testing.assert_array_equal(quat0, quat1)
    np.testing.assert_array_equal(env.proprio(), proprio0)  # physics not stepped
    assert env.steps == steps0
    info = env.step(np.array([0.0, 0.01, 0.0, 0, 0, 0, 1]))[4]
    assert info["step"] == steps0 + 1 == env.steps
    np.testing.assert_allclose(env.target_pose[0], pos0 + [0, 0.01, 0], atol=1e-7)


def test_out_of_bound_action_is_clipped(env: ArmEnv) -> None:
    env.reset(seed=0)
    pos0, quat0 = env.target_pose
    env.step(np.array([1.0, -1.0, 0.5, 0.0, 0.0, 9.0, 7.0]))
    pos1, quat1 = env.target_pose
    np.testing.assert_allclose(pos1 - pos0, [0.03, -0.03, 0.03], atol=1e-6)
    dyaw = (tcp_yaw(quat1) - tcp_yaw(quat0) + np.pi) % (2 * np.pi) - np.pi
    assert dyaw == pytest.approx(0.3, abs=1e-5)
    # the workspace box clips the commanded target too
    for _ in range(5):
        env.step(np.array([0.0, 0.0, 0.03, 0, 0, 0, 1]))
    assert env.target_pose[0][2] == pytest.approx(WORKSPACE_HIGH[2])
    # tilting beyond MAX_TILT is refused (yaw still applies)
    for _ in range(6):
        env.step(np.array([0.0, 0.0, 0.0, 0.2, 0.0, 0.0, 1]))
    rot = np.asarray(p.getMatrixFromQuaternion(env.target_pose[1])).reshape(3, 3)
    tilt = float(np.arccos(np.clip(-rot[2, 2], -1.0, 1.0)))  # angle between the TCP z axis and straight down
    assert 0.3 < tilt <= MAX_TILT + 1e-6


def test_step_before_reset_and_after_episode_end_raise() -> None:
    env = make_env(task="pick_lift", render_images=False, max_steps=2)
    try:
        with pytest.raises(RuntimeError, match="reset"):
            env.step(zero_action())
        env.reset(seed=0)
        _, _, terminated, truncated, _ = env.step(zero_action())
        assert not terminated and not truncated
        _, _, terminated, truncated, _ = env.step(zero_action())
        assert truncated and not terminated
        with pytest.raises(RuntimeError, match="reset"):
            env.step(zero_action())
        env.reset(seed=0)  # a reset makes it usable again
        env.step(zero_action())
        assert env.steps == 1
    finally:
        env.close()


# --------------------------------------------------------------------------- IK and tracking


def _ik_targets(n: int = 10) -> np.ndarray:
    return np.random.default_rng(1234).uniform([0.35, -0.2, 0.02], [0.65, 0.2, 0.25], size=(n, 3))


def _quat_angle(q1, q2) -> float:
    d = p.getDifferenceQuaternion(q1, q2)
    return 2 * float(np.arccos(min(1.0, abs(d[3]))))


@pytest.fixture(scope="module")
def ik_solutions() -> dict[str, list[tuple[np.ndarray, np.ndarray, float, np.ndarray, np.ndarray]]]:
    """arm -> [(target, q, reported_err, fk_pos, fk_quat)], fk computed by a second, independent solver."""
    out = {}
    for name in ARMS:
        spec = get_arm_spec(name)
        solver, checker = IKSolver(spec), IKSolver(spec)
        rows = []
        for target in _ik_targets():
            q, err = solver.solve(target, DOWN_QUAT, np.asarray(spec.rest_pose))
            fk_pos, fk_quat = checker.fk(q)
            rows.append((target, q, err, fk_pos, fk_quat))
        solver.close()
        checker.close()
        out[name] = rows
    return out


@pytest.mark.parametrize("arm", list(ARMS))
def test_ik_reaches_targets_within_a_few_mm_and_reports_its_error(ik_solutions, arm: str) -> None:
    spec = get_arm_spec(arm)
    for target, q, err, fk_pos, fk_quat in ik_solutions[arm]:
        assert q.shape == (len(spec.ik_joints),)
        true_err = float(np.linalg.norm(fk_pos - target))
        assert err == pytest.approx(true_err, abs=1e-9)  # the reported error is honest
        assert true_err < 0.01, (arm, target, true_err)
        assert _quat_angle(fk_quat, DOWN_QUAT) < 0.01


@pytest.mark.parametrize("arm", list(ARMS))
def test_ik_is_sub_millimetre(ik_solutions, arm: str) -> None:
    errors = [float(np.linalg.norm(fk_pos - target)) for target, _, _, fk_pos, _ in ik_solutions[arm]]
    assert max(errors) < 0.001, errors


@pytest.mark.parametrize("arm", list(ARMS))
def test_measured_tcp_tracks_the_commanded_target(arm: str) -> None:
    env = make_env(task="pick_lift", arm=arm, render_images=False)
    try:
        env.reset(seed=0)
        start = env.target_pose[0]
        moves = [[0.03, 0.02, -0.03], [0.03, -0.03, -0.03], [-0.01, 0.03, 0.0]]
        for m in moves:
            env.step(np.array([*m, 0, 0, 0, 1.0]))
        target = env.target_pose[0]
        np.testing.assert_allclose(target, start + np.sum(moves, axis=0), atol=1e-6)
        for _ in range(6):
            env.step(zero_action())
        tcp = env.arm.tcp_pose()[0]
        assert np.linalg.norm(tcp - target) < 0.003, (tcp, target)
        np.testing.assert_allclose(env.proprio()[:3], tcp, atol=1e-6)  # proprio reports the measured TCP
        assert _quat_angle(env.arm.tcp_pose()[1], DOWN_QUAT) < 0.02
    finally:
        env.close()


# --------------------------------------------------------------------------- camera geometry


def _project(cam, point: np.ndarray) -> tuple[float, float, float]:
    inv = np.linalg.inv(cam.pose_base_cam)
    pc = inv[:3, :3] @ point + inv[:3, 3]
    return cam.fx * pc[0] / pc[2] + cam.cx, cam.fy * pc[1] / pc[2] + cam.cy, pc[2]


@pytest.mark.parametrize("seed", [0, 2])
def test_depth_backprojects_onto_the_target_object_and_the_table(seed: int) -> None:
    env = make_env(task="pick_lift", image_size=(64, 64))
    try:
        env.reset(seed=seed)
        obs = env.last_observation
        cam, depth, rgb = obs.cameras["static"], obs.depth["static"], obs.images["static"]
        assert depth.dtype == np.float32 and depth.shape == (64, 64)
        body = env.world.objects[0]
        centre = np.asarray(p.getBasePositionAndOrientation(body, physicsClientId=env.client)[0])
        u, v, z_cam = _project(cam, centre)
        # continuous pixel coordinates: pixel (ui, vi) covers [ui, ui + 1) (backproject uses the +0.5 centre)
        ui, vi = int(np.floor(u)), int(np.floor(v))
        assert 0 <= ui < 64 and 0 <= vi < 64
        pts = backproject(depth, cam).reshape(64, 64, 3)
        point = pts[vi, ui]
        lo, hi = (np.asarray(x) for x in p.getAABB(body, physicsClientId=env.client))
        outside = np.linalg.norm(np.maximum(0.0, np.maximum(lo - point, point - hi)))
        assert outside < 0.015, (point, lo, hi)  # on the object's surface
        assert np.linalg.norm(point - centre) < 0.035 + 0.015
        assert z_cam - 0.035 < depth[vi, ui] < z_cam  # the visible surface is in front of the centre
        # and the pixel shows the object's colour
        want = np.asarray(env.instance.objects[0].rgb)
        assert int(np.argmax(rgb[vi, ui])) == int(np.argmax(want))
        # bottom rows of the static camera see only the table top (z = 0)
        table = pts[-6:].reshape(-1, 3)
        assert np.all(np.abs(table[:, 2]) < 0.005), np.abs(table[:, 2]).max()
        # nothing the camera sees lies below the table
        assert np.nanmin(pts[..., 2]) > -0.005
    finally:
        env.close()


def test_principal_point_matches_the_rendered_image() -> None:
    client = p.connect(p.DIRECT)
    try:
        target = (0.45, 0.0, 0.1)
        vis = p.createVisualShape(p.GEOM_SPHERE, radius=0.06, rgbaColor=[1, 0, 0, 1], physicsClientId=client)
        p.createMultiBody(0, -1, vis, basePosition=target, physicsClientId=client)
        pose = CameraPose(eye=(0.9, 0.07, 0.5), target=target, fov_deg=50.0)
        w, h = 80, 60
        rgb, depth = render(client, pose, w, h, Lighting(), True)
        mask = (rgb[..., 0] > 50) & (depth > 0)  # depth 0 = no surface hit
        assert mask.sum() > 100
        v, u = np.nonzero(mask)
        cam = camera_info(pose, w, h)
        # the sphere sits on the optical axis, so its image is centred on the principal point
        assert abs((u + 0.5).mean() - cam.cx) < 0.25 and abs((v + 0.5).mean() - cam.cy) < 0.25
    finally:
        p.disconnect(client)


# --------------------------------------------------------------------------- experts and success


@pytest.mark.parametrize("arm", list(ARMS))
@pytest.mark.parametrize("task", TASKS)
def test_scripted_expert_solves_every_task(task: str, arm: str) -> None:
    factory = ExpertFactory("expert")
    for seed in range(3):
        job = EpisodeJob(index=seed, seed=seed, env=EnvConfig(task=task, arm=arm, image_size=SMALL,
                                                               render_images=False))
        summary = run_episode(job, factory)
        assert summary.success, (task, arm, seed, summary)
        assert summary.arm == arm and summary.task == task
        assert 1 <= summary.steps < job.env.max_steps


def test_noisy_expert_gives_mixed_quality_data() -> None:
    factory = ExpertFactory("noisy")
    results = []
    for k in range(12):
        task = TASKS[k % len(TASKS)]
        job = EpisodeJob(index=k, seed=100 + k, env=EnvConfig(task=task, image_size=SMALL, render_images=False))
        results.append(run_episode(job, factory).success)
    assert any(results) and not all(results), results


@pytest.mark.parametrize("task", TASKS)
def test_success_is_false_at_reset_and_under_random_actions(task: str) -> None:
    env = make_env(task=task, render_images=False, max_steps=15 if task in ("place_in", "stack") else 1)
    try:
        for seed in range(2):
            env.reset(seed=seed)
            assert not is_success(env.instance, env.world, env.arm.in_contact_with)
            rng = np.random.default_rng(seed)
            while True:
                _, reward, terminated, truncated, info = env.step(rng.uniform(env.action_space.low,
                                                                              env.action_space.high))
                assert not info["success"] and reward == 0.0 and not terminated
                if truncated:
                    break
    finally:
        env.close()


def _settle(env: ArmEnv, steps: int = 120) -> None:
    for _ in range(steps):
        p.stepSimulation(physicsClientId=env.client)


def _teleport(env: ArmEnv, body: int, xyz) -> None:
    p.resetBasePositionAndOrientation(body, xyz, [0, 0, 0, 1], physicsClientId=env.client)
    p.resetBaseVelocity(body, [0, 0, 0], [0, 0, 0], physicsClientId=env.client)


def _success(env: ArmEnv) -> bool:
    return is_success(env.instance, env.world, env.arm.in_contact_with)


def test_success_predicates_follow_the_object_state() -> None:
    """Place the object by hand: the predicate must flip exactly when the goal is met."""
    env = make_env(task="place_in", render_images=False)
    try:
        env.reset(seed=1)
        obj, cont = env.world.objects[0], env.instance.container
        _teleport(env, obj, (*cont.xy, 0.03))
        _settle(env)
        assert _success(env)
        _teleport(env, obj, (cont.xy[0], cont.xy[1] + cont.inner_half + 0.08, 0.02))  # next to the container
        _settle(env)
        assert not _success(env)
    finally:
        env.close()

    env = make_env(task="stack", render_images=False)
    try:
        env.reset(seed=1)
        obj, base = env.world.objects[0], env.world.objects[env.instance.base_index]
        bpos = np.asarray(p.getBasePositionAndOrientation(base, physicsClientId=env.client)[0])
        bquat = p.getBasePositionAndOrientation(base, physicsClientId=env.client)[1]
        p.resetBasePositionAndOrientation(obj, (bpos[0], bpos[1], bpos[2] + 0.041), bquat, physicsClientId=env.client)
        _settle(env)
        assert _success(env)
        _teleport(env, obj, (bpos[0] + 0.1, bpos[1], 0.02))  # beside the base, not on it
        _settle(env)
        assert not _success(env)
    finally:
        env.close()

    env = make_env(task="push_to", render_images=False)
    try:
        env.reset(seed=1)
        obj = env.world.objects[0]
        goal = next(r for r in env.instance.regions if r.name == env.instance.goal_region)
        other = next(r for r in env.instance.regions if r.name != env.instance.goal_region)
        _teleport(env, obj, (*other.xy, 0.02))
        _settle(env)
        assert not _success(env)  # the wrong pad
        _teleport(env, obj, (*goal.xy, 0.02))
        _settle(env)
        assert _success(env)
    finally:
        env.close()

    env = make_env(task="pick_lift", render_images=False)
    try:
        env.reset(seed=1)
        obj = env.world.objects[0]
        _teleport(env, obj, (0.5, 0.3, 0.2))  # high up but not held: not a lift
        assert not _success(env)
    finally:
        env.close()
