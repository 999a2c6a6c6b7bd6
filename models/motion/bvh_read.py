"""BVH import onto the 22-joint skeleton: a general parser (any channel order, position channels on
any joint, End Sites, CRLF and tabs), forward kinematics to world positions, joints matched by name
(ours, SMPL-style such as Pelvis / L_Hip, or Mixamo's mixamorig:Hips ...; bvh_format.joint_index), and unit detection
(centimetres when the figure is taller than 10 units). Conventions: bvh_format.py.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from . import skeleton
from .bvh_format import CHANNEL_NAMES, joint_index
from .motion import Motion, MotionError, validate_fps

CM_THRESHOLD = 10.0     # a figure taller than this many units is taken to be in centimetres


class _Joint:
    __slots__ = ("name", "parent", "offset", "channels", "first_column", "line")

    def __init__(self, name: str, parent: int, line: int):
        self.name, self.parent, self.line = name, parent, line
        self.offset = None
        self.channels: list[str] = []
        self.first_column = 0


_MAX_DEPTH = 200


class _Parser:
    def __init__(self, text: str, where: str):
        self.where = where
        self.tokens: list[tuple[str, int]] = []
        self.lines = text.splitlines()
        self.motion_line = None
        for n, line in enumerate(self.lines, 1):
            words = line.split()
            if words and words[0].upper() == "MOTION":
                self.motion_line = n
                break
            self.tokens.extend((w, n) for w in words)
        self.pos = 0
        self.joints: list[_Joint] = []
        self.end_sites: list[tuple[int, np.ndarray]] = []
        self.num_channels = 0

    def fail(self, line: int | None, message: str) -> MotionError:
        at = f", line {line}" if line else ""
        return MotionError(f"{self.where}{at}", message)

    def _header_value(self, line: int, text: str, pattern: str, convert, form: str, kind: str):
        m = re.fullmatch(pattern, text, re.IGNORECASE)
        if not m:
            raise self.fail(line, f"expected {form}, found '{text}'")
        try:
            return convert(m.group(1))
        except ValueError:
            raise self.fail(line, f"expected {kind}, found '{m.group(1)}'") from None

    def next(self, expected: str) -> tuple[str, int]:
        if self.pos >= len(self.tokens):
            if self.motion_line is None:
                raise self.fail(len(self.lines), f"the file ends inside the HIERARCHY; expected {expected}")
            raise self.fail(self.motion_line, f"MOTION comes before the HIERARCHY is complete; expected {expected}")
        tok = self.tokens[self.pos]
        self.pos += 1
        return tok

    def expect(self, word: str) -> int:
        tok, line = self.next(f"'{word}'")
        if tok.upper() != word.upper():
            raise self.fail(line, f"expected '{word}', found '{tok}'")
        return line

    def number(self, what: str) -> float:
        tok, line = self.next(what)
        try:
            value = float(tok)
        except ValueError:
            raise self.fail(line, f"expected {what} (a number), found '{tok}'") from None
        if not np.isfinite(value):
            raise self.fail(line, f"{what} is not finite: '{tok}'")
        return value

    def offset(self) -> np.ndarray:
        self.expect("OFFSET")
        return np.array([self.number("the OFFSET's x"), self.number("the OFFSET's y"), self.number("the OFFSET's z")])

    def name_after(self, line: int) -> str:
        words = []
        while self.pos < len(self.tokens) and self.tokens[self.pos][1] == line and self.tokens[self.pos][0] != "{":
            words.append(self.tokens[self.pos][0])
            self.pos += 1
        if not words:
            raise self.fail(line, "expected a joint name after ROOT/JOINT")
        return " ".join(words)

    def joint(self, parent: int, line: int, depth: int = 0) -> None:
        if depth > _MAX_DEPTH:
            raise self.fail(line, f"joints nested more than {_MAX_DEPTH} deep")
        joint = _Joint(self.name_after(line), parent, line)
        index = len(self.joints)
        self.joints.append(joint)
        self.expect("{")
        while True:
            tok, line = self.next("OFFSET, CHANNELS, JOINT, End Site or '}'")
            word = tok.upper()
            if word == "OFFSET":
                self.pos -= 1
                joint.offset = self.offset()
            elif word == "CHANNELS":
                if joint.channels:
                    raise self.fail(line, f"joint '{joint.name}' has a second CHANNELS line")
                count = self.number("the number of channels")
                if count != int(count) or not 0 <= count <= 6:
                    raise self.fail(line, f"CHANNELS count must be 0..6, found '{self.tokens[self.pos - 1][0]}'")
                joint.first_column = self.num_channels
                for _ in range(int(count)):
                    name, cline = self.next("a channel name")
                    canonical = CHANNEL_NAMES.get(name.lower())
                    if canonical is None:
                        raise self.fail(cline, f"unknown channel '{name}' (expected X/Y/Z position or rotation)")
                    joint.channels.append(canonical)
                self.num_channels += int(count)
            elif word == "JOINT":
                self.joint(index, line, depth + 1)
            elif word == "END":
                self.expect("Site")
                self.expect("{")
                self.end_sites.append((index, self.offset()))
                self.expect("}")
            elif tok == "}":
                if joint.offset is None:
                    raise self.fail(joint.line, f"joint '{joint.name}' has no OFFSET")
                return
            else:
                raise self.fail(line, f"expected OFFSET, CHANNELS, JOINT, End Site or '}}', found '{tok}'")

    def hierarchy(self) -> None:
        tok, line = self.next("'HIERARCHY'")
        if tok.upper() != "HIERARCHY":
            # Not a BVH at all (perhaps another file under a .bvh name): quote nothing of what it holds.
            raise self.fail(line, "expected 'HIERARCHY' first; this is not a BVH file")
        line = self.expect("ROOT")
        self.joint(-1, line)
        if self.pos < len(self.tokens):
            tok, line = self.tokens[self.pos]
            raise self.fail(line, f"expected MOTION after the ROOT joint's closing '}}', found '{tok}'")
        if self.motion_line is None:
            raise self.fail(len(self.lines), "no MOTION section (the file ends after the HIERARCHY)")

    def motion(self) -> tuple[np.ndarray, float]:
        n = self.motion_line
        rows = self.lines[n:]
        header = []
        consumed = 0
        for text in rows:
            consumed += 1
            if text.strip():
                header.append((text.strip(), n + consumed))
            if len(header) == 2:
                break
        if len(header) < 2:
            raise self.fail(n, "the MOTION section is truncated: expected 'Frames:' and 'Frame Time:' lines")
        (frames_text, frames_line), (time_text, time_line) = header
        frames = self._header_value(frames_line, frames_text, r"Frames\s*:\s*(\S+)", int,
                                    "'Frames: N'", "a whole number of frames")
        if frames < 1:
            raise self.fail(frames_line, f"the file declares {frames} frames; a motion needs at least 1")
        frame_time = self._header_value(time_line, time_text, r"Frame\s+Time\s*:\s*(\S+)", float,
                                        "'Frame Time: seconds'", "a number of seconds per frame")
        if not (np.isfinite(frame_time) and frame_time > 0):
            raise self.fail(time_line, f"Frame Time must be a positive number of seconds, found {frame_time!r}")

        # Each frame needs a row of the file: allocate for the rows there are, not for what 'Frames:'
        # claims (10**12 would not fit in memory); fewer rows than declared is reported below.
        available = sum(1 for text in rows[consumed:] if text.strip())
        data = np.empty((min(frames, available), self.num_channels))
        row = 0
        first = n + consumed + 1
        for k, text in enumerate(rows[consumed:]):
            words = text.split()
            if not words:
                continue
            line = first + k
            if row >= frames:
                raise self.fail(line, f"more frame rows than the {frames} declared by 'Frames:'")
            if len(words) != self.num_channels:
                raise self.fail(line, f"frame {row} has {len(words)} values; the HIERARCHY declares {self.num_channels} channels")
            try:
                data[row] = np.array(words, dtype=np.float64)
            except ValueError:
                bad = next(w for w in words if not _is_number(w))
                raise self.fail(line, f"frame {row}: expected a number, found '{bad}'") from None
            if not np.isfinite(data[row]).all():
                raise self.fail(line, f"frame {row} contains a NaN or infinite value")
            row += 1
        if row < frames:
            raise self.fail(len(self.lines), f"the file is truncated: 'Frames: {frames}' but only {row} frame rows")
        return data, frame_time


def _is_number(word: str) -> bool:
    try:
        float(word)
    except ValueError:
        return False
    return True


def _axis_matrices(axis: str, degrees: np.ndarray) -> np.ndarray:
    a = np.radians(degrees)
    c, s = np.cos(a), np.sin(a)
    m = np.zeros(a.shape + (3, 3))
    i = "XYZ".index(axis)
    j, k = (i + 1) % 3, (i + 2) % 3
    m[..., i, i] = 1.0
    m[..., j, j] = c
    m[..., k, k] = c
    m[..., k, j] = s
    m[..., j, k] = -s
    return m


def _forward_kinematics(parser: _Parser, data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World positions (T, J, 3) of every joint, and the rest-pose positions (J + end sites, 3)."""
    T = len(data)
    J = len(parser.joints)
    pos = np.zeros((T, J, 3))
    rot = np.zeros((T, J, 3, 3))
    rest = np.zeros((J, 3))
    for index, joint in enumerate(parser.joints):
        translation = np.broadcast_to(joint.offset, (T, 3)).copy()
        local = np.broadcast_to(np.eye(3), (T, 3, 3))
        for k, channel in enumerate(joint.channels):
            values = data[:, joint.first_column + k]
            axis = channel[0]
            if channel.endswith("position"):
                translation[:, "XYZ".index(axis)] = values
            else:
                local = local @ _axis_matrices(axis, values)
        if joint.parent < 0:
            pos[:, index] = translation
            rot[:, index] = local
            rest[index] = joint.offset
        else:
            parent_rot = rot[:, joint.parent]
            pos[:, index] = pos[:, joint.parent] + np.einsum("tij,tj->ti", parent_rot, translation)
            rot[:, index] = parent_rot @ local
            rest[index] = rest[joint.parent] + joint.offset
    ends = np.array([rest[i] + off for i, off in parser.end_sites]).reshape(-1, 3)
    return pos, np.concatenate([rest, ends])


