import math

import numpy as np
import pytest

from motionrag_suite.models.motion import MotionError, skeleton
from motionrag_suite.models.render import openpose
from motionrag_suite.models.render.camera import Camera, camera_targets
from motionrag_suite.models.render.skeleton3d import SIDE_COLOURS, render_3d

J = {n: i for i, n in enumerate(skeleton.JOINT_NAMES)}


def _rotation_matrices(rotvec):
    """Rodrigues' formula for (..., 3) rotation vectors -> (..., 3, 3)."""
    angle = np.linalg.norm(rotvec, axis=-1)[..., None, None]
    axis = rotvec / np.maximum(angle[..., 0], 1e-12)
    x, y, z = axis[..., 0], axis[..., 1], axis[..., 2]
    zero = np.zeros_like(x)
    k = np.stack([np.stack([zero, -z, y], -1), np.stack([z, zero, -x], -1), np.stack([-y, x, zero], -1)], -2)
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * (k @ k)


def synthetic_figure(frames=40, fps=20.0, speed=1.2, facing_deg=0.0, swing=0.5):
    """A walking stick figure built by forward kinematics on the pack's skeleton.

    Real SMPL poses have the head above the neck and shoulders level with the
    collars, so the rest offsets are adjusted to that (HumanML3D's rest
    directions point the head bone forward and the upper arms down).
    """
    offs = skeleton.rest_offsets()
    offs[J["head"]] = (0.0, 0.10, 0.02)
    offs[J["left_collar"]], offs[J["right_collar"]] = (0.07, 0.11, 0.0), (-0.07, 0.11, 0.0)
    offs[J["left_shoulder"]], offs[J["right_shoulder"]] = (0.12, -0.02, 0.0), (-0.12, -0.02, 0.0)
    t = np.arange(frames) / fps
    phase = 2 * np.pi * t
    rotvec = np.zeros((frames, 22, 3))
    rotvec[:, J["pelvis"], 1] = math.radians(facing_deg)
    rotvec[:, J["left_hip"], 0] = -swing * np.sin(phase)
    rotvec[:, J["right_hip"], 0] = swing * np.sin(phase)
    rotvec[:, J["left_knee"], 0] = 1.2 * swing * np.clip(np.sin(phase + 1.5), 0, None)
    rotvec[:, J["right_knee"], 0] = 1.2 * swing * np.clip(np.sin(phase + 1.5 + np.pi), 0, None)
    rotvec[:, J["left_shoulder"], 0] = 1.2 * swing * np.sin(phase)
    rotvec[:, J["right_shoulder"], 0] = -1.2 * swing * np.sin(phase)
    heading = np.array([math.sin(math.radians(facing_deg)), 0.0, math.cos(math.radians(facing_deg))])
    pos = np.zeros((frames, 22, 3))
    pos[:, 0] = np.array([0.0, 0.86, 0.0]) + (speed * t)[:, None] * heading
    rots = [None] * 22
    for j, p in enumerate(skeleton.PARENTS):
        local = _rotation_matrices(rotvec[:, j])
        if p < 0:
            rots[j] = local
            continue
        rots[j] = rots[p] @ local
        pos[:, j] = pos[:, p] + rots[p] @ offs[j]
    return pos.astype(np.float32)


def standing(frames=1, facing_deg=0.0):
    return synthetic_figure(frames, speed=0.0, swing=0.0, facing_deg=facing_deg)


def colour_at(img, xy):
    return img[int(round(xy[1])), int(round(xy[0]))].astype(int)


def near(colour, expected, tol=3):
    return bool(np.all(np.abs(np.asarray(colour, int) - np.asarray(expected, int)) <= tol))


# ---------------------------------------------------------------- camera

