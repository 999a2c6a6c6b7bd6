"""Text-to-Motion RAG: retrieve reference motions for a text, then generate a new motion with the
retrieval-augmented masked transformer (models/t2m).

Models: "motionrag-t2m-small (built-in)" is the small model shipped in models/t2m/weights/ (a demo
trained on the 20-clip built-in library, see its PROVENANCE.md); any folder under
<motionrag folder>/t2m/ holding model.safetensors + config.json (what `python -m training t2m`
writes) is listed after it.

Ownership: the node object owns the model it last used (a few MB for the small preset) until another
model is chosen or keep_loaded is switched off; a module-level weak reference only lets a second node
share it. ComfyUI keeps node objects between runs and drops them on "Free model and node cache"
(POST /free {"free_memory": true}), so the model's memory goes back then, as for the image-to-video
models (comfy_models.py).
"""
from __future__ import annotations

import gc
import logging
import math
import threading
import weakref
from pathlib import Path

from ..retrieval.errors import RetrievalError
from . import comfy_env

BUILTIN_MODEL = "motionrag-t2m-small (built-in)"
BUILTIN_FOLDER = Path(__file__).resolve().parents[1] / "models" / "t2m" / "weights" / "motionrag-t2m-small"
MODELS_SUBFOLDER = "t2m"
DB_TYPE = "MOTION_DB"
REFS_TYPE = "MOTION_REFS"
MAX_LENGTH = 1000            # widget bound; each model's own limit is checked once it is loaded
MAX_REFERENCES = 16
# Below this many parameters generation runs on one torch thread: its matrices are so small that
# a second thread mostly waits (tests/benchmarks/bench_t2m.py, 196 frames with the built-in model on
# the busy 2-core development machine: 0.1 s median with one thread, 0.5-3 s with two).
ONE_THREAD_PARAMS = 10_000_000
# torch.save files (zip or legacy pickle) and other pickle containers: never unpickled here,
# because unpickling runs whatever code the file names.
PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".pkl", ".pickle", ".tar")


class T2MInputError(ValueError):
    """A Text-to-Motion RAG input that cannot be used; the message starts with the input's name."""


# ------------------------------------------------------------------------------ model folders
def _model_roots() -> list[Path]:
    return [root / MODELS_SUBFOLDER for root in comfy_env.models_roots()]


def model_choices() -> list[str]:
    """The built-in model first, then every folder under any <motionrag>/t2m (first folder wins a name)."""
    names = [BUILTIN_MODEL]
    for base in _model_roots():
        try:
            entries = sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith("."))
        except OSError:
            continue
        for p in entries:
            if p.name not in names:
                names.append(p.name)
    return names


def model_folder(name: str) -> Path:
    """The folder of model `name` (the shipped one, or one under a motionrag t2m folder)."""
    from ..common.paths import safe_child

    if name == BUILTIN_MODEL:
        return BUILTIN_FOLDER
    for base in _model_roots():
        try:
            folder = safe_child(base, name, what="model")
        except ValueError as exc:
            raise T2MInputError(str(exc)) from None
        if folder.is_dir():
            return folder
    where = ", ".join(str(b) for b in _model_roots())
    raise T2MInputError(f"model: {name!r} was not found; expected a folder with model.safetensors and config.json "
                        f"in {where}")


def _looks_pickled(path: Path) -> bool:
    """True for torch.save output (a zip archive) or a raw pickle stream, whatever the file is called.
    A safetensors file starts with an 8-byte header length followed by its JSON header ('{')."""
    try:
        with open(path, "rb") as f:
            head = f.read(9)
    except OSError:
        return False
    return head.startswith(b"PK\x03\x04") or head[:1] == b"\x80" or (len(head) == 9 and head[8:9] != b"{")


