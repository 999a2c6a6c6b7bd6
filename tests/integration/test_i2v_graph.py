"""The two shipped image-to-video workflows, run as they are in a real ComfyUI with tiny stand-ins:
tiny random encoders, CAMA / motion-projector / Motion-Adapter / 17-frame checkpoints in the released
key layouts and tiny diffusers pipelines are written into the server's models folder, nine small
captioned videos and a query image into its input folder, and only the model names (plus frames,
size and steps, so it runs in seconds) are swapped in the graph. Outputs are mechanics only."""
from __future__ import annotations

import asyncio
import io
import json

import numpy as np
import pytest
from PIL import Image

from harness.comfy_server import REPO_ROOT, output_files
from harness.workflow_convert import ui_to_api
from unit import i2v_tiny_assets as assets

WORKFLOWS = {"CogVideoX": REPO_ROOT / "workflows" / "motionrag_i2v_cogvideox.json",
             "SVD": REPO_ROOT / "workflows" / "motionrag_i2v_svd.json"}
SIZES = {"CogVideoX": assets.COG_SIZE, "SVD": assets.SVD_SIZE}
BACKBONES = {"CogVideoX": assets.COG_BACKBONE, "SVD": assets.SVD_BACKBONE}
INJECT = {"CogVideoX": "MotionRAGInjectMotionCogVideoX", "SVD": "MotionRAGInjectMotionSVD"}


def _variant_frames(i: int, t: int) -> np.ndarray:
    """Nine distinguishable tiny clips: bars moving in different directions and speeds, pulses."""
    img = np.full((40, 48, 3), 25 + 10 * i, np.uint8)
    speed = 1 + i % 3
    if i % 3 == 0:
        x = (t * speed) % 42
        img[:, x:x + 6] = (230, 180, 40)
    elif i % 3 == 1:
        y = (t * speed) % 34
        img[y:y + 6, :] = (40, 180, 230)
    else:
        img[:] = 40 + int(150 * (0.5 + 0.5 * np.sin(t * speed / 3.0)))
    return img


CAPTIONS = ["a bar slides to the right slowly", "a bar falls down slowly", "the picture pulses slowly",
            "a bar slides to the right", "a bar falls down", "the picture pulses",
            "a bar races to the right", "a bar drops fast", "the picture flickers fast"]


@pytest.fixture(scope="module")
def tiny(comfy):
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assets.write_all(comfy.models_dir / "motionrag")
    finally:
        torch.set_num_threads(before)
    videos = comfy.input_dir / "videos"
    videos.mkdir(parents=True, exist_ok=True)
    for i, caption in enumerate(CAPTIONS):
        name = f"clip{i}"
        frames = [_variant_frames(i, t) for t in range(48)]
        if i % 2:
            assets.write_animated(videos / f"{name}.webp", frames, 16.0 if i % 4 == 1 else 20.0)
        else:
            assets.write_mp4(videos / f"{name}.mp4", frames, 16.0)
        (videos / f"{name}.txt").write_text(caption + "\n", encoding="utf-8")
    Image.fromarray(assets.query_image(40, 32)).save(comfy.input_dir / "motionrag_query.png")
    return comfy


def graph(object_info, base: str, *, steps: int = 2, strength: float | None = None, plain: bool = False,
          prefix: str = "i2v") -> tuple[dict, str]:
    """The shipped workflow in API form with the tiny names swapped in; returns (graph, sampler node id)."""
    api = ui_to_api(json.loads(WORKFLOWS[base].read_text(encoding="utf-8")), object_info)
    frames, width, height = SIZES[base]
    sampler = None
    for nid, node in api.items():
        inputs, kind = node["inputs"], node["class_type"]
        if kind in ("MotionRAGBuildVideoDB", "MotionRAGLoadCAMA"):
            assert inputs["video_encoder"] == "videomae-base-finetuned-ssv2"     # the real names ship
            assert inputs["image_encoder"] == "dinov2-large"
            inputs.update(video_encoder=assets.VIDEO_ENCODER, image_encoder=assets.IMAGE_ENCODER)
        elif kind == "MotionRAGLoadVideoBackbone":
            assert inputs["backbone"] == {"CogVideoX": "CogVideoX-5b-I2V", "SVD": "stable-video-diffusion-img2vid"}[base]
            inputs["backbone"] = BACKBONES[base]
        elif kind == "MotionRAGSampleVideo":
            sampler = nid
            inputs.update(frames=frames, width=width, height=height, steps=steps)
        elif kind == "SaveAnimatedWEBP":
            inputs.update(lossless=True, filename_prefix=f"{prefix}/{base}")          # exact pixels to compare
        elif kind == INJECT[base] and strength is not None:
            inputs["strength"] = strength
    assert sampler is not None
    if plain:                                                         # the same graph without the motion
        inject = next(nid for nid, node in api.items() if node["class_type"] == INJECT[base])
        api[sampler]["inputs"]["backbone"] = api[inject]["inputs"]["backbone"]
        del api[inject]
    return api, sampler


