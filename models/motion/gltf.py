"""GLB (binary glTF 2.0) export: a motion as a skinned, animated body.

What the file holds, so that Blender, Unity, Unreal and three.js (ComfyUI's own "Preview 3D -
Animation" node) play it without any plug-in:

- the 22-joint skeleton as a glTF skin: one node per joint, nested as ``skeleton.PARENTS``, named
  as in ``skeleton.JOINT_NAMES`` (naming "smpl", rest pose with the arms hanging) or as Mixamo names
  them (naming "mixamo": ``mixamorig:Hips``, ..., rest pose a T-pose, as Mixamo rigs stand); the rest
  (bind) pose has the motion's median bone lengths and the pelvis at the origin;
- a simple visible body bound to it: one tapered box per bone plus a head block, every vertex fully
  weighted to the joint the bone leaves from, so each piece turns with its bone;
- one animation, sampled at the motion's frame rate (keyframe ``t`` at ``t / fps`` seconds, linear):
  every joint's local translation and the rotation of every joint that has a child.

Joint positions are reproduced exactly, not just approximately: each joint's translation is animated
to its actual offset from its parent (in the parent's rotated frame), so bone lengths that vary from
frame to frame (generated or retargeted motion) still land every joint where the motion has it. The
rotations turn each bone from its rest direction onto the motion's (the smallest such turn, relative
to the parent, so twist stays continuous; a least-squares fit at the pelvis and spine3, which have
three children each); they orient the body pieces.

Coordinates are the pack's: metres, Y up, facing +Z, which is glTF's own convention (+Y up, +Z front).
The container is written with pygltflib (MIT): its dataclasses check field names and write the
GLB chunks and padding, which would otherwise be hand-written here.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from . import rotations as R
from . import skeleton
from .motion import Motion
from .rig_names import MIXAMO_NAMES, NAMINGS, naming_names  # noqa: F401 (the first two: re-exported)

CHILDREN = tuple(tuple(c for c, p in enumerate(skeleton.PARENTS) if p == j) for j in range(skeleton.NUM_JOINTS))

# The joint names of each naming ("smpl", "mixamo") live in rig_names.py, shared with the BVH writer.


def _t_pose_directions() -> np.ndarray:
    """Rest directions of a Mixamo rig: a T-pose, arms straight out to the sides (left is +X)."""
    d = skeleton.REST_DIRECTIONS.copy()
    for side, sign in (("left", 1.0), ("right", -1.0)):
        # the collar bone ends at the shoulder, the upper arm at the elbow, the forearm at the wrist
        for joint in ("shoulder", "elbow", "wrist"):
            d[skeleton.JOINT_NAMES.index(f"{side}_{joint}")] = (sign, 0.0, 0.0)
    return d


# Rest (bind) pose directions each naming implies: SMPL's arms hang down, Mixamo's form a T.
REST_POSES = {"smpl": skeleton.REST_DIRECTIONS, "mixamo": _t_pose_directions()}

# Half-widths (metres) of the box drawn along each bone, by the joint the bone ends at: thick trunk,
# thinner limbs. Only the look depends on these.
_BONE_HALF_WIDTH = {
    "left_hip": 0.06, "right_hip": 0.06, "spine1": 0.1, "spine2": 0.11, "spine3": 0.12,
    "left_knee": 0.065, "right_knee": 0.065, "left_ankle": 0.05, "right_ankle": 0.05,
    "left_foot": 0.04, "right_foot": 0.04, "neck": 0.05, "left_collar": 0.05, "right_collar": 0.05,
    "head": 0.06, "left_shoulder": 0.05, "right_shoulder": 0.05, "left_elbow": 0.045,
    "right_elbow": 0.045, "left_wrist": 0.035, "right_wrist": 0.035,
}
_HEAD_HALF_SIZE = 0.09
_BODY_COLOUR = (0.72, 0.74, 0.78, 1.0)


# ------------------------------------------------------------------------------ the pose
def rest_offsets(joints: np.ndarray, naming: str = "smpl") -> np.ndarray:
    """(22, 3) rest offsets of each joint from its parent: median bone length along the rest
    direction of the naming's rest pose."""
    lengths = np.median(skeleton.bone_lengths(np.asarray(joints, dtype=np.float64)), axis=0)
    return REST_POSES[naming] * lengths[:, None]