def check_model_folder(folder: Path, name: str) -> None:
    """Refuse, before anything is loaded, folders that are not safetensors + JSON model folders."""
    from ..models.t2m.checkpoint import CONFIG_FILE, MODEL_FILE

    if name == BUILTIN_MODEL and not (folder / MODEL_FILE).is_file():
        raise T2MInputError(f"model: the built-in model's weights are missing from {folder}; reinstall the pack, or "
                            "choose a model folder under models/motionrag/t2m")
    weights = folder / MODEL_FILE
    pickles = sorted(p.name for p in folder.iterdir() if p.is_file() and p.suffix.lower() in PICKLE_SUFFIXES)
    if not weights.is_file():
        if pickles:
            raise T2MInputError(f"model: {folder} holds a pickle-format checkpoint ({', '.join(pickles)}), which is "
                                f"refused because loading pickle can run arbitrary code; expected {MODEL_FILE} + "
                                f"{CONFIG_FILE} as written by `python -m training t2m`")
        raise T2MInputError(f"model: {folder} has no {MODEL_FILE}; expected {MODEL_FILE} + {CONFIG_FILE} as written "
                            "by `python -m training t2m`")
    if _looks_pickled(weights):
        raise T2MInputError(f"model: {weights} is a pickle-format checkpoint renamed to .safetensors, which is refused "
                            "because loading pickle can run arbitrary code; convert it to real safetensors")
    if not (folder / CONFIG_FILE).is_file():
        raise T2MInputError(f"model: {folder} has no {CONFIG_FILE}; the weights cannot be used without the "
                            "configuration they were trained with")


def _stamp(folder: Path) -> tuple:
    """Changes when the model's files are replaced (a retrained model in the same folder)."""
    from ..models.t2m.checkpoint import CONFIG_FILE, MODEL_FILE

    out = []
    for name in (MODEL_FILE, CONFIG_FILE):
        try:
            st = (folder / name).stat()
            out.append((name, st.st_ino, st.st_mtime_ns, st.st_size))
        except OSError:
            out.append((name, None))
    return tuple(out)


log = logging.getLogger("MotionRAG")
_slot_lock = threading.Lock()
_slot: list = []          # [(key, weak reference to the model)]: the last loaded model, owned by its node


def model_key(name: str) -> tuple:
    """(folder, file stamp) of model `name`: a new key when its files change."""
    folder = model_folder(name)
    check_model_folder(folder, name)
    return (str(folder.resolve()), _stamp(folder))


def load_t2m_model(name: str, key: tuple | None = None):
    """Model `name` (whose model_key is `key` when the caller has it): the one in memory when its
    files have not changed since it loaded, else read from disk. The caller owns it (see the module
    notes); this module only remembers it weakly."""
    from ..models.t2m.checkpoint import CheckpointError, load_model

    key = key or model_key(name)
    folder = Path(key[0])
    with _slot_lock:
        model = _slot[0][1]() if _slot and _slot[0][0] == key else None
        if model is not None:
            return model
        _slot.clear()
        gc.collect()             # a previous model nobody owns goes before the next one loads
        try:
            model = load_model(folder, "cpu")
        except CheckpointError as exc:
            raise T2MInputError(f"model: {exc}") from None
        weakref.finalize(model, log.info, "MotionRAG: t2m model %s freed", name).atexit = False
        log.info("MotionRAG: t2m model %s loaded from disk", name)
        _slot.append((key, weakref.ref(model)))
        return model


def loaded_model_key():
    """(folder, file stamp) of the model in memory now, or None."""
    with _slot_lock:
        return _slot[0][0] if _slot and _slot[0][1]() is not None else None


def release_model() -> bool:
    """Forget the last loaded model (its memory goes back once no node owns it); True when one was
    in memory."""
    with _slot_lock:
        held = bool(_slot) and _slot[0][1]() is not None
        _slot.clear()
    gc.collect()
    return held


# ------------------------------------------------------------------------------ inputs
def _check_text(text) -> str:
    if not isinstance(text, str) or not text.strip():
        raise T2MInputError("text: is empty; describe a motion, e.g. 'a person does a cartwheel'")
    return " ".join(text.split())


def _check_int(value, what: str, low: int, high: int, hint: str = "") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise T2MInputError(f"{what}: expected a whole number in {low}..{high}{hint}, got {value!r}")
    return value


