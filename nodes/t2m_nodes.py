"""Text-to-Motion RAG: retrieve reference motions for a text, then generate a new motion with the
retrieval-augmented masked transformer (models/t2m).

Models: "motionrag-t2m-small (built-in)" is the small model shipped in models/t2m/weights/ (a demo
trained on the 20-clip built-in library, see its PROVENANCE.md); any folder under
<motionrag folder>/t2m/ holding model.safetensors + config.json (what `python -m training t2m`
writes) is listed after it, and so is a released MoMask model folder (checkpoints/t2m as MoMask's
download unzips it), which nodes/t2m_momask.py runs with its CLIP text encoder and the references as
a decoding prior.

Ownership (nodes/model_owner.py, as for every model of the pack): the node object holds the model it last
used until another model is chosen or keep_loaded is switched off. ComfyUI keeps node objects between runs
and drops them on "Free model and node cache" (POST /free {"free_memory": true}), so the model's memory
goes back then. The model stays on the CPU: it is a few MB and runs fastest there.
"""
from __future__ import annotations

import contextlib
import math
from pathlib import Path

from ..common.errors import InputError
from ..common.shared import live
from ..common.stamps import files_stamp
from ..models.momask.config import is_momask_folder
from ..models.t2m.folders import BUILTIN_FOLDER, CONFIG_FILE, MODEL_FILE, check_model_folder
from . import comfy_env, t2m_momask
from .databases import as_database
from .model_owner import Held, drop_group

BUILTIN_MODEL = "motionrag-t2m-small (built-in)"
MODELS_SUBFOLDER = "t2m"
DB_TYPE = "MOTION_DB"
REFS_TYPE = "MOTION_REFS"
MAX_LENGTH = 1000            # widget bound; each model's own limit is checked once it is loaded
MAX_REFERENCES = 16
# Below this many parameters generation runs on one torch thread: its matrices are so small that
# a second thread mostly waits (tests/benchmarks/bench_t2m.py, 196 frames with the built-in model on
# the busy 2-core development machine: 0.1 s median with one thread, 0.5-3 s with two).
ONE_THREAD_PARAMS = 10_000_000
GROUP = "t2m"


# ------------------------------------------------------------------------------ model folders
def model_choices() -> list[str]:
    """The built-in model first, then every folder under any <motionrag>/t2m (first folder wins a name)."""
    return comfy_env.model_folders(MODELS_SUBFOLDER, None, [BUILTIN_MODEL])


def model_folder(name: str) -> Path:
    """The folder of model `name` (the shipped one, or one under a motionrag t2m folder)."""
    if name == BUILTIN_MODEL:
        return BUILTIN_FOLDER
    folder = comfy_env.find_model_folder(MODELS_SUBFOLDER, name, what="model")
    if not folder.is_dir():
        where = ", ".join(str(r / MODELS_SUBFOLDER) for r in comfy_env.models_roots())
        raise InputError("model", f"{name!r} was not found; expected a folder with {MODEL_FILE} and {CONFIG_FILE}, "
                                  f"or a MoMask model folder (checkpoints/t2m of its download), in {where}")
    return folder


def model_key(name: str) -> tuple:
    """(folder, file stamp) of model `name`, checked to be a safetensors + JSON folder: a new key when its
    files change (a retrained model in the same folder)."""
    folder = model_folder(name)
    check_model_folder(folder, builtin=name == BUILTIN_MODEL)
    return (str(folder.resolve()), files_stamp(folder, (MODEL_FILE, CONFIG_FILE)))


def t2m_model(name: str, key: tuple | None = None) -> Held:
    """The held model `name` (whose model_key is `key` when the caller has it); .get() loads it, or gives
    the one in memory when its files have not changed since it loaded."""
    key = key or model_key(name)

    def loader():
        from ..models.t2m.checkpoint import CheckpointError, load_model   # torch behind it

        try:
            return load_model(Path(key[0]), "cpu")
        except CheckpointError as exc:
            raise InputError("model", str(exc)) from None

    # the log then reads "MotionRAG: t2m model <name> loaded from disk" / "... freed"
    return Held(GROUP, key, loader, label=f"model {name}", modules=lambda net: {"net": net},
                kind="MotionRAGTextToMotion")