def frames_of(comfy, entry: dict) -> np.ndarray:
    files = [f for _, f in output_files(entry) if f["filename"].endswith(".webp")]
    assert len(files) == 1, entry["outputs"]
    with Image.open(io.BytesIO(comfy.view(files[0]))) as im:
        out = []
        for k in range(getattr(im, "n_frames", 1)):
            im.seek(k)
            out.append(np.asarray(im.convert("RGB")))
    return np.stack(out)


@pytest.mark.parametrize("base", ["CogVideoX", "SVD"])
def test_shipped_workflow_runs_with_tiny_models(tiny, object_info, base):
    api, _ = graph(object_info, base, prefix="run")
    entry = tiny.run(api, timeout=600)
    video = frames_of(tiny, entry)
    frames, width, height = SIZES[base]
    assert video.shape == (frames, height, width, 3), video.shape
    assert video.std() > 1.0, "blank frames"
    db = tiny.models_dir / "motionrag" / "databases" / f"videos_{base.lower()}"
    assert (db / "manifest.json").is_file(), "Build Video DB did not write the database"


@pytest.mark.parametrize("base", ["CogVideoX", "SVD"])
def test_strength_zero_is_the_plain_model_and_strength_one_is_not(tiny, object_info, base):
    zero = frames_of(tiny, tiny.run(graph(object_info, base, strength=0.0, prefix="zero")[0], timeout=600))
    plain = frames_of(tiny, tiny.run(graph(object_info, base, plain=True, prefix="plain")[0], timeout=600))
    full = frames_of(tiny, tiny.run(graph(object_info, base, strength=1.0, prefix="full")[0], timeout=600))
    assert np.array_equal(zero, plain)
    assert np.abs(full.astype(int) - plain.astype(int)).max() >= 1, "strength 1 left every pixel unchanged"


async def _watch(comfy, api: dict, sampler: str, interrupt_at: int | None, timeout: float = 300):
    import aiohttp

    events = []
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(f"ws://127.0.0.1:{comfy.port}/ws?clientId={comfy.client_id}") as ws:
            prompt_id = await asyncio.get_running_loop().run_in_executor(None, comfy.queue, api)
            while True:
                msg = await asyncio.wait_for(ws.receive(), timeout)
                if msg.type != aiohttp.WSMsgType.TEXT:
                    if msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                        raise AssertionError("the websocket closed before the prompt finished")
                    continue                                   # binary previews
                m = json.loads(msg.data)
                data = m.get("data") or {}
                if data.get("prompt_id") not in (None, prompt_id):
                    continue
                events.append(m)
                if (m["type"] == "progress" and str(data.get("node")) == sampler and interrupt_at is not None
                        and data["value"] >= interrupt_at):
                    interrupt_at = None
                    await session.post(f"{comfy.url}/interrupt")
                if m["type"] in ("execution_error", "execution_interrupted"):
                    return prompt_id, events
                if m["type"] == "executing" and data.get("node") is None and data.get("prompt_id") == prompt_id:
                    return prompt_id, events


def _progress(events, sampler):
    return [(e["data"]["value"], e["data"]["max"]) for e in events
            if e["type"] == "progress" and str(e["data"].get("node")) == sampler]


def test_sampling_reports_progress_per_step_and_stops_on_interrupt(tiny, object_info):
    api, sampler = graph(object_info, "CogVideoX", steps=3, prefix="progress")
    _, events = asyncio.run(_watch(tiny, api, sampler, None))
    assert _progress(events, sampler) == [(1, 3), (2, 3), (3, 3)], events[-5:]
    assert not [e for e in events if e["type"] in ("execution_error", "execution_interrupted")]

    api, sampler = graph(object_info, "CogVideoX", steps=200, prefix="interrupted")
    _, events = asyncio.run(_watch(tiny, api, sampler, interrupt_at=2))
    steps = _progress(events, sampler)
    assert steps and steps[0] == (1, 200)
    assert [e for e in events if e["type"] == "execution_interrupted"], [e["type"] for e in events][-5:]
    assert steps[-1][0] < 200, "the run was not stopped"
    print(f"\ninterrupted after step {steps[-1][0]} of 200")
    # the server is fine afterwards and the backbone carries no leftover motion branch
    plain = frames_of(tiny, tiny.run(graph(object_info, "CogVideoX", plain=True, prefix="after")[0], timeout=600))
    again = frames_of(tiny, tiny.run(graph(object_info, "CogVideoX", plain=True, prefix="after2", steps=2)[0],
                                     timeout=600))
    assert np.array_equal(plain, again)


def _log_since(comfy, mark: int) -> str:
    return comfy.log_text()[mark:]


def _free(comfy, **flags) -> None:
    status, raw = comfy._request("POST", "/free", flags)
    assert status == 200, (status, raw[:500])


