"""Running a builder's WorkPlan on Ray Data: the items' expensive work (decode, pose, encode) runs in
an actor pool whose workers load the models once; the driver keeps every finished batch in a shard
(shards.py) and, once all items are done, yields the entries in the plan's order to the pack's own
writer, so the database is written (and switched into place) exactly as by a local build.

    with computed_entries(root, name, plan, EngineOptions(address=None)) as done:
        build_database(root, name, done.entries, total=done.total, ...)

Ray is imported only here, and only when a job runs (`pip install "motionrag-suite[distributed]"`).
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path

from ...common.errors import InputError
from .. import db_format as fmt
from ..entry_spec import EntrySpec
from ..errors import DatabaseNotFoundError, RetrievalError
from .plan import WorkItem, WorkPlan
from .shards import WorkFolder, pack_entries, unpack_blob

RAY_REQUIREMENT = "ray[data]==2.60.0"
INSTALL_HINT = f'pip install "{RAY_REQUIREMENT}" (the pack\'s "distributed" extra)'
ENGINES = ("local", "ray")
DEFAULT_CPUS_PER_WORKER = 0.5     # a whole CPU per actor can take every core and starve Ray Data's read tasks
CONNECT_TIMEOUT_S = 5.0


@dataclass
class EngineOptions:
    """How a Ray job runs.

    address: a running cluster ("host:port" of its head, "auto", or "ray://host:port"); None starts a
      local one for the job (num_cpus of this machine's CPUs, all by default).
    workers: actors in the pool (default: as many as the cluster's CPUs allow at cpus_per_worker, at most 8).
    batch_size: items a worker takes at a time (default 4 for plans with models, 16 otherwise).
    cpus_per_worker: fractional is fine and advised on small machines.
    gpus_per_worker: default 1 for plans with neural models when the cluster has GPUs, else 0.
    restart: discard the finished work of an earlier, unfinished job for this database.
    max_retries: how often a worker that died is restarted and its batch retried.
    """
    address: str | None = None
    workers: int | None = None
    batch_size: int | None = None
    cpus_per_worker: float = DEFAULT_CPUS_PER_WORKER
    gpus_per_worker: float | None = None
    num_cpus: int | None = None
    restart: bool = False
    max_retries: int = 3
    extra: dict = field(default_factory=dict)

    @classmethod
    def coerce(cls, value) -> "EngineOptions":
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        if isinstance(value, Mapping):
            known = {f.name for f in fields(cls)}
            unknown = sorted(set(value) - known)
            if unknown:
                raise RetrievalError("engine_options", f"unknown option {unknown[0]!r}; expected some of {', '.join(sorted(known))}")
            return cls(**value)
        raise RetrievalError("engine_options", f"expected EngineOptions or a dict, got {type(value).__name__}")

    def check(self) -> "EngineOptions":
        for name in ("workers", "batch_size", "num_cpus"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
                raise RetrievalError(name, f"expected a positive integer, got {v!r}")
        if not isinstance(self.cpus_per_worker, (int, float)) or not (0 < self.cpus_per_worker <= 64):
            raise RetrievalError("cpus_per_worker", f"expected a number of CPUs above 0 (0.5 is fine), got {self.cpus_per_worker!r}")
        if self.gpus_per_worker is not None and (not isinstance(self.gpus_per_worker, (int, float))
                                                 or self.gpus_per_worker < 0):
            raise RetrievalError("gpus_per_worker", f"expected a number of GPUs from 0, got {self.gpus_per_worker!r}")
        if self.address is not None and (not isinstance(self.address, str) or not self.address.strip()):
            raise RetrievalError("address", f"expected 'host:port' of a Ray head, 'auto' or 'ray://host:port', got {self.address!r}")
        return self


def check_engine(engine: str, engine_options=None) -> EngineOptions | None:
    """The engine's options when engine is 'ray', None for 'local' (which takes none)."""
    if engine not in ENGINES:
        raise RetrievalError("engine", f"expected one of {', '.join(ENGINES)}, got {engine!r}")
    if engine == "local":
        if engine_options:
            raise RetrievalError("engine_options", "options of the Ray engine were given, but engine is 'local'")
        return None
    return EngineOptions.coerce(engine_options).check()


def check_target(root, name: str, mode: str, *, overwrite: bool = False) -> None:
    """The checks the writer makes at the end, made before the distributed work starts."""
    folder = fmt.database_dir(root, name)
    exists = (folder / fmt.MANIFEST).is_file()
    if mode == "add" and not exists:
        raise DatabaseNotFoundError("name", f"motion database {name!r}: not found at {folder}")
    if mode != "add" and exists and not overwrite:
        raise RetrievalError("name", f"motion database {name!r} already exists at {folder}; pass overwrite=True "
                             "to replace it, or add entries to it instead")


def require_ray():
    """The ray module, or an error that says how to install it."""
    # Ray starts a local cluster of its own when any of its calls finds it uninitialised. A job's
    # leftover threads (Ray Data's) calling in after the job shut its Ray down would start one that
    # lacks the pack's worker setup, and the next job in this process would find it and use it. Only
    # takes effect where this is the process's first import of Ray; an explicit setting is kept.
    os.environ.setdefault("RAY_ENABLE_AUTO_CONNECT", "0")
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise RetrievalError("engine", f"engine 'ray' needs Ray Data, which is not installed ({exc}); "
                             f"install it with: {INSTALL_HINT}") from None
    return ray


# ------------------------------------------------------------------------------------ connecting

def _package_hook(package: str, pack_root: str) -> Callable[[], None]:
    """Run by every Ray worker before it unpickles anything: registers the pack under the driver's
    package name (common.standalone does the same in-process). A nested function, so Ray ships it by
    value and the worker needs nothing of ours on its path to run it."""
    def register():
        import sys as _sys
        import types as _types
        if package not in _sys.modules:
            module = _types.ModuleType(package)
            module.__path__ = [pack_root]
            module.__file__ = pack_root + "/__init__.py"
            _sys.modules[package] = module
    return register


def worker_runtime_env() -> dict:
    """The runtime_env every job's Ray is initialised with; give it to ray.init to start a Ray of your
    own that the pack's jobs can use (its workers then import the pack under this process's name)."""
    package = __name__.split(".")[0]
    pack_root = str(Path(__file__).resolve().parents[2])
    env = {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    return {"worker_process_setup_hook": _package_hook(package, pack_root), "env_vars": env}


def _check_reachable(address: str) -> None:
    """A head given as host:port must answer before Ray is asked to join it (Ray itself retries for
    about a minute, then fails with a message that does not name the input)."""
    if address == "auto":
        return
    hostport = address[len("ray://"):] if address.startswith("ray://") else address
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise InputError("address", f"{address!r}: expected 'host:port' of a Ray head (e.g. 10.0.0.5:6379), "
                         "'auto' or 'ray://host:port'")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as exc:
        raise InputError("address", f"no Ray cluster answers at {address} ({exc}); start one with "
                         "`ray start --head --port=6379` on the head machine, or leave --address out to "
                         "run on this machine") from None


def _host_port(address: str) -> tuple[str, str]:
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    try:
        host = socket.gethostbyname(host)
    except OSError:
        pass
    return host, port


def _check_initialised(ray, options: EngineOptions) -> None:
    """A Ray already initialised in this process is used only if its workers can import the pack and it
    is the cluster the options name; otherwise the job would fail in every worker, or run elsewhere."""
    context = ray.get_runtime_context()
    if "worker_process_setup_hook" not in context.runtime_env:
        raise RetrievalError("engine", "Ray is already initialised in this process without the pack's worker "
                             "setup, so its workers cannot import the pack; call ray.shutdown() first, or start "
                             "it with ray.init(runtime_env=retrieval.distributed.engine.worker_runtime_env())")
    wanted = options.address
    if wanted and wanted != "auto" and not wanted.startswith("ray://"):
        current = getattr(context, "gcs_address", None)
        if current and _host_port(wanted) != _host_port(current):
            raise InputError("address", f"{wanted}: this process is already connected to the Ray cluster at "
                             f"{current}; leave the address out to use it, or call ray.shutdown() first")


@contextlib.contextmanager
def connected(options: EngineOptions) -> Iterator[object]:
    """Ray, initialised for the job: joins options.address, or starts a local cluster that is shut
    down afterwards. A Ray already initialised by the caller is used, once checked, and left running."""
    ray = require_ray()
    if ray.is_initialized():
        _check_initialised(ray, options)
        yield ray
        return
    kwargs = {"include_dashboard": False, "log_to_driver": False, "runtime_env": worker_runtime_env()}
    if options.address:
        _check_reachable(options.address)
        kwargs["address"] = options.address
    else:
        kwargs["num_cpus"] = options.num_cpus or os.cpu_count() or 1
    try:
        ray.init(**kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = options.address or "a local cluster"
        hint = ""
        if options.address and os.environ.get("RAY_AUTH_MODE", "disabled") == "disabled":
            # `ray start --head` (Ray 2.60) turns token authentication on, and a driver with the default
            # RAY_AUTH_MODE sends no token: the join then fails with this message and no better one
            hint = ("; a cluster started with `ray start` uses token authentication: set RAY_AUTH_MODE=token "
                    "here (and on every node), with the head's token in ~/.ray/auth_token or RAY_AUTH_TOKEN")
        raise InputError("address", f"could not start or join Ray at {where}: {exc}{hint}") from None
    try:
        yield ray
    finally:
        ray.shutdown()


# ------------------------------------------------------------------------------------ the stage

class PlanWorker:
    """One actor of the pool: loads the plan's models once, then turns batches of items into packed
    entries (one row per item), or an error row naming the item."""

    def __init__(self, plan: WorkPlan, device: str):
        self.plan = plan
        self.state = plan.load(device)

    def _one(self, items: list[WorkItem]) -> list:
        try:
            return [("ok", e) for e in self.plan.run(self.state, items)]
        except (InputError, OSError) as exc:
            if len(items) > 1:                  # which item? each alone, so the others are kept
                return [r for it in items for r in self._one([it])]
            return [("error", exc)]

    def __call__(self, batch: dict) -> dict:
        from safetensors.numpy import save

        items = [WorkItem(k, lb, tuple(json.loads(a))) for k, lb, a in zip(batch["key"], batch["label"], batch["args"])]
        out = {"idx": list(batch["idx"]), "blob": [], "meta": [], "error": []}
        for item, (status, value) in zip(items, self._one(items)):
            if status == "ok":
                arrays, meta = pack_entries([(item.key, value)])
                out["blob"].append(save(arrays) if arrays else b"")
                out["meta"].append(meta)
                out["error"].append("")
            else:
                skip = self.plan.skippable(value)
                name = getattr(value, "input", "source_folder")
                msg = getattr(value, "message", None) or str(value)
                out["blob"].append(b"")
                out["meta"].append("")
                out["error"].append(json.dumps({"input": name, "message": msg, "text": str(value), "skip": skip}))
        return out


@dataclass
class Computed:
    """The entries of a finished job, in the plan's order, and the items skipped (label, reason)."""
    entries: Iterator[EntrySpec]
    total: int
    skipped: list
    items: int
    seconds: float
    counts: list = field(default_factory=list)     # [(WorkItem, entries it gave)] of the items done, in order


def _decode(blob: bytes, meta: str):
    from safetensors.numpy import load

    return unpack_blob(load(blob) if blob else {}, meta)


MAX_BLOCKS = 1000                 # input blocks: enough to stream and to spread, few enough for Ray's bookkeeping


def _default_workers(ray, options: EngineOptions, gpus: float) -> int:
    resources = ray.cluster_resources()
    if gpus:
        return max(1, int(float(resources.get("GPU", 1)) / gpus))
    return max(1, min(8, int(float(resources.get("CPU", 1)) / options.cpus_per_worker)))


def run_plan(plan: WorkPlan, pending: list[tuple[int, WorkItem]], work: WorkFolder, options: EngineOptions,
             on_item: Callable[[int], None] | None = None) -> list:
    """Run the pending items on Ray; every finished batch goes into a shard. Returns the skipped
    [(label, reason)]; an item that fails (and is not skippable) raises its error, naming it."""
    skipped: list = []
    if not pending:
        return skipped
    with connected(options) as ray:
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        ctx.print_on_execution_start = False
        gpus = options.gpus_per_worker
        if gpus is None:
            gpus = 1 if plan.uses_models and ray.cluster_resources().get("GPU", 0) >= 1 else 0
        batch = options.batch_size or (4 if plan.uses_models else 16)
        rows = [{"idx": i, "key": it.key, "label": it.label, "args": json.dumps(list(it.args))} for i, it in pending]
        blocks = max(1, min(MAX_BLOCKS, -(-len(rows) // batch)))
        workers = min(options.workers or _default_workers(ray, options, gpus), blocks)   # no actor left idle
        ds = ray.data.from_items(rows, override_num_blocks=blocks)
        with warnings.catch_warnings():
            # Bounded retries (Ray Data's default is forever, which a worker that always dies would
            # never leave) are only given as ray_remote_args in this Ray, which warns of their renaming.
            warnings.filterwarnings("ignore", message=".*ray_remote_args.*")
            ds = ds.map_batches(PlanWorker, fn_constructor_kwargs={"plan": plan, "device": "cuda" if gpus else "cpu"},
                                batch_size=batch, batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=workers),
                                num_cpus=options.cpus_per_worker, num_gpus=gpus,
                                max_restarts=options.max_retries, max_task_retries=options.max_retries)
        labels = {i: it.label for i, it in pending}
        try:
            _collect(ds, labels, work, skipped, on_item)
        except ray.exceptions.RayError as exc:
            # a worker's own failure that is no bad input (a bug, a driver or node lost for good)
            first = next((ln for ln in str(exc).splitlines() if ln.strip()), type(exc).__name__)
            raise RetrievalError("engine", f"the Ray job failed ({first}); the items finished so far are kept in "
                                 f"{work.folder} and a rerun with the same arguments resumes from them") from exc
    return skipped


def _collect(ds, labels: dict, work: WorkFolder, skipped: list, on_item) -> None:
    """Stream the stage's output into shards; an item that failed (and is not skipped) raises its error."""
    # Closed on every exit: left to the garbage collector after an early one (an item's error, a
    # cancel), Ray Data's executor runs on, and calls into Ray after the job has shut it down.
    with contextlib.closing(iter(ds.iter_batches(batch_size=None, batch_format="numpy"))) as batches:
        _write_batches(batches, labels, work, skipped, on_item)


def _write_batches(batches, labels: dict, work: WorkFolder, skipped: list, on_item) -> None:
    for out in batches:
        good = []
        for idx, blob, meta, err in zip(out["idx"], out["blob"], out["meta"], out["error"]):
            label = labels[int(idx)]
            if err:
                e = json.loads(err)
                if not e["skip"]:
                    if good:
                        work.write_shard(*pack_entries(good))
                    raise RetrievalError(e["input"], e["message"] if label in e["message"] else f"{label}: {e['message']}")
                skipped.append((label, e["text"]))
            else:
                good.extend(_decode(bytes(blob), str(meta)))
            if on_item is not None:
                on_item(1)
        if good:
            work.write_shard(*pack_entries(good))


@contextlib.contextmanager
def computed_entries(root, name: str, plan: WorkPlan, options: EngineOptions | None = None,
                     progress: Callable[[int, int], object] | None = None) -> Iterator[Computed]:
    """Run `plan` on Ray (skipping the items a killed earlier run finished), then yield its entries.
    The work folder is removed when the body (the writer) succeeds, and kept when anything fails."""
    options = EngineOptions.coerce(options).check()
    t0 = time.monotonic()
    items = plan.items()
    keys = [it.key for it in items]
    if len(set(keys)) != len(keys):
        raise RetrievalError("source_folder", f"{plan.kind}: two work items share a key; names must be unique")
    work = WorkFolder(root, name, plan, restart=options.restart)
    pending = [(i, it) for i, it in enumerate(items) if it.key not in work.done]
    done = [len(items) - len(pending)]

    def tick(n: int) -> None:
        done[0] += n
        if progress is not None:
            progress(done[0], len(items))

    if done[0]:
        print(f"[ray] resuming: {done[0]} of {len(items)} items already done in {work.folder}", file=sys.stderr)
    skipped = run_plan(plan, pending, work, options, tick)
    keys_done = [k for k in keys if k in work.done]
    result = Computed(work.entries(keys_done), work.count(keys_done), skipped, len(items), time.monotonic() - t0,
                      [(it, work.count([it.key])) for it in items if it.key in work.done])
    yield result
    work.remove()


__all__ = ["EngineOptions", "check_engine", "require_ray", "connected", "worker_runtime_env", "computed_entries",
           "run_plan", "Computed", "PlanWorker", "check_target", "INSTALL_HINT", "RAY_REQUIREMENT", "ENGINES"]
