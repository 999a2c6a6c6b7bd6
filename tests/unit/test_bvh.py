"""BVH export/import: round trips, a hand-written file, every malformed case, Blender's importer."""
import contextlib
import json
import shutil
import subprocess

import numpy as np
import pytest

from motionrag_suite.models.motion import bvh_format as BF
from motionrag_suite.models.motion import bvh_read as BR
from motionrag_suite.models.motion import bvh_write as BW
from motionrag_suite.models.motion import rig_names
from motionrag_suite.models.motion import skeleton as S
from motionrag_suite.models.motion.motion import Motion, MotionError

from .test_humanml3d import LIBRARY_FILE, max_error, rigid_walk_joints, walk_joints

MM = 1e-3


@pytest.fixture(scope="module")
def rigid_motion():
    return Motion(joints=rigid_walk_joints(150, 0), fps=30.0, name="rigid")


def parse_rest(text):
    """{joint name: OFFSET} of a BVH text (the first OFFSET after each ROOT/JOINT line)."""
    offsets, current = {}, None
    for line in text.splitlines():
        words = line.split()
        if words and words[0] in ("ROOT", "JOINT"):
            current = words[1]
        elif words and words[0] == "OFFSET" and current is not None:
            offsets[current] = np.array(words[1:4], dtype=float)
            current = None
    return offsets


# ----------------------------------------------------------------------------- export

def test_hierarchy_layout(rigid_motion):
    text = BW.motion_to_bvh_text(rigid_motion)
    lines = [line.split() for line in text.splitlines()]
    names = [w[1] for w in lines if w and w[0] in ("ROOT", "JOINT")]
    assert names[0] == "pelvis" and sorted(names) == sorted(S.JOINT_NAMES)
    channels = [w for w in lines if w and w[0] == "CHANNELS"]
    assert channels[0] == ["CHANNELS", "6", "Xposition", "Yposition", "Zposition", "Zrotation", "Xrotation", "Yrotation"]
    assert all(w == ["CHANNELS", "3", "Zrotation", "Xrotation", "Yrotation"] for w in channels[1:])
    assert sum(1 for w in lines if w[:2] == ["End", "Site"]) == 5
    assert ["Frames:", "150"] in lines
    frame_time = next(float(w[2]) for w in lines if w[:2] == ["Frame", "Time:"])
    assert abs(frame_time - 1 / 30) < 1e-9
    rows = lines[lines.index(["MOTION"]) + 3:]
    assert len(rows) == 150 and all(len(r) == 6 + 21 * 3 for r in rows)


def test_rest_pose_is_anatomical():
    """Legs down, spine/neck/head up, collars and arms out sideways, feet forward, and bone
    lengths = the motion's median lengths."""
    motion = Motion(joints=walk_joints(100, 1))
    rest = parse_rest(BW.motion_to_bvh_text(motion))
    lengths = np.median(S.bone_lengths(motion.joints), axis=0)
    for name in ("left_knee", "right_knee", "left_ankle", "right_ankle"):
        assert rest[name][1] < -0.99 * np.linalg.norm(rest[name])
    for name in ("spine2", "spine3", "head"):
        assert rest[name][1] > 0.99 * np.linalg.norm(rest[name])
    for name in ("left_shoulder", "left_elbow", "left_wrist"):
        assert rest[name][0] > 0.99 * np.linalg.norm(rest[name])
        assert rest[name.replace("left", "right")][0] < -0.99 * np.linalg.norm(rest[name])
    for name in ("left_foot", "right_foot"):
        assert rest[name][2] > 0.99 * np.linalg.norm(rest[name])
    assert rest["left_hip"][0] > 0 > rest["right_hip"][0] and rest["spine1"][1] > 0 and rest["neck"][1] > 0
    assert rest["left_collar"][0] > 0 > rest["right_collar"][0]
    for i, name in enumerate(S.JOINT_NAMES[1:], 1):
        assert np.linalg.norm(rest[name]) == pytest.approx(lengths[i], abs=2e-6), name


@pytest.mark.parametrize("scale", [1.0, 100.0])
def test_round_trip_of_a_rigid_motion(rigid_motion, tmp_path, scale):
    path = BW.save_bvh(rigid_motion, tmp_path / "clip.bvh", scale=scale)
    back = BR.load_bvh(path)
    assert back.num_frames == rigid_motion.num_frames and back.fps == pytest.approx(30.0)
    assert back.provenance["unit_scale"] == (1.0 if scale == 1.0 else 0.01)
    assert max_error(back.joints, rigid_motion.joints) < MM
    assert back.name == "clip"


