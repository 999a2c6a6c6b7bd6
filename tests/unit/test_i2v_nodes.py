"""The image-to-video nodes called directly (no ComfyUI), on tiny random encoders, checkpoints in the
released key layouts and tiny diffusers pipelines written into a temporary models folder.
Outputs of these backbones are mechanics only, never quality."""
from __future__ import annotations

import gc
import shutil

import pytest
import torch

from motionrag_suite.models.i2v import runtime as rt
from motionrag_suite.models.i2v.errors import CheckpointError, CheckpointNotFoundError
from motionrag_suite.nodes import i2v_loader_nodes as loaders
from motionrag_suite.nodes import i2v_nodes as n
from motionrag_suite.common.shared import live
from motionrag_suite.nodes.model_owner import release_all
from motionrag_suite.retrieval.errors import RetrievalError
from motionrag_suite.retrieval.refs import MotionRefs

from . import i2v_tiny_assets as assets
from .test_i2v_fixtures import one_thread  # noqa: F401

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("motionrag")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MOTIONRAG_MODELS_DIR", str(root))
        before = torch.get_num_threads()
        torch.set_num_threads(1)
        assets.write_all(root)
        videos = assets.write_videos(tmp_path_factory.mktemp("videos"))
        db, report = n.BuildVideoDB().build(str(next(iter(videos.values())).parent), "vids", "create", "CogVideoX+SVD",
                                            assets.VIDEO_ENCODER, assets.IMAGE_ENCODER, 1, False)
        torch.set_num_threads(before)
        yield root, db
    release_all()


def _image(width=40, height=32):
    return torch.from_numpy(assets.query_image(width, height)).float()[None] / 255.0


def _refs(db, text="a bar slides to the right", k=2):
    return MotionRefs.from_hits(text, db.search(text, k), database=db)


def _tokens(db, base):
    cama, notes = loaders.LoadCAMA().load(base, assets.IMAGE_ENCODER, assets.VIDEO_ENCODER)
    tokens, summary = n.CAMAAdapt().adapt(_refs(db), _image(), cama)
    return tokens, summary, notes


def test_nodes_list_the_real_model_names_and_the_ones_found(models):
    enc = loaders.LoadCAMA.INPUT_TYPES()["required"]["image_encoder"][0]
    assert enc[0] == rt.IMAGE_ENCODER and assets.IMAGE_ENCODER in enc and assets.VIDEO_ENCODER in enc
    backbones = loaders.LoadVideoBackbone.INPUT_TYPES()["required"]["backbone"][0]
    assert backbones[:2] == ["CogVideoX-5b-I2V", "stable-video-diffusion-img2vid"]
    assert {assets.COG_BACKBONE, assets.SVD_BACKBONE} <= set(backbones)
    for cls in n.NODE_CLASS_MAPPINGS.values():
        for section in cls.INPUT_TYPES().values():
            for name, spec in section.items():
                assert spec[1].get("tooltip"), f"{cls.__name__}.{name} has no tooltip"
    assert "mechanics" in n.SampleVideo.DESCRIPTION and "mechanics" in loaders.LoadVideoBackbone.DESCRIPTION


def test_build_video_db_node_reuses_an_existing_database(models):
    _, db = models
    again, report = n.BuildVideoDB().build("nowhere", "vids", "reuse", "SVD", assets.VIDEO_ENCODER,
                                           assets.IMAGE_ENCODER, 1, False)
    assert again.entry_count == db.entry_count == 3 and "reused" in report


@pytest.mark.parametrize("base", ["CogVideoX", "SVD"])
def test_cama_adapt_gives_tokens_from_stored_payloads_only(models, base):
    _, db = models
    tokens, summary, notes = _tokens(db, base)
    assert tokens.base == base and tokens.cond.shape == (1, 4, 16) and tokens.uncond.shape == (1, 4, 16)
    assert torch.isfinite(tokens.cond).all() and not torch.allclose(tokens.cond, tokens.uncond)
    assert "sos_token is not in the checkpoint" in notes                  # LoadReport notes reach the user
    assert "bar_right" in summary
    # a different query image gives different motion (CAMA reads the query's appearance)
    cama, _ = loaders.LoadCAMA().load(base, assets.IMAGE_ENCODER, assets.VIDEO_ENCODER)
    other, _ = n.CAMAAdapt().adapt(_refs(db), torch.flip(_image(), dims=[2]) * 0.5, cama)
    assert not torch.allclose(other.cond, tokens.cond)