def loaded_model_key():
    """(folder, file stamp) of the text-to-motion model in memory now, or None."""
    return live().get(GROUP)


# ------------------------------------------------------------------------------ inputs
def _check_text(text) -> str:
    from ..retrieval.text_encoder import MAX_QUERY_CHARS      # numpy behind it

    if not isinstance(text, str) or not text.strip():
        raise InputError("text", "is empty; describe a motion, e.g. 'a person does a cartwheel'")
    text = " ".join(text.split())
    # Checked here, before the model loads: the encoder's own check would come from inside the retrieval step.
    if len(text) > MAX_QUERY_CHARS:
        raise InputError("text", f"{len(text)} characters is more than the {MAX_QUERY_CHARS} accepted")
    return text


def _check_int(value, what: str, low: int, high: int, hint: str = "") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InputError(what, f"expected a whole number in {low}..{high}{hint}, got {value!r}")
    return value


def _check_guidance(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise InputError(what, f"expected a finite number >= 0, got {value!r}")
    return float(value)


def _check_length(length, model=None) -> int:
    high = model.max_frames if model is not None else MAX_LENGTH
    length = _check_int(length, "length", 0, high, " frames at 20 fps (0 = the retrieved clips' length)"
                        + (" for this model" if model is not None else ""))
    if length == 1:
        raise InputError("length", "a motion needs at least 2 frames (0 = the retrieved clips' length), got 1")
    return length


def _motion_hits(db, hits) -> None:
    """Refuse references that carry no motion (video databases store a standing placeholder skeleton)."""
    for h in hits:
        info = db.entry(h.entry_id)
        if info.provenance.get("placeholder_joints") or info.provenance.get("source") == "video":
            raise InputError(
                "motion_db", f"motion database {db.name!r} holds video clips (entry {info.name!r} has only a placeholder "
                "skeleton, no motion payload); Text-to-Motion needs a motion database such as 'builtin' or one built "
                "from HumanML3D or motion files")


def _length_from(refs, model) -> int:
    """The retrieved clips' mean duration in frames at the model's rate, within the model's range."""
    seconds = sum(r.duration for r in refs) / len(refs)
    return int(min(max(round(seconds * model.config.fps), 2), model.max_frames))


# ------------------------------------------------------------------------------ the node
class TextToMotionRAG:
    DESCRIPTION = ("Generates a motion from a text: retrieves the best-matching motions from a database, then "
                   "samples a retrieval-augmented masked-token transformer (MoMask / ReMoMask family) conditioned "
                   "on the text and on those references. The built-in model is a small demo trained on the "
                   "20-clip built-in library: it shows the mechanics, it is not a general text-to-motion model. "
                   "Train your own with `python -m training t2m` into models/motionrag/t2m/<name>.")
    CATEGORY = comfy_env.CATEGORY
    FUNCTION = "generate"
    RETURN_TYPES = ("MOTION_DATA", REFS_TYPE)
    RETURN_NAMES = ("motion", "refs")
    OUTPUT_TOOLTIPS = ("The generated motion (22-joint skeleton, metres, Y up, 20 fps) with its HumanML3D features.",
                       "The references the generator was conditioned on (same layout as Text Retrieve's refs).")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "text": ("STRING", {
                    "multiline": True, "default": "a person does a cartwheel",
                    "tooltip": "What the motion should be, in plain words; it drives both the retrieval and "
                               "the generator.",
                }),
                "motion_db": (DB_TYPE, {"tooltip": "The motion database to retrieve references from "
                                                   "(Load Motion DB or Build Motion DB)."}),
                "model": (model_choices(), {
                    "default": BUILTIN_MODEL,
                    "tooltip": "The generator: the built-in small demo model, a folder under "
                               "models/motionrag/t2m holding model.safetensors + config.json, or a released "
                               "MoMask model folder there (checkpoints/t2m of MoMask's download, e.g. "
                               "models/motionrag/t2m/t2m; it uses the clip text encoder).",
                }),
                "length": ("INT", {
                    "default": 0, "min": 0, "max": MAX_LENGTH,
                    "tooltip": "Frames to generate at 20 fps (the built-in model allows up to 257, MoMask 196 in "
                               "steps of 4). 0 = the mean length of the retrieved clips (MoMask without "
                               "retrieval: its length estimator; with kept frames: keep_motion's length).",
                }),
                "seed": ("INT", {
                    "default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF,
                    "tooltip": "Random seed of the token sampling; the same inputs and seed give the same motion.",
                }),
                "guidance_text": ("FLOAT", {
                    "default": 4.0, "min": 0.0, "max": 20.0, "step": 0.1,
                    "tooltip": "Classifier-free guidance scale of the text (MoMask uses 4); 0 ignores the text.",
                }),
                "guidance_retrieval": ("FLOAT", {
                    "default": 1.0, "min": 0.0, "max": 20.0, "step": 0.1,
                    "tooltip": "Guidance scale of the retrieved motions: 1 = as trained, higher follows them "
                               "more closely, 0 ignores them. The demo model also lifts the top reference's own "
                               "tokens by this much times its token prior (at 1, about 10 logits). With a MoMask model (not trained with retrieval): "
                               "the strength of the references' tokens as a prior on its decoding (1 = lifts "
                               "a token all references agree on by about 6 logits), 0 = plain MoMask with no "
                               "retrieval.",
                }),
                "references": ("INT", {
                    "default": 2, "min": 1, "max": MAX_REFERENCES,
                    "tooltip": "How many motions to retrieve and condition on (at most one per source clip; "
                               "the built-in model was trained with 2).",
                }),
                "steps": ("INT", {
                    "default": 10, "min": 1, "max": 100,
                    "tooltip": "Iterative decoding passes for the base tokens (more = slower, usually steadier).",
                }),
            },
            "optional": {
                "keep_loaded": ("BOOLEAN", {
                    "default": True,
                    "tooltip": "Keep the model in memory for the next run (it is small); off frees it afterwards.",
                }),
                "clip": (t2m_momask.clip_choices(), {
                    "default": t2m_momask.CLIP_DEFAULT,
                    "tooltip": "MoMask models only: the CLIP ViT-B/32 text encoder, a Hugging Face folder under "
                               "models/motionrag/clip (openai/clip-vit-base-patch32).",
                }),
                "download": ("BOOLEAN", {
                    "default": False,
                    "tooltip": "MoMask models only: fetch a missing CLIP folder from the Hugging Face hub "
                               "(openai/clip-vit-base-patch32; needs network access). Off: a missing folder "
                               "is reported with the exact download command and folder.",
                }),
                "keep_motion": ("MOTION_DATA", {
                    "tooltip": "MoMask models only: a motion whose first keep_start_frames and last "
                               "keep_end_frames frames are kept while the frames between are generated "
                               "(MoMask's temporal inpainting).",
                }),
                "keep_start_frames": ("INT", {
                    "default": 0, "min": 0, "max": MAX_LENGTH,
                    "tooltip": "Frames of keep_motion kept at the start (whole 4-frame tokens are kept; 0 = none).",
                }),
                "keep_end_frames": ("INT", {
                    "default": 0, "min": 0, "max": MAX_LENGTH,
                    "tooltip": "Frames of keep_motion kept at the end (whole 4-frame tokens are kept; 0 = none).",
                }),
                "start_pose": ("MOTION_DATA", {
                    "tooltip": "A pose the motion starts from (e.g. Pose from Image's; of a longer motion, its last "
                               "frame). It is held for the first 4 frames (one token of the model), kept exactly, "
                               "and eased into the generated frames over the next 8; length counts those 4 frames. "
                               "MoMask generates the rest from it (temporal inpainting); the demo model cannot, so its "
                               "motion is turned and moved to the pose and blended in. Not with keep_start_frames.",
                }),
            },
        }

    @classmethod
    def VALIDATE_INPUTS(cls, text=None, length=None):
        # None: the input is linked and only known at run time, where generate() checks it.
        try:
            if text is not None:
                _check_text(text)
            if length is not None:
                _check_length(length)
        except InputError as exc:
            return str(exc)
        return True

    @classmethod
    def IS_CHANGED(cls, model, **_kwargs):
        # Run again when the chosen model's files are replaced (e.g. retrained into the same folder).
        try:
            folder = model_folder(model)
            if is_momask_folder(folder):
                return f"{model}|{t2m_momask.momask_stamp(folder)}"
            return f"{model}|{files_stamp(folder, (MODEL_FILE, CONFIG_FILE))}"
        except InputError:
            return float("nan")

    def generate(self, text, motion_db, model, length, seed, guidance_text, guidance_retrieval, references, steps,
                 keep_loaded=True, clip=t2m_momask.CLIP_DEFAULT, download=False, keep_motion=None,
                 keep_start_frames=0, keep_end_frames=0, start_pose=None):
        from ..models.motion.motiondiff_compat import to_motion_data     # numpy behind these
        from ..models.motion.preview import preview_payload

        # Every input is checked before the model loads or the text is encoded.
        query = _check_text(text)
        _check_length(length)
        seed = _check_int(seed, "seed", 0, 0xFFFFFFFFFFFFFFFF)
        g_text = _check_guidance(guidance_text, "guidance_text")
        g_retr = _check_guidance(guidance_retrieval, "guidance_retrieval")
        references = _check_int(references, "references", 1, MAX_REFERENCES)
        steps = _check_int(steps, "steps", 1, 100)
        db = as_database(motion_db)
        clips = int(db.entry_group.max()) + 1 if db.entry_count else 0
        if references > clips:
            raise InputError("references", f"{references} is more than the {clips} distinct source clips in motion "
                                           f"database {db.name!r}")
        keep_start = _check_int(keep_start_frames, "keep_start_frames", 0, MAX_LENGTH)
        keep_end = _check_int(keep_end_frames, "keep_end_frames", 0, MAX_LENGTH)
        pose = start_pose_of(start_pose, keep_start)
        folder = model_folder(model)
        if model != BUILTIN_MODEL and is_momask_folder(folder):
            motion, refs, summary = t2m_momask.generate(
                self, query=query, db=db, model=model, folder=folder, length=length, seed=seed, guidance_text=g_text,
                strength=g_retr, references=references, steps=steps, clip=clip, download=bool(download),
                keep_loaded=bool(keep_loaded), retrieve=_search_refs, check_length=_check_length,
                keep_motion=keep_motion, keep_start_frames=keep_start, keep_end_frames=keep_end, start_pose=pose)
            motion = motion.replace(name=f"t2m_seed{seed}",
                                    provenance=dict(motion.provenance, model=model, database=db.name))
            return {"ui": {"motionrag_motion": [preview_payload(motion)], "text": [summary]},
                    "result": (to_motion_data(motion), refs)}
        if keep_start or keep_end:
            raise InputError("keep_start_frames", f"keeping frames (temporal inpainting) needs a MoMask model; "
                                                  f"{model!r} is not one")
        held = t2m_model(model, model_key(model))
        net = held.get()                              # reuses the model this node still holds
        self._held = held if keep_loaded else None    # this node object owns the model between runs
        length = _check_length(length, net)
        hold = net.frames_per_token if pose is not None else 0      # frames of the start pose
        if length and length - hold < 2:
            raise InputError("length", f"{length} frames leave fewer than 2 to generate after the start pose's "
                                       f"{hold}; give at least {hold + 2}")
        # the references match the generated frames (the pose's are added to them)
        embedding, refs = _retrieve(db, net, query, references, length - hold if length else 0)
        total = length or min(_length_from(refs, net) + hold, net.max_frames)
        bar = []

        def on_step(i, total):
            if not bar:
                bar.append(comfy_env.progress(total))
            bar[0](i)

        try:
            with _threads_for(net):
                motion = net.generate(embedding, refs.motions(), length_frames=total - hold,
                                      seed=seed, guidance_text=g_text, guidance_retrieval=g_retr, steps=steps,
                                      progress=on_step, caption=query)
        finally:
            if not keep_loaded:
                del net, held
                drop_group(GROUP)
        started = ""
        if pose is not None:
            # the demo model cannot inpaint: its motion is put after the pose and blended in
            from ..models.motion.image_pose import BLEND_FRAMES, start_from_pose

            motion = start_from_pose(pose, motion, hold_frames=hold)
            started = f", from start_pose (held {hold} frames, blended into the next {BLEND_FRAMES})"
        motion = motion.replace(name=f"t2m_seed{seed}",
                                provenance=dict(motion.provenance, model=model, database=db.name))
        summary = (f"{motion.num_frames} frames at {motion.fps:g} fps, seed {seed}{started}, "
                   f"references:\n{refs.summary()}")
        return {"ui": {"motionrag_motion": [preview_payload(motion)], "text": [summary]},
                "result": (to_motion_data(motion), refs)}


