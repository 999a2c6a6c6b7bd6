"""Faults found by trying to break the databases (issue 14): reserved names, the switch of an existing
database killed at every step (overwrite and the built-in rebuild), two builds racing for one name,
leftovers of older versions and killed writers, names and manifests that are not what they seem."""
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from motionrag_suite.retrieval import db_format as fmt
from motionrag_suite.retrieval.builders import build_from_source
from motionrag_suite.retrieval.builtin_db import BUILTIN, FINGERPRINT_TAG, ensure_builtin_database
from motionrag_suite.retrieval.database import open_database
from motionrag_suite.retrieval.errors import DatabaseCorruptError, RetrievalError
from motionrag_suite.retrieval.writer import add_entries, build_database

from common.standalone import PACK_ROOT

from .test_retrieval_atomic import PRELUDE
from .test_retrieval_cli import cli
from .test_retrieval_fixtures import CLIPS, build_small, clip_specs, file_hashes

# The child stops before its k-th rename that touches the database folder (the steps of a switch),
# says so, and waits to be killed or told to go on: a kill can then land between any two steps.
STALL_ON_RENAME = """
import os as _os
_calls = [0]
def _stalling(real):
    def rename(src, dst, *a, **k):
        if any(str(p).startswith(TARGET) for p in (src, dst)):
            _calls[0] += 1
            if _calls[0] == STALL_AT:
                print("STALL", _calls[0], src, dst, flush=True)
                while not _os.path.exists(_os.path.join(root, "go")):
                    time.sleep(0.05)
        return real(src, dst, *a, **k)
    return rename
_os.rename, _os.replace = _stalling(_os.rename), _stalling(_os.replace)
"""