@pytest.mark.parametrize("fps", [20.0, 24.0, 60.0, 12.5])
def test_frame_rate_round_trip(tmp_path, fps):
    motion = Motion(joints=rigid_walk_joints(20, 2), fps=fps)
    assert BR.load_bvh(BW.save_bvh(motion, tmp_path / "a.bvh")).fps == pytest.approx(fps, rel=1e-9)
    assert BR.load_bvh(tmp_path / "a.bvh", fps=10.0).fps == 10.0


def test_non_rigid_motion_is_approximated_not_broken():
    """HumanML3D-style joints whose hips and collars move independently cannot be exact in
    BVH (one rotation per joint); the fit stays within a few centimetres and every bone
    below the branch joints keeps its direction."""
    joints = walk_joints(100, 3)
    back = BR.bvh_text_to_motion(BW.motion_to_bvh_text(Motion(joints=joints))).joints
    assert max_error(back, joints) < 0.15
    for parent, child in ((4, 7), (7, 10), (18, 20), (16, 18)):
        a = joints[:, child] - joints[:, parent]
        b = back[:, child] - back[:, parent]
        cos = np.sum(a * b, -1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)
        assert cos.min() > 0.99999


@pytest.mark.skipif(not LIBRARY_FILE.exists(), reason="models/motion/data/builtin_motions.npz is not built yet")
def test_round_trip_of_every_builtin_clip():
    """The built-in clips come from a rigid humanoid, so BVH reproduces them exactly."""
    from motionrag_suite.models.motion import library

    for name in library.list_clips():
        clip = library.load_clip(name)
        back = BR.bvh_text_to_motion(BW.motion_to_bvh_text(clip, scale=100.0))
        assert back.num_frames == clip.num_frames and back.fps == pytest.approx(clip.fps)
        assert max_error(back.joints, clip.joints) < MM, name


def parse_hierarchy(text):
    """[(joint name, parent name or None)] of a BVH text, in file order."""
    stack, pairs, pending = [], [], None
    for line in text.split("MOTION")[0].splitlines():
        words = line.split()
        if words and words[0] in ("ROOT", "JOINT"):
            pending = words[1]
            pairs.append((pending, stack[-1] if stack else None))
        elif words[:2] == ["End", "Site"]:
            pending = "<end>"
        elif words == ["{"]:
            stack.append(pending)
        elif words == ["}"]:
            stack.pop()
    return pairs


def test_mixamo_naming_names_hierarchy_and_t_pose(rigid_motion):
    """Mixamo's names, on our hierarchy (Hips > Spine > Spine1 > Spine2 > Neck > Head, Spine2 >
    Shoulder > Arm > ForeArm > Hand, Hips > UpLeg > Leg > Foot > ToeBase), resting in a T-pose;
    nothing but the names differs from the pack's own naming."""
    smpl = BW.motion_to_bvh_text(rigid_motion)
    mixamo = BW.motion_to_bvh_text(rigid_motion, naming="mixamo")
    pairs = dict(parse_hierarchy(mixamo))
    assert list(pairs)[0] == "mixamorig:Hips" and pairs["mixamorig:Hips"] is None
    assert len(pairs) == S.NUM_JOINTS and all(n.startswith("mixamorig:") for n in pairs)
    for child, parent in [("Spine", "Hips"), ("Spine1", "Spine"), ("Spine2", "Spine1"), ("Neck", "Spine2"),
                          ("Head", "Neck"), ("LeftShoulder", "Spine2"), ("LeftArm", "LeftShoulder"),
                          ("LeftForeArm", "LeftArm"), ("LeftHand", "LeftForeArm"), ("RightShoulder", "Spine2"),
                          ("RightArm", "RightShoulder"), ("RightForeArm", "RightArm"), ("RightHand", "RightForeArm"),
                          ("LeftUpLeg", "Hips"), ("LeftLeg", "LeftUpLeg"), ("LeftFoot", "LeftLeg"),
                          ("LeftToeBase", "LeftFoot"), ("RightUpLeg", "Hips"), ("RightLeg", "RightUpLeg"),
                          ("RightFoot", "RightLeg"), ("RightToeBase", "RightFoot")]:
        assert pairs["mixamorig:" + child] == "mixamorig:" + parent, child
    # the same skeleton as the pack's naming, joint for joint
    ours = dict(parse_hierarchy(smpl))
    rename = dict(zip(S.JOINT_NAMES, rig_names.MIXAMO_NAMES))
    assert {rename[c]: rename.get(p) for c, p in ours.items()} == pairs
    renamed = smpl
    for a, b in rename.items():
        renamed = renamed.replace(f"ROOT {a}\n", f"ROOT {b}\n").replace(f"JOINT {a}\n", f"JOINT {b}\n")
    assert renamed == mixamo
    # T-pose: arms straight out to their side, legs down, spine up, feet forward
    rest = parse_rest(mixamo)
    for side, sign in (("Left", 1.0), ("Right", -1.0)):
        for name in ("Arm", "ForeArm", "Hand"):
            offset = rest[f"mixamorig:{side}{name}"]
            assert sign * offset[0] > 0.99 * np.linalg.norm(offset) > 0.05, (side, name, offset)
        for name in ("Leg", "Foot"):
            offset = rest[f"mixamorig:{side}{name}"]
            assert -offset[1] > 0.99 * np.linalg.norm(offset) > 0.2, (side, name, offset)
        assert rest[f"mixamorig:{side}ToeBase"][2] > 0.99 * np.linalg.norm(rest[f"mixamorig:{side}ToeBase"])
    for name in ("Spine1", "Spine2", "Head"):
        assert rest["mixamorig:" + name][1] > 0.99 * np.linalg.norm(rest["mixamorig:" + name])