def _check_guidance(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise T2MInputError(f"{what}: expected a finite number >= 0, got {value!r}")
    return float(value)


def _check_length(length, model=None) -> int:
    high = model.max_frames if model is not None else MAX_LENGTH
    length = _check_int(length, "length", 0, high, " frames at 20 fps (0 = the retrieved clips' length)"
                        + (" for this model" if model is not None else ""))
    if length == 1:
        raise T2MInputError("length: a motion needs at least 2 frames (0 = the retrieved clips' length), got 1")
    return length


def _motion_hits(db, hits) -> None:
    """Refuse references that carry no motion (video databases store a standing placeholder skeleton)."""
    for h in hits:
        info = db.entry(h.entry_id)
        if info.provenance.get("placeholder_joints") or info.provenance.get("source") == "video":
            raise T2MInputError(
                f"motion_db: motion database {db.name!r} holds video clips (entry {info.name!r} has only a placeholder "
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
                    "tooltip": "The generator: the built-in small demo model, or a folder under "
                               "models/motionrag/t2m holding model.safetensors + config.json.",
                }),
                "length": ("INT", {
                    "default": 0, "min": 0, "max": MAX_LENGTH,
                    "tooltip": "Frames to generate at 20 fps (the built-in model allows up to 257). "
                               "0 = the mean length of the retrieved clips.",
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
                               "more closely, 0 ignores them.",
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
        except T2MInputError as exc:
            return str(exc)
        return True

    @classmethod
    def IS_CHANGED(cls, model, **_kwargs):
        # Run again when the chosen model's files are replaced (e.g. retrained into the same folder).
        try:
            return f"{model}|{_stamp(model_folder(model))}"
        except T2MInputError:
            return float("nan")

    def generate(self, text, motion_db, model, length, seed, guidance_text, guidance_retrieval, references, steps,
                 keep_loaded=True):
        import torch

        from ..models.motion.motiondiff_compat import to_motion_data
        from ..models.motion.preview import preview_payload
        from ..retrieval.refs import MotionRefs
        from ..retrieval.text_encoder import get_text_encoder
        from .retrieval_nodes import _as_database, _prefixed

        # Every input is checked before the model loads or the text is encoded.
        query = _check_text(text)
        _check_length(length)
        seed = _check_int(seed, "seed", 0, 0xFFFFFFFFFFFFFFFF)
        g_text = _check_guidance(guidance_text, "guidance_text")
        g_retr = _check_guidance(guidance_retrieval, "guidance_retrieval")
        references = _check_int(references, "references", 1, MAX_REFERENCES)
        steps = _check_int(steps, "steps", 1, 100)
        db = _as_database(motion_db)
        clips = int(db.entry_group.max()) + 1 if db.entry_count else 0
        if references > clips:
            raise T2MInputError(f"references: {references} is more than the {clips} distinct source clips in motion "
                                f"database {db.name!r}")
        key = model_key(model)
        owned = getattr(self, "_owned", None)
        if owned is not None and owned[0] != key:
            self._owned = owned = None          # the previous model goes before the next one loads
        net = load_t2m_model(model, key)
        self._owned = (key, net) if keep_loaded else None
        length = _check_length(length, net)

        try:
            encoder = get_text_encoder(net.config.text_encoder, db.root)
            embedding = encoder.encode([query])[0]
            db_vector = embedding if db.text_encoder_id == net.config.text_encoder else None
            if db_vector is not None:
                db.check_encoder(encoder)
                hits = db.search_vector(db_vector, references, target_length=length or None, one_per_source=True)
            else:
                hits = db.search(query, references, target_length=length or None, one_per_source=True)
        except RetrievalError as exc:
            raise _prefixed(exc, "motion_db") from None
        if not hits:
            raise T2MInputError(f"motion_db: motion database {db.name!r} returned no references for {query!r}")
        _motion_hits(db, hits)
        refs = MotionRefs.from_hits(query, hits, database=db, target_length=length or None)
        frames = length or _length_from(refs, net)

        bar = []

        def on_step(i, total):
            if not bar:
                bar.append(comfy_env.progress(total))
            bar[0](i)

        threads = torch.get_num_threads()
        small = net.num_parameters() < ONE_THREAD_PARAMS and threads > 1
        try:
            if small:
                torch.set_num_threads(1)
            motion = net.generate(embedding, refs.motions(), length_frames=frames, seed=seed, guidance_text=g_text,
                                  guidance_retrieval=g_retr, steps=steps, progress=on_step, caption=query)
        finally:
            if small:
                torch.set_num_threads(threads)
            if not keep_loaded:
                del net
                release_model()
        motion = motion.replace(name=f"t2m_seed{seed}",
                                provenance=dict(motion.provenance, model=model, database=db.name))
        summary = f"{motion.num_frames} frames at {motion.fps:g} fps, seed {seed}, references:\n{refs.summary()}"
        return {"ui": {"motionrag_motion": [preview_payload(motion)], "text": [summary]},
                "result": (to_motion_data(motion), refs)}


NODE_CLASS_MAPPINGS = {
    "MotionRAGTextToMotion": TextToMotionRAG,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "MotionRAGTextToMotion": "Text-to-Motion RAG (MotionRAG)",
}