def _reseeded(api: dict, sampler: str, seed: int) -> dict:
    api = json.loads(json.dumps(api))
    api[sampler]["inputs"]["seed"] = seed
    return api


OURS = ("MotionRAGVideoBackbone", "MotionRAGMotionAdapter", "MotionRAGCAMA")


def _renamed(api: dict, prefix: str) -> dict:
    """The same graph under new node ids (links follow)."""
    ids = {nid: prefix + nid for nid in api}
    out = {}
    for nid, node in api.items():
        inputs = {k: [ids[v[0]], v[1]] if isinstance(v, list) and len(v) == 2 and v[0] in ids else v
                  for k, v in node["inputs"].items()}
        out[ids[nid]] = dict(node, inputs=inputs)
    return out


def _rss(comfy) -> int:
    import psutil

    return psutil.Process(comfy.proc.pid).memory_info().rss


def test_comfyui_unload_and_free_hand_our_models_back(tiny, object_info):
    """Our models go through ComfyUI's model manager (its log names our ModelPatchers' classes), 'Unload
    models' makes it load them again without re-reading them from disk, and 'Free model and node cache'
    lets every torch module of them be garbage-collected (weak finalizers log 'freed'), after which the
    loaders read them from disk again."""
    import time

    api, sampler = graph(object_info, "CogVideoX", prefix="mem")
    backbone = BACKBONES["CogVideoX"]
    first = frames_of(tiny, tiny.run(api, timeout=600))

    # same models, new seed: only the sampler runs; ComfyUI already has our patchers loaded
    mark = len(tiny.log_text())
    tiny.run(_reseeded(api, sampler, 11), timeout=600)
    log = _log_since(tiny, mark)
    assert not [k for k in OURS if f"Requested to load {k}" in log], log[-2000:]

    # a second loader of the same files (a copy of the graph under new node ids beside the first, in one
    # prompt, its backbone loader with `download` on: an input that is not part of the model's key but
    # makes every ComfyUI run that loader again while the first's outputs are still cached) gets the
    # model already in memory from the owner instead of a second copy
    mark = len(tiny.log_text())
    copy = _renamed(_reseeded(api, sampler, 13), "again_")
    for node in copy.values():
        if node["class_type"] == "MotionRAGLoadVideoBackbone":
            node["inputs"]["download"] = True        # the files are there: nothing is fetched
    tiny.run({**_reseeded(api, sampler, 11), **copy}, timeout=600)
    log = _log_since(tiny, mark)
    assert f"MotionRAG: backbone {backbone} reused (already in memory)" in log, log[-2000:]
    assert "loaded from disk" not in log, log[-2000:]

    # 'Unload models' only: ComfyUI offloads them; its node cache still owns them (nothing freed or re-read)
    _free(tiny, unload_models=True)
    tiny.run(_reseeded(api, sampler, 11), timeout=600)     # all cached: returns once the flag was handled
    mark = len(tiny.log_text())
    tiny.run(_reseeded(api, sampler, 12), timeout=600)
    log = _log_since(tiny, mark)
    for kind in ("MotionRAGVideoBackbone", "MotionRAGMotionAdapter"):
        assert f"Requested to load {kind}" in log, f"{kind} was not handed to ComfyUI's manager again:\n{log[-2000:]}"
    assert "loaded from disk" not in log and " freed" not in log, log[-2000:]

    # 'Free model and node cache': nothing queued after it, so only /free can make the modules go
    rss_loaded = _rss(tiny)
    mark = len(tiny.log_text())
    _free(tiny, unload_models=True, free_memory=True)
    labels = (f"backbone {backbone}", f"cama CogVideoX CAMA ({assets.IMAGE_ENCODER})", "adapter CogVideoX Motion-Adapter")
    deadline = time.monotonic() + 60
    while True:
        log = _log_since(tiny, mark)
        missing = [g for g in labels if f"MotionRAG: {g} freed" not in log]
        if not missing:
            break
        assert time.monotonic() < deadline, f"still held 60 s after /free: {missing}\n{log[-2000:]}"
        time.sleep(0.2)
    rss_freed = _rss(tiny)
    print(f"\nserver RSS with our models loaded {rss_loaded / 2**20:.1f} MiB, after /free {rss_freed / 2**20:.1f} MiB")
    assert rss_freed <= rss_loaded, "freeing our models grew the server's memory"

    mark = len(tiny.log_text())
    again = frames_of(tiny, tiny.run(api, timeout=600))
    log = _log_since(tiny, mark)
    for group in labels:
        assert f"MotionRAG: {group} loaded from disk" in log, f"{group} not reloaded:\n{log[-2000:]}"
    for kind in OURS:
        assert f"Requested to load {kind}" in log
    assert again.shape == first.shape
    print(f"\nsame frames after reloading from disk: {np.array_equal(again, first)}")