def test_cama_adapt_refuses_bad_images_and_motion_only_refs(models):
    _, db = models
    cama, _ = loaders.LoadCAMA().load("SVD", assets.IMAGE_ENCODER, assets.VIDEO_ENCODER)
    refs = _refs(db)
    with pytest.raises(ValueError, match=r"image: expected an IMAGE of shape \[batch, height, width, 3\]"):
        n.CAMAAdapt().adapt(refs, _image().permute(0, 3, 1, 2), cama)
    with pytest.raises(ValueError, match=r"image: values must lie in 0\.\.1"):
        n.CAMAAdapt().adapt(refs, _image() * 255.0, cama)
    with pytest.raises(ValueError, match="image: expected one image, got a batch of 2"):
        n.CAMAAdapt().adapt(refs, _image().repeat(2, 1, 1, 1), cama)
    from motionrag_suite.retrieval import build_from_library

    root, _ = models
    build_from_library(root, "mocap", source_options={"include_mirrored": False})
    from motionrag_suite.retrieval import open_database

    mocap = open_database(root, "mocap")
    with pytest.raises(RetrievalError, match="no 'motion_tokens_svd' payload.*Build Video DB with base SVD"):
        n.CAMAAdapt().adapt(MotionRefs.from_hits("walk", mocap.search("walk", 1), database=mocap), _image(), cama)


def test_missing_files_name_the_exact_place_to_put_them(models, tmp_path, monkeypatch):
    monkeypatch.setenv("MOTIONRAG_MODELS_DIR", str(tmp_path))
    with pytest.raises(CheckpointNotFoundError) as err:
        loaders.LoadMotionAdapter().load("SVD")
    assert str(tmp_path / "checkpoints" / "SVD" / "Motion-Adapter.ckpt") in str(err.value)
    assert "huggingface.co/MCG-NJU/MotionRAG" in str(err.value)
    with pytest.raises(CheckpointNotFoundError) as err:
        loaders.LoadVideoBackbone().load("CogVideoX-5b-I2V")
    msg = str(err.value)
    assert str(tmp_path / "diffusers" / "CogVideoX-5b-I2V") in msg
    assert "huggingface-cli download THUDM/CogVideoX-5b-I2V --local-dir" in msg
    root, _ = models
    shutil.copytree(root / "checkpoints", tmp_path / "checkpoints")
    with pytest.raises(CheckpointNotFoundError) as err:
        loaders.LoadCAMA().load("SVD", "dinov2-large", assets.VIDEO_ENCODER)
    assert str(tmp_path / "encoders" / "dinov2-large") in str(err.value)
    assert "huggingface-cli download facebook/dinov2-large" in str(err.value)


def test_download_input_tries_the_hub_and_falls_back_to_the_message(models, tmp_path, monkeypatch):
    # Offline here: with download on, the node really asks huggingface_hub, which refuses at
    # once in offline mode, and the error still says where to put the file.
    monkeypatch.setenv("MOTIONRAG_MODELS_DIR", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointNotFoundError) as err:
        loaders.LoadMotionAdapter().load("SVD", download=True)
    assert "the download failed" in str(err.value)
    assert str(tmp_path / "checkpoints" / "SVD" / "Motion-Adapter.ckpt") in str(err.value)
    with pytest.raises(CheckpointNotFoundError) as err:
        loaders.LoadMotionAdapter().load("SVD")
    assert "downloading is off" in str(err.value)


def _sample(backbone, steps=2, **kw):
    base = backbone.base
    frames, width, height = assets.COG_SIZE if base == "CogVideoX" else assets.SVD_SIZE
    args = dict(prompt="a bar slides", steps=steps, guidance=3.0, seed=7, frames=frames, fps=8.0, width=width,
                height=height)
    args.update(kw)
    return n.SampleVideo().sample(backbone, _image(), **args)


@pytest.mark.parametrize("base,name,inject", [("CogVideoX", assets.COG_BACKBONE, n.InjectMotionCogVideoX),
                                              ("SVD", assets.SVD_BACKBONE, n.InjectMotionSVD)])