def test_projection_matches_hand_computed_pinhole():
    cam = Camera(azimuth_deg=0, elevation_deg=0, distance=5.0, fov_deg=60, width=320, height=240, target=(0, 1, 0))
    np.testing.assert_allclose(cam.position, [0, 1, 5], atol=1e-12)
    focal = 120 / math.tan(math.radians(30))
    # Camera on +Z looking toward -Z: depth = 5 - z, +X is image right, +Y image up.
    px, depth = cam.project(np.array([0.5, 1.3, -1.0]))
    assert depth == pytest.approx(6.0)
    np.testing.assert_allclose(px, [159.5 + focal * 0.5 / 6, 119.5 - focal * 0.3 / 6], atol=1e-9)

    # Orbiting 90 degrees counter-clockwise (seen from above) puts the camera on +X;
    # then +Z is on the image's left.
    side = Camera(90, 0, 5.0, 60, 320, 240, target=(0, 1, 0))
    np.testing.assert_allclose(side.position, [5, 1, 0], atol=1e-12)
    px, depth = side.project(np.array([0.0, 1.0, 1.0]))
    assert depth == pytest.approx(5.0)
    np.testing.assert_allclose(px, [159.5 - focal / 5, 119.5], atol=1e-9)

    # Positive elevation raises the camera: the target stays centred, the floor
    # under it appears below the centre.
    high = Camera(0, 30, 5.0, 60, 320, 240, target=(0, 1, 0))
    assert high.position[1] == pytest.approx(1 + 5 * math.sin(math.radians(30)))
    centre, _ = high.project(np.array([0.0, 1.0, 0.0]))
    floor, _ = high.project(np.array([0.0, 0.0, 0.0]))
    np.testing.assert_allclose(centre, [159.5, 119.5], atol=1e-9)
    assert floor[1] > 119.5 + 20


def test_camera_targets_follow_and_fixed():
    walk = synthetic_figure(60, speed=1.5)
    fixed = camera_targets(walk, follow=False)
    lo, hi = walk.reshape(-1, 3).min(0), walk.reshape(-1, 3).max(0)
    np.testing.assert_allclose(fixed, np.repeat(((lo + hi) / 2)[None], 60, 0), atol=1e-5)
    follow = camera_targets(walk, follow=True)
    assert np.ptp(follow[:, 1]) == 0
    # Tracks the pelvis along the walk (to within the smoothing), not the clip centre.
    assert np.abs(follow[:, 2] - walk[:, 0, 2]).max() < 0.1
    assert np.ptp(follow[:, 2]) > 3.0


# ---------------------------------------------------------------- 3D view

def test_render_3d_shape_dtype_and_content():
    walk = synthetic_figure(8)
    frames = render_3d(walk, width=160, height=128)
    assert frames.shape == (8, 128, 160, 3) and frames.dtype == np.uint8
    # A light background with a dark-ish figure and grid: wide value range.
    assert frames.mean() > 180 and frames.min() < 80
    for f in frames:
        assert f.std() > 5
    diffs = [np.abs(frames[i + 1].astype(int) - frames[i]).sum() for i in range(7)]
    assert min(diffs) > 0


def test_left_limbs_blue_on_image_right_when_facing_camera():
    pose = standing()
    frames = render_3d(pose, azimuth=0, elevation=0, distance=3.0, grid=False, trail=False, line_width=7)
    cam = Camera(0, 0, 3.0, 40.0, 512, 512, target=camera_targets(pose, True)[0])
    centre_x = 255.5
    for side, knee, ankle in (("left", "left_knee", "left_ankle"), ("right", "right_knee", "right_ankle")):
        mid = (pose[0, J[knee]] + pose[0, J[ankle]]) / 2
        px, _ = cam.project(mid)
        assert near(colour_at(frames[0], px), SIDE_COLOURS[side]), side
        assert (px[0] > centre_x) == (side == "left")
    # Seen from behind the sides swap in the image.
    back = render_3d(pose, azimuth=180, elevation=0, distance=3.0, grid=False, trail=False, line_width=7)
    cam = Camera(180, 0, 3.0, 40.0, 512, 512, target=camera_targets(pose, True)[0])
    px, _ = cam.project((pose[0, J["left_knee"]] + pose[0, J["left_ankle"]]) / 2)
    assert px[0] < centre_x and near(colour_at(back[0], px), SIDE_COLOURS["left"])


@pytest.mark.parametrize("azimuth,front", [(90, "left"), (-90, "right")])
def test_near_limbs_cover_far_ones(azimuth, front):
    # From the side both forearms project onto the same pixels; the near one must win.
    pose = standing()
    frames = render_3d(pose, azimuth=azimuth, elevation=0, distance=3.0, grid=False, trail=False, line_width=7)
    cam = Camera(azimuth, 0, 3.0, 40.0, 512, 512, target=camera_targets(pose, True)[0])
    mid = (pose[0, J[f"{front}_elbow"]] + pose[0, J[f"{front}_wrist"]]) / 2
    other = "right" if front == "left" else "left"
    mid_other = (pose[0, J[f"{other}_elbow"]] + pose[0, J[f"{other}_wrist"]]) / 2
    px, _ = cam.project(mid)
    px_other, _ = cam.project(mid_other)
    assert np.abs(px - px_other).max() < 3          # really overlapping
    assert near(colour_at(frames[0], px), SIDE_COLOURS[front])


