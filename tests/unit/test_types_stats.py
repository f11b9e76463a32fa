"""Shared contracts (ActionSpec, Observation, CameraInfo, backproject) and the Wilson interval."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest

from vla_runtime.stats import mcnemar_exact, wilson_interval
from vla_runtime.types import PROPRIO_NAMES, ActionSpec, CameraInfo, Observation, backproject

pytestmark = pytest.mark.unit

SPEC = ActionSpec()


# --------------------------------------------------------------------------- ActionSpec


def test_default_action_spec_is_consistent() -> None:
    assert SPEC.dim == 7 == len(SPEC.low) == len(SPEC.high)
    assert SPEC.names[SPEC.gripper_index] == "gripper"
    assert SPEC.low_array().dtype == np.float32 and SPEC.high_array().dtype == np.float32
    assert np.all(SPEC.low_array() < SPEC.high_array())


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"low": (0.1,) * 7, "high": (0.1,) * 7}, "low < high"),
        ({"low": (0.0,) * 7, "high": (1.0,) * 6 + (-1.0,)}, "low < high"),
        ({"low": (0.0,) * 6}, "lengths differ"),
        ({"high": (1.0,) * 8}, "lengths differ"),
        ({"gripper_index": 7}, "gripper_index"),
        ({"gripper_index": -1}, "gripper_index"),
        ({"chunk_length": 0}, "chunk_length"),
        ({"control_hz": 0.0}, "control_hz"),
        ({"control_hz": math.inf}, "control_hz"),
        ({"control_hz": math.nan}, "control_hz"),
    ],
)
def test_action_spec_rejects_bad_construction(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ActionSpec(**kwargs)


def test_action_spec_rejects_nan_bounds() -> None:
    with pytest.raises(ValueError):
        ActionSpec(low=(math.nan,) + SPEC.low[1:])


def test_validate_clips_out_of_range_values_to_bounds() -> None:
    a = np.array([0.5, -0.5, 0.01, 1.0, -1.0, 0.0, 2.0])
    out = SPEC.validate(a)
    assert out.dtype == np.float32 and out.shape == (7,)
    np.testing.assert_allclose(out, [0.03, -0.03, 0.01, 0.2, -0.2, 0.0, 1.0], rtol=0, atol=1e-7)
    # in-range actions pass through unchanged (only cast to float32)
    inside = np.array([0.01, -0.02, 0.0, 0.1, -0.1, 0.25, 0.5])
    np.testing.assert_array_equal(SPEC.validate(inside), inside.astype(np.float32))
    # chunks (T, 7) are validated row-wise
    chunk = np.tile(a, (3, 1))
    assert SPEC.validate(chunk).shape == (3, 7)
    np.testing.assert_array_equal(SPEC.validate(chunk)[2], out)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_validate_rejects_non_finite(bad: float) -> None:
    a = np.zeros(7)
    a[3] = bad
    with pytest.raises(ValueError, match="NaN or inf"):
        SPEC.validate(a)


@pytest.mark.parametrize("shape", [(6,), (8,), (7, 1), (), (0,)])
def test_validate_rejects_wrong_shape_and_names_it(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=re.escape(f"got shape {shape}")):
        SPEC.validate(np.zeros(shape))


def test_action_spec_dict_round_trip() -> None:
    spec = ActionSpec(chunk_length=4, control_hz=5.0, low=(-0.01,) * 6 + (0.0,), high=(0.02,) * 6 + (1.0,))
    assert ActionSpec.from_dict(spec.to_dict()) == spec


# --------------------------------------------------------------------------- Observation


def _obs(**kw) -> Observation:
    base = {
        "images": {"static": np.zeros((8, 10, 3), np.uint8)},
        "instruction": "pick up the red cube",
        "proprio": np.zeros(len(PROPRIO_NAMES), np.float64),
        "depth": {"static": np.ones((8, 10), np.float32)},
    }
    base.update(kw)
    return Observation(**base)


def test_valid_observation_casts_proprio_to_float32() -> None:
    obs = _obs()
    assert obs.proprio.dtype == np.float32 and obs.proprio.shape == (len(PROPRIO_NAMES),)


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"images": {}}, "at least one image"),
        ({"images": {"static": np.zeros((8, 10, 3), np.float32)}}, "uint8"),
        ({"images": {"static": np.zeros((8, 10), np.uint8)}}, "uint8"),
        ({"images": {"static": np.zeros((8, 10, 4), np.uint8)}}, "uint8"),
        ({"images": {"static": [[0]]}}, "list"),
        ({"instruction": ""}, "instruction"),
        ({"instruction": "   "}, "instruction"),
        ({"instruction": None}, "instruction"),
        ({"proprio": np.array([0.0, math.nan, 1.0])}, "proprio"),
        ({"proprio": np.array([0.0, math.inf])}, "proprio"),
        ({"proprio": np.zeros((2, 6))}, "proprio"),
        ({"depth": {"static": np.ones((10, 8), np.float32)}}, "shape"),
        ({"depth": {"wrist": np.ones((8, 10), np.float32)}}, "no matching image"),
    ],
)
def test_observation_rejects_bad_fields(kw: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        _obs(**kw)


# --------------------------------------------------------------------------- CameraInfo / backproject


def _look_at(eye, target, up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """OpenCV-convention camera-to-base pose (x right, y down, z forward)."""
    eye, target, up = (np.asarray(v, float) for v in (eye, target, up))
    z = (target - eye) / np.linalg.norm(target - eye)
    x = np.cross(z, up)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    t = np.eye(4)
    t[:3, 0], t[:3, 1], t[:3, 2], t[:3, 3] = x, y, z, eye
    return t


def test_camera_info_round_trip_and_intrinsics() -> None:
    pose = _look_at((0.9, 0.1, 0.5), (0.45, 0.0, 0.0))
    cam = CameraInfo(width=64, height=48, fx=70.5, fy=71.25, cx=32.0, cy=24.5, pose_base_cam=pose)
    d = cam.to_dict()
    back = CameraInfo.from_dict(json.loads(json.dumps(d)))
    assert (back.width, back.height, back.fx, back.fy, back.cx, back.cy) == (64, 48, 70.5, 71.25, 32.0, 24.5)
    np.testing.assert_array_equal(back.pose_base_cam, pose)
    assert back.pose_base_cam.dtype == np.float64
    np.testing.assert_array_equal(back.K, [[70.5, 0, 32.0], [0, 71.25, 24.5], [0, 0, 1]])


@pytest.mark.parametrize(
    "kw",
    [
        {"width": 0},
        {"height": -1},
        {"fx": 0.0},
        {"fy": -3.0},
        {"fx": math.nan},
        {"pose_base_cam": np.eye(3)},
        {"pose_base_cam": np.full((4, 4), math.nan)},
    ],
)
def test_camera_info_rejects_bad_values(kw: dict) -> None:
    args = {"width": 4, "height": 4, "fx": 1.0, "fy": 1.0, "cx": 2.0, "cy": 2.0, "pose_base_cam": np.eye(4)}
    args.update(kw)
    with pytest.raises(ValueError):
        CameraInfo(**args)


def test_backproject_downward_camera_recovers_plane_and_pixel_positions() -> None:
    # camera 1 m above the table looking straight down; image x along +x world, image y along -y world
    pose = _look_at((0.3, -0.1, 1.0), (0.3, -0.1, 0.0), up=(0.0, 1.0, 0.0))
    np.testing.assert_allclose(pose[:3, 0], [1, 0, 0], atol=1e-12)
    np.testing.assert_allclose(pose[:3, 1], [0, -1, 0], atol=1e-12)
    w, h, f = 8, 6, 10.0
    cam = CameraInfo(width=w, height=h, fx=f, fy=f, cx=w / 2, cy=h / 2, pose_base_cam=pose)
    depth = np.ones((h, w), np.float32)
    pts = backproject(depth, cam)
    assert pts.shape == (h * w, 3)
    np.testing.assert_allclose(pts[:, 2], 0.0, atol=1e-9)
    grid = pts.reshape(h, w, 3)
    for v, u in [(0, 0), (2, 5), (5, 7)]:
        x_expected = 0.3 + (u + 0.5 - w / 2) / f
        y_expected = -0.1 - (v + 0.5 - h / 2) / f
        np.testing.assert_allclose(grid[v, u], [x_expected, y_expected, 0.0], atol=1e-9)


def test_backproject_tilted_camera_lands_on_table_plane() -> None:
    eye = np.array([0.9, 0.05, 0.5])
    pose = _look_at(eye, (0.45, 0.0, 0.0))
    w, h, f = 16, 12, 14.0
    cam = CameraInfo(width=w, height=h, fx=f, fy=f * 1.1, cx=7.3, cy=6.2, pose_base_cam=pose)
    v, u = np.mgrid[0:h, 0:w]
    rays_cam = np.stack([(u + 0.5 - cam.cx) / cam.fx, (v + 0.5 - cam.cy) / cam.fy, np.ones_like(u, float)], -1)
    rays_base = rays_cam @ pose[:3, :3].T  # direction per unit optical depth
    depth = (-eye[2] / rays_base[..., 2]).astype(np.float64)  # optical depth where the ray meets z = 0
    assert np.all(depth > 0)
    pts = backproject(depth, cam).reshape(h, w, 3)
    np.testing.assert_allclose(pts[..., 2], 0.0, atol=1e-9)
    np.testing.assert_allclose(pts, eye + rays_base * depth[..., None], atol=1e-9)


def test_backproject_marks_missing_depth_nan_and_checks_size() -> None:
    cam = CameraInfo(width=4, height=3, fx=5.0, fy=5.0, cx=2.0, cy=1.5, pose_base_cam=np.eye(4))
    depth = np.ones((3, 4), np.float32)
    depth[1, 2] = 0.0
    depth[0, 0] = -1.0
    pts = backproject(depth, cam).reshape(3, 4, 3)
    assert np.all(np.isnan(pts[1, 2])) and np.all(np.isnan(pts[0, 0]))
    assert np.isfinite(pts).sum() == (12 - 2) * 3
    with pytest.raises(ValueError, match="4x3"):
        backproject(np.ones((4, 3), np.float32), cam)


# --------------------------------------------------------------------------- wilson_interval


@pytest.mark.parametrize(
    ("k", "n", "lo", "hi"),
    [
        (0, 10, 0.0, 0.27754),
        (10, 10, 0.72246, 1.0),
        (50, 50, 0.92865, 1.0),
        (20, 20, 0.83887, 1.0),
        (0, 50, 0.0, 0.07135),
        (5, 10, 0.23659, 0.76341),
        (1, 1, 0.20654, 1.0),
        (3, 20, 0.05236, 0.36041),
    ],
)
def test_wilson_interval_known_values(k: int, n: int, lo: float, hi: float) -> None:
    got_lo, got_hi = wilson_interval(k, n)
    assert got_lo == pytest.approx(lo, abs=2e-5)
    assert got_hi == pytest.approx(hi, abs=2e-5)
    assert 0.0 <= got_lo <= got_hi <= 1.0


def test_wilson_interval_contains_the_observed_rate_strictly_inside() -> None:
    for n in range(1, 60):
        for k in range(1, n):
            lo, hi = wilson_interval(k, n)
            assert 0.0 < lo < k / n < hi < 1.0, (k, n, lo, hi)


def test_wilson_interval_is_exact_at_the_boundaries() -> None:
    for n in range(1, 201):
        assert wilson_interval(0, n)[0] == 0.0, n
        assert wilson_interval(n, n)[1] == 1.0, n


def test_wilson_interval_symmetry_and_shrinkage() -> None:
    lo, hi = wilson_interval(5, 10)
    assert lo + hi == pytest.approx(1.0, abs=1e-12)
    lo2, hi2 = wilson_interval(50, 100)
    assert hi2 - lo2 < hi - lo  # more data, tighter interval
    a = wilson_interval(3, 20)
    b = wilson_interval(17, 20)
    assert a[0] == pytest.approx(1 - b[1]) and a[1] == pytest.approx(1 - b[0])
    assert wilson_interval(0, 0) == (0.0, 1.0)
    wide = wilson_interval(5, 10, z=2.575829)
    assert wide[0] < lo and wide[1] > hi


@pytest.mark.parametrize(("k", "n"), [(-1, 10), (11, 10), (1, -1), (0, -1), (1, 0)])
def test_wilson_interval_rejects_bad_counts(k: int, n: int) -> None:
    with pytest.raises(ValueError, match="successes"):
        wilson_interval(k, n)


def test_mcnemar_exact_on_hand_examples() -> None:
    # 10 discordant episodes all favouring b: p = 2 * 0.5^10
    r = mcnemar_exact([0] * 10 + [1] * 5, [1] * 10 + [1] * 5)
    assert (r["a_only"], r["b_only"]) == (0, 10) and r["p"] == pytest.approx(2 / 1024)
    # 3 vs 1 discordant: two-sided p = 2 * (1 + 4) / 16 = 0.625
    r = mcnemar_exact([1, 1, 1, 0, 1, 0], [0, 0, 0, 1, 1, 0])
    assert (r["a_only"], r["b_only"]) == (3, 1) and r["p"] == pytest.approx(0.625)
    assert mcnemar_exact([1, 0], [1, 0])["p"] == 1.0  # no discordant pairs
    with pytest.raises(ValueError, match="equal length"):
        mcnemar_exact([1], [1, 0])