def _start(code, root, name, stall_at):
    target = str(root / "databases" / name)
    head = PRELUDE + f"\nTARGET = {target!r}\nSTALL_AT = {stall_at}\n" + STALL_ON_RENAME
    return subprocess.Popen([sys.executable, "-c", head + textwrap.dedent(code), str(root)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=str(PACK_ROOT))


def _wait_for_stall(proc, timeout=240):
    """The STALL line, or None when the child finished first (stall_at was past its last rename)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith("STALL"):
            return line
        if not line and proc.poll() is not None:
            assert proc.returncode == 0, proc.stderr.read()[-2000:]
            return None
    proc.kill()
    pytest.fail("the child neither stalled nor finished")


def _kill(proc):
    time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)


def _names(root, name):
    db = open_database(root, name)
    try:
        assert db.verify()["ok"]
        return sorted(db.entry_names())
    finally:
        db.close()


def _no_leftovers(root, name):
    """After a later open, nothing of the dead switch is left: no folder aside, no unnamed data files."""
    folder = root / "databases" / name
    open_database(root, name).close()
    aside = [p.name for p in folder.parent.iterdir() if p.name.startswith(f".{name}.") and ".build-" not in p.name]
    assert aside == []
    manifest = fmt.read_manifest(folder)
    stray = [p.name for p in folder.iterdir() if fmt.file_generation(p.name) is not None
             and p.name not in manifest["files"] and fmt.file_generation(p.name) < manifest["generation"] - 1]
    assert stray == [] and not any(p.name.endswith(".tmp") for p in folder.iterdir())


# ----------------------------------------------------------------------------- 1: reserved names
@pytest.mark.parametrize("name", ["builtin", "builtin_videos"])
def test_reserved_names_are_refused_by_the_library(tmp_path, name):
    with pytest.raises(RetrievalError) as e:
        build_small(tmp_path, name)
    assert e.value.input == "name" and "reserved" in e.value.message
    assert not (tmp_path / "databases" / name).exists()


def test_reserved_names_are_refused_by_the_command_line(tmp_path):
    src = tmp_path / "clips"
    src.mkdir()
    from motionrag_suite.models.motion import library
    from motionrag_suite.models.motion.files import save_npz
    save_npz(library.load_clip("cartwheel"), src / "cartwheel.npz")
    r = cli("build", "--from", "folder", "--source", str(src), "--name", "builtin", root=tmp_path / "models")
    assert r.returncode == 2 and "name:" in r.stderr and "reserved" in r.stderr
    assert not (tmp_path / "models" / "databases" / "builtin").exists()
    # The built-in library under its own name is the pack's database, as the README's training commands build it.
    r = cli("build", "--from", "builtin", "--name", "builtin", root=tmp_path / "models")
    assert r.returncode == 0, r.stderr
    assert fmt.read_manifest(tmp_path / "models" / "databases" / "builtin")["origin"] == "builtin"
    r = cli("add", "--from", "folder", "--source", str(src), "--name", "builtin", root=tmp_path / "models")
    assert r.returncode == 2 and "reserved" in r.stderr


def test_the_builtin_rebuild_never_replaces_a_database_the_pack_did_not_build(tmp_path):
    # A user's database under the name, as older versions let it be made (no "origin" in its manifest).
    build_small(tmp_path, "mine")
    dbs = tmp_path / "databases"
    os.rename(dbs / "mine", dbs / BUILTIN)
    manifest = fmt.read_manifest(dbs / BUILTIN)
    del manifest["origin"]
    fmt.write_manifest(dbs / BUILTIN, manifest)
    before = file_hashes(dbs / BUILTIN)
    with pytest.raises(RetrievalError) as e:
        ensure_builtin_database(tmp_path)
    assert e.value.input == "name" and "not by the pack" in e.value.message
    assert file_hashes(dbs / BUILTIN) == before
    assert _names(tmp_path, BUILTIN) == sorted(n for n, _, _ in CLIPS)
    with pytest.raises(RetrievalError):
        ensure_builtin_database(tmp_path, force=True)
    assert file_hashes(dbs / BUILTIN) == before


def test_a_legacy_builtin_database_is_still_rebuilt_and_keeps_its_name(tmp_path):
    folder = ensure_builtin_database(tmp_path)
    manifest = fmt.read_manifest(folder)
    del manifest["origin"]                       # as older versions wrote it: only the tag says who built it
    manifest["description"] = f"built-in motion library; {FINGERPRINT_TAG}0000000000000000"
    fmt.write_manifest(folder, manifest)
    ensure_builtin_database(tmp_path)
    again = fmt.read_manifest(folder)
    assert again["origin"] == BUILTIN and again["generation"] == manifest["generation"] + 1
    assert FINGERPRINT_TAG in again["description"] and "0000000000000000" not in again["description"]
    _no_leftovers(tmp_path, BUILTIN)
    assert FINGERPRINT_TAG == fmt.LEGACY_PACK_TAG


# ------------------------------------------------------------------- 2: the switch, killed at every step
@pytest.mark.parametrize("stall_at", [1, 2, 3, 4, 5, 6])
def test_overwrite_killed_at_any_step_of_the_switch_leaves_the_old_or_the_new_database(tmp_path, stall_at):
    build_small(tmp_path)
    old = _names(tmp_path, "small")
    proc = _start("""
        build_database(root, "small", specs("new", 6), overwrite=True)
    """, tmp_path, "small", stall_at)
    stalled = _wait_for_stall(proc)
    if stalled:
        _kill(proc)
    now = _names(tmp_path, "small")
    assert now in (old, sorted(f"new{i}" for i in range(6))), stalled
    _no_leftovers(tmp_path, "small")
    # and the next overwrite succeeds
    build_small(tmp_path, overwrite=True, clips=CLIPS[:2])
    assert _names(tmp_path, "small") == sorted(n for n, _, _ in CLIPS[:2])


@pytest.mark.parametrize("stall_at", [3, 5])
def test_builtin_rebuild_killed_in_its_switch_leaves_a_builtin_database(tmp_path, stall_at):
    folder = ensure_builtin_database(tmp_path)
    manifest = fmt.read_manifest(folder)
    manifest["description"] = f"built-in motion library; {FINGERPRINT_TAG}0000000000000000"
    fmt.write_manifest(folder, manifest)
    old = _names(tmp_path, BUILTIN)
    proc = _start("""
        from pathlib import Path
        from motionrag_suite.retrieval.builtin_db import ensure_builtin_database
        ensure_builtin_database(Path(root))
    """, tmp_path, BUILTIN, stall_at)
    assert _wait_for_stall(proc)
    _kill(proc)
    assert _names(tmp_path, BUILTIN) == old
    _no_leftovers(tmp_path, BUILTIN)
    ensure_builtin_database(tmp_path)
    assert _names(tmp_path, BUILTIN) == old and fmt.read_manifest(folder)["origin"] == BUILTIN


def test_a_database_an_older_version_left_aside_is_restored_or_removed_on_open(tmp_path):
    build_small(tmp_path)
    dbs = tmp_path / "databases"
    os.rename(dbs / "small", dbs / ".small.old-1a2b3c4d")       # killed between the old two renames
    assert _names(tmp_path, "small") == sorted(n for n, _, _ in CLIPS)
    shutil.copytree(dbs / "small", dbs / ".small.old-5e6f7a8b")  # killed after both, before the cleanup
    open_database(tmp_path, "small").close()
    assert not (dbs / ".small.old-5e6f7a8b").exists()


# ------------------------------------------------------------------- 3: the lock is held through the switch
def test_a_second_build_never_deletes_a_finished_build_waiting_to_switch(tmp_path):
    proc = _start("""
        build_database(root, "race", specs("first", 3))
    """, tmp_path, "race", 1)
    assert _wait_for_stall(proc)
    waiting = [p for p in (tmp_path / "databases").iterdir() if p.name.startswith(".race.build-")]
    assert len(waiting) == 1
    build_small(tmp_path, "race")                 # removes dead builds only; the first is alive
    assert waiting[0].is_dir() and (waiting[0] / fmt.MANIFEST).is_file()
    (tmp_path / "go").touch()
    out, err = proc.communicate(timeout=120)
    assert proc.returncode != 0 and "finished first" in err
    assert not waiting[0].exists()               # the loser cleaned up its own folder
    assert _names(tmp_path, "race") == sorted(n for n, _, _ in CLIPS)


# ------------------------------------------------------------------- 8, 10, 13: names, manifests, temp files
def test_names_with_a_trailing_newline_are_refused(tmp_path):
    with pytest.raises(RetrievalError):
        fmt.validate_kind("joints\n")
    assert fmt.file_generation("entries.g0000.sqlite\n") is None
    with pytest.raises(RetrievalError) as e:
        build_small(tmp_path, "nl\n")
    assert e.value.input == "name"
    assert not (tmp_path / "databases").exists() or list((tmp_path / "databases").iterdir()) == []


def test_a_manifest_that_is_not_utf8_or_names_an_unknown_index_is_reported(tmp_path):
    build_small(tmp_path)
    path = tmp_path / "databases" / "small" / fmt.MANIFEST
    text = path.read_text()
    path.write_bytes(text.replace('"flat"', '"sp\xe4t"').encode("latin-1"))
    with pytest.raises(DatabaseCorruptError) as e:
        open_database(tmp_path, "small")
    assert e.value.input == "motion_db" and "UTF-8" in e.value.message
    manifest = json.loads(text)
    manifest["index"]["type"] = "annoy"
    path.write_text(json.dumps(manifest))
    with pytest.raises(DatabaseCorruptError) as e:
        open_database(tmp_path, "small")
    assert "'annoy'" in e.value.message


def test_temporary_files_of_killed_writers_are_removed_on_the_next_open_or_write(tmp_path):
    build_small(tmp_path)
    folder = tmp_path / "databases" / "small"
    stray = folder / ".manifest.json.k1ll3d.tmp"
    stray.write_text("{")
    open_database(tmp_path, "small").close()
    assert not stray.exists()
    stray.write_text("{")
    add_entries(tmp_path, "small", clip_specs([("extra", 25, ("a person bows politely",))]))
    assert not stray.exists()


def test_an_add_keeps_the_origin_and_a_user_overwrite_of_a_user_database_works(tmp_path):
    build_small(tmp_path)
    add_entries(tmp_path, "small", clip_specs([("extra", 25, ("a person bows politely",))]))
    assert fmt.read_manifest(tmp_path / "databases" / "small")["origin"] == fmt.USER_ORIGIN
    build_from_source(tmp_path, "small", "builtin", overwrite=True)
    db = open_database(tmp_path, "small")
    assert db.verify()["ok"] and db.generation == 2 and "extra" not in db.entry_names()
    db.close()
    _no_leftovers(tmp_path, "small")


# ------------------------------------------------------------------- 7: same-size tampering
def _tamper(path, offset_from_end=8):
    time.sleep(0.05)               # past the file system's timestamp granularity: a new mtime, as in real life
    data = bytearray(path.read_bytes())
    data[-offset_from_end] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("which", ["metadata_file", "lookup_file"])
def test_same_size_tampering_with_what_every_open_reads_is_caught_on_open(tmp_path, which):
    build_small(tmp_path)
    folder = tmp_path / "databases" / "small"
    open_database(tmp_path, "small").close()          # verified once: the cache must not hide a change
    _tamper(folder / fmt.read_manifest(folder)[which], 200)
    with pytest.raises(DatabaseCorruptError, match="checksum"):
        open_database(tmp_path, "small")


def test_same_size_tampering_with_the_index_or_a_shard_is_caught_before_their_first_use(tmp_path):
    build_small(tmp_path)
    folder = tmp_path / "databases" / "small"
    manifest = fmt.read_manifest(folder)
    _tamper(folder / manifest["payload_shards"][0])
    _tamper(folder / manifest["index"]["file"], 40)
    db = open_database(tmp_path, "small")             # opening stays cheap: these are checked when used
    with pytest.raises(DatabaseCorruptError, match="checksum"):
        db.search("a person walks", 1)
    with pytest.raises(DatabaseCorruptError, match="checksum"):
        db.load_payload(0, "joints")
    db.close()
