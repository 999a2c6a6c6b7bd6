"""Print the dependencies, not yet installed, of the packages a requirements file names.

.ci/setup installs a ComfyUI's requirements with --no-deps (spandrel's torchvision would replace the
CPU torch), then installs what they still miss with this. Only the closure of that file's packages
counts: `pip check` over the whole venv would also list what other --no-deps installs leave out on
purpose (mediapipe's jax and opencv-contrib, which clashes with opencv-python).

usage: missing_deps.py REQUIREMENTS_FILE [NAME_TO_SKIP ...]
"""
import re
import sys
from importlib import metadata

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name


def requirement_names(path: str) -> list[str]:
    names = []
    for line in open(path, encoding="utf-8"):
        line = re.sub(r"\s+#.*$", "", line).strip()
        if not line or line.startswith(("#", "-")):
            continue
        try:
            req = Requirement(line)
        except InvalidRequirement:
            continue
        if req.marker is None or req.marker.evaluate():
            names.append(req.name)
    return names


def missing(roots: list[str], skip: set[str]) -> list[str]:
    seen, todo, absent = set(), list(roots), set()
    while todo:
        name = canonicalize_name(todo.pop())
        if name in seen or name in skip:
            continue
        seen.add(name)
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            absent.add(name)
            continue
        for spec in dist.requires or []:
            req = Requirement(spec)
            # extras are optional; a marker such as python_version or extra == "x" decides the rest
            if req.marker is not None and not req.marker.evaluate({"extra": ""}):
                continue
            todo.append(req.name)
    return sorted(absent - {canonicalize_name(r) for r in roots if canonicalize_name(r) in skip})


if __name__ == "__main__":
    skip = {canonicalize_name(n) for n in sys.argv[2:]}
    print(" ".join(missing(requirement_names(sys.argv[1]), skip)))
