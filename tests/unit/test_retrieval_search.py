"""Search: exact top-k, ReMoDiffuse length re-ranking, exclusions, one result per source clip,
index kinds. Every ranking is checked against a brute-force numpy computation."""
import itertools

import numpy as np
import pytest

from motionrag_suite.retrieval.database import open_database
from motionrag_suite.retrieval.search import KINEMATIC_COEF, length_factor
from motionrag_suite.retrieval.entry_spec import EntrySpec
from motionrag_suite.retrieval.writer import add_entries, build_database

from .test_retrieval_fixtures import CLIPS, build_small, make_motion

VERBS = ("walks", "runs", "jumps", "dances", "crawls", "kicks", "punches", "spins", "sits down", "waves")
HOW = ("slowly", "quickly", "to the left", "to the right", "in a circle", "backwards")


def many_specs(n_clips=60, mirrored=True):
    """Clips with 1-3 composed captions each, varied lengths, and mirrored twins."""
    combos = list(itertools.product(VERBS, HOW))
    specs = []
    for i in range(n_clips):
        verb, how = combos[i % len(combos)]
        caps = [f"a person {verb} {how}", f"someone {verb} {how} with energy"][: 1 + i % 2]
        frames = 20 + (i * 37) % 180
        specs.append(EntrySpec(motion=make_motion(f"c{i:03d}", frames, i), captions=caps))
        if mirrored and i % 3 == 0:
            swap = {"left": "right", "right": "left"}
            mcaps = [" ".join(swap.get(w, w) for w in c.split()) for c in caps]
            specs.append(EntrySpec(motion=make_motion(f"M_c{i:03d}", frames, i).mirrored(), captions=mcaps,
                                   name=f"M_c{i:03d}", mirrored=True, mirror_of=f"c{i:03d}"))
    return specs


def brute_force(db, q, top_k, target_frames=None, exclude=(), one_per_source=True, coef=KINEMATIC_COEF):
    """Full scan over every caption, in numpy, following the documented formula."""
    vecs = db.index.reconstruct_n(0, db.caption_count).astype(np.float64)
    cos = vecs @ q.astype(np.float64)
    ent = db.caption_entry
    score = cos * (length_factor(db.entry_duration[ent], target_frames / 20.0, coef) if target_frames else 1.0)
    best = {}
    for c in np.argsort(-score, kind="stable"):
        e = int(ent[c])
        if e in exclude:
            continue
        key = int(db.entry_group[e]) if one_per_source else e
        if key not in best:
            best[key] = (float(score[c]), e)
    ranked = sorted(best.values(), key=lambda se: -se[0])[:top_k]
    return [e for _, e in ranked], [s for s, _ in ranked]


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    root = tmp_path_factory.mktemp("search")
    build_database(root, "big", many_specs())
    return root


def test_length_factor_is_remodiffuse_formula():
    lf = length_factor(np.array([2.0, 4.0, 8.0]), 4.0, 0.1)
    assert np.allclose(lf, np.exp(-0.1 * np.array([0.5, 0.0, 0.5])))
    assert length_factor(np.array([1.0]), 100.0, 0.0)[0] == 1.0


@pytest.mark.parametrize("target", [None, 30, 150])
@pytest.mark.parametrize("one_per_source", [True, False])
def test_search_equals_brute_force(big, target, one_per_source):
    db = open_database(big, "big")
    for text in ("a person kicks to the left", "somebody dancing in circles", "a man sits"):
        q = db.encode_query(text)
        hits = db.search(text, 7, target_length=target, one_per_source=one_per_source,
                         structure=False)   # the semantic formula; the structure: test_retrieval_motion_words
        ids, scores = brute_force(db, q, 7, target, one_per_source=one_per_source)
        assert [h.entry_id for h in hits] == ids
        assert np.allclose([h.score for h in hits], scores, atol=1e-5)
        assert all(a.score >= b.score for a, b in zip(hits, hits[1:]))
        for h in hits:
            assert h.caption in db.captions(h.entry_id)
            expected = h.semantic_score * (length_factor(np.array([h.duration]), target / 20)[0] if target else 1)
            assert h.score == pytest.approx(expected, abs=1e-6)


