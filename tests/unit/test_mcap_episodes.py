"""vla_app.mcap_episodes: a recorder-style MCAP (written with ros_nodes.mcap_io's writer) becomes an episode whose
frames, proprioception and actions line up with what the robot saw and was told; broken inputs name the file
and topic."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="ROS 2 wheels not installed (the `ros` extra)")
pytest.importorskip("mcap_ros2", reason="mcap-ros2-support not installed (the `ros` extra)")

from std_msgs.msg import Bool, Float64, Header, String

from ros_nodes import convert
from ros_nodes.mcap_io import McapRecorder
from sim.arms import IKSolver, get_arm_spec
from sim.control import CartesianTarget, tcp_yaw
from vla_app.cli import main
from vla_app.mcap_episodes import McapEpisodeConfig, mcap_to_episode, mcaps_to_dataset
from vla_runtime.dataset import EpisodeDataset
from vla_runtime.types import CameraInfo

pytestmark = pytest.mark.unit
T = 5
T0, DT = 1_000_000_000, 100_000_000  # ns: the first tick, the control period (10 Hz)
CAM = CameraInfo(width=8, height=6, fx=10.0, fy=11.0, cx=4.0, cy=3.0, pose_base_cam=np.eye(4))


def _record(path: Path, skip: tuple[str, ...] = (), info: CameraInfo = CAM, success: bool = True) -> dict:
    """A T-step run as the recorder logs it; returns the ground truth the episode must reproduce."""
    rng = np.random.default_rng(0)
    spec = get_arm_spec("panda")
    ik = IKSolver(spec)
    arm, fingers = ik.joint_names(spec.ik_joints), ik.joint_names(spec.gripper.joints)
    qs = [np.asarray(spec.rest_pose, float) + rng.uniform(-0.2, 0.2, len(arm)) for _ in range(T + 1)]
    width = rng.uniform(0.01, 0.04, T + 1)
    pos, quat = ik.fk(qs[0])
    target = CartesianTarget(pos, quat)
    target.reset((target.low + target.high) / 2, quat)  # mid-workspace: no step is clipped
    actions = np.concatenate([rng.uniform(-0.01, 0.01, (T, 3)), rng.uniform(-0.05, 0.05, (T, 3)),
                              rng.integers(0, 2, (T, 1))], axis=1).astype(np.float32)
    poses = [(target.pos.copy(), target.quat.copy())]
    for a in actions:
        target.apply(a)
        poses.append((target.pos.copy(), target.quat.copy()))
    frames = rng.integers(1, 256, (T + 1, 6, 8, 3), dtype=np.uint8)
    proprio = []
    for q, w in zip(qs, width):
        p, o = ik.fk(q)
        proprio.append(np.concatenate([p, [tcp_yaw(o), ik.gripper_width(np.full(len(fingers), w / 2))], q[:7]]))
    ik.close()
    h = Header(frame_id="base")

    def put(topic: str, msg, stamp: int) -> None:
        if topic.strip("/") not in skip:
            rec.write(topic, msg, stamp)

    with McapRecorder(path, flush_period_s=60.0) as rec:
        put("/instruction", String(data="push the red block"), T0 - 50_000_000)
        put("/camera/camera_info", convert.camera_info_to_msg(info, h), T0 - 40_000_000)
        put("/sim_robot/success", Bool(data=False), T0 - 30_000_000)
        for k in range(T + 1):
            t = T0 + k * DT
            put("/camera/image_raw", convert.rgb_to_image(frames[k], h), t - 2_000_000)
            put("/joint_states", convert.joint_state(arm + fingers, np.concatenate([qs[k], [width[k] / 2] * 2]), h),
                t - 1_000_000)
            put("/ee_target", convert.pose_stamped(*poses[k], h), t)
            if k > 0:  # the tick's gripper command, logged just after its target
                put("/gripper_command", Float64(data=float(actions[k - 1, 6])), t + 100_000)
            # a newer frame after the decision: never an observation of this step (zeros, never drawn above)
            put("/camera/image_raw", convert.rgb_to_image(np.zeros((6, 8, 3), np.uint8), h), t + 30_000_000)
        put("/sim_robot/success", Bool(data=success), T0 + T * DT + 1_000_000)
    return {"actions": actions, "frames": frames, "proprio": np.asarray(proprio, np.float32)}


def test_episode_lines_up_frames_proprio_and_actions(tmp_path: Path) -> None:
    truth = _record(tmp_path / "run.mcap")
    ep = mcap_to_episode(tmp_path / "run.mcap", McapEpisodeConfig())
    assert ep.length == T
    np.testing.assert_array_equal(ep.images["static"], truth["frames"])
    np.testing.assert_allclose(ep.proprio, truth["proprio"], atol=1e-5)
    np.testing.assert_allclose(ep.actions, truth["actions"], atol=1e-6)  # CartesianTarget.apply inverted
    assert ep.successes.tolist() == [False] * (T - 1) + [True] and ep.rewards.tolist() == [0.0] * (T - 1) + [1.0]
    assert ep.meta["instruction"] == "push the red block" and ep.meta["success"] is True
    assert ep.meta["action_spec"]["control_hz"] == pytest.approx(10.0)
    assert CameraInfo.from_dict(ep.meta["cameras"]["static"]).fy == 11.0


def test_success_given_when_not_recorded(tmp_path: Path) -> None:
    _record(tmp_path / "run.mcap", skip=("sim_robot/success",))
    with pytest.raises(ValueError, match="sim_robot/success"):
        mcap_to_episode(tmp_path / "run.mcap", McapEpisodeConfig())
    ep = mcap_to_episode(tmp_path / "run.mcap", McapEpisodeConfig(success=False))
    assert ep.meta["success"] is False and not ep.successes.any()


@pytest.mark.parametrize("topic", ["joint_states", "ee_target", "camera/camera_info", "gripper_command"])
def test_a_missing_topic_is_named(tmp_path: Path, topic: str) -> None:
    _record(tmp_path / "run.mcap", skip=(topic,))
    with pytest.raises(ValueError, match=f"run.mcap: no topic '{topic}'"):
        mcap_to_episode(tmp_path / "run.mcap", McapEpisodeConfig())


def test_missing_instruction_and_mismatched_camera_info_are_named(tmp_path: Path) -> None:
    _record(tmp_path / "a.mcap", skip=("instruction",))
    with pytest.raises(ValueError, match=r"a.mcap: none of the instruction topics"):
        mcap_to_episode(tmp_path / "a.mcap", McapEpisodeConfig())
    wrong = CameraInfo(width=9, height=6, fx=10.0, fy=10.0, cx=4.0, cy=3.0, pose_base_cam=np.eye(4))
    _record(tmp_path / "b.mcap", info=wrong)
    with pytest.raises(ValueError, match=r"b.mcap: topic '/camera/camera_info': CameraInfo 9x6"):
        mcap_to_episode(tmp_path / "b.mcap", McapEpisodeConfig())


def test_corrupt_and_missing_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.mcap"
    bad.write_bytes(b"not an mcap at all" * 10)
    with pytest.raises(ValueError, match="bad.mcap"):
        mcap_to_episode(bad, McapEpisodeConfig())
    with pytest.raises(FileNotFoundError, match="gone.mcap"):
        mcaps_to_dataset([tmp_path / "gone.mcap"], tmp_path / "out", McapEpisodeConfig())


def test_cli_writes_a_dataset_and_keeps_the_output_rule(tmp_path: Path, capsys) -> None:
    _record(tmp_path / "a.mcap")
    _record(tmp_path / "b.mcap", success=False)
    out = tmp_path / "ds"
    assert main(["dataset", "from-mcap", str(tmp_path / "a.mcap"), str(tmp_path / "b.mcap"), "--out", str(out)]) == 0
    data = EpisodeDataset(out)
    assert len(data) == 2 and data.meta(0)["success"] is True and data.meta(1)["success"] is False
    assert data.num_steps == 2 * T
    assert main(["dataset", "from-mcap", str(tmp_path / "a.mcap"), "--out", str(out)]) == 0  # its own output
    assert len(EpisodeDataset(out)) == 1
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    capsys.readouterr()
    assert main(["dataset", "from-mcap", str(tmp_path / "a.mcap"), "--out", str(precious)]) == 2
    assert "not a dataset converted from MCAP" in capsys.readouterr().err
    assert (precious / "notes.txt").read_text() == "keep me"
    assert not list(tmp_path.glob(".tmp-*"))  # the failed and finished runs left no temp folder