@pytest.mark.parametrize("naming", ["smpl", "mixamo"])
def test_mixamo_round_trip_gives_the_joints_back(rigid_motion, tmp_path, naming):
    path = BW.save_bvh(rigid_motion, tmp_path / "clip.bvh", scale=100.0, naming=naming)
    back = BR.load_bvh(path)
    assert back.num_frames == rigid_motion.num_frames and back.provenance["unit_scale"] == 0.01
    assert max_error(back.joints, rigid_motion.joints) < MM
    # a motion with varying bone lengths reads back the same whichever naming wrote it
    loose = Motion(joints=walk_joints(40, 5))
    a = BR.bvh_text_to_motion(BW.motion_to_bvh_text(loose, naming=naming)).joints
    b = BR.bvh_text_to_motion(BW.motion_to_bvh_text(loose)).joints
    assert np.array_equal(a, b)


def test_unknown_naming_is_refused(rigid_motion, tmp_path):
    with pytest.raises(MotionError, match="^naming: 'unreal'"):
        BW.save_bvh(rigid_motion, tmp_path / "x.bvh", naming="unreal")
    assert not (tmp_path / "x.bvh").exists()


def test_mixamo_prefix_variants_and_unprefixed_names():
    """Files from Mixamo carry "mixamorig:", or "mixamorig1:" ... when rigs share a scene, or "_" for ":"
    (some exporters). Mixamo's LeftShoulder is our left_collar, but an unprefixed LeftShoulder keeps
    meaning our left_shoulder, as it did before Mixamo names were read."""
    text = BW.motion_to_bvh_text(Motion(joints=rigid_walk_joints(8, 6)), naming="mixamo")
    expected = BR.bvh_text_to_motion(text).joints
    for prefix in ("mixamorig1:", "mixamorig_", "MIXAMORIG:"):
        back = BR.bvh_text_to_motion(text.replace("mixamorig:", prefix)).joints
        assert np.array_equal(back, expected), prefix
    assert BF.joint_index("mixamorig:LeftShoulder") == S.JOINT_NAMES.index("left_collar")
    assert BF.joint_index("mixamorig:LeftArm") == S.JOINT_NAMES.index("left_shoulder")
    assert BF.joint_index("LeftShoulder") == S.JOINT_NAMES.index("left_shoulder")
    assert BF.joint_index("mixamorig:LeftHandIndex1") is None


# ----------------------------------------------------------------------------- import

def axis_rotation(axis, degrees):
    """Right-handed rotation matrix about X, Y or Z, written out by hand."""
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    return {"X": np.array([[1, 0, 0], [0, c, -s], [0, s, c]]),
            "Y": np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]),
            "Z": np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])}[axis]


SMPL_NAMES = ("Pelvis", "L_Hip", "R_Hip", "Spine1", "L_Knee", "R_Knee", "Spine2", "L_Ankle", "R_Ankle",
              "Spine3", "L_Foot", "R_Foot", "Neck", "L_Collar", "R_Collar", "Head", "L_Shoulder",
              "R_Shoulder", "L_Elbow", "R_Elbow", "L_Wrist", "R_Wrist")
