"""Regenerate the built-in motion library from the DeepMimic clips in pybullet_data.

    cd <pack root> && python -m models.motion.build_library [--out DIR]

Writes builtin_motions.npz and builtin_motions.json into models/motion/data (or DIR).
The output is byte-for-byte deterministic for a given pybullet_data and numpy/zlib.
"""
from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import io
import json
import sys
import zipfile
from pathlib import Path

import numpy as np

from . import deepmimic, library

REGENERATE = "python -m models.motion.build_library   (from the pack root; needs pybullet)"

# name -> (file under pybullet_data/data/motions, captions). Captions were written after
# looking at contact sheets of each retargeted clip; directions are the performer's own
# (the clip starts facing +Z, their left is +X), counts and turns were measured. The
# captions after the first four give the names people use for the move and short forms
# (written later so that text retrieval meets paraphrases; see the README's retrieval quality).
CLIPS = {
    "backflip": ("humanoid3d_backflip.txt", [
        "a person swings their arms up and does a backflip, landing on their feet",
        "someone jumps up and flips backwards in the air, landing behind where they started",
        "a person performs a standing back somersault",
        "the person bends their knees, leaps and rotates backward through a full flip before landing",
        "a backflip",
        "a back flip from a standing position",
        "a back tuck: jumping up and turning over backwards in the air",
        "a person does a backward somersault",
        "an acrobat flips backwards, heels over head",
    ]),
    "cartwheel": ("humanoid3d_cartwheel.txt", [
        "a person does a cartwheel to their left",
        "someone turns a cartwheel sideways to the left, hands on the ground and legs over the top",
        "a person puts their hands on the floor and swings their legs over, cartwheeling to the left",
        "a person performs a cartwheel to the left and lands back on their feet facing the same way",
        "a cartwheel to the left",
        "a gymnast does a sideways handspring to the left, legs passing over the head",
        "someone wheels sideways on their hands and feet, moving left",
        "a person cartwheels across the floor toward the left",
    ]),
    "crawl": ("humanoid3d_crawl.txt", [
        "a person crawls forward on their elbows and knees, staying low to the ground",
        "someone does a low army crawl forward",
        "a person drags themselves forward along the floor on their forearms and knees",
        "a person crawls slowly forward on their belly, alternating arms and legs",
        "a person crawls",
        "an army crawl, sliding along the floor on the forearms",
        "someone creeps forward lying flat on the ground, pulling with the elbows",
        "a soldier crawls low on their stomach",
    ]),
    "dance_a": ("humanoid3d_dance_a.txt", [
        "a person dances, spinning once to their right while stepping to the left",
        "someone does a dance move, turning all the way around clockwise and swinging their arms",
        "a person dances sideways to their left, making a full turn with their arms raised",
        "a dancer leans forward, then twirls around to the right with arms swinging up",
        "a person dances and twirls to the right",
        "a dance spin, turning clockwise once",
        "someone dances, doing a pirouette to their right",
        "a dancer makes a full rotation to the right while moving to the left",
    ]),
    "dance_b": ("humanoid3d_dance_b.txt", [
        "a person dances, stepping forward and to the right and then back while waving their arms",
        "someone does a dance step out to the right and returns, swinging their arms overhead",
        "a person sways and dances with their arms raised, stepping out to the right and back",
        "a dancer shuffles forward to the right and back to where they started, moving their arms to the beat",
        "a person dances, stepping to the right and back",
        "a dance side step to the right with arms waving in the air",
        "someone dances in place, swaying and lifting their arms to the music",
        "a dancer steps out to the right and returns, arms raised over the head",
    ]),
    "getup_facedown": ("humanoid3d_getup_facedown.txt", [
        "a person lying face down pushes themselves up and stands",
        "someone gets up off the floor from lying on their stomach",
        "a person pushes up onto their hands and knees and then rises to their feet",
        "a person lying prone on the ground gets up to a standing position",
        "a person gets up from lying on their front",
        "someone lying on their belly gets up",
        "a person lying face-down on the floor rises to standing",
        "getting up from a face-down position",
    ]),
    "getup_faceup": ("humanoid3d_getup_faceup.txt", [
        "a person lying on their back rocks back with their legs up, then rolls forward onto their feet and stands",
        "someone gets up from lying face up on the floor",
        "a person lying on their back swings their legs and gets up to standing",
        "a person lies on the ground face up, tucks their legs, sits up and rises to their feet",
        "a person gets up from lying on their back",
        "someone lying face-up on the floor stands up",
        "a person lying supine sits up and rises to standing",
        "getting up from a face-up position",
    ]),
    "jump": ("humanoid3d_jump.txt", [
        "a person swings their arms and jumps forward with both feet",
        "someone does a standing long jump forward",
        "a person crouches and leaps forward about a metre, landing on both feet",
        "a person bends their knees, jumps forward and lands",
        "a person jumps forward",
        "a standing broad jump with both feet together",
        "someone hops forward with both feet",
        "a person leaps forward from a standstill and lands on two feet",
    ]),
    "kick": ("humanoid3d_kick.txt", [
        "a person kicks high with their right leg",
        "someone throws a high right-footed kick and turns to their left as they land",
        "a person does a roundhouse kick with the right leg, turning their body to the left",
        "a person lifts their right leg and kicks up to head height, then puts it down and turns left",
        "a person kicks with their right leg",
        "a high kick with the right foot",
        "a martial arts kick with the right leg",
        "someone kicks the air high with their right foot",
    ]),
    "punch": ("humanoid3d_punch.txt", [
        "a person steps forward and throws a punch with their right hand",
        "someone lunges forward and punches with their right fist",
        "a person in a fighting stance advances and punches with the right arm",
        "a person moves forward diagonally to the left and throws a right punch",
        "a person punches with their right hand",
        "a right-handed punch while stepping forward",
        "a boxer steps in and throws a right punch",
        "someone strikes forward with their right fist",
    ]),
    "roll": ("humanoid3d_roll.txt", [
        "a person does a forward roll and stands back up",
        "someone crouches down, rolls forward across the floor and gets back on their feet",
        "a person tucks and somersaults forward on the ground",
        "a person squats, rolls forward along the floor and rises to standing",
        "a forward roll",
        "a person rolls forward over their shoulders with the head tucked",
        "someone tumbles forward head over heels on the floor and stands up",
        "a person rolls forward on the floor",
    ]),
    "run": ("humanoid3d_run.txt", [
        "a person runs forward",
        "someone jogs quickly straight ahead",
        "a person runs forward taking two quick strides",
        "a person is running in a straight line",
        "a person running",
        "someone sprints forward",
        "a person jogs forward",
        "a fast run straight ahead",
    ]),
    "spin": ("humanoid3d_spin.txt", [
        "a person spins around to their left twice while moving sideways to the left",
        "someone whirls counterclockwise, leaping into a horizontal aerial spin with their legs kicking up",
        "a person does a spinning butterfly kick, turning to the left and travelling to the left",
        "a person turns twice to the left, throwing their body sideways into the air mid-spin",
        "a person spins in the air to the left",
        "a butterfly twist to the left",
        "an acrobat spins twice in the air, body horizontal, travelling left",
        "someone twirls around twice to the left, leaping sideways",
    ]),
    "spinkick": ("humanoid3d_spinkick.txt", [
        "a person jumps and spins to their left, kicking high with their right leg",
        "someone does a jumping spin kick, turning a full circle counterclockwise",
        "a person leaps into the air, spins around and kicks with the right foot before landing",
        "a person performs a tornado kick, rotating to the left and kicking up with their right leg",
        "a spinning jump kick, turning to the left",
        "a jump spin kick with the right leg",
        "someone jumps, spins a full turn in the air and kicks",
        "a 360 jump kick, rotating left and kicking with the right leg",
    ]),
    "walk": ("humanoid3d_walk.txt", [
        "a person walks forward",
        "someone takes two steps forward at a normal pace",
        "a person walks straight ahead swinging their arms",
        "a person strolls forward in a straight line",
        "a person is walking",
        "someone walks forward normally",
        "a person walks",
    ]),
    "walk_forward": ("walker/0walk_forward.txt", [
        "a person walks forward at a steady pace",
        "someone walks straight ahead, taking two steps",
        "a person walks forward with relaxed arms",
        "the person is walking in a straight line",
        "walking straight forward",
        "someone walks ahead at an easy pace",
        "a person walks",
    ]),
    "turn_left_a": ("walker/turn_left0.txt", [
        "a person walks forward and veers slightly to the left",
        "someone walks while curving gently to their left",
        "a person takes two steps, turning a little to the left",
        "a person walks in a slight arc to the left",
        "a person walks and drifts slightly left",
        "walking with a slight turn to the left",
    ]),
    "turn_left_b": ("walker/turn_left1.txt", [
        "a person walks forward and turns to the left",
        "someone walks and curves round to their left",
        "a person takes two steps while turning left",
        "a person walks ahead, bending their path to the left",
        "a person walks and turns left",
        "walking and turning to the left",
    ]),
    "turn_right_a": ("walker/turn_right0.txt", [
        "a person walks and turns to the right",
        "someone walks forward and makes a right turn",
        "a person takes two steps, turning about ninety degrees to their right",
        "a person walks in a curve to the right",
        "a person walks and turns right",
        "walking and making a right turn",
    ]),
    "turn_right_b": ("walker/turn_right1.txt", [
        "a person walks forward and veers to the right",
        "someone walks while curving to their right",
        "a person takes two steps and turns right",
        "a person walks ahead, bending their path to the right",
        "a person walks and drifts to the right",
        "walking with a turn to the right",
    ]),
}

