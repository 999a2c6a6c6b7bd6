"""Loading a released MoMask folder: weights_only reads, key checks, the one-time safetensors
conversion, and a clear InputError for every kind of wrong file."""
import shutil

import numpy as np
import pytest
import torch

from motionrag_suite.common.errors import InputError
from motionrag_suite.models.momask import load_momask
from motionrag_suite.models.momask.checkpoint import FORMAT, find_parts
from motionrag_suite.models.momask.config import read_opt, rvq_config

from . import momask_tiny as tiny


@pytest.fixture(scope="module")
def states():
    return tiny.tiny_states()


@pytest.fixture
def folder(tmp_path, states):
    return tiny.write_folder(tmp_path / "t2m", states)


def _same_weights(model, states):
    for role, net in (("rvq", model.rvq), ("masked", model.masked), ("residual", model.residual),
                      ("length", model.length_estimator)):
        mine = net.state_dict()
        assert set(mine) == set(states[role])
        for k, v in states[role].items():
            assert torch.equal(mine[k], v), k


def test_load_converts_once_and_then_reads_safetensors(folder, states, monkeypatch):
    model = load_momask(folder)
    _same_weights(model, states)
    for net in (model.rvq, model.masked, model.residual, model.length_estimator):   # built on meta, all assigned
        assert all(t.device.type == "cpu" for t in [*net.parameters(), *net.buffers()])
    assert model.config.dataset == "t2m" and model.config.rvq.num_quantizers == 4
    converted = {p.relative_to(folder).as_posix() for p in folder.rglob("*.safetensors")}
    assert converted == {f"{tiny.RESIDUAL_NAME}/model/net_best_fid.safetensors",
                         f"{tiny.MASKED_NAME}/model/latest.safetensors",
                         "length_estimator/model/finest.safetensors",
                         f"{tiny.VQ_NAME}/model/net_best_fid.safetensors"}
    from safetensors import safe_open

    with safe_open(str(folder / tiny.MASKED_NAME / "model" / "latest.safetensors"), framework="pt") as f:
        assert f.metadata()["format"] == FORMAT and f.metadata()["role"] == "masked"

    def no_torch_load(*a, **kw):
        raise AssertionError("the .tar was read again")

    monkeypatch.setattr(torch, "load", no_torch_load)
    _same_weights(load_momask(folder), states)


def test_changed_tar_is_converted_again(folder, states):
    load_momask(folder)
    changed = {k: v + 1 if k == "token_emb.weight" else v for k, v in states["masked"].items()}
    torch.save({"t2m_transformer": changed, "ep": 1, "note": "retrained"},
               folder / tiny.MASKED_NAME / "model" / "latest.tar")
    model = load_momask(folder)
    assert torch.equal(model.masked.token_emb.weight, changed["token_emb.weight"])


def test_safetensors_alone_are_enough(folder, states):
    load_momask(folder)
    for tar in folder.rglob("*.tar"):
        tar.unlink()
    _same_weights(load_momask(folder), states)


def test_read_only_folder_still_loads(folder, states, monkeypatch):
    from motionrag_suite.models.momask import checkpoint

    def refuse(*a, **kw):
        raise PermissionError("read-only")

    monkeypatch.setattr(checkpoint, "atomic_write", refuse)
    _same_weights(load_momask(folder), states)
    assert not list(folder.rglob("*.safetensors"))


def test_trainer_format_with_optimizer_and_scheduler_loads_weights_only(tmp_path, states):
    folder = tiny.write_folder(tmp_path / "t2m", states, trainer_format=True)
    _same_weights(load_momask(folder), states)


def test_legacy_key_names_net_and_trans(folder, states):
    torch.save({"net": states["rvq"], "ep": 1}, folder / tiny.VQ_NAME / "model" / "net_best_fid.tar")
    torch.save({"trans": states["masked"], "ep": 1}, folder / tiny.MASKED_NAME / "model" / "latest.tar")
    _same_weights(load_momask(folder), states)


def test_no_length_estimator_needs_a_length(tmp_path, states):
    model = load_momask(tiny.write_folder(tmp_path / "kitlike", states, length=False))
    assert model.length_estimator is None
    with pytest.raises(InputError) as e:
        model.generate(torch.zeros(512), length_frames=0)
    assert e.value.input == "length_frames" and "finest.tar" in str(e.value)
    assert model.generate(torch.zeros(512), length_frames=16, steps=2).features.shape == (16, 263)


def test_opt_txt_is_typed_like_momask(folder):
    opt = read_opt(folder / tiny.VQ_NAME / "opt.txt")
    assert opt["vq_norm"] == "None" and opt["mu"] == 0.99 and opt["nb_code"] == 32 and opt["shared_codebook"] is False
    assert rvq_config(opt, folder / "opt.txt") == tiny.RVQ


# ------------------------------------------------------------------------------------------ bad input

def _raises(folder, *needles):
    with pytest.raises(InputError) as e:
        load_momask(folder)
    assert e.value.input == "folder"
    for n in needles:
        assert n in str(e.value), str(e.value)
    return str(e.value)


class Evil:
    def __reduce__(self):
        return (print, ("unpickled!",))


def test_pickle_with_arbitrary_objects_is_refused_never_unpickled(folder, states, capsys):
    torch.save({"t2m_transformer": states["masked"], "ep": 1, "extra": Evil()},
               folder / tiny.MASKED_NAME / "model" / "latest.tar")
    _raises(folder, "latest.tar", "refused", "never unpickles", "expected a MoMask masked or residual transformer")
    assert "unpickled!" not in capsys.readouterr().out
    # the tokenizer file checked directly: it must name the file and what it expected
    torch.save({"vq_model": states["rvq"], "opt": Evil()}, folder / tiny.VQ_NAME / "model" / "net_best_fid.tar")
    from motionrag_suite.models.momask.checkpoint import read_tar

    with pytest.raises(InputError) as e:
        read_tar(folder / tiny.VQ_NAME / "model" / "net_best_fid.tar", "rvq")
    assert "refused" in str(e.value) and "net_best_fid.tar" in str(e.value) and "RVQ-VAE" in str(e.value)
    assert "unpickled!" not in capsys.readouterr().out