def _figure_centre_x(frame):
    colourful = (np.abs(frame[..., 0].astype(int) - frame[..., 2]) > 80)   # red or blue limbs
    ys, xs = np.nonzero(colourful)
    assert len(xs) > 50
    return xs.mean()


def test_follow_keeps_figure_centred_fixed_lets_it_move():
    # Walking toward +X, seen from the front of the clip's start (camera on +Z).
    walk = synthetic_figure(40, speed=1.5, facing_deg=90)
    kwargs = dict(width=256, height=256, azimuth=0, elevation=10, distance=6.0, grid=False, trail=False)
    followed = [_figure_centre_x(f) for f in render_3d(walk, follow=True, **kwargs)]
    fixed = [_figure_centre_x(f) for f in render_3d(walk, follow=False, **kwargs)]
    assert max(abs(x - 127.5) for x in followed) < 12
    assert np.ptp(fixed) > 60
    assert fixed[-1] > fixed[0]         # moves toward +X = image right


def test_grid_only_when_requested():
    pose = standing()
    kwargs = dict(width=256, height=256, azimuth=30, elevation=20, distance=4.0, trail=False)
    with_grid = render_3d(pose, grid=True, **kwargs)[0].astype(int)
    without = render_3d(pose, grid=False, **kwargs)[0].astype(int)
    # Bottom rows show only floor: flat background rows without the grid, lines with it.
    floor_rows = slice(230, 256)
    assert np.ptp(without[floor_rows], axis=1).max() == 0
    assert np.ptp(with_grid[floor_rows], axis=1).max() > 20
    assert (np.abs(with_grid - without).sum(-1) > 30).sum() > 200


def test_trail_follows_pelvis_on_floor():
    walk = synthetic_figure(30, speed=1.5)
    kwargs = dict(width=256, height=256, azimuth=60, elevation=30, grid=False, follow=False)
    on = render_3d(walk, trail=True, **kwargs)[-1].astype(int)
    off = render_3d(walk, trail=False, **kwargs)[-1].astype(int)
    cam = Camera(60, 30, 4.0, 40.0, 256, 256, target=camera_targets(walk, False)[0])
    start = walk[0, 0].copy()
    start[1] = 0
    px, _ = cam.project((start + np.array([0, 0, 0.3])).astype(np.float64))
    assert np.abs(on[int(round(px[1])), int(round(px[0]))] - off[int(round(px[1])), int(round(px[0]))]).sum() > 60


def test_on_frame_called_each_frame_and_exceptions_stop_rendering():
    walk = synthetic_figure(6)
    seen = []
    render_3d(walk, width=64, height=64, on_frame=seen.append)
    assert seen == list(range(6))

    calls = []

    def cancel(i):
        calls.append(i)
        if i == 2:
            raise InterruptedError("cancelled")

    with pytest.raises(InterruptedError):
        render_3d(walk, width=64, height=64, on_frame=cancel)
    assert calls == [0, 1, 2]
    calls.clear()
    with pytest.raises(InterruptedError):
        openpose.render_openpose(walk, width=64, height=64, on_frame=cancel)
    assert calls == [0, 1, 2]


@pytest.mark.parametrize("render", [render_3d, lambda j, **k: openpose.render_openpose(j, **k)[0]])
def test_bad_inputs_raise_errors_naming_them(render):
    walk = synthetic_figure(4)
    with pytest.raises(ValueError, match="width"):
        render(walk, width=8)
    with pytest.raises(ValueError, match="height"):
        render(walk, height=5000)
    with pytest.raises(ValueError, match="width"):
        render(walk, width=100.5)
    long = np.repeat(walk[:1], 90, axis=0)          # 90 x 4096 x 4096 x 3 bytes > 4 GiB
    with pytest.raises(MotionError, match="90 frames at 4096x4096.*4 GiB"):
        render(long, width=4096, height=4096)
    bad = walk.copy()
    bad[2, 5, 1] = np.nan
    with pytest.raises(MotionError, match="NaN"):
        render(bad, width=64, height=64)
    with pytest.raises(MotionError, match=r"\(frames, 22, 3\)"):
        render(np.zeros((4, 17, 3)), width=64, height=64)
    with pytest.raises(ValueError, match="distance"):
        render(walk, width=64, height=64, distance=-1)
    with pytest.raises(ValueError, match="fov"):
        render(walk, width=64, height=64, fov=0)


def test_camera_inside_the_scene_does_not_break():
    # A close fixed camera with the figure walking past and behind it.
    walk = synthetic_figure(30, speed=3.0)
    frames = render_3d(walk, width=96, height=96, distance=0.3, follow=False, azimuth=0)
    assert frames.shape == (30, 96, 96, 3)
    frames, kps = openpose.render_openpose(walk, width=96, height=96, distance=0.3, follow=False)
    assert len(kps) == 30


