"""HumanML3D's 263-d motion representation (Guo et al. 2022), written from its published layout.

Per frame t = 0..T-2 of a (T, 22, 3) clip, after `canonicalize` (first-frame root XZ at the
origin, first frame facing +Z):

    [0]        root angular velocity about Y: arcsin of the y component of
               q_root[t+1] * inv(q_root[t]) -- a half angle, as HumanML3D stores it
    [1:3]      root XZ displacement t -> t+1, rotated by q_root[t+1]
    [3]        root height (pelvis Y) at frame t
    [4:67]     ric: joints 1..21 relative to the root in XZ, rotated by q_root[t]; Y absolute
    [67:193]   joints 1..21 local rotations from `inverse_kinematics`, continuous 6D
    [193:259]  22 joint displacements t -> t+1, rotated by q_root[t]
    [259:263]  foot contacts L ankle, L foot, R ankle, R foot: squared displacement < 0.002 m^2

q_root rotates the body's facing direction onto +Z. The facing direction comes from the hips
and shoulders and is Gaussian-smoothed over time (sigma 20 frames), as in HumanML3D; the
constants assume 20 fps, HumanML3D's rate.

Two deliberate differences from HumanML3D's own script, both to make the round trip exact:
the root yaw is unwrapped over time (HumanML3D's per-frame `qbetween` flips sign when the
body turns through 180 degrees, which corrupts [0]); and the facing estimate uses
(r_hip - l_hip) + (r_shoulder - l_shoulder) as documented (HumanML3D's skeleton.py unpacks
the hip indices the other way round, so its hip term has the opposite sign).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from . import rotations as R
from . import skeleton
from .motion import FEATURE_DIM, Motion, MotionError, validate_features, validate_fps, validate_joints

FPS = 20.0
FORWARD_SMOOTH_SIGMA = 20.0        # frames; HumanML3D's gaussian_filter1d(forward, 20, mode="nearest")
FOOT_CONTACT_THRESHOLD = 0.002     # squared metres per frame
FOOT_CONTACT_JOINTS = (7, 10, 8, 11)   # L ankle, L foot, R ankle, R foot

NUM_RIC = (skeleton.NUM_JOINTS - 1) * 3      # 63
NUM_ROT = (skeleton.NUM_JOINTS - 1) * 6      # 126
NUM_VEL = skeleton.NUM_JOINTS * 3            # 66

# Slices of the 263-d vector, for callers that take it apart.
ROOT_ANGULAR_VELOCITY = slice(0, 1)
ROOT_LINEAR_VELOCITY = slice(1, 3)
ROOT_HEIGHT = slice(3, 4)
RIC = slice(4, 4 + NUM_RIC)
ROT = slice(RIC.stop, RIC.stop + NUM_ROT)
LOCAL_VELOCITY = slice(ROT.stop, ROT.stop + NUM_VEL)
FOOT_CONTACTS = slice(LOCAL_VELOCITY.stop, LOCAL_VELOCITY.stop + 4)
assert FOOT_CONTACTS.stop == FEATURE_DIM

_UP = np.array([0.0, 1.0, 0.0])


def _joints64(joints: Any, what: str = "joints") -> np.ndarray:
    validate_joints(joints, what)          # shape, NaN and range checks with clear messages
    arr = np.asarray(joints, dtype=np.float64)
    return arr.reshape(len(arr), skeleton.NUM_JOINTS, 3)


def _gaussian_smooth(x: np.ndarray, sigma: float) -> np.ndarray:
    """scipy.ndimage.gaussian_filter1d(x, sigma, axis=0, mode="nearest") in numpy."""
    radius = int(4.0 * sigma + 0.5)
    k = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    k /= k.sum()
    padded = np.pad(x, [(radius, radius)] + [(0, 0)] * (x.ndim - 1), mode="edge")
    flat = padded.reshape(len(padded), -1)
    out = np.stack([np.convolve(flat[:, i], k, mode="valid") for i in range(flat.shape[1])], axis=-1)
    return out.reshape(x.shape)


def facing_yaw(joints: np.ndarray, smooth_sigma: float = FORWARD_SMOOTH_SIGMA) -> np.ndarray:
    """(T,) unwrapped yaw in radians of the facing direction (0 = facing +Z, +pi/2 = facing +X)."""
    j = np.asarray(joints, dtype=np.float64)
    r_hip, l_hip, r_sh, l_sh = skeleton.FACE_JOINTS
    across = R.normalize((j[:, r_hip] - j[:, l_hip]) + (j[:, r_sh] - j[:, l_sh]))
    forward = np.cross(_UP, across)            # horizontal by construction
    if smooth_sigma and smooth_sigma > 0 and len(forward) > 1:
        forward = _gaussian_smooth(forward, float(smooth_sigma))
    return np.unwrap(np.arctan2(forward[:, 0], forward[:, 2]))


def _yaw_quat(angle: np.ndarray) -> np.ndarray:
    """Quaternion of a rotation by `angle` about +Y."""
    half = 0.5 * np.asarray(angle, dtype=np.float64)
    q = np.zeros(np.shape(half) + (4,))
    q[..., 0] = np.cos(half)
    q[..., 2] = np.sin(half)
    return q


def _canonicalize64(j: np.ndarray, smooth_sigma: float, floor: bool = False) -> np.ndarray:
    out = j.copy()
    out[..., 0] -= j[0, 0, 0]
    out[..., 2] -= j[0, 0, 2]
    yaw0 = facing_yaw(j, smooth_sigma)[0]
    out = R.qrot(_yaw_quat(-yaw0), out)
    if floor:
        out[..., 1] -= out[:, list(FOOT_CONTACT_JOINTS), 1].min()
    return out


def canonicalize(joints: Any, *, floor: bool = False, smooth_sigma: float = FORWARD_SMOOTH_SIGMA) -> np.ndarray:
    """(T, 22, 3) float32: first-frame root XZ at the origin, first frame facing +Z.

    Facing uses the same (smoothed) estimate as `joints_to_features`, so the root rotation
    recovered from the features is the identity at frame 0. floor=True also moves Y so the
    lowest ankle/foot joint over the clip is at 0.
    """
    return _canonicalize64(_joints64(joints), smooth_sigma, floor).astype(np.float32)


def _ik(j: np.ndarray, smooth_sigma: float) -> np.ndarray:
    T = len(j)
    quats = np.zeros((T, skeleton.NUM_JOINTS, 4))
    quats[..., 0] = 1.0
    root = _yaw_quat(-facing_yaw(j, smooth_sigma))     # rotates the facing direction onto +Z
    quats[:, 0] = root
    for chain in skeleton.KINEMATIC_CHAIN:
        rot = root
        for parent, child in zip(chain[:-1], chain[1:]):
            bone = j[:, child] - j[:, parent]
            rest = np.broadcast_to(skeleton.REST_DIRECTIONS[child], bone.shape)
            local = R.qmul(R.qinv(rot), R.qbetween(rest, bone))
            quats[:, child] = local
            rot = R.qmul(rot, local)
    return quats


def inverse_kinematics(joints: Any, *, smooth_sigma: float = FORWARD_SMOOTH_SIGMA) -> np.ndarray:
    """(T, 22, 4) HumanML3D-style local quaternions.

    quats[:, 0] rotates the facing direction onto +Z (a pure yaw). Walking each chain of
    skeleton.KINEMATIC_CHAIN from the root rotation (every chain starts from the root's,
    the arm chains too, as HumanML3D does), the quaternion stored on joint c is
    inv(R) * qbetween(REST_DIRECTIONS[c], bone direction), and R = R * local.
    Only bone directions are kept: twist about a bone is not observable from joints.
    """
    return _ik(_joints64(joints), smooth_sigma)


def forward_kinematics(root_positions: Any, quats: Any, bone_lengths: Any) -> np.ndarray:
    """(T, 22, 3) float64 joints from root positions (T, 3), local quats (T, 22, 4) in the
    `inverse_kinematics` convention and bone lengths (22,) or (T, 22)."""
    root = np.asarray(root_positions, dtype=np.float64)
    q = np.asarray(quats, dtype=np.float64)
    if q.ndim != 3 or q.shape[1:] != (skeleton.NUM_JOINTS, 4):
        raise MotionError("quats", f"expected shape (frames, 22, 4), got {q.shape}")
    T = len(q)
    if root.shape != (T, 3):
        raise MotionError("root_positions", f"expected shape ({T}, 3) to match quats, got {root.shape}")
    lengths = np.asarray(bone_lengths, dtype=np.float64)
    if lengths.shape not in ((skeleton.NUM_JOINTS,), (T, skeleton.NUM_JOINTS)):
        raise MotionError("bone_lengths", f"expected shape (22,) or ({T}, 22), got {lengths.shape}")
    lengths = np.broadcast_to(lengths, (T, skeleton.NUM_JOINTS))
    q = R.normalize(q)
    out = np.zeros((T, skeleton.NUM_JOINTS, 3))
    out[:, 0] = root
    for chain in skeleton.KINEMATIC_CHAIN:
        rot = q[:, 0]
        for parent, child in zip(chain[:-1], chain[1:]):
            rot = R.qmul(rot, q[:, child])
            offset = skeleton.REST_DIRECTIONS[child] * lengths[:, child, None]
            out[:, child] = out[:, parent] + R.qrot(rot, offset)
    return out


def joints_to_features(joints: Any, *, smooth_sigma: float = FORWARD_SMOOTH_SIGMA,
                       contact_threshold: float = FOOT_CONTACT_THRESHOLD) -> np.ndarray:
    """(T-1, 263) float32 HumanML3D features of a (T, 22, 3) clip (T >= 2).

    The clip is canonicalized first (`canonicalize(joints)`, no floor shift), so
    `features_to_joints(joints_to_features(j))` gives `canonicalize(j)[:-1]`.
    """
    j = _joints64(joints)
    T = len(j)
    if T < 2:
        raise MotionError("joints", f"HumanML3D features need at least 2 frames (they store frame-to-frame velocities), got {T}")
    pos = _canonicalize64(j, smooth_sigma)
    quats = _ik(pos, smooth_sigma)
    root = quats[:, 0]

    delta = R.qmul(root[1:], R.qinv(root[:-1]))
    r_vel = np.arcsin(np.clip(delta[:, 2], -1.0, 1.0))
    l_vel = R.qrot(root[1:], pos[1:, 0] - pos[:-1, 0])[:, [0, 2]]
    root_y = pos[:-1, 0, 1]

    ric = pos.copy()
    ric[..., 0] -= pos[:, :1, 0]
    ric[..., 2] -= pos[:, :1, 2]
    ric = R.qrot(root[:, None], ric)[:-1, 1:].reshape(T - 1, NUM_RIC)
    rot = R.quat_to_cont6d(quats[:-1, 1:]).reshape(T - 1, NUM_ROT)
    local_vel = R.qrot(root[:-1, None], pos[1:] - pos[:-1]).reshape(T - 1, NUM_VEL)

    feet = pos[:, list(FOOT_CONTACT_JOINTS)]
    contacts = (np.sum((feet[1:] - feet[:-1]) ** 2, axis=-1) < contact_threshold).astype(np.float64)

    feats = np.concatenate([r_vel[:, None], l_vel, root_y[:, None], ric, rot, local_vel, contacts], axis=-1)
    return feats.astype(np.float32)


def _features64(features: Any) -> np.ndarray:
    validate_features(features, "features")
    return np.asarray(features, dtype=np.float64)


def recover_root(features: Any) -> tuple[np.ndarray, np.ndarray]:
    """(root quats (N, 4), root positions (N, 3)) from features, as HumanML3D's recover_root_rot_pos."""
    f = _features64(features)
    return _recover_root(f)


