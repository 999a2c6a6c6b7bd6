"""GLB export: the file's layout, joints read back within 1 mm, the body following the bones, and
Blender's own glTF importer putting every bone head where our joints are."""
import json
import shutil
import subprocess

import numpy as np
import pygltflib
import pytest

from motionrag_suite.models.motion import gltf as G
from motionrag_suite.models.motion import library
from motionrag_suite.models.motion import skeleton as S
from motionrag_suite.models.motion.motion import Motion, MotionError

MM = 1e-3


def stretchy_motion(frames: int = 60, fps: float = 30.0) -> Motion:
    """A library clip whose limbs grow and shrink over time and that turns on the spot: bone lengths
    that vary per frame (as in generated motion) must still come back exactly."""
    base = library.load_clip("cartwheel").joints[:frames].astype(np.float64)
    t = np.arange(len(base))[:, None, None]
    root = base[:, :1]
    stretched = root + (base - root) * (1.0 + 0.15 * np.sin(t / 7.0))
    angle = t[:, 0, 0] * 0.05
    turn = np.stack([np.stack([np.cos(angle), 0 * angle, np.sin(angle)], -1),
                     np.stack([0 * angle, 1 + 0 * angle, 0 * angle], -1),
                     np.stack([-np.sin(angle), 0 * angle, np.cos(angle)], -1)], -2)
    return Motion(joints=np.einsum("tij,tkj->tki", turn, stretched), fps=fps, name="stretchy")


@pytest.mark.parametrize("clip", ["cartwheel", "backflip", "M_spinkick", "getup_facedown"])
def test_joints_read_back_within_a_millimetre(clip):
    motion = library.load_clip(clip)
    joints, fps, names = G.read_glb_joints(G.motion_to_glb_bytes(motion))
    assert joints.shape == motion.joints.shape
    assert np.abs(joints - motion.joints).max() < MM
    assert fps == pytest.approx(motion.fps, rel=1e-5)
    assert names == list(S.JOINT_NAMES)


def test_varying_bone_lengths_and_another_frame_rate_come_back(tmp_path):
    motion = stretchy_motion()
    path = G.save_glb(motion, tmp_path / "stretchy.glb")
    joints, fps, _ = G.read_glb_joints(path)
    assert np.abs(joints - motion.joints).max() < MM
    assert fps == pytest.approx(30.0, rel=1e-5)


def test_file_layout_is_one_skin_one_mesh_one_animation():
    motion = library.load_clip("walk")
    data = G.motion_to_glb_bytes(motion)
    assert data[:4] == b"glTF" and int.from_bytes(data[4:8], "little") == 2
    gltf = pygltflib.GLTF2.load_from_bytes(data)
    assert gltf.asset.version == "2.0"
    (skin,) = gltf.skins
    assert len(skin.joints) == S.NUM_JOINTS
    # the joint nodes nest as the skeleton's parents
    for k, node in enumerate(skin.joints):
        kids = [skin.joints.index(c) for c in gltf.nodes[node].children or []]
        assert sorted(kids) == [c for c, p in enumerate(S.PARENTS) if p == k]
    (mesh_node,) = [n for n in gltf.nodes if n.mesh is not None]
    assert mesh_node.skin == 0
    (prim,) = gltf.meshes[mesh_node.mesh].primitives
    for attr in ("POSITION", "NORMAL", "JOINTS_0", "WEIGHTS_0"):
        assert getattr(prim.attributes, attr) is not None, attr
    assert gltf.accessors[prim.indices].count >= 21 * 36   # a box per bone, and a head
    (anim,) = gltf.animations
    paths = {(gltf.nodes[c.target.node].name, c.target.path) for c in anim.channels}
    assert {(n, "translation") for n in S.JOINT_NAMES} <= paths
    assert ("left_knee", "rotation") in paths and ("pelvis", "rotation") in paths
    times = gltf.accessors[anim.samplers[0].input]
    assert times.count == motion.num_frames
    assert times.max[0] == pytest.approx((motion.num_frames - 1) / motion.fps, rel=1e-6)