def start_pose_of(start_pose, keep_start: int = 0):
    """(22, 3) the pose a motion linked as start_pose ends in, or None."""
    if start_pose is None:
        return None
    if keep_start:
        raise InputError("start_pose", f"a start pose and keep_start_frames ({keep_start}) both set the motion's "
                                       f"start; use one of them")
    from ..models.motion.image_pose import last_pose                   # numpy behind these
    from ..models.motion.motiondiff_compat import from_motion_data

    return last_pose(from_motion_data(start_pose, what="start_pose"))


def _retrieve(db, net, query: str, references: int, length: int):
    """(the query's text embedding, the references) for the generator: the database is searched with the
    model's own text encoding when both use the same encoder (one encoding instead of two)."""
    from ..retrieval.refs import MotionRefs                   # numpy behind these
    from ..retrieval.text_encoder import get_text_encoder

    # the library names its own arguments; a database error is about this node's motion_db input
    with comfy_env.inputs_named(name="motion_db", db="motion_db", target_length="length", texts="text"):
        encoder = get_text_encoder(net.config.text_encoder, db.root)
        embedding = encoder.encode([query])[0]
        if db.text_encoder_id == net.config.text_encoder:
            db.check_encoder(encoder)
            hits = db.search_vector(embedding, references, target_length=length or None, one_per_source=True)
        else:
            hits = db.search(query, references, target_length=length or None, one_per_source=True)
    if not hits:
        raise InputError("motion_db", f"motion database {db.name!r} returned no references for {query!r}")
    _motion_hits(db, hits)
    return embedding, MotionRefs.from_hits(query, hits, database=db, target_length=length or None)


def _search_refs(db, query: str, references: int, length: int):
    """References for a generator with its own text encoder (MoMask's CLIP): the database is searched
    with its own encoder."""
    from ..retrieval.refs import MotionRefs                   # numpy behind it

    with comfy_env.inputs_named(name="motion_db", db="motion_db", target_length="length", texts="text"):
        hits = db.search(query, references, target_length=length or None, one_per_source=True)
    if not hits:
        raise InputError("motion_db", f"motion database {db.name!r} returned no references for {query!r}")
    _motion_hits(db, hits)
    return MotionRefs.from_hits(query, hits, database=db, target_length=length or None)


@contextlib.contextmanager
def _threads_for(net):
    """One torch thread for small models: their matrices are so small that a second thread mostly waits."""
    import torch

    threads = torch.get_num_threads()
    small = net.num_parameters() < ONE_THREAD_PARAMS and threads > 1
    if small:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if small:
            torch.set_num_threads(threads)


NODE_CLASS_MAPPINGS = {
    "MotionRAGTextToMotion": TextToMotionRAG,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "MotionRAGTextToMotion": "Text-to-Motion RAG (MotionRAG)",
}