def _recover_root(f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = len(f)
    angle = np.zeros(n)
    angle[1:] = np.cumsum(f[:-1, 0])
    q = np.zeros((n, 4))
    q[:, 0] = np.cos(angle)
    q[:, 2] = np.sin(angle)
    pos = np.zeros((n, 3))
    pos[1:, [0, 2]] = f[:-1, 1:3]
    pos = np.cumsum(R.qrot(R.qinv(q), pos), axis=0)
    pos[:, 1] = f[:, 3]
    return q, pos


def _bone_lengths_option(f: np.ndarray, bone_lengths: Any) -> np.ndarray:
    if bone_lengths is None:
        return skeleton.DEFAULT_BONE_LENGTHS
    if isinstance(bone_lengths, str):
        if bone_lengths != "ric":
            raise MotionError("bone_lengths", f"expected None, 'ric' or an array of 22 lengths, got {bone_lengths!r}")
        first = np.zeros((skeleton.NUM_JOINTS, 3))
        first[0, 1] = f[0, 3]
        first[1:] = f[0, RIC].reshape(-1, 3)
        return skeleton.bone_lengths(first)
    lengths = np.asarray(bone_lengths, dtype=np.float64)
    if lengths.shape not in ((skeleton.NUM_JOINTS,), (len(f), skeleton.NUM_JOINTS)) or not np.isfinite(lengths).all():
        raise MotionError("bone_lengths", f"expected 22 finite lengths or ({len(f)}, 22), got shape {lengths.shape}")
    return lengths


def _features_to_joints64(f: np.ndarray, method: str, bone_lengths: Any) -> tuple[np.ndarray, np.ndarray]:
    q, root_pos = _recover_root(f)
    n = len(f)
    if method == "ric":
        local = R.qrot(R.qinv(q)[:, None], f[:, RIC].reshape(n, -1, 3))
        local[..., 0] += root_pos[:, None, 0]
        local[..., 2] += root_pos[:, None, 2]
        joints = np.concatenate([root_pos[:, None], local], axis=1)
    elif method == "rot":
        lengths = _bone_lengths_option(f, bone_lengths)
        local_q = R.cont6d_to_quat(f[:, ROT].reshape(n, -1, 6))
        quats = np.concatenate([q[:, None], local_q], axis=1)
        joints = forward_kinematics(root_pos, quats, lengths)
    else:
        raise MotionError("method", f"expected 'ric' or 'rot', got {method!r}")
    return joints, q


def features_to_joints(features: Any, *, method: str = "ric", bone_lengths: Any = None) -> np.ndarray:
    """(N, 22, 3) float32 joints from (N, 263) features.

    method="ric": HumanML3D's recover_from_ric (positions stored in the features).
    method="rot": the recovered root trajectory plus forward kinematics of the 6D rotations
    with `bone_lengths`: None for skeleton.DEFAULT_BONE_LENGTHS, "ric" to measure them from
    the first frame's ric positions, or an array (22,) or (N, 22).
    """
    joints, _ = _features_to_joints64(_features64(features), method, bone_lengths)
    return joints.astype(np.float32)


def features_to_motion(features: Any, *, fps: float = FPS, method: str = "ric", bone_lengths: Any = None,
                       caption: str = "", name: str = "", provenance: dict | None = None) -> Motion:
    """A Motion of N+1 frames keeping the N feature rows.

    HumanML3D stores T-1 feature rows for T frames; the last frame is rebuilt from the last
    row's joint velocities (exact for features made by `joints_to_features`).
    """
    f = _features64(features)
    joints, q = _features_to_joints64(f, method, bone_lengths)
    step = R.qrot(R.qinv(q[-1]), f[-1, LOCAL_VELOCITY].reshape(-1, 3))
    joints = np.concatenate([joints, (joints[-1] + step)[None]], axis=0)
    return Motion(joints=joints, fps=validate_fps(fps), features=f.astype(np.float32), caption=caption,
                  name=name, provenance=dict(provenance or {}))


def with_features(motion: Motion) -> Motion:
    """The same motion with .features = joints_to_features(motion.joints) ((T-1, 263)).

    The features are computed at the motion's own frame rate; HumanML3D's are at 20 fps
    (resample first with motion.resampled(20.0) to match them).
    """
    if motion.num_frames < 2:
        label = f"motion {motion.name!r}" if motion.name else "motion"
        raise MotionError(label, f"HumanML3D features need at least 2 frames, got {motion.num_frames}")
    return motion.replace(features=joints_to_features(motion.joints))