# ---------------------------------------------------------------- OpenPose

def test_openpose18_keypoints_from_smpl_joints():
    walk = synthetic_figure(10)
    kp = openpose.joints_to_openpose18(walk)
    assert kp.shape == (10, 18, 3) and len(openpose.OPENPOSE_18) == 18 and len(openpose.LIMBS) == 17
    idx = {n: i for i, n in enumerate(openpose.OPENPOSE_18)}
    np.testing.assert_allclose(kp[:, idx["LWrist"]], walk[:, J["left_wrist"]], atol=1e-6)
    np.testing.assert_allclose(kp[:, idx["RHip"]], walk[:, J["right_hip"]], atol=1e-6)
    np.testing.assert_allclose(kp[:, idx["Neck"]],
                               (walk[:, J["left_shoulder"]] + walk[:, J["right_shoulder"]]) / 2, atol=1e-6)
    # Facing +Z: nose in front of the head, left eye/ear at +X of the right ones.
    head = walk[:, J["head"]]
    assert np.all(kp[:, idx["Nose"], 2] > head[:, 2] + 0.05)
    assert np.all(kp[:, idx["LEye"], 0] > kp[:, idx["REye"], 0])
    assert np.all(kp[:, idx["LEar"], 0] > kp[:, idx["REar"], 0])
    # Turned to face +X, the face turns too.
    turned = openpose.joints_to_openpose18(standing(facing_deg=90))
    head = standing(facing_deg=90)[0, J["head"]]
    assert turned[0, idx["Nose"], 0] > head[0] + 0.05
    assert abs(turned[0, idx["Nose"], 2] - head[2]) < 0.02


def _segment_distance(p, a, b):
    a, b, p = map(np.asarray, (a, b, p))
    t = np.clip(np.dot(p - a, b - a) / max(np.dot(b - a, b - a), 1e-9), 0, 1)
    return float(np.linalg.norm(p - (a + t * (b - a))))


def _keypoints(entry, w, h):
    flat = np.array(entry["pose_keypoints_2d"], dtype=float).reshape(18, 3)
    return [(x * w, y * h) if c > 0 else None for x, y, c in flat]


def test_openpose_limb_colours_match_table():
    pose = standing()
    pose[:, J["left_wrist"]] += (0.15, 0.1, 0)     # spread the arms away from the body
    pose[:, J["right_wrist"]] += (-0.15, 0.1, 0)
    frames, kps = openpose.render_openpose(pose, distance=2.5)
    img = frames[0].astype(int)
    pts = _keypoints(kps[0]["people"][0], 512, 512)
    checked = 0
    for i, (a, b) in enumerate(openpose.LIMBS):
        if pts[a] is None or pts[b] is None:
            continue
        mid = ((pts[a][0] + pts[b][0]) / 2, (pts[a][1] + pts[b][1]) / 2)
        covered = any(p is not None and math.dist(p, mid) < openpose.KEYPOINT_RADIUS + 2 for p in pts)
        covered |= any(pts[c] is not None and pts[d] is not None
                       and _segment_distance(mid, pts[c], pts[d]) < openpose.STICK_WIDTH + 2
                       for c, d in openpose.LIMBS[i + 1:])
        if covered:
            continue
        expected = [int(c * 0.6) for c in openpose.COLOURS[i]]
        assert list(img[int(mid[1]), int(mid[0])]) == expected, openpose.LIMBS[i]
        checked += 1
    assert checked >= 12
    # Black background, no antialiasing: every pixel is black or a table colour.
    palette = {tuple(c) for c in openpose.COLOURS} | {tuple(c) for c in openpose.LIMB_COLOURS} | {(0, 0, 0)}
    assert {tuple(c) for c in np.unique(img.reshape(-1, 3), axis=0)} <= palette