def _skinned_vertices(data: bytes, frame: int) -> tuple[np.ndarray, np.ndarray]:
    """The body's vertices at a frame, skinned as a viewer does (joint world matrix times inverse
    bind matrix), and the joint each vertex follows."""
    gltf = pygltflib.GLTF2.load_from_bytes(data)
    blob = gltf.binary_blob()

    def read(i, width, dtype):
        acc, view = gltf.accessors[i], gltf.bufferViews[gltf.accessors[i].bufferView]
        return np.frombuffer(blob, dtype=dtype, count=acc.count * width, offset=view.byteOffset).reshape(acc.count, width)

    prim = gltf.meshes[0].primitives[0]
    pos = read(prim.attributes.POSITION, 3, np.float32).astype(np.float64)
    which = read(prim.attributes.JOINTS_0, 4, np.uint16)[:, 0]
    weights = read(prim.attributes.WEIGHTS_0, 4, np.float32)
    assert np.allclose(weights[:, 0], 1.0) and np.allclose(weights[:, 1:], 0.0)
    ibm = read(gltf.skins[0].inverseBindMatrices, 16, np.float32).reshape(-1, 4, 4).transpose(0, 2, 1)
    joints, _, _ = G.read_glb_joints(data)
    # world transforms of the joints at `frame`, from the animation as read back
    anim = gltf.animations[0]
    local = [np.eye(4) for _ in range(S.NUM_JOINTS)]
    for ch in anim.channels:
        k = gltf.skins[0].joints.index(ch.target.node)
        width = 3 if ch.target.path == "translation" else 4
        value = read(anim.samplers[ch.sampler].output, width, np.float32)[frame].astype(np.float64)
        if ch.target.path == "translation":
            local[k][:3, 3] = value
        else:
            x, y, z, w = value
            local[k][:3, :3] = np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                                         [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                                         [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])
    world = []
    for k, p in enumerate(S.PARENTS):
        world.append(local[k] if p < 0 else world[p] @ local[k])
    skin = np.stack([world[j] @ ibm[j] for j in range(S.NUM_JOINTS)])
    posed = np.einsum("vij,vj->vi", skin[which], np.concatenate([pos, np.ones((len(pos), 1))], -1))[:, :3]
    assert np.abs(np.stack([w[:3, 3] for w in world]) - joints[frame]).max() < MM
    return posed, which


@pytest.mark.parametrize("frame", [0, 20, 40])
def test_the_body_follows_its_bones(frame):
    """Each limb's box, skinned to the frame, lies along the motion's bone at that frame."""
    motion = library.load_clip("cartwheel")
    posed, which = _skinned_vertices(G.motion_to_glb_bytes(motion), frame)
    j = motion.joints[frame].astype(np.float64)
    for child in (S.JOINT_NAMES.index(n) for n in ("left_knee", "right_elbow", "left_ankle", "spine2")):
        parent = S.PARENTS[child]
        verts = posed[which == parent]
        a, b = j[parent], j[child]
        d = (b - a) / np.linalg.norm(b - a)
        # distance of each of the parent's vertices to the line through the bone
        rel = verts - a
        dist = np.linalg.norm(rel - np.outer(rel @ d, d), axis=1)
        along = rel @ d
        near_bone = (along > -0.02) & (along < np.linalg.norm(b - a) + 0.02) & (dist < 0.18)   # the trunk box is 0.11 m half-wide: corners at 0.156
        assert near_bone.sum() >= 24, (S.JOINT_NAMES[child], frame, near_bone.sum())


def test_unknown_naming_is_refused():
    with pytest.raises(MotionError, match="naming"):
        G.motion_to_glb_bytes(library.load_clip("walk"), naming="unreal")


BLENDER_SCRIPT = r"""
import json, sys
import bpy
import numpy
# Debian's Blender 3.4 glTF importer still uses numpy.bool, which numpy 1.24 removed.
numpy.bool = bool
path, out, frames, fps = sys.argv[sys.argv.index("--") + 1:]
# at the motion's frame rate, keyframe k lands on Blender frame k
bpy.context.scene.render.fps = int(round(float(fps)))
bpy.context.scene.render.fps_base = bpy.context.scene.render.fps / float(fps)
bpy.ops.import_scene.gltf(filepath=path)
arm = next(o for o in bpy.context.scene.objects if o.type == "ARMATURE")
result = {"meshes": [o.name for o in bpy.context.scene.objects if o.type == "MESH"
                     and any(m.type == "ARMATURE" for m in o.modifiers)]}
for f in map(int, frames.split(",")):
    bpy.context.scene.frame_set(f)
    result[f] = {pb.name: list(arm.matrix_world @ pb.head) for pb in arm.pose.bones}
json.dump(result, open(out, "w"))
"""