def _fit_rotation(rest: np.ndarray, actual: np.ndarray) -> np.ndarray:
    """(T, 3, 3) proper rotations taking the K rest vectors (K, 3) closest onto actual (T, K, 3)."""
    cov = np.einsum("tki,kj->tij", actual, rest)
    u, _, vt = np.linalg.svd(cov)
    flip = np.where(np.linalg.det(u @ vt) < 0, -1.0, 1.0)
    u[:, :, -1] *= flip[:, None]
    return u @ vt


def world_rotations(joints: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """(T, 22, 3, 3) world rotation of every joint, walking from the pelvis out."""
    j = np.asarray(joints, dtype=np.float64)
    T = len(j)
    eye = np.broadcast_to(np.eye(3), (T, 3, 3))
    world = np.empty((T, skeleton.NUM_JOINTS, 3, 3))
    for joint, parent in enumerate(skeleton.PARENTS):   # parents come before their children
        parent_world = eye if parent < 0 else world[:, parent]
        kids = CHILDREN[joint]
        if len(kids) > 1:
            world[:, joint] = _fit_rotation(offsets[list(kids)], j[:, list(kids)] - j[:, joint, None])
        elif len(kids) == 1:
            # the smallest turn, in the parent's frame, from the rest bone onto the actual one
            target = np.einsum("tji,tj->ti", parent_world, j[:, kids[0]] - j[:, joint])
            rest = np.broadcast_to(offsets[kids[0]], target.shape)
            world[:, joint] = parent_world @ R.quat_to_matrix(R.qbetween(rest, target))
        else:
            world[:, joint] = parent_world   # a leaf (feet, head, wrists) keeps its parent's turn
    return world


def local_transforms(joints: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per frame and joint, glTF's local translation (T, 22, 3) and rotation quaternion (T, 22, 4, x y z w)."""
    j = np.asarray(joints, dtype=np.float64)
    world = world_rotations(j, offsets)
    translation = np.empty_like(j)
    local_rot = np.empty_like(world)
    for joint, parent in enumerate(skeleton.PARENTS):
        if parent < 0:
            translation[:, joint] = j[:, joint]
            local_rot[:, joint] = world[:, joint]
        else:
            parent_t = np.swapaxes(world[:, parent], -1, -2)
            translation[:, joint] = np.einsum("tij,tj->ti", parent_t, j[:, joint] - j[:, parent])
            local_rot[:, joint] = parent_t @ world[:, joint]
    q = R.matrix_to_quat(local_rot)                # (w, x, y, z)
    # one hemisphere from frame to frame, so linear interpolation never takes the long way round
    q = R.qfix(q)
    return translation, np.concatenate([q[..., 1:], q[..., :1]], axis=-1)


def forward_kinematics(translation: np.ndarray, rotation_xyzw: np.ndarray) -> np.ndarray:
    """World joint positions (T, 22, 3) from glTF local translations and rotations (x y z w)."""
    q = np.concatenate([rotation_xyzw[..., 3:], rotation_xyzw[..., :3]], axis=-1)
    local = R.quat_to_matrix(q)
    T = translation.shape[0]
    world_r = np.empty((T, skeleton.NUM_JOINTS, 3, 3))
    world_p = np.empty((T, skeleton.NUM_JOINTS, 3))
    for joint, parent in enumerate(skeleton.PARENTS):
        if parent < 0:
            world_r[:, joint], world_p[:, joint] = local[:, joint], translation[:, joint]
        else:
            world_p[:, joint] = world_p[:, parent] + np.einsum("tij,tj->ti", world_r[:, parent], translation[:, joint])
            world_r[:, joint] = world_r[:, parent] @ local[:, joint]
    return world_p


# ------------------------------------------------------------------------------ the body
def _cross(a, b) -> np.ndarray:
    # np.cross costs tens of microseconds per call on single 3-vectors; the body needs ~200 of them
    return np.array([a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]])


def _box(start: np.ndarray, end: np.ndarray, half_width: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A box from start to end, a little narrower at the far end: (24, 3) positions, (24, 3) flat
    normals, (36,) triangle indices, counter-clockwise seen from outside (glTF's front face)."""
    axis = end - start
    length = float(np.linalg.norm(axis))
    d = axis / length if length > 1e-9 else np.array([0.0, 1.0, 0.0])
    helper = np.array([0.0, 0.0, 1.0]) if abs(d[2]) < 0.9 else np.array([1.0, 0.0, 0.0])
    u = _cross(d, helper)
    u /= np.linalg.norm(u)
    v = _cross(d, u)
    near, far = half_width, half_width * 0.75
    corners = np.array([start + s * near * u + t * near * v for s, t in ((-1, -1), (1, -1), (1, 1), (-1, 1))]
                       + [end + s * far * u + t * far * v for s, t in ((-1, -1), (1, -1), (1, 1), (-1, 1))])
    # faces by corner index, each listed counter-clockwise as seen from outside
    faces = ((0, 3, 2, 1), (4, 5, 6, 7), (0, 1, 5, 4), (1, 2, 6, 5), (2, 3, 7, 6), (3, 0, 4, 7))
    positions, normals, indices = [], [], []
    for f in faces:
        quad = corners[list(f)]
        n = _cross(quad[1] - quad[0], quad[2] - quad[0])
        n /= max(np.linalg.norm(n), 1e-12)
        base = len(positions)
        positions.extend(quad)
        normals.extend([n] * 4)
        indices.extend([base, base + 1, base + 2, base, base + 2, base + 3])
    return np.array(positions), np.array(normals), np.array(indices)


def body_mesh(rest_positions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The body in the rest pose: positions (V, 3), normals (V, 3), joint index per vertex (V,),
    triangle indices (I,). Each bone's box follows the joint the bone leaves from."""
    pos, nrm, joint_of, idx = [], [], [], []
    for child, parent in enumerate(skeleton.PARENTS):
        if parent < 0:
            continue
        name = skeleton.JOINT_NAMES[child]
        p, n, i = _box(rest_positions[parent], rest_positions[child], _BONE_HALF_WIDTH[name])
        idx.append(i + sum(len(x) for x in pos))
        pos.append(p)
        nrm.append(n)
        joint_of.append(np.full(len(p), parent))
    head = skeleton.JOINT_NAMES.index("head")
    up = np.array([0.0, 2 * _HEAD_HALF_SIZE, 0.0])
    p, n, i = _box(rest_positions[head] - 0.2 * up, rest_positions[head] + up, _HEAD_HALF_SIZE)
    idx.append(i + sum(len(x) for x in pos))
    pos.append(p)
    nrm.append(n)
    joint_of.append(np.full(len(p), head))
    return np.concatenate(pos), np.concatenate(nrm), np.concatenate(joint_of), np.concatenate(idx)


# ------------------------------------------------------------------------------ the file
def motion_to_glb_bytes(motion: Motion, *, naming: str = "smpl") -> bytes:
    """The motion as a GLB file's bytes (see the module docstring for what it holds)."""
    import pygltflib as g

    names = naming_names(naming)
    joints = np.asarray(motion.joints, dtype=np.float64)
    T, J = joints.shape[0], skeleton.NUM_JOINTS
    offsets = rest_offsets(joints, naming)
    rest_positions = np.zeros((J, 3))
    for joint, parent in enumerate(skeleton.PARENTS):
        if parent >= 0:
            rest_positions[joint] = rest_positions[parent] + offsets[joint]
    translation, rotation = local_transforms(joints, offsets)
    positions, normals, joint_of, indices = body_mesh(rest_positions)

    blob = bytearray()
    views: list = []
    accessors: list = []

    def add(array: np.ndarray, component: int, kind: str, target: int | None = None,
            minmax: bool = False) -> int:
        """Append one accessor's data (4-byte aligned, as glTF asks) and return its index."""
        while len(blob) % 4:
            blob.append(0)
        data = np.ascontiguousarray(array)
        views.append(g.BufferView(buffer=0, byteOffset=len(blob), byteLength=data.nbytes, target=target))
        blob.extend(data.tobytes())
        flat = data.reshape(len(data), -1)
        accessors.append(g.Accessor(
            bufferView=len(views) - 1, componentType=component, count=len(data), type=kind,
            min=flat.min(axis=0).tolist() if minmax else None,
            max=flat.max(axis=0).tolist() if minmax else None))
        return len(accessors) - 1

    f32, u16, u32 = g.FLOAT, g.UNSIGNED_SHORT, g.UNSIGNED_INT
    pos_acc = add(positions.astype(np.float32), f32, g.VEC3, g.ARRAY_BUFFER, minmax=True)
    nrm_acc = add(normals.astype(np.float32), f32, g.VEC3, g.ARRAY_BUFFER)
    joints_attr = np.zeros((len(joint_of), 4), dtype=np.uint16)
    joints_attr[:, 0] = joint_of
    weights_attr = np.zeros((len(joint_of), 4), dtype=np.float32)
    weights_attr[:, 0] = 1.0
    jnt_acc = add(joints_attr, u16, g.VEC4, g.ARRAY_BUFFER)
    wgt_acc = add(weights_attr, f32, g.VEC4, g.ARRAY_BUFFER)
    idx_acc = add(indices.astype(np.uint32), u32, g.SCALAR, g.ELEMENT_ARRAY_BUFFER)
    # Joint k's bind pose is a pure translation to its rest position; column-major 4x4 inverses.
    inverse_bind = np.tile(np.eye(4, dtype=np.float32), (J, 1, 1))
    inverse_bind[:, 3, :3] = -rest_positions
    ibm_acc = add(inverse_bind.reshape(J, 16), f32, g.MAT4)
    times = (np.arange(T, dtype=np.float64) / motion.fps).astype(np.float32)
    time_acc = add(times, f32, g.SCALAR, minmax=True)

    samplers, channels = [], []
    for joint in range(J):
        node = joint + 1            # node 0 is the body mesh
        out = add(translation[:, joint].astype(np.float32), f32, g.VEC3)
        samplers.append(g.AnimationSampler(input=time_acc, output=out, interpolation="LINEAR"))
        channels.append(g.AnimationChannel(sampler=len(samplers) - 1,
                                           target=g.AnimationChannelTarget(node=node, path="translation")))
        if CHILDREN[joint] or joint == 0:
            out = add(rotation[:, joint].astype(np.float32), f32, g.VEC4)
            samplers.append(g.AnimationSampler(input=time_acc, output=out, interpolation="LINEAR"))
            channels.append(g.AnimationChannel(sampler=len(samplers) - 1,
                                               target=g.AnimationChannelTarget(node=node, path="rotation")))

    # The nodes rest in the bind pose; the animation moves them from there.
    nodes = [g.Node(name="body", mesh=0, skin=0)]
    for joint, parent in enumerate(skeleton.PARENTS):
        nodes.append(g.Node(name=names[joint], translation=offsets[joint].tolist() if parent >= 0 else [0.0, 0.0, 0.0],
                            children=[c + 1 for c in CHILDREN[joint]]))
    root = g.Node(name=motion.name or "motion", children=[0, 1])
    nodes.append(root)

    gltf = g.GLTF2(
        asset=g.Asset(version="2.0", generator="MotionRAG Suite (pygltflib)"),
        scene=0,
        scenes=[g.Scene(name=motion.name or "motion", nodes=[len(nodes) - 1])],
        nodes=nodes,
        meshes=[g.Mesh(name="body", primitives=[g.Primitive(
            attributes=g.Attributes(POSITION=pos_acc, NORMAL=nrm_acc, JOINTS_0=jnt_acc, WEIGHTS_0=wgt_acc),
            indices=idx_acc, material=0)])],
        materials=[g.Material(name="body", doubleSided=False, pbrMetallicRoughness=g.PbrMetallicRoughness(
            baseColorFactor=list(_BODY_COLOUR), metallicFactor=0.0, roughnessFactor=0.8))],
        skins=[g.Skin(name="skeleton", joints=list(range(1, J + 1)), skeleton=1, inverseBindMatrices=ibm_acc)],
        animations=[g.Animation(name=motion.name or "motion", samplers=samplers, channels=channels)],
        accessors=accessors,
        bufferViews=views,
        buffers=[g.Buffer(byteLength=len(blob))],
    )
    gltf.set_binary_blob(bytes(blob))
    return b"".join(gltf.save_to_bytes())


def save_glb(motion: Motion, path: str | os.PathLike, *, naming: str = "smpl") -> Path:
    """Write `motion` as a .glb file, atomically (a failed write leaves the old file as it was)."""
    from ...common.atomic import atomic_write

    data = motion_to_glb_bytes(motion, naming=naming)
    path = Path(path)
    with atomic_write(path, "wb") as f:
        f.write(data)
    return path


# ------------------------------------------------------------------------------ reading back
def read_glb_joints(path_or_bytes) -> tuple[np.ndarray, float, list[str]]:
    """Joint positions (T, 22, 3) at the animation's keyframes, the frame rate the keyframe times
    imply, and the joint names, read back from a GLB this module wrote (for tests and tools)."""
    import pygltflib as g

    if isinstance(path_or_bytes, (bytes, bytearray)):
        gltf = g.GLTF2.load_from_bytes(bytes(path_or_bytes))
    else:
        gltf = g.GLTF2().load(str(path_or_bytes))
    blob = gltf.binary_blob()

    def read(index: int) -> np.ndarray:
        acc = gltf.accessors[index]
        view = gltf.bufferViews[acc.bufferView]
        width = {"SCALAR": 1, "VEC3": 3, "VEC4": 4, "MAT4": 16}[acc.type]
        dtype = {g.FLOAT: np.float32, g.UNSIGNED_SHORT: np.uint16, g.UNSIGNED_INT: np.uint32}[acc.componentType]
        start = (view.byteOffset or 0) + (acc.byteOffset or 0)
        return np.frombuffer(blob, dtype=dtype, count=acc.count * width, offset=start).reshape(acc.count, width)

    skin = gltf.skins[0]
    joint_nodes = list(skin.joints)
    anim = gltf.animations[0]
    times = read(anim.samplers[anim.channels[0].sampler].input)[:, 0].astype(np.float64)
    T = len(times)
    translation = np.empty((T, len(joint_nodes), 3))
    rotation = np.zeros((T, len(joint_nodes), 4))
    rotation[..., 3] = 1.0
    for k, node in enumerate(joint_nodes):   # defaults: the node's own rest transform
        translation[:, k] = gltf.nodes[node].translation or (0.0, 0.0, 0.0)
        if gltf.nodes[node].rotation:
            rotation[:, k] = gltf.nodes[node].rotation
    for ch in anim.channels:
        k = joint_nodes.index(ch.target.node)
        values = read(anim.samplers[ch.sampler].output)
        if ch.target.path == "translation":
            translation[:, k] = values
        elif ch.target.path == "rotation":
            rotation[:, k] = values
    fps = float((T - 1) / (times[-1] - times[0])) if T > 1 and times[-1] > times[0] else 0.0
    names = [gltf.nodes[n].name for n in joint_nodes]
    return forward_kinematics(translation, rotation), fps, names