def test_openpose_keypoint_json_agrees_with_image():
    walk = synthetic_figure(5)
    frames, kps = openpose.render_openpose(walk, width=384, height=256, azimuth=20, distance=3.0)
    assert isinstance(kps, list) and len(kps) == 5
    for frame, entry in zip(frames, kps):
        assert set(entry) == {"people", "canvas_height", "canvas_width"}
        assert (entry["canvas_width"], entry["canvas_height"]) == (384, 256)
        person = entry["people"][0]
        assert set(person) == {"pose_keypoints_2d", "face_keypoints_2d", "hand_left_keypoints_2d",
                               "hand_right_keypoints_2d"}
        assert person["face_keypoints_2d"] is None and person["hand_left_keypoints_2d"] is None
        flat = person["pose_keypoints_2d"]
        assert len(flat) == 54 and all(isinstance(v, float) for v in flat)
        pts = _keypoints(person, 384, 256)
        for k, p in enumerate(pts):
            if p is None:
                continue
            assert 0 <= flat[3 * k] < 1 and 0 <= flat[3 * k + 1] < 1 and flat[3 * k + 2] == 1.0
            later_close = any(q is not None and math.dist(p, q) <= 2 * openpose.KEYPOINT_RADIUS
                              for q in pts[k + 1:])
            if not later_close:
                assert list(frame[int(p[1]), int(p[0])]) == list(openpose.COLOURS[k]), openpose.OPENPOSE_18[k]
        # The JSON reprojects the 3D keypoints with the same camera.
        idx = openpose.OPENPOSE_18.index("LWrist")
        assert pts[idx] is not None
    # The draw-free variant gives the same data.
    assert openpose.pose_keypoints(walk, width=384, height=256, azimuth=20, distance=3.0) == kps
    cam = Camera(20, 0, 3.0, 40.0, 384, 256, target=camera_targets(walk, True)[0])
    px, _ = cam.project(openpose.joints_to_openpose18(walk)[0, openpose.OPENPOSE_18.index("LWrist")])
    np.testing.assert_allclose(_keypoints(kps[0]["people"][0], 384, 256)[7], px, atol=1e-6)


def test_openpose_missing_keypoints_are_zero_and_not_drawn():
    pose = standing()
    # Close up: the ankles fall below the canvas.
    frames, kps = openpose.render_openpose(pose, distance=1.2)
    flat = kps[0]["people"][0]["pose_keypoints_2d"]
    for name in ("RAnkle", "LAnkle"):
        k = openpose.OPENPOSE_18.index(name)
        assert flat[3 * k: 3 * k + 3] == [0.0, 0.0, 0.0]
    knee_ankle = openpose.LIMBS.index((9, 10))
    colour = openpose.LIMB_COLOURS[knee_ankle]
    assert not np.all(frames[0] == colour, axis=-1).any()
    far, _ = openpose.render_openpose(pose, distance=4.0)
    assert np.all(far[0] == colour, axis=-1).any()

    # From behind the detector sees ears but no nose or eyes.
    _, kps = openpose.render_openpose(pose, azimuth=180, distance=3.0)
    flat = kps[0]["people"][0]["pose_keypoints_2d"]
    conf = {n: flat[3 * i + 2] for i, n in enumerate(openpose.OPENPOSE_18)}
    assert conf["Nose"] == conf["REye"] == conf["LEye"] == 0.0
    assert conf["REar"] == conf["LEar"] == 1.0

    # In profile (camera at the person's left) only the near eye and ear show.
    _, kps = openpose.render_openpose(pose, azimuth=90, distance=3.0)
    flat = kps[0]["people"][0]["pose_keypoints_2d"]
    conf = {n: flat[3 * i + 2] for i, n in enumerate(openpose.OPENPOSE_18)}
    assert conf["Nose"] == conf["LEye"] == conf["LEar"] == 1.0
    assert conf["REye"] == conf["REar"] == 0.0

    # Nobody in view: no people, like a detector on an empty picture.
    away = pose + np.array([50.0, 0, 0], dtype=np.float32)
    both = np.concatenate([pose, away])
    _, kps = openpose.render_openpose(both, follow=False, fov=10.0)
    assert all(entry["people"] == [] for entry in kps)


def test_builtin_clip_stays_in_view_with_the_following_camera():
    from motionrag_suite.models.motion import library

    clip = library.load_clip(library.DEFAULT_CLIP)
    frames = render_3d(clip.joints, width=192, height=192)
    for i, frame in enumerate(frames):
        red = np.all(np.abs(frame.astype(int) - SIDE_COLOURS["right"]) <= 3, axis=-1).sum()
        blue = np.all(np.abs(frame.astype(int) - SIDE_COLOURS["left"]) <= 3, axis=-1).sum()
        assert red > 20 and blue > 20, f"frame {i}: limbs missing"
    poses, kps = openpose.render_openpose(clip.joints, width=192, height=192)
    for i, entry in enumerate(kps):
        conf = np.array(entry["people"][0]["pose_keypoints_2d"]).reshape(18, 3)[:, 2]
        body = [k for k, n in enumerate(openpose.OPENPOSE_18) if not n.endswith(("Eye", "Ear")) and n != "Nose"]
        assert conf[body].all(), f"frame {i}: body keypoint out of view"
        assert poses[i].any()
