"""Text-to-Motion RAG with a released MoMask model: what the node does when its `model` is a folder in
MoMask's download layout (models/motionrag/t2m/<name>/ holding the RVQ-VAE, the two transformers and
optionally the length estimator, see models/momask/checkpoint.py).

MoMask was not trained with retrieval, so the retrieved motions are used without training: encoded by
the model's own tokenizer into base-layer tokens, stretched to the generated length and added as a
prior to the decoding logits (models/momask/generate.py, token_prior) with the node's
guidance_retrieval as the strength. At 0 no retrieval runs and the model decodes as MoMask does.

Its text encoder is CLIP ViT-B/32 in the Hugging Face layout, from models/motionrag/clip/<name>
(openai/clip-vit-base-patch32 by default), fetched there when `download` is on.

Both models are Held values (nodes/model_owner.py), in their own groups so that the CLIP tower stays
while the generator changes: the node object owns them between runs, ComfyUI's patcher moves them to its
device, and "Free model and node cache" frees them.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from ..common.errors import InputError
from ..common.stamps import file_stamp, files_stamp
from ..models.momask.config import source_files
from . import comfy_env
from .model_owner import Held, drop_group, load_to_device

GROUP = "t2m"                    # one text-to-motion generator in memory, the demo model's group
CLIP_GROUP = "t2m_clip"
CLIP_SUBFOLDER = "clip"
CLIP_DEFAULT = "clip-vit-base-patch32"


def momask_stamp(folder: Path) -> tuple:
    """A value that changes when the folder's MoMask files are replaced (not when our safetensors copies
    are written beside them on the first load)."""
    return tuple((name, *file_stamp(folder / name)) for name in source_files(folder))


def momask_model(name: str, folder: Path) -> Held:
    key = ("momask", str(folder.resolve()), momask_stamp(folder))

    def loader():
        from ..models.momask import load_momask          # torch behind it

        with comfy_env.inputs_named(folder="model"):
            return load_momask(folder, "cpu")

    return Held(GROUP, key, loader, label=f"MoMask {name}", modules=_momask_modules, kind="MotionRAGMoMask")


def _momask_modules(model) -> dict:
    nets = {"rvq": model.rvq, "masked": model.masked, "residual": model.residual}
    if model.length_estimator is not None:
        nets["length_estimator"] = model.length_estimator
    return nets


def clip_choices() -> list[str]:
    """The default CLIP folder name first, then every transformers folder under models/motionrag/clip."""
    return comfy_env.model_folders(CLIP_SUBFOLDER, "config.json", [CLIP_DEFAULT])


def clip_model(name: str, download: bool) -> Held:
    folder = comfy_env.find_model_folder(CLIP_SUBFOLDER, name, what="clip")
    key = ("clip", str(folder), files_stamp(folder, ("config.json", "model.safetensors", "pytorch_model.bin")))

    def loader():
        from ..models.momask import load_clip_text       # transformers behind it

        with comfy_env.inputs_named(clip_folder="clip"):
            return load_clip_text(folder, "cpu", download=bool(download))

    return Held(CLIP_GROUP, key, loader, label=f"CLIP {name}", modules=lambda enc: {"text": enc.model},
                kind="MotionRAGCLIPText")


def text_encoding(net, clip: str, download: bool, root) -> tuple[Held | None, Callable]:
    """(the held CLIP or None, encode(text) -> the text feature the model was trained on): CLIP for a
    released MoMask; for a model the pack's trainer wrote with another encoder (opt.txt `text_encoder`,
    e.g. all-MiniLM-L6-v2), that encoder's embedding zero-padded to CLIP's width, as in training (root:
    the motionrag folder whose text_encoders/ may hold it)."""
    from ..models.momask.config import CLIP_TEXT_ENCODER

    if net.config.text_encoder == CLIP_TEXT_ENCODER:
        text_held = clip_model(clip, download)
        encoder = text_held.get()
        return text_held, lambda text: encoder.encode([text])[0]
    from ..models.momask.train import pad_text_features          # torch behind these
    from ..retrieval.text_encoder import get_text_encoder

    with comfy_env.inputs_named(name="model", encoder="model"):
        encoder = get_text_encoder(net.config.text_encoder, root)
    return None, lambda text: pad_text_features(encoder.encode([text]), net.config.masked.clip_dim)[0]


def kept_frames(keep_motion, keep_start_frames: int, keep_end_frames: int, fps: float):
    """(prefix, suffix, source frames) features to keep from `keep_motion`, None where none is kept."""
    if not keep_start_frames and not keep_end_frames:
        return None, None, 0
    if keep_motion is None:
        raise InputError("keep_motion", f"keep_start_frames / keep_end_frames ({keep_start_frames} / "
                                        f"{keep_end_frames}) need a motion to keep them from; link one")
    from ..models.motion.humanml3d import with_features          # numpy behind these
    from ..models.motion.motiondiff_compat import from_motion_data

    motion = from_motion_data(keep_motion, what="keep_motion")
    if abs(motion.fps - fps) > 1e-6:
        motion = motion.resampled(fps)                           # MoMask's features are at its own rate
    if motion.features is None or motion.features.shape[-1] != 263:
        motion = with_features(motion)
    features = motion.features
    if keep_start_frames + keep_end_frames >= len(features):
        raise InputError("keep_start_frames", f"{keep_start_frames} + keep_end_frames {keep_end_frames} frames keep "
                                              f"all of keep_motion's {len(features)} feature frames; keep fewer")
    prefix = features[:keep_start_frames] if keep_start_frames else None
    suffix = features[len(features) - keep_end_frames:] if keep_end_frames else None
    return prefix, suffix, len(features)


def generate(node, *, query: str, db, model: str, folder: Path, length: int, seed: int, guidance_text: float,
             strength: float, references: int, steps: int, clip: str, download: bool, keep_loaded: bool,
             retrieve: Callable, check_length: Callable, keep_motion=None, keep_start_frames: int = 0,
             keep_end_frames: int = 0, start_pose=None):
    """(Motion, MotionRefs, summary) for the Text-to-Motion RAG node with a MoMask folder.
    retrieve(db, query, references, length) -> MotionRefs and check_length(length, model) are the
    node's own (the same search and checks as for the demo model). start_pose: a (22, 3) pose the
    motion starts from (held for one token, kept as a prefix; the node refuses it with keep_start_frames)."""
    from ..models.motion.humanml3d import features_to_motion       # numpy behind these
    from ..retrieval.refs import MotionRefs

    held = momask_model(model, folder)
    net = held.get()
    text_held, encode = text_encoding(net, clip, download, db.root)
    node._held = (held, text_held) if keep_loaded else None        # the node object owns both between runs
    try:
        if net.config.dataset != "t2m":
            # KIT-ML's 251-d features and 21-joint skeleton have no converter to the pack's motion type
            raise InputError("model", f"{model!r} is a MoMask KIT-ML model (251-d features, 21 joints); this node "
                                      f"runs the HumanML3D models (checkpoints/t2m of MoMask's download)")
        check_length(length, net)
        prefix, suffix, source_frames = kept_frames(keep_motion, keep_start_frames, keep_end_frames, net.fps)
        if start_pose is not None:
            prefix = pose_prefix(start_pose, net)
        refs = MotionRefs(query=query, database=db.name, refs=(), database_root=str(db.root))
        ref_features = None
        if strength > 0:
            refs = retrieve(db, query, references, length)
            # the references at the model's frame rate, as HumanML3D features (what its tokenizer reads)
            ref_features = [f if abs(r.fps - net.fps) < 1e-6 else _resampled_features(r.motion, net.fps)
                            for r, f in zip(refs, refs.payloads("features"))]
        if not length:
            # kept frames: the kept motion's length; references: theirs; else MoMask's length estimator
            seconds = sum(r.duration for r in refs) / len(refs) if len(refs) else 0
            length = min(source_frames, net.max_frames) if keep_start_frames or keep_end_frames else \
                min(max(round(seconds * net.fps), (1 if start_pose is None else 2) * net.frames_per_token),
                    net.max_frames) if len(refs) else 0
        load_to_device(*(h for h in (held, text_held) if h is not None))
        embedding = encode(query)
        if start_pose is not None:
            with comfy_env.inputs_named(length_frames="length"):
                length = _length_after_pose(net, embedding, length, seed)
        bar = []

        def on_step(i, total):
            if not bar:
                bar.append(comfy_env.progress(total))
            bar[0](i)

        with comfy_env.inputs_named(length_frames="length", reference_features="motion_db",
                                    retrieval_strength="guidance_retrieval", prefix="keep_motion",
                                    suffix="keep_motion", guidance="guidance_text"):
            out = net.generate(embedding, length_frames=length, seed=seed, guidance=guidance_text, steps=steps,
                               prefix=prefix, suffix=suffix, reference_features=ref_features,
                               retrieval_strength=strength, progress=on_step)
    finally:
        if not keep_loaded:
            del net, encode, held, text_held
            drop_group(GROUP)
            drop_group(CLIP_GROUP)
    motion = features_to_motion(out.features, fps=out.fps, caption=query)
    kept = "" if prefix is None and suffix is None else \
        f", kept {0 if prefix is None else len(prefix)} start / {0 if suffix is None else len(suffix)} end frames"
    if start_pose is not None:
        from ..models.motion.image_pose import BLEND_FRAMES, start_from_pose

        # the kept token comes back re-decoded: the pose itself goes over it, eased into what follows
        motion = start_from_pose(start_pose, motion, hold_frames=len(prefix), replace_start=True)
        kept = f", from start_pose (held {len(prefix)} frames, blended into the next {BLEND_FRAMES})"
    how = f"references (strength {strength:g}):\n{refs.summary()}" if len(refs) else \
        "no retrieval (guidance_retrieval 0: plain MoMask)"
    summary = f"{motion.num_frames} frames at {motion.fps:g} fps, seed {seed}, MoMask {model}{kept}, {how}"
    return motion, refs, summary


def pose_prefix(pose, net):
    """HumanML3D features (one token's rows) of a pose held still: the prefix MoMask keeps."""
    from ..models.motion.humanml3d import with_features              # numpy behind these
    from ..models.motion.image_pose import held

    return with_features(held(pose, net.frames_per_token + 1, net.fps)).features


def _length_after_pose(net, embedding, length: int, seed: int) -> int:
    """The total length (the pose's token included) of a motion started from a pose: at least one
    token more than the pose; 0 = the pose plus the tokens MoMask's length estimator draws."""
    fpt = net.frames_per_token
    if length:
        if length < 2 * fpt:
            raise InputError("length", f"{length} frames leave nothing to generate after the start pose's {fpt}; "
                                       f"give at least {2 * fpt}")
        return length
    import torch

    drawn = net.estimate_tokens(net.condition(embedding), torch.Generator(device=net.device).manual_seed(int(seed)))
    return min(drawn + 1, net.max_frames // fpt) * fpt


def _resampled_features(motion, fps: float):
    from ..models.motion.humanml3d import with_features

    return with_features(motion.resampled(fps)).features


__all__ = ["momask_model", "clip_model", "clip_choices", "text_encoding", "kept_frames", "pose_prefix", "generate", "CLIP_DEFAULT", "CLIP_SUBFOLDER"]