def test_sample_video_frames_strength_zero_is_the_plain_model(models, base, name, inject):
    _, db = models
    backbone, got_base, notes = loaders.LoadVideoBackbone().load(name)
    assert got_base == base and name in notes
    assert ("17_frames" in notes) == (base == "CogVideoX")        # the fine-tune is applied to CogVideoX only
    tokens, _, _ = _tokens(db, base)
    adapter, adapter_notes = loaders.LoadMotionAdapter().load(base)
    assert "Motion-Adapter" in adapter_notes
    plain, fps = _sample(backbone)
    frames, width, height = assets.COG_SIZE if base == "CogVideoX" else assets.SVD_SIZE
    assert plain.shape == (frames, height, width, 3) and fps == 8.0
    assert plain.dtype == torch.float32 and 0.0 <= float(plain.min()) and float(plain.max()) <= 1.0
    (zero,) = inject().inject(backbone, tokens, adapter, 0.0)
    (full,) = inject().inject(backbone, tokens, adapter, 1.0)
    assert torch.equal(_sample(zero)[0], plain)
    moved = _sample(full)[0]
    assert (moved - plain).abs().max() > 1e-4, "the motion branch changed nothing"
    # the stock processors are back after sampling: the plain backbone still gives the plain output
    assert torch.equal(_sample(backbone)[0], plain)
    # guidance 1 (no CFG batch) works with the conditional tokens alone
    assert _sample(full, guidance=1.0)[0].shape == plain.shape


def test_wrong_pairings_and_sizes_are_refused(models, tmp_path):
    root, db = models
    cog, _, _ = loaders.LoadVideoBackbone().load(assets.COG_BACKBONE)
    svd_tokens, _, _ = _tokens(db, "SVD")
    cog_tokens, _, _ = _tokens(db, "CogVideoX")
    cog_adapter, _ = loaders.LoadMotionAdapter().load("CogVideoX")
    with pytest.raises(ValueError, match="motion_tokens: made with the SVD CAMA"):
        n.InjectMotionCogVideoX().inject(cog, svd_tokens, cog_adapter, 1.0)
    with pytest.raises(ValueError, match="backbone: 'tiny-cogvideox-i2v' is a CogVideoX model"):
        n.InjectMotionSVD().inject(cog, cog_tokens, cog_adapter, 1.0)
    with pytest.raises(ValueError, match=r"frames: 8 does not suit CogVideoX: it needs 4k\+1"):
        _sample(cog, frames=8)
    with pytest.raises(ValueError, match="width/height: 36x32 must be positive multiples of 8"):
        _sample(cog, width=36)
    # an adapter whose hidden size does not match the backbone
    wide = root / "diffusers" / "tiny-cogvideox-wide"
    assets.tiny_cog_pipeline(head_dim=32).save_pretrained(wide)
    try:
        wide_backbone, _, _ = loaders.LoadVideoBackbone().load("tiny-cogvideox-wide", False)
        with pytest.raises(CheckpointError, match=r"hidden size\(s\) \[32\] over 2 layers, the backbone has \[64\]"):
            n.InjectMotionCogVideoX().inject(wide_backbone, cog_tokens, cog_adapter, 1.0)
        with pytest.raises(CheckpointError, match="17_frames"):
            loaders.LoadVideoBackbone().load("tiny-cogvideox-wide", True)
    finally:
        shutil.rmtree(wide)


def test_cancel_stops_sampling_and_leaves_the_model_clean(models):
    _, db = models
    backbone, _, _ = loaders.LoadVideoBackbone().load(assets.SVD_BACKBONE)
    tokens, _, _ = _tokens(db, "SVD")
    adapter, _ = loaders.LoadMotionAdapter().load("SVD")
    (full,) = n.InjectMotionSVD().inject(backbone, tokens, adapter, 1.0)
    pipe = backbone.handle.get()
    seen = []

    class Cancelled(Exception):
        pass

    def on_step(i):
        seen.append(i)
        if len(seen) == 2:
            raise Cancelled("user pressed Cancel")

    frames, width, height = assets.SVD_SIZE
    with pytest.raises(Cancelled):
        rt.sample_video(pipe, "SVD", _image(), prompt="", steps=6, guidance=3.0, seed=1, frames=frames, fps=8,
                        width=width, height=height, plan=full.plan, on_step=on_step)
    assert seen == [0, 1]
    assert not any(type(p).__name__.endswith("MotionAttnProcessor") for p in pipe.unet.attn_processors.values())


def test_keep_loaded_off_frees_the_models_and_they_load_again(models):
    backbone, _, _ = loaders.LoadVideoBackbone().load(assets.SVD_BACKBONE)
    first, _ = _sample(backbone)
    assert "backbone" in live()
    _sample(backbone, keep_loaded=False)
    assert live() == {}
    again, _ = _sample(backbone)                     # reloaded from its folder on demand
    assert torch.equal(again, first)
    # a new backbone replaces the previous one in memory (the caller owns it: the cache holds weak references)
    cog = loaders.LoadVideoBackbone().load(assets.COG_BACKBONE)
    assert live()["backbone"][1] == str(models[0] / "diffusers" / assets.COG_BACKBONE)
    assert "dropped" in repr(backbone.handle)
    del cog
    gc.collect()
    assert live() == {}, "nothing but the caller may keep a model alive"