ORDERS = ("XYZ", "YXZ", "ZYX", "YZX", "XZY", "ZXY")


def handwritten_bvh(frames=4, seed=0):
    """A BVH in centimetres with SMPL names, a different rotation order per joint, position
    channels on a non-root joint, an extra hand joint, tabs and CRLF line ends; and the
    world positions (metres) it describes, computed independently of the parser."""
    rng = np.random.default_rng(seed)
    offsets = {j: np.round(rng.uniform(-12, 12, 3), 4) for j in range(22)}
    offsets[0] = np.array([1.0, 2.0, 3.0])
    children = {j: [c for c, p in enumerate(S.PARENTS) if p == j] for j in range(22)}
    spec, lines = [], ["HIERARCHY"]

    def write(j, depth, kind):
        tab = "\t" * depth
        order = ORDERS[j % 6]
        lines.append(f"{tab}{kind} {SMPL_NAMES[j]}")
        lines.append(tab + "{")
        lines.append(f"{tab}\tOFFSET {offsets[j][0]:.4f} {offsets[j][1]:.4f} {offsets[j][2]:.4f}")
        chans = [f"{a}rotation" for a in order]
        if j == 0:
            chans = ["Xposition", "Zposition", "Yposition"] + chans[:1] + chans[1:]
        if j == 3:   # spine1 gets a stretching Y position channel between its rotations
            chans = chans[:1] + ["Yposition"] + chans[1:]
        lines.append(f"{tab}\tCHANNELS {len(chans)} {' '.join(chans)}")
        spec.append((j, chans))
        for c in children[j]:
            write(c, depth + 1, "JOINT")
        if j == 20:  # an extra joint we do not use
            lines.append(f"{tab}\tJOINT L_Hand\n{tab}\t{{\n{tab}\t\tOFFSET 8 0 0\n{tab}\t\tCHANNELS 3 Zrotation Yrotation Xrotation")
            lines.append(f"{tab}\t\tEnd Site\n{tab}\t\t{{\n{tab}\t\t\tOFFSET 5 0 0\n{tab}\t\t}}\n{tab}\t}}")
            spec.append((None, ["Zrotation", "Yrotation", "Xrotation"]))
        elif not children[j]:
            lines.append(f"{tab}\tEnd Site\n{tab}\t{{\n{tab}\t\tOFFSET 0 5 0\n{tab}\t}}")
        lines.append(tab + "}")

    write(0, 0, "ROOT")
    lines += ["MOTION", f"Frames:\t{frames}", "Frame Time: 0.0333333"]
    values = {}
    rows = []
    for f in range(frames):
        row = []
        for j, chans in spec:
            for ch in chans:
                v = round(rng.uniform(-60, 60) if ch.endswith("rotation") else rng.uniform(-20, 200), 5)
                values[(f, j, ch)] = v
                row.append(v)
        rows.append("\t".join(f"{v:.5f}" for v in row))
    lines += rows
    text = "\r\n".join(lines) + "\r\n"

    expected = np.zeros((frames, 22, 3))
    for f in range(frames):
        world_rot, world_pos = {}, {}
        for j, chans in spec:
            if j is None:
                continue
            local = np.eye(3)
            for ch in chans:          # BVH: rotation channels compose left to right, R = R1 @ R2 @ R3
                if ch.endswith("rotation"):
                    local = local @ axis_rotation(ch[0], values[(f, j, ch)])
            t = offsets[j].copy()
            for ch in chans:
                if ch.endswith("position"):
                    t["XYZ".index(ch[0])] = values[(f, j, ch)]
            p = S.PARENTS[j]
            if p < 0:
                world_rot[j], world_pos[j] = local, t
            else:
                world_rot[j] = world_rot[p] @ local
                world_pos[j] = world_pos[p] + world_rot[p] @ t
            expected[f, j] = world_pos[j] / 100.0
    return text, expected


def test_parse_handwritten_bvh_with_other_channel_orders(tmp_path):
    text, expected = handwritten_bvh()
    path = tmp_path / "smpl.bvh"
    path.write_bytes(text.encode())
    motion = BR.load_bvh(path)
    assert motion.provenance["unit_scale"] == 0.01           # ~40 units tall: centimetres
    assert motion.fps == pytest.approx(30.0, rel=1e-5)
    assert max_error(motion.joints, expected) < 1e-6
    metres = BR.load_bvh(path, scale=1.0)
    assert max_error(metres.joints, expected * 100) < 1e-4


