"""MoMask's CLIP text encoder from a Hugging Face folder: a tiny random CLIPModel and a tokenizer
built offline stand in for openai/clip-vit-base-patch32."""
import json

import pytest
import torch

from motionrag_suite.common.errors import InputError
from motionrag_suite.models.momask import clip_text
from motionrag_suite.models.momask.clip_text import load_clip_text

from . import momask_tiny as tiny


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory):
    from transformers import CLIPConfig, CLIPModel

    tok = tiny.clip_tokenizer()
    torch.manual_seed(0)
    config = CLIPConfig(
        text_config=dict(vocab_size=len(tok), hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                         num_attention_heads=4, max_position_embeddings=77, hidden_act="quick_gelu",
                         bos_token_id=len(tok) - 2, eos_token_id=2, pad_token_id=1),    # eos 2: the hub's legacy pooling
        vision_config=dict(hidden_size=32, intermediate_size=48, num_hidden_layers=1, num_attention_heads=4,
                           image_size=32, patch_size=16),
        projection_dim=512)
    folder = tmp_path_factory.mktemp("clip") / "clip-vit-base-patch32"
    CLIPModel(config).eval().save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def _reference_features(folder, texts):
    """CLIPModel.get_text_features on the same ids: what MoMask's clip.encode_text(...).float() is."""
    from transformers import AutoTokenizer, CLIPModel

    model = CLIPModel.from_pretrained(folder).eval()
    tok = AutoTokenizer.from_pretrained(folder)
    out = []
    with torch.no_grad():
        for t in texts:
            ids = tok(t, truncation=True, max_length=77, return_tensors="pt")["input_ids"]
            feats = model.get_text_features(input_ids=ids)
            out.append(getattr(feats, "pooler_output", feats)[0])
    return torch.stack(out)


def test_projected_not_normalised_text_features(clip_folder):
    enc = load_clip_text(clip_folder)
    texts = ["the man walks", "a person jumps in place then turns around"]
    feats = enc.encode(texts)
    assert feats.shape == (2, 512) and feats.dtype == torch.float32
    torch.testing.assert_close(feats, _reference_features(clip_folder, texts), rtol=1e-5, atol=1e-5)
    assert not torch.allclose(feats.norm(dim=-1), torch.ones(2))
    torch.testing.assert_close(enc.encode(texts[0])[0], feats[0], rtol=1e-5, atol=1e-5)   # padding is inert


def test_long_text_is_truncated_keeping_the_end_token(clip_folder):
    enc = load_clip_text(clip_folder)
    long = " ".join(["walk"] * 200)
    ids = enc.tokenizer(long, truncation=True, max_length=77)["input_ids"]
    assert len(ids) == 77 and ids[-1] == enc.tokenizer.eos_token_id
    torch.testing.assert_close(enc.encode([long]), _reference_features(clip_folder, [long]), rtol=1e-5, atol=1e-5)


def test_text_features_drive_a_momask_model(clip_folder, tmp_path):
    from motionrag_suite.models.momask import load_momask

    model = load_momask(tiny.write_folder(tmp_path / "t2m"))
    emb = load_clip_text(clip_folder).encode(["a person walks"])[0]
    out = model.generate(emb, length_frames=24, seed=1, steps=4)
    assert out.features.shape == (24, 263) and out.joints.shape == (24, 22, 3)


def test_missing_folder_gives_the_download_command(tmp_path):
    with pytest.raises(InputError) as e:
        load_clip_text(tmp_path / "clip-vit-base-patch32")
    msg = str(e.value)
    assert e.value.input == "clip_folder"
    assert "huggingface-cli download openai/clip-vit-base-patch32" in msg and str(tmp_path / "clip-vit-base-patch32") in msg


def test_download_failure_offline_says_why_and_how(tmp_path, monkeypatch):
    def offline(folder):
        raise OSError("no network")

    monkeypatch.setattr(clip_text, "_download", offline)
    with pytest.raises(InputError) as e:
        load_clip_text(tmp_path / "clip", download=True)
    assert "download failed" in str(e.value) and "no network" in str(e.value) and "huggingface-cli" in str(e.value)


def test_weights_missing(clip_folder, tmp_path):
    import shutil

    bare = tmp_path / "bare"
    shutil.copytree(clip_folder, bare)
    (bare / "model.safetensors").unlink()
    with pytest.raises(InputError, match="no model.safetensors"):
        load_clip_text(bare)


def test_another_model_type(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(InputError, match="'bert'"):
        load_clip_text(tmp_path)


def test_bad_text():
    enc = clip_text.ClipTextEncoder(None, torch.nn.Linear(1, 1))
    with pytest.raises(InputError):
        enc.encode([])
