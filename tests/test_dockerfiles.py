"""The two Dockerfiles, read as the engine reads them: what keeps both images on one copy of the
virtual environment, keeps a code change from rebuilding it, and keeps COPY sources inside the
build context that `.dockerignore` lets through. (CI builds both images; these catch the
mistakes in seconds, without an engine.)"""
from __future__ import annotations

import ast
import fnmatch
from pathlib import Path

import pytest

from conftest import ROOT

DOCKERFILES = {"inference": ROOT / "Dockerfile", "training": ROOT / "training" / "Dockerfile"}
PREFIX_START = "# ---- shared with training/Dockerfile"
PREFIX_END = "# ---- end of the shared prefix"


def instructions(text: str) -> list[str]:
    """Dockerfile instructions, continuation lines joined and comments dropped."""
    result: list[str] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1].strip() + " "
            continue
        result.append(pending + stripped)
        pending = ""
    return result


def shared_prefix(path: Path) -> str:
    text = path.read_text()
    assert PREFIX_START in text and PREFIX_END in text, f"{path}: shared-prefix markers missing"
    return text[text.index(PREFIX_START):text.index(PREFIX_END)]


def test_training_image_starts_with_the_inference_images_layers():
    """Identical instructions on the same base give identical layers: the training image then
    reuses the 7.6 GB environment. One changed character there stores a second copy."""
    prefixes = {name: shared_prefix(path) for name, path in DOCKERFILES.items()}
    assert prefixes["inference"] == prefixes["training"]
    heads = {}
    for name, path in DOCKERFILES.items():
        text = path.read_text()
        heads[name] = instructions(text[:text.index(PREFIX_START)])
    assert heads["inference"] == heads["training"]


def test_the_environment_layer_depends_on_requirements_only():
    """Nothing but the inference requirements (and DICOM's) and the script that trims the
    environment is copied before the environment is installed, so a code change rebuilds in
    seconds; the trimming runs in the pip install's own step, so its bytes leave the image."""
    steps = instructions(shared_prefix(DOCKERFILES["inference"]))
    copies = [s for s in steps if s.startswith("COPY")]
    assert copies == ["COPY requirements.txt requirements-dicom.txt docker/slim_venv.sh /tmp/req/"]
    pip = next(i for i, s in enumerate(steps) if "pip install" in s)
    assert steps.index(copies[0]) < pip
    assert "-r /tmp/req/requirements.txt -r /tmp/req/requirements-dicom.txt" in steps[pip]
    assert steps[pip].index("pip install") < steps[pip].index("sh /tmp/req/slim_venv.sh /opt/venv")


def test_git_revision_is_declared_after_every_layer():
    """The commit differs on every build: declared earlier, it would rebuild the layers below."""
    steps = instructions(DOCKERFILES["training"].read_text())
    arg = steps.index("ARG GIT_REVISION=unknown")
    assert not [s for s in steps[arg:] if s.split()[0] in {"RUN", "COPY", "ADD"}]


def dockerignore_allows(relative: str) -> bool:
    """`.dockerignore` semantics for the patterns used here: the last matching line wins."""
    allowed = True
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.lstrip("!").rstrip("/")
        parts = Path(relative).parts
        candidates = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
        if any(fnmatch.fnmatch(c, pattern) or fnmatch.fnmatch(c, pattern.replace("**/", "")) for c in candidates):
            allowed = negate
    return allowed


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_every_copy_source_exists_and_reaches_the_engine(name):
    for step in instructions(DOCKERFILES[name].read_text()):
        if not step.startswith("COPY") or "--from=" in step:
            continue
        for source in step.split()[1:-1]:
            matches = list(ROOT.glob(source.rstrip("/")))
            assert matches, f"{name}: {step}: {source} is missing"
            for match in matches:
                relative = str(match.relative_to(ROOT))
                assert dockerignore_allows(relative), f"{name}: {relative} is excluded by .dockerignore"


def test_dockerignore_keeps_tests_and_environments_out():
    for path in ["tests", "test", ".venv", ".git", "docs", "panther_seg/__pycache__"]:
        assert not dockerignore_allows(path), path


def local_imports(path: Path) -> set[Path]:
    """The project's own module files that ``path`` imports (absolute and relative imports,
    each package's __init__ on the way)."""
    tree = ast.parse(path.read_text())
    package = path.relative_to(ROOT).parent.parts
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package[: len(package) - node.level + 1]) if node.level else ""
            module = ".".join(p for p in (base, node.module or "") if p)
            names |= {module} | {f"{module}.{a.name}" for a in node.names}
    found: set[Path] = set()
    for name in names:
        parts = name.split(".")
        if parts[0] != "panther_seg":
            continue
        for i in range(1, len(parts) + 1):
            candidate = ROOT.joinpath(*parts[:i])
            for file in (candidate / "__init__.py", candidate.with_suffix(".py")):
                if file.is_file():
                    found.add(file)
    return found


def test_the_inference_image_copies_what_inference_imports_and_no_training():
    """process.py, the smoke check (run inside the image by test.sh) and the benchmark (for GPU
    hosts), followed import by import: every module they need is copied; the image copies whole role folders, and nothing of
    training or evaluation (no Lightning code in the image that runs on grand-challenge). Beyond
    what inference imports, only tools/ (the benchmark, for GPU hosts), reporting/ (batch mode's
    previews and report, whose folder also holds the report command) and commands.py come along."""
    needed: set[Path] = set()
    todo = [ROOT / "process.py", ROOT / "panther_seg" / "tools" / "smoke_check.py", ROOT / "panther_seg" / "tools" / "benchmark.py"]
    while todo:
        file = todo.pop()
        if file not in needed:
            needed.add(file)
            todo += local_imports(file) - needed
    copied: set[Path] = set()
    for step in instructions(DOCKERFILES["inference"].read_text()):
        if step.startswith("COPY") and "--from=" not in step:
            for source in step.split()[1:-1]:
                for path in ROOT.glob(source.rstrip("/")):
                    copied |= set(path.rglob("*.py")) if path.is_dir() else {path}
    assert needed <= copied
    assert not any("training" in p.parts or "evaluation" in p.parts for p in copied)
    extra = {p.relative_to(ROOT).parts[1] for p in copied - needed if "panther_seg" in p.parts}
    assert extra <= {"tools", "reporting", "commands.py"}, f"copied but not imported by inference: {sorted(extra)}"