PROVENANCE = (
    "Motion capture clips from DeepMimic (Xue Bin Peng et al., github.com/xbpeng/DeepMimic, MIT "
    "licence), which its authors derived from public motion capture (CMU Graphics Lab Motion "
    "Capture Database, SFU Motion Capture Database), as redistributed in the pybullet_data package "
    "of pybullet (zlib licence). Converted by MotionRAG Suite: forward kinematics of the DeepMimic "
    "humanoid (humanoid.urdf at pybullet's globalScaling 0.25), resampled to 20 fps by slerp, "
    "retargeted to the 22-joint HumanML3D skeleton with the pack's default bone lengths, root path "
    "scaled by the leg-length ratio, placed canonically (lowest joint at y=0, first pelvis at "
    "x=z=0, first frame facing +Z), and mirrored left/right. See LICENSE-DATA.md."
)


def motions_dir() -> Path:
    try:
        import pybullet_data
    except ImportError as exc:
        raise SystemExit("build_library needs pybullet (pip install pybullet) for its DeepMimic clips") from exc
    return Path(pybullet_data.getDataPath())


def _write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """np.savez_compressed stamps each member with the current time; fix it so rebuilds match."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for key in sorted(arrays):
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(arrays[key]), allow_pickle=False)
            info = zipfile.ZipInfo(key + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, buf.getvalue(), compresslevel=9)


def build(out_dir: Path | None = None, verbose: bool = False) -> dict:
    """Convert every clip and write the npz and json; returns the json document."""
    out_dir = Path(out_dir) if out_dir is not None else library.DATA_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    data_root = motions_dir()
    motions = data_root / "data" / "motions"
    urdf = deepmimic.parse_urdf(data_root / "humanoid" / "humanoid.urdf")
    arrays, entries = {}, []
    for name in sorted(CLIPS):
        rel, captions = CLIPS[name]
        src = motions / rel
        conv = deepmimic.convert_clip(src, urdf)
        arrays[name] = conv.joints
        frames = len(conv.joints)
        common = {
            "source_file": f"pybullet_data/data/motions/{rel}",
            "source_sha256": hashlib.sha256(src.read_bytes()).hexdigest(),
            "source_frames": conv.source_frames, "source_fps": round(conv.source_fps, 4),
            "source_duration": round(conv.source_duration, 6), "loop": conv.loop,
            "fps": deepmimic.TARGET_FPS, "frames": frames, "duration": frames / deepmimic.TARGET_FPS,
            "humanoid_bone_error_m": round(conv.humanoid_bone_error, 6), "licence": library.LICENCE,
        }
        entries.append({"name": name, "captions": captions, "mirrored": False, "mirror_of": None, **common})
        entries.append({"name": library.MIRROR_PREFIX + name, "captions": [library.mirror_caption(c) for c in captions],
                        "mirrored": True, "mirror_of": name, **common})
        if verbose:
            print(f"{name:16s} {frames:4d} frames  {frames / deepmimic.TARGET_FPS:5.2f} s  "
                  f"(source {conv.source_frames} frames, {conv.source_duration:.3f} s, {conv.loop})  "
                  f"bone-length error before retargeting {1000 * conv.humanoid_bone_error:.1f} mm")
    doc = {
        "format": "motionrag-builtin-motions/1",
        "provenance": PROVENANCE,
        "licence": library.LICENCE,
        "regenerate": REGENERATE,
        "generator": {"pybullet": importlib.metadata.version("pybullet")},
        "skeleton": "HumanML3D 22 joints, metres, Y up, first frame facing +Z (left = +X), 20 fps",
        "mirroring": "entries with mirrored=true are built at load time with Motion.mirrored() of mirror_of",
        "clips": entries,
    }
    _write_npz(out_dir / library.LIBRARY_PATH.name, arrays)
    (out_dir / library.INDEX_PATH.name).write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    return doc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: models/motion/data)")
    args = parser.parse_args(argv)
    build(args.out, verbose=True)
    out = args.out or library.DATA_DIR
    print(f"wrote {out / library.LIBRARY_PATH.name} ({(out / library.LIBRARY_PATH.name).stat().st_size} bytes) "
          f"and {out / library.INDEX_PATH.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