def bvh_text_to_motion(text: str, *, fps: float | None = None, scale: float | None = None,
                       name: str = "", where: str = "BVH text") -> Motion:
    """Parse BVH text into a Motion (see `load_bvh`); errors name `where`."""
    parser = _Parser(text, where)
    if not parser.tokens:
        raise MotionError(where, f"empty; expected a BVH starting with HIERARCHY")
    parser.hierarchy()
    data, frame_time = parser.motion()
    world, rest = _forward_kinematics(parser, data)

    index: dict[int, int] = {}
    for k, joint in enumerate(parser.joints):
        ours = joint_index(joint.name)
        if ours is None:
            continue
        if ours in index:
            raise MotionError(where, f"joints '{parser.joints[index[ours]].name}' (line {parser.joints[index[ours]].line}) "
                              f"and '{joint.name}' (line {joint.line}) both name our '{skeleton.JOINT_NAMES[ours]}'")
        index[ours] = k
    missing = [skeleton.JOINT_NAMES[i] for i in range(skeleton.NUM_JOINTS) if i not in index]
    if missing:
        found = ", ".join(j.name for j in parser.joints)
        raise MotionError(where, f"the 22-joint skeleton needs joints the file lacks: {', '.join(missing)} "
                          f"(names like 'left_hip', SMPL's 'L_Hip' or Mixamo's 'mixamorig:LeftUpLeg' are recognised; "
                          f"the file has: {found})")

    if scale is None:
        extent = float(np.ptp(rest, axis=0).max())
        if extent < 1e-9:
            extent = float(np.ptp(world[0], axis=0).max())
        scale = 0.01 if extent > CM_THRESHOLD else 1.0
    else:
        scale = float(scale)
        if not np.isfinite(scale) or scale <= 0:
            raise MotionError("scale", f"expected a positive number, got {scale!r}")
    joints = world[:, [index[i] for i in range(skeleton.NUM_JOINTS)]] * scale

    if fps is None:
        fps = 1.0 / frame_time
        if abs(fps - round(fps, 3)) < 1e-4 * fps:
            fps = round(fps, 3)
    try:
        return Motion(joints=joints, fps=validate_fps(fps), name=name,
                      provenance={"source": "bvh", "unit_scale": scale})
    except MotionError as exc:
        raise MotionError(where, f"{exc}") from None


def load_bvh(path: str | os.PathLike, *, fps: float | None = None, scale: float | None = None) -> Motion:
    """Read a BVH file into a Motion.

    fps: declare the frame rate (default: 1 / the file's Frame Time).
    scale: multiply file units by this to get metres; default: 0.01 if the figure is taller
    than 10 units (centimetres), else 1.
    Malformed files raise MotionError naming the file, the line and what was expected.
    """
    path = Path(path)
    where = str(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise MotionError(where, f"no such file") from None
    except IsADirectoryError:
        raise MotionError(where, f"is a folder, not a BVH file") from None
    except OSError as exc:
        raise MotionError(where, f"cannot be read ({exc.strerror or exc})") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    motion = bvh_text_to_motion(text, fps=fps, scale=scale, name=path.stem, where=where)
    return motion.replace(provenance=dict(motion.provenance, file=path.name))
