"""Source folders of database builds: checking the folder a user named, listing its files with an
entry name for each, and reading the `<stem>.txt` caption file beside a file. Shared by the motion,
video-pose and video-clip builders, so every kind of folder is checked and captioned the same way."""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from .errors import RetrievalError


def source_folder(source, what: str) -> Path:
    """`source` as a readable folder; `what` ("motion folder", "video folder"...) starts the message."""
    if source is None or str(source).strip() == "":
        raise RetrievalError("source_folder", f"{what}: no source folder given")
    path = Path(source).expanduser()
    if not path.exists():
        raise RetrievalError("source_folder", f"{what} {path}: does not exist")
    if not path.is_dir():
        raise RetrievalError("source_folder", f"{what} {path}: is not a folder")
    if not os.access(path, os.R_OK | os.X_OK):
        raise RetrievalError("source_folder", f"{what} {path}: cannot be read (permission denied)")
    return path


def inside(source: Path, path: Path, what: str) -> Path:
    """`path` resolved (symlinks and '..' followed), refused when it leaves the folder `source`:
    a build reads only what the user's folder holds. The message quotes no content of the file."""
    root = Path(source).resolve()
    real = Path(path).resolve()
    if real != root and root not in real.parents:
        raise RetrievalError("source_folder", f"{what} {path}: leaves the source folder {root} "
                             "(a symlink or '..' pointing elsewhere); refused")
    return real


def entry_names(source: Path, files: Sequence[Path]) -> list[str]:
    """Entry names of a folder's files: the path below `source` without its suffix, or with it where
    two files differ only by suffix (clip.mp4 and clip.webp)."""
    stems = [p.relative_to(source).with_suffix("").as_posix() for p in files]
    clash = {s for s in stems if stems.count(s) > 1}
    return [p.relative_to(source).as_posix() if s in clash else s for p, s in zip(files, stems)]


def source_files(source: Path, extensions, what: str, recursive: bool = False) -> tuple[list[Path], list[str]]:
    """The files in `source` with these extensions, sorted, and an entry name for each."""
    pattern = "**/*" if recursive else "*"
    files = sorted(p for p in source.glob(pattern) if p.is_file() and p.suffix.lower() in extensions)
    for p in files:
        inside(source, p, "file")
    if not files:
        raise RetrievalError("source_folder", f"{what} {source}: holds no {', '.join(extensions)} files"
                             + ("" if recursive else " (sub-folders are not searched; use recursive)"))
    return files, entry_names(source, files)


def sidecar_captions(path: Path) -> list[str]:
    """The captions in `<stem>.txt` beside `path`, one a line; [] when there is none."""
    side = path.with_suffix(".txt")
    if not side.is_file():
        return []
    inside(path.parent, side, "caption file")
    try:
        lines = side.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise RetrievalError("source_folder", f"caption file {side}: cannot be read ({exc})") from None
    out = []
    for line in lines:
        # Accept HumanML3D-style lines too: the caption is the part before the first '#'.
        caption = line.split("#", 1)[0].strip()
        if caption:
            out.append(caption)
    return out


def caption_from_name(path: Path) -> str:
    """The caption a file without a caption file gets: its name as words ("walk_fast" -> "walk fast")."""
    return " ".join(path.stem.replace("_", " ").replace("-", " ").split())


__all__ = ["inside", "source_folder", "entry_names", "source_files", "sidecar_captions", "caption_from_name"]