def test_length_reranking_prefers_the_clip_of_matching_length(tmp_path):
    build_small(tmp_path)
    db = open_database(tmp_path, "small")
    # kick_short (20 frames) and kick_long (100 frames) share a caption.
    assert db.search("a person kicks with the right leg", 1, target_length=22)[0].name == "kick_short"
    assert db.search("a person kicks with the right leg", 1, target_length=95)[0].name == "kick_long"
    assert db.search("a person kicks with the right leg", 1, target_length=95 * 3, target_fps=60)[0].name == "kick_long"


def test_one_result_per_source_clip_and_best_caption(tmp_path):
    build_small(tmp_path)
    db = open_database(tmp_path, "small")
    hits = db.search("someone waving the left arm", 3)
    assert hits[0].name == "M_wave_right" and hits[0].caption == "someone greets by waving the left arm"
    assert len({h.source_clip for h in hits}) == len(hits)
    every = db.search("someone waving the left arm", 3, one_per_source=False)
    assert [h.name for h in every[:2]] == ["M_wave_right", "wave_right"]
    # Equal scores (identical captions): the original is preferred over its mirrored copy.
    assert db.search("a person walks forward", 1)[0].name == "walk"


def test_exclusion_removes_entries_and_their_mirrored_twins(big):
    db = open_database(big, "big")
    q = db.encode_query("a person walks slowly")
    top = db.search("a person walks slowly", 3, one_per_source=False, structure=False)
    first = top[0]
    twin = db.entry(first.entry_id).mirror_of
    mirrors = [i for i in range(db.entry_count) if db.entry(i).mirror_of == first.entry_id]
    hits = db.search("a person walks slowly", 10, exclude=[first.name], one_per_source=False, structure=False)
    gone = {first.entry_id, *mirrors, *([twin] if twin is not None else [])}
    assert len(gone) >= 2, "the fixture should give the best hit a mirrored twin"
    assert not gone & {h.entry_id for h in hits}
    assert [h.entry_id for h in hits] == brute_force(db, q, 10, exclude=gone, one_per_source=False)[0]
    by_id = db.search("a person walks slowly", 10, exclude=first.entry_id, one_per_source=False, structure=False)
    assert [h.entry_id for h in by_id] == [h.entry_id for h in hits]


def test_hits_load_their_motion_lazily(tmp_path):
    build_small(tmp_path)
    db = open_database(tmp_path, "small")
    hit = db.search("a person crawls", 1)[0]
    assert "motion" not in hit.__dict__
    m = hit.motion
    assert m.name == "crawl" and m.num_frames == hit.num_frames == 150 and m.caption == hit.caption
    assert np.array_equal(m.joints, db.load_payload("crawl", "joints"))


def test_fewer_results_when_exclusions_leave_fewer(tmp_path):
    build_small(tmp_path, clips=CLIPS[:2])          # walk and its mirror: one source clip
    db = open_database(tmp_path, "small")
    assert len(db.search("walking", 2)) == 1
    assert db.search("walking", 2, exclude=["walk"]) == []


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_approximate_indexes_agree_with_exact_when_searched_exhaustively(big, tmp_path, kind):
    build_database(tmp_path, "approx", many_specs(), index_type=kind)
    exact, approx = open_database(big, "big"), open_database(tmp_path, "approx")
    assert approx.index_type == kind
    params = approx.manifest["index"]["params"]
    opts = {"nprobe": params["nlist"]} if kind == "ivf" else {"ef_search": 512}
    for text in ("a person jumps quickly", "someone punching to the right"):
        assert [h.name for h in approx.search(text, 5, **opts)] == [h.name for h in exact.search(text, 5)]