def test_truncated_file(folder):
    path = folder / tiny.VQ_NAME / "model" / "net_best_fid.tar"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    _raises(folder, "net_best_fid.tar", "truncated or corrupt", "expected a MoMask RVQ-VAE tokenizer")


def test_remomask_dual_stream_tokenizer(folder, states):
    foreign = {f"encoder1d.{k}": v for k, v in states["rvq"].items() if k.startswith("encoder.")}
    foreign.update({"quantizer2d.layers.0.codebook": torch.zeros(8, 4), "linear_merge.weight": torch.zeros(4, 4)})
    torch.save({"vq_model": foreign, "value": 1}, folder / tiny.VQ_NAME / "model" / "net_best_fid.tar")
    _raises(folder, "ReMoMask's dual-stream", "encoder.model.*", "missing")


def test_t2m_gpt_vqvae(folder, states):
    foreign = {f"vqvae.{k}": v for k, v in states["rvq"].items()}
    torch.save({"net": foreign}, folder / tiny.VQ_NAME / "model" / "net_best_fid.tar")
    _raises(folder, "T2M-GPT's single-codebook VQ-VAE", "expected", "RVQ-VAE")


def test_t2m_gpt_transformer_in_place_of_the_masked_transformer(folder):
    torch.save({"trans": {"trans_base.tok_emb.weight": torch.zeros(4, 4), "trans_head.head.weight": torch.zeros(4, 4)}},
               folder / tiny.MASKED_NAME / "model" / "latest.tar")
    _raises(folder, "T2M-GPT's GPT transformer", "masked transformer")


def test_remomask_transformers_are_not_momask(folder, states):
    torch.save({"t2m_transformer_aux": states["masked"], "t2m_transformer_ts": {}, "ep": 1},
               folder / tiny.MASKED_NAME / "model" / "latest.tar")
    _raises(folder, "masked transformer", tiny.MASKED_NAME)


def test_missing_unexpected_and_misshaped_keys_are_named(folder, states):
    bad = dict(states["residual"])
    del bad["quant_emb.weight"]
    bad["extra.weight"] = torch.zeros(2)
    bad["output_proj_weight_"] = torch.zeros(1, 40, 16)
    torch.save({"res_transformer": bad, "ep": 1}, folder / tiny.RESIDUAL_NAME / "model" / "net_best_fid.tar")
    _raises(folder, "net_best_fid.tar", "1 missing: quant_emb.weight", "1 unexpected: extra.weight",
            "output_proj_weight_ (1, 40, 16) (expected (1, 33, 16))")


def test_opt_txt_that_disagrees_with_the_weights(folder):
    opt = folder / tiny.MASKED_NAME / "opt.txt"
    opt.write_text(opt.read_text().replace("n_layers: 2", "n_layers: 3"))
    _raises(folder, "missing: seqTransEncoder.layers.2")


@pytest.mark.parametrize("name,value,needle", [
    ("mean", np.zeros(251), "expected 263"),
    ("std", np.ones((263, 1)), "expected 263"),
    ("std", np.zeros(263), "positive"),
    ("mean", np.full(263, np.nan), "finite"),
])
def test_mean_std_wrong(folder, name, value, needle):
    np.save(folder / tiny.VQ_NAME / "meta" / f"{name}.npy", value)
    _raises(folder, f"{name}.npy", needle)


def test_pickled_npy_is_refused(folder):
    np.save(folder / tiny.VQ_NAME / "meta" / "mean.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    _raises(folder, "mean.npy")


def test_missing_parts(tmp_path, folder):
    _raises(tmp_path / "nowhere", "not a folder")
    shutil.rmtree(folder / tiny.VQ_NAME)
    _raises(folder, tiny.VQ_NAME, "not there")
    empty = tmp_path / "empty"
    empty.mkdir()
    _raises(empty, "no MoMask masked transformer")


def test_two_masked_transformers_are_ambiguous(folder):
    shutil.copytree(folder / tiny.MASKED_NAME, folder / "t2m_copy")
    _raises(folder, "2 MoMask masked transformer folders")


def test_parts_are_found_by_content_not_name(tmp_path, states):
    folder = tiny.write_folder(tmp_path / "t2m", states)
    (folder / tiny.MASKED_NAME).rename(folder / "zzz_my_masked")
    parts = find_parts(folder)
    assert parts["masked"].name == "zzz_my_masked" and parts["residual"].name == tiny.RESIDUAL_NAME


def test_kit_folder_251_features_no_length_estimator(tmp_path):
    """The KIT-ML release: 251-d features, 12.5 fps, and (reportedly) no length estimator."""
    model = load_momask(tiny.write_folder(tmp_path / "kit", length=False, dataset="kit"))
    assert model.config.dataset == "kit" and model.fps == 12.5 and model.config.rvq.dim_pose == 251
    out = model.generate(torch.zeros(512), length_frames=24, steps=2)
    assert out.features.shape == (24, 251) and out.joints is None


def test_kit_statistics_must_be_251_wide(tmp_path):
    folder = tiny.write_folder(tmp_path / "kit", length=False, dataset="kit")
    np.save(folder / tiny.VQ_NAME / "meta" / "mean.npy", np.zeros(263))
    _raises(folder, "mean.npy", "expected 251")