def test_tiny_literal_bvh_names_missing_joints(tmp_path):
    path = tmp_path / "arm.bvh"
    path.write_text(
        "HIERARCHY\nROOT Hips\n{\n  OFFSET 0 0 0\n  CHANNELS 6 Xposition Yposition Zposition Zrotation Yrotation Xrotation\n"
        "  JOINT Chest\n  {\n    OFFSET 0 10 0\n    CHANNELS 3 Xrotation Yrotation Zrotation\n"
        "    End Site\n    {\n      OFFSET 0 5 0\n    }\n  }\n}\n"
        "MOTION\nFrames: 2\nFrame Time: 0.05\n0 90 0 0 0 0 0 0 0\n0 90 0 0 0 0 90 0 0\n")
    with pytest.raises(MotionError) as err:
        BR.load_bvh(path)
    message = str(err.value)
    assert str(path) in message and "left_hip" in message and "right_wrist" in message and "Chest" in message


GOOD = None


def good_text():
    global GOOD
    if GOOD is None:
        GOOD = BW.motion_to_bvh_text(Motion(joints=rigid_walk_joints(5, 4)))
    return GOOD


def malformed_cases():
    text = good_text()
    lines = text.splitlines()
    motion_at = lines.index("MOTION")
    first_row = motion_at + 3
    row = lines[first_row].split()
    yield "truncated in the hierarchy", "\n".join(lines[:40]), "ends inside the HIERARCHY"
    yield "truncated rows", "\n".join(lines[:first_row + 2]), "truncated: 'Frames: 5' but only 2"
    yield "truncated mid-row", "\n".join(lines[:first_row + 2] + [" ".join(row[:30])]), "has 30 values"
    yield "missing MOTION", "\n".join(lines[:motion_at]), "no MOTION"
    yield "MOTION too early", "\n".join(lines[:40] + lines[motion_at:]), "before the HIERARCHY is complete"
    yield "missing Frames", "\n".join(lines[:motion_at + 1] + lines[motion_at + 2:]), "expected 'Frames: N'"
    yield "bad frame time", text.replace("Frame Time: 0.0500000000", "Frame Time: fast"), "seconds per frame"
    yield "zero frames", text.replace("Frames: 5", "Frames: 0"), "at least 1"
    short = lines[:first_row] + [" ".join(row[:-1])] + lines[first_row + 1:]
    yield "wrong channel count", "\n".join(short), f"line {first_row + 1}: frame 0 has 68 values"
    bad = lines[:first_row + 1] + [" ".join(row[:5] + ["abc"] + row[6:])] + lines[first_row + 2:]
    yield "non-numeric value", "\n".join(bad), f"line {first_row + 2}: frame 1: expected a number, found 'abc'"
    nan = lines[:first_row] + [" ".join(row[:5] + ["nan"] + row[6:])] + lines[first_row + 1:]
    yield "NaN value", "\n".join(nan), "NaN"
    yield "extra rows", text + lines[-1] + "\n", "more frame rows"
    yield "bad offset", text.replace("OFFSET 0.115000", "OFFSET zero", 1), "expected the OFFSET's x"
    yield "unknown channel", text.replace("Zrotation Xrotation Yrotation", "Zrotation Xrotation Wrotation", 1), "unknown channel 'Wrotation'"
    yield "no HIERARCHY", text.replace("HIERARCHY", "HIERARCHIE"), "expected 'HIERARCHY'"
    yield "two CHANNELS lines", text.replace("CHANNELS 3 Zrotation Xrotation Yrotation", "CHANNELS 3 Zrotation Xrotation Yrotation\nCHANNELS 1 Xrotation", 1), "second CHANNELS"
    yield "missing brace", text.replace("ROOT pelvis\n{", "ROOT pelvis\n", 1), "expected '{'"
    yield "empty file", "", "empty"
    yield "binary junk", "\x00\x01garbage", "expected 'HIERARCHY'"


@pytest.mark.parametrize("label,text,needle", [pytest.param(*case, id=case[0]) for case in malformed_cases()])
def test_malformed_files_raise_motion_error(tmp_path, label, text, needle):
    path = tmp_path / "bad.bvh"
    path.write_text(text)
    with pytest.raises(MotionError) as err:
        BR.load_bvh(path)
    assert str(path) in str(err.value), label
    assert needle in str(err.value), (label, str(err.value))


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(MotionError, match="no such file"):
        BR.load_bvh(tmp_path / "nope.bvh")
    with pytest.raises(MotionError, match="folder"):
        BR.load_bvh(tmp_path)


