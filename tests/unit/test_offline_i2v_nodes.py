"""The offline image-to-video path through the nodes, called directly (no ComfyUI): Build Video DB with
the offline encoders (real optical flow, real EfficientNet-Lite0 weights) on small test videos, Load
Offline CAMA (an untrained model saved into models/motionrag/offline, and the shipped one), CAMA Adapt,
and the errors when families or sizes do not match."""
from __future__ import annotations

import pytest
import torch

from motionrag_suite.models.i2v import runtime as rt
from motionrag_suite.models.i2v.errors import CheckpointError
from motionrag_suite.models.i2v.offline.model import SHIPPED_NAME, OfflineConfig, OfflineMotionModel, save_model
from motionrag_suite.nodes import i2v_loader_nodes as loaders
from motionrag_suite.nodes import i2v_nodes as n
from motionrag_suite.nodes.model_owner import release_all
from motionrag_suite.retrieval.errors import RetrievalError
from motionrag_suite.retrieval.refs import MotionRefs

from . import i2v_tiny_assets as assets
from .test_i2v_fixtures import one_thread  # noqa: F401

pytestmark = pytest.mark.usefixtures("one_thread")
# the plain CAMA (appearance read, no reference skip): untrained, its output still depends on both inputs
SMALL = OfflineConfig(d_model=32, heads=2, layers=1, feedforward=64, resampler_depth=1, decoder_hidden=32, tokens=4,
                      appearance=1, reference_skip=0)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("motionrag")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MOTIONRAG_MODELS_DIR", str(root))
        torch.manual_seed(0)
        save_model(root / rt.OFFLINE_SUBDIR / "test-offline", OfflineMotionModel(SMALL).eval())
        videos = assets.write_videos(tmp_path_factory.mktemp("videos"))
        folder = str(next(iter(videos.values())).parent)
        db, report = n.BuildVideoDB().build(folder, "offline_vids", "create", "SVD", "unused", "unused", 1, False,
                                            encoders=n.OFFLINE_FAMILY)
        yield root, db, folder
    release_all()


def _image():
    return torch.from_numpy(assets.query_image(40, 32)).float()[None] / 255.0


def _refs(db, text, k=2):
    return MotionRefs.from_hits(text, db.search(text, k), database=db)


def test_offline_database_holds_flow_and_lite0_payloads(models):
    _, db, _ = models
    kinds = db.entry(0).payload_kinds
    assert "flow_features" in kinds and "appearance_lite0" in kinds
    assert db.load_payload(0, "flow_features").shape == (15, 128)
    assert db.load_payload(0, "appearance_lite0").shape == (49, 1280)


def test_load_offline_cama_lists_shipped_and_found_models(models):
    names = loaders.LoadOfflineCAMA.INPUT_TYPES()["required"]["model"][0]
    assert names[0] == SHIPPED_NAME and "test-offline" in names


def test_cama_adapt_with_the_offline_model(models):
    _, db, _ = models
    cama, notes = loaders.LoadOfflineCAMA().load("test-offline", "SVD")
    assert "test-offline" in notes and "EfficientNet-Lite0" in notes
    right, summary = n.CAMAAdapt().adapt(_refs(db, "a bright bar slides to the right"), _image(), cama)
    assert right.cond.shape == (1, SMALL.tokens, SMALL.d_model) and right.uncond.shape == right.cond.shape
    assert right.base == "SVD" and "from 2 reference(s)" in summary
    pulse, _ = n.CAMAAdapt().adapt(_refs(db, "the whole picture pulses between dark and light"), _image(), cama)
    assert pulse.references != right.references
    assert not torch.allclose(pulse.cond, right.cond)            # the references' motion reaches the tokens
    # the guidance tokens are the motion tokens of a still clip (zero flow)
    bundle = cama.get()
    still = bundle.model.motion_tokens(torch.zeros(1, 15, 128))
    assert torch.allclose(right.uncond, still)


def test_shipped_model_loads_and_adapts(models):
    _, db, _ = models
    cama, notes = loaders.LoadOfflineCAMA().load(SHIPPED_NAME, "CogVideoX")
    assert "builtin_videos" in notes and "appearance: off" in notes and "gated towards" in notes
    tokens, _ = n.CAMAAdapt().adapt(_refs(db, "a bar falls down"), _image(), cama)
    assert tokens.cond.shape == (1, 8, 128) and torch.isfinite(tokens.cond).all()
    # the references' motion reaches the shipped model's tokens (the test bar_down clip has no flow
    # inside the 128-px crop, bar_right has)
    down, _ = n.CAMAAdapt().adapt(_refs(db, "a bar falls down", k=1), _image(), cama)
    right, _ = n.CAMAAdapt().adapt(_refs(db, "a bright bar slides to the right", k=1), _image(), cama)
    assert down.references != right.references and not torch.allclose(down.cond, right.cond)


def test_families_must_match(models):
    root, db, folder = models
    cama, _ = loaders.LoadOfflineCAMA().load("test-offline", "SVD")
    # a database of the paper's family has no flow payloads
    assets.write_all(root)
    paper_db, _ = n.BuildVideoDB().build(folder, "paper_vids", "create", "SVD", assets.VIDEO_ENCODER,
                                         assets.IMAGE_ENCODER, 1, False)
    with pytest.raises(RetrievalError, match="refs: .*flow_features.*optical flow \\+ EfficientNet-Lite0"):
        n.CAMAAdapt().adapt(_refs(paper_db, "a bar falls down"), _image(), cama)
    paper, _ = loaders.LoadCAMA().load("SVD", assets.IMAGE_ENCODER, assets.VIDEO_ENCODER)
    with pytest.raises(RetrievalError, match="refs: .*motion_tokens_svd"):
        n.CAMAAdapt().adapt(_refs(db, "a bar falls down"), _image(), paper)
    # offline tokens (32-d here) into the tiny SVD Motion-Adapter (made for the tiny paper tokens)
    tokens, _ = n.CAMAAdapt().adapt(_refs(db, "a bar falls down"), _image(), cama)
    backbone, _, _ = loaders.LoadVideoBackbone().load(assets.SVD_BACKBONE)
    adapter, _ = loaders.LoadMotionAdapter().load("SVD")
    with pytest.raises(CheckpointError, match="motion_tokens: 32-d, but the adapter reads"):
        n.InjectMotionSVD().inject(backbone, tokens, adapter, 1.0)


@pytest.mark.parametrize("bad, message", [
    (torch.rand(1, 32, 40, 3) * 2 - 1, "values must lie in 0..1"),     # a [-1, 1] image where 0..1 is expected
    (torch.rand(1, 3, 32, 40), "shape \\[batch, height, width, 3\\]"),  # channels first
    (torch.rand(2, 32, 40, 3), "one image"),
])
def test_bad_query_image(models, bad, message):
    _, db, _ = models
    cama, _ = loaders.LoadOfflineCAMA().load("test-offline", "SVD")
    with pytest.raises(ValueError, match=f"image: .*{message}"):
        n.CAMAAdapt().adapt(_refs(db, "a bar falls down"), bad, cama)