@pytest.mark.parametrize("naming", ["smpl", "mixamo"])
def test_blender_imports_our_glb(tmp_path, naming):
    """Blender's own glTF importer: an armature with a skinned mesh, and on several frames every
    bone head within 1 mm of our joints. Blender is Z up: glTF (x, y, z) = Blender (x, -z, y)."""
    blender = shutil.which("blender")
    if blender is None:
        pytest.skip("the blender executable is absent (apt-get install --no-install-recommends blender python3-numpy)")
    motion = stretchy_motion(frames=60, fps=20.0)
    path = G.save_glb(motion, tmp_path / "clip.glb", naming=naming)
    out = tmp_path / "heads.json"
    frames = [0, 17, 42, motion.num_frames - 1]
    run = subprocess.run([blender, "-b", "--factory-startup", "--python-expr", BLENDER_SCRIPT, "--",
                          str(path), str(out), ",".join(map(str, frames)), str(motion.fps)],
                         capture_output=True, text=True, timeout=300)
    assert out.exists(), run.stdout[-3000:] + run.stderr[-3000:]
    heads = json.loads(out.read_text())
    assert heads["meshes"] == ["body"]
    for f in frames:
        b = np.array([heads[str(f)][name] for name in G.NAMINGS[naming]])
        ours = np.stack([b[:, 0], b[:, 2], -b[:, 1]], axis=-1)
        assert np.abs(ours - motion.joints[f]).max() < MM, f


def test_mixamo_naming_names_hierarchy_t_pose_and_unchanged_joints():
    motion = library.load_clip("spinkick")
    data = G.motion_to_glb_bytes(motion, naming="mixamo")
    joints, _, names = G.read_glb_joints(data)
    assert np.abs(joints - motion.joints).max() < MM
    assert names[:4] == ["mixamorig:Hips", "mixamorig:LeftUpLeg", "mixamorig:RightUpLeg", "mixamorig:Spine"]
    assert len(set(names)) == S.NUM_JOINTS and all(n.startswith("mixamorig:") for n in names)
    gltf = pygltflib.GLTF2.load_from_bytes(data)
    skin = gltf.skins[0]
    node = {gltf.nodes[i].name: gltf.nodes[i] for i in skin.joints}
    child_names = lambda name: sorted(gltf.nodes[c].name for c in node[name].children or [])  # noqa: E731
    # Mixamo's chain: Hips > Spine > Spine1 > Spine2 > Neck > Head; Spine2 > Shoulders; arms; legs
    assert child_names("mixamorig:Hips") == ["mixamorig:LeftUpLeg", "mixamorig:RightUpLeg", "mixamorig:Spine"]
    assert child_names("mixamorig:Spine2") == ["mixamorig:LeftShoulder", "mixamorig:Neck", "mixamorig:RightShoulder"]
    assert child_names("mixamorig:LeftArm") == ["mixamorig:LeftForeArm"]
    assert child_names("mixamorig:LeftForeArm") == ["mixamorig:LeftHand"]
    assert child_names("mixamorig:RightUpLeg") == ["mixamorig:RightLeg"]
    assert child_names("mixamorig:LeftFoot") == ["mixamorig:LeftToeBase"]
    # T-pose rest: arm (at the collar bone's end), forearm and hand offsets point straight out to their
    # side; SMPL's hang down
    for side, sign in (("Left", 1.0), ("Right", -1.0)):
        for name in (f"mixamorig:{side}Arm", f"mixamorig:{side}ForeArm", f"mixamorig:{side}Hand"):
            offset = np.array(node[name].translation)
            assert offset[0] * sign > 0.05 and abs(offset[1]) < 1e-6 and abs(offset[2]) < 1e-6, (name, offset)
    smpl = pygltflib.GLTF2.load_from_bytes(G.motion_to_glb_bytes(motion))
    elbow = next(n for n in smpl.nodes if n.name == "left_elbow")
    assert elbow.translation[1] < -0.2