def test_save_bvh_is_atomic(tmp_path, rigid_motion, monkeypatch):
    path = tmp_path / "keep.bvh"
    BW.save_bvh(rigid_motion, path)
    before = path.read_bytes()
    real_atomic_write = BW.atomic_write

    class HalfWriter:
        def __init__(self, f):
            self.f = f

        def write(self, text):
            self.f.write(text[: len(text) // 2])
            raise OSError("disk full")

    @contextlib.contextmanager
    def failing_atomic_write(p, mode="wb"):
        with real_atomic_write(p, mode) as f:
            yield HalfWriter(f)

    monkeypatch.setattr(BW, "atomic_write", failing_atomic_write)
    with pytest.raises(OSError, match="disk full"):
        BW.save_bvh(Motion(joints=walk_joints(30, 9)), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["keep.bvh"]


# ----------------------------------------------------------------------------- Blender

BLENDER_SCRIPT = r"""
import builtins, json, sys
import bpy
import io_anim_bvh.import_bvh as importer
# Debian's Blender 3.4 importer opens files with mode 'rU', which Python 3.11 removed.
importer.open = lambda f, mode="r", *a, **k: builtins.open(f, mode.replace("U", ""), *a, **k)
path, out, frames = sys.argv[sys.argv.index("--") + 1:]
bpy.ops.import_anim.bvh(filepath=path, global_scale=1.0, frame_start=1, use_fps_scale=False,
                        update_scene_fps=False, update_scene_duration=True, rotate_mode="NATIVE")
arm = next(o for o in bpy.context.scene.objects if o.type == "ARMATURE")
result = {}
for f in map(int, frames.split(",")):
    bpy.context.scene.frame_set(f + 1)
    result[f] = {pb.name: list(arm.matrix_world @ pb.head) for pb in arm.pose.bones}
result["rest"] = {b.name: list(arm.matrix_world @ b.head_local) for b in arm.data.bones}
json.dump(result, open(out, "w"))
"""


@pytest.mark.parametrize("naming", ["smpl", "mixamo"])
def test_blender_imports_our_bvh(tmp_path, rigid_motion, naming):
    """Blender's own BVH importer (rotation mode NATIVE, so our ZXY order is honoured) puts
    every bone head where our joints are, under either naming's bone names, and the rest pose
    is a T-pose. Blender is Z up: BVH (x, y, z) = Blender (x, z, -y)."""
    blender = shutil.which("blender")
    if blender is None:
        pytest.skip("the blender executable is absent (apt-get install --no-install-recommends blender)")
    path = BW.save_bvh(rigid_motion, tmp_path / "clip.bvh", scale=100.0, naming=naming)
    out = tmp_path / "heads.json"
    frames = [0, 37, 149]
    run = subprocess.run([blender, "-b", "--factory-startup", "--python-expr", BLENDER_SCRIPT, "--",
                          str(path), str(out), ",".join(map(str, frames))],
                         capture_output=True, text=True, timeout=300)
    assert out.exists(), run.stdout[-2000:] + run.stderr[-2000:]
    heads = json.loads(out.read_text())
    names = rig_names.NAMINGS[naming]
    assert sorted(heads["rest"]) == sorted(names)
    for f in frames:
        blender_xyz = np.array([heads[str(f)][name] for name in names])
        ours = blender_xyz[:, [0, 2, 1]] * np.array([1.0, 1.0, -1.0]) / 100.0
        assert max_error(ours, rigid_motion.joints[f]) < MM, f
    rest = np.array([heads["rest"][name] for name in names])[:, [0, 2, 1]] * [1, 1, -1]
    assert rest[S.JOINT_NAMES.index("head"), 1] > rest[0, 1] > rest[S.JOINT_NAMES.index("left_ankle"), 1]
    assert rest[S.JOINT_NAMES.index("left_wrist"), 0] > 50 > -50 > rest[S.JOINT_NAMES.index("right_wrist"), 0]
    for side in ("left", "right"):   # the arm level with the shoulder
        arm = rest[[S.JOINT_NAMES.index(f"{side}_{j}") for j in ("shoulder", "elbow", "wrist")]]
        assert np.ptp(arm[:, 1]) < 0.01 and np.ptp(arm[:, 2]) < 0.01, (side, arm)