def test_auto_index_switches_to_ivf_by_size_even_when_adding(tmp_path):
    build_database(tmp_path, "auto", many_specs(30, mirrored=False), ivf_threshold=60)
    db = open_database(tmp_path, "auto")
    assert db.index_type == "flat" and db.caption_count <= 60
    add_entries(tmp_path, "auto", many_specs(60, mirrored=False)[30:], ivf_threshold=60)
    db2 = open_database(tmp_path, "auto")
    assert db2.index_type == "ivf" and db2.caption_count > 60
    # The old vectors were carried over, not re-encoded: the ids of old captions keep their vectors.
    ivf_vectors = db2.index
    import faiss
    faiss.extract_index_ivf(ivf_vectors).make_direct_map()
    assert np.allclose(ivf_vectors.reconstruct_n(0, db.caption_count), db.index.reconstruct_n(0, db.caption_count))
    nlist = db2.manifest["index"]["params"]["nlist"]
    q = db2.encode_query("a person dances backwards")
    assert [h.entry_id for h in db2.search("a person dances backwards", 5, nprobe=nlist, structure=False)] == brute_force(db2, q, 5)[0]
    build_database(tmp_path, "forced", many_specs(10, mirrored=False), index_type="flat", ivf_threshold=5)
    assert open_database(tmp_path, "forced").index_type == "flat"


def test_small_queries_run_on_one_thread_and_give_the_same_vectors():
    """A single query's forward runs on one intra-op thread (fast on busy CPUs); the thread
    count is restored afterwards and large batches keep it. Vectors do not change."""
    import torch

    from motionrag_suite.retrieval import text_encoder as te

    enc = te.get_text_encoder()
    before = torch.get_num_threads()
    seen = []
    hook = enc._model.register_forward_pre_hook(lambda module, args: seen.append(torch.get_num_threads()))
    torch.set_num_threads(2)
    try:
        texts = ["a person kicks with the left leg", "someone strolls forward and turns right"]
        alone = np.stack([enc.encode([t])[0] for t in texts])
        assert seen == [1, 1] and torch.get_num_threads() == 2
        seen.clear()
        long_batch = [f"{t} while counting to {i} under their breath" for i in range(40) for t in texts]
        assert sum(len(t.split()) for t in long_batch) > te.SMALL_WORK_TOKENS
        together = enc.encode(texts + long_batch, batch_size=len(long_batch) + 2)
        assert seen == [2] and torch.get_num_threads() == 2
        assert np.allclose(together[:2], alone, atol=1e-5)
    finally:
        hook.remove()
        torch.set_num_threads(before)


def test_ivf_defaults_probe_enough_lists_for_recall():
    from motionrag_suite.retrieval import vector_index as vi

    for n in (100, 5_000, 250_000, 1_000_000, 10_000_000):
        p = vi.default_params("ivf", n)
        assert 1 <= p["nprobe"] <= p["nlist"]
        # At least 32 lists (or all of them): fewer gave recall@10 below 0.95 on 1M captions.
        assert p["nprobe"] >= min(p["nlist"], vi.IVF_MIN_PROBES)
    assert vi.default_params("ivf", 1_000_000) == {"nlist": 4000, "nprobe": 62}


def test_single_query_index_search_runs_on_one_omp_thread_and_restores_it():
    import faiss

    from motionrag_suite.retrieval import vector_index as vi

    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(500, 16)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    index = vi.new_index("flat", 16, vecs, {})
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(2)
    try:
        scores, ids = vi.search(index, vecs[:1], 40)
        assert faiss.omp_get_max_threads() == 2
        exact = np.argsort(-(vecs @ vecs[0]), kind="stable")[:40]
        assert ids[0][0] == 0 and set(ids[0]) == set(exact)
        many = vi.search(index, vecs[:50], 5)[1]
        assert np.array_equal(many[:, 0], np.arange(50)) and faiss.omp_get_max_threads() == 2
    finally:
        faiss.omp_set_num_threads(before)
