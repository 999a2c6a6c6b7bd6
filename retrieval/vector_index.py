"""The faiss index over caption embeddings, and how its kind is chosen.

All vectors are L2-normalised, so inner product is cosine similarity. Kinds:
  flat  IndexFlatIP, exact; the default up to IVF_THRESHOLD captions
  ivf   IndexIVFFlat (inner product, spherical k-means), approximate; chosen above that
  hnsw  IndexHNSWFlat (inner product), approximate; only when asked for
"""
from __future__ import annotations

import contextlib
import math
import os
from pathlib import Path

import numpy as np

from .db_format import INDEX_TYPES, fsync_file
from .errors import DatabaseCorruptError, RetrievalError

IVF_THRESHOLD = 200_000      # captions; below it the exact scan is fast enough (a few ms per query)
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 80
HNSW_EF_SEARCH = 128
IVF_TRAIN_PER_LIST = 64      # training vectors per inverted list (faiss warns below 39)
IVF_MIN_PROBES = 32
# A batch of at most this many queries is searched on one OpenMP thread. Measured on 2 shared
# cores (tests/benchmarks/bench_retrieval.py, 10k flat, k=40): p50 36-48 ms on two threads,
# 0.4-0.7 ms on one, because the workers of a sub-millisecond scan wait on busy cores.
SMALL_QUERY_BATCH = 4


def choose_index_type(n_captions: int, requested: str = "auto", ivf_threshold: int = IVF_THRESHOLD) -> str:
    if requested == "auto":
        return "ivf" if n_captions > ivf_threshold else "flat"
    if requested not in INDEX_TYPES:
        raise RetrievalError("index_type", f"index type {requested!r}: expected 'auto' or one of {', '.join(INDEX_TYPES)}")
    return requested


def ivf_lists(n: int) -> int:
    # About 4*sqrt(n) lists, but never so many that a list would train on fewer than 39 vectors.
    return max(1, min(int(4 * math.sqrt(max(n, 1))), n // 39))


def ivf_probes(nlist: int) -> int:
    # Recall follows the number of lists probed more than the fraction: on 1M MiniLM caption
    # embeddings (tests/benchmarks/bench_retrieval.py) recall@10 was 0.94 at 16 probes and
    # 0.98 at 32 with 4000 lists, 0.95 / 0.98 with 1000. At least 32 (or nlist/64) keeps
    # recall@10 near 0.98 while scanning about 1.5% of a 1M index (about 1 ms).
    return max(1, min(nlist, max(IVF_MIN_PROBES, int(round(nlist / 64)))))


def default_params(index_type: str, n: int) -> dict:
    if index_type == "ivf":
        nlist = ivf_lists(n)
        return {"nlist": nlist, "nprobe": ivf_probes(nlist)}
    if index_type == "hnsw":
        return {"M": HNSW_M, "ef_construction": HNSW_EF_CONSTRUCTION, "ef_search": HNSW_EF_SEARCH}
    return {}


def new_index(index_type: str, dim: int, vectors: np.ndarray, params: dict):
    """An index of `index_type` holding `vectors` (IVF is trained on them)."""
    import faiss

    if index_type == "flat":
        index = faiss.IndexFlatIP(dim)
    elif index_type == "hnsw":
        index = faiss.IndexHNSWFlat(dim, int(params["M"]), faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = int(params["ef_construction"])
    elif index_type == "ivf":
        if len(vectors) < 1:
            raise RetrievalError("index_type", "an IVF index needs at least one caption to train on")
        quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFFlat(quantizer, dim, int(params["nlist"]), faiss.METRIC_INNER_PRODUCT)
        index.cp.spherical = True     # centroids on the unit sphere, like the data
        rng = np.random.default_rng(0)
        n_train = min(len(vectors), int(params["nlist"]) * IVF_TRAIN_PER_LIST)
        sample = vectors if n_train == len(vectors) else vectors[np.sort(rng.choice(len(vectors), n_train, replace=False))]
        index.train(np.ascontiguousarray(sample, dtype=np.float32))
    else:
        raise RetrievalError("index_type", f"index type {index_type!r}: expected one of {', '.join(INDEX_TYPES)}")
    if len(vectors):
        index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    return index


def apply_search_params(index, index_type: str, params: dict, *, nprobe: int | None = None,
                        ef_search: int | None = None) -> None:
    import faiss

    # Set only on change: this runs before every query, and faiss's Python attribute setter
    # costs microseconds, as does looking for the IVF part of an index that is one.
    if index_type == "ivf":
        ivf = index if isinstance(index, faiss.IndexIVF) else faiss.extract_index_ivf(index)
        want = int(nprobe or params.get("nprobe", 1))
        if ivf.nprobe != want:
            ivf.nprobe = want
    elif index_type == "hnsw":
        want = int(ef_search or params.get("ef_search", HNSW_EF_SEARCH))
        if index.hnsw.efSearch != want:
            index.hnsw.efSearch = want


def all_vectors(index) -> np.ndarray:
    """Every stored vector in id order (to rebuild the index as another kind)."""
    import faiss

    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None:
        ivf.make_direct_map()
    return index.reconstruct_n(0, index.ntotal)


def write_index(index, path: Path) -> None:
    import faiss

    faiss.write_index(index, str(path))
    fsync_file(path)


def read_index(path: Path, *, expected: int, dim: int, index_type: str, what: str, mmap: bool = True):
    """Load an index and check it against the manifest. With mmap (for reading), flat codes
    stay in the page cache instead of being copied; an index to be extended needs mmap=False."""
    import faiss

    try:
        size = os.path.getsize(path)
    except OSError:
        raise DatabaseCorruptError("motion_db", f"{what}: index file {path.name} is missing") from None
    if size == 0:
        raise DatabaseCorruptError("motion_db", f"{what}: index file {path.name} is empty")
    try:
        flags = faiss.IO_FLAG_MMAP_IFC | faiss.IO_FLAG_READ_ONLY if (mmap and index_type == "flat") else 0
        index = faiss.read_index(str(path), flags)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "unreadable"
        raise DatabaseCorruptError("motion_db", f"{what}: index file {path.name} cannot be read (truncated or damaged): {first}") from None
    if index.d != dim:
        raise DatabaseCorruptError("motion_db", f"{what}: index {path.name} holds {index.d}-d vectors; the manifest's text encoder "
                                   f"gives {dim}-d")
    if index.ntotal != expected:
        raise DatabaseCorruptError("motion_db", f"{what}: index {path.name} holds {index.ntotal} vectors but the manifest lists "
                                   f"{expected} captions (manifest and index disagree)")
    kind = type(index).__name__
    expected_kind = {"flat": "IndexFlatIP", "ivf": "IndexIVFFlat", "hnsw": "IndexHNSWFlat"}[index_type]
    if kind != expected_kind:
        raise DatabaseCorruptError("motion_db", f"{what}: index {path.name} is a {kind}; the manifest says {index_type!r} ({expected_kind})")
    if index.metric_type != faiss.METRIC_INNER_PRODUCT:
        raise DatabaseCorruptError("motion_db", f"{what}: index {path.name} does not use inner product")
    return index


@contextlib.contextmanager
def _one_omp_thread():
    """faiss's OpenMP thread count set to 1 for the block (the calling thread's setting), then
    restored even when the search raises."""
    import faiss

    before = faiss.omp_get_max_threads()
    if before <= 1:
        yield
        return
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def search(index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    k = max(1, min(int(k), int(index.ntotal)))
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    if len(queries) <= SMALL_QUERY_BATCH:
        with _one_omp_thread():
            return index.search(queries, k)
    return index.search(queries, k)
