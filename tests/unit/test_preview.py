"""The compact joint payload the browser preview widget reads."""
import base64
import json

import numpy as np
import pytest

from motionrag_suite.models.motion import Motion, MotionError, library, skeleton
from motionrag_suite.models.motion.preview import (FORMAT, MAX_PREVIEW_FRAMES, decode_payload,
                                                   preview_payload)


def test_payload_is_json_and_round_trips_to_the_millimetre():
    motion = library.load_clip("cartwheel")
    payload = preview_payload(motion, score=0.8125)
    text = json.dumps(payload)
    back = json.loads(text)
    assert back["format"] == FORMAT and back["dtype"] == "int16"
    assert back["frames"] == motion.num_frames and back["fps"] == motion.fps
    assert back["joints"] == skeleton.NUM_JOINTS and back["parents"] == list(skeleton.PARENTS)
    assert back["caption"] == motion.caption and back["score"] == 0.8125 and back["name"] == "cartwheel"
    assert back["decimated"] is None and back["scale"] == 0.001
    decoded = decode_payload(back)
    assert decoded.shape == motion.joints.shape
    assert np.abs(decoded - motion.joints).max() <= 0.0005 + 1e-6  # half a millimetre: rounding only
    # int16 data is 2 bytes a value: the payload is the data plus a small header.
    raw = base64.b64decode(back["data"])
    assert len(raw) == motion.num_frames * 22 * 3 * 2
    assert len(text) < len(back["data"]) + 1000


def test_sides_and_bounds_describe_the_skeleton():
    motion = library.load_clip("walk")
    payload = preview_payload(motion)
    assert payload["sides"][skeleton.JOINT_NAMES.index("left_wrist")] == "l"
    assert payload["sides"][skeleton.JOINT_NAMES.index("right_knee")] == "r"
    assert payload["sides"][0] == "c" and payload["head"] == skeleton.JOINT_NAMES.index("head")
    lo, hi = np.array(payload["bounds"])
    assert np.allclose(lo, motion.joints.reshape(-1, 3).min(0), atol=1e-6)
    assert np.allclose(hi, motion.joints.reshape(-1, 3).max(0), atol=1e-6)


def test_caption_override_and_no_score():
    payload = preview_payload(library.load_clip("jump"), caption="a person jumps")
    assert payload["caption"] == "a person jumps" and payload["score"] is None


def test_long_motion_is_decimated_and_says_so():
    base = library.load_clip("run").joints
    joints = np.concatenate([base] * (MAX_PREVIEW_FRAMES // len(base) + 2))
    motion = Motion(joints, fps=30.0)
    payload = preview_payload(motion)
    stride = payload["decimated"]["stride"]
    assert stride == -(-len(joints) // MAX_PREVIEW_FRAMES) and stride >= 2
    assert payload["frames"] == len(joints[::stride]) <= MAX_PREVIEW_FRAMES
    assert payload["fps"] == pytest.approx(30.0 / stride)
    assert payload["decimated"]["source_frames"] == len(joints)
    assert payload["decimated"]["source_fps"] == 30.0
    assert np.abs(decode_payload(payload) - joints[::stride]).max() <= 0.0005 + 1e-6


def test_far_travel_coarsens_the_scale_instead_of_overflowing():
    motion = library.load_clip("walk")
    joints = motion.joints.copy()
    joints[:, :, 2] += np.linspace(0, 100.0, len(joints))[:, None]  # 100 m along Z
    payload = preview_payload(Motion(joints, fps=motion.fps))
    assert payload["scale"] == 0.004  # 100 m / 32767 needs 4 mm units
    assert np.abs(decode_payload(payload) - joints).max() <= payload["scale"] / 2 + 1e-6


def test_errors_name_the_input():
    motion = library.load_clip("walk")
    with pytest.raises(MotionError, match="motion: expected a Motion"):
        preview_payload({"joints": motion.joints})
    with pytest.raises(MotionError, match="score"):
        preview_payload(motion, score="high")
    with pytest.raises(MotionError, match="score"):
        preview_payload(motion, score=float("nan"))
    with pytest.raises(MotionError, match="max_frames"):
        preview_payload(motion, max_frames=0)
    bad = preview_payload(motion)
    bad["frames"] += 1
    with pytest.raises(MotionError, match="frames\\*joints\\*3"):
        decode_payload(bad)


def test_load_motion_node_puts_the_preview_in_its_ui_output():
    from motionrag_suite.nodes.motion_nodes import LoadMotion

    out = getattr(LoadMotion(), LoadMotion.FUNCTION)(clip="kick")  # what ComfyUI calls
    assert set(out) == {"ui", "result"}
    (payload,) = out["ui"]["motionrag_motion"]
    motion_data, caption, frames = out["result"]
    assert payload["frames"] == frames and payload["caption"] == caption and payload["name"] == "kick"
    assert np.abs(decode_payload(payload) - motion_data["joints"]).max() <= 0.0005 + 1e-6
