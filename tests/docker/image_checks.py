"""Reading the Dockerfiles under docker/ and the build context, without Docker.

- ``dockerfiles`` / ``stages``: the Dockerfiles and their build stages (dockerfile-parse);
- ``pip_commands``: the pip invocations of a RUN, with their options and requirement arguments;
- ``context_files``: the files ``docker build`` sends, after the root .dockerignore;
- ``assemble``: replays a stage's COPY instructions, and the pip commands that write into the
  image's filesystem (``--wheel-dir``, ``--target``), into a directory standing for that
  filesystem, so the image's install can be run and imported on this machine;
- ``imported_distributions`` / ``requirement_closure``: what the package imports, and what
  a set of requirements pulls in, by distribution name.
"""

from __future__ import annotations

import ast
import glob
import importlib.machinery
import importlib.metadata
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from dockerfile_parse import DockerfileParser
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCKER_DIR = REPO_ROOT / "docker"
PIPELINE_DOCKERFILE = DOCKER_DIR / "pipeline" / "Dockerfile"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"
CONSTRAINTS = REPO_ROOT / "constraints.txt"

# The TFX image's Python (tensorflow/tfx:1.16.0 extends a py310 Deep Learning VM image).
IMAGE_PYTHON = "3.10.14"


# --- Dockerfiles -------------------------------------------------------------------------------

def dockerfiles() -> list[Path]:
    """Every Dockerfile under docker/ (``Dockerfile``, ``Dockerfile.<x>``, ``<x>.Dockerfile``)."""
    found = []
    for path in sorted(DOCKER_DIR.rglob("*")):
        name = path.name
        if not path.is_file() or name.endswith(".dockerignore"):
            continue
        if name == "Dockerfile" or name.startswith("Dockerfile.") or name.endswith(".Dockerfile"):
            found.append(path)
    return found


@dataclass
class Stage:
    """One FROM and the instructions up to the next."""

    base: str  # the FROM image, build arguments replaced by their defaults
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)  # (INSTRUCTION, value)
    written_base: str = ""  # the FROM image as written, ``${BASE_IMAGE}`` and all

    def values(self, instruction: str) -> list[str]:
        return [value for name, value in self.instructions if name == instruction]


def global_args(dockerfile: Path) -> dict[str, str | None]:
    """The ARGs before the first FROM (the only ones a FROM can use): name -> default or None."""
    args: dict[str, str | None] = {}
    for item in DockerfileParser(path=str(dockerfile)).structure:
        if item["instruction"] == "FROM":
            break
        if item["instruction"] == "ARG":
            name, equals, default = item["value"].strip().partition("=")
            args[name] = shlex.split(default)[0] if equals and default else (
                "" if equals else None)
    return args


def stages(dockerfile: Path) -> list[Stage]:
    """The build stages of ``dockerfile``, in order; the last is the image."""
    defaults = {name: value for name, value in global_args(dockerfile).items()
                if value is not None}
    result: list[Stage] = []
    for item in DockerfileParser(path=str(dockerfile)).structure:
        instruction, value = item["instruction"], item["value"]
        if instruction == "COMMENT":
            continue
        if instruction == "FROM":
            words = [w for w in value.split() if not w.startswith("--platform")]
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            result.append(Stage(base=substitute(words[0], defaults), name=name,
                                written_base=words[0]))
        elif result:
            result[-1].instructions.append((instruction, value))
    return result


def key_values(value: str) -> dict[str, str]:
    """``KEY=VALUE`` pairs of an ENV, LABEL or ARG value, quotes removed, ``${...}`` kept."""
    pairs = {}
    for word in shlex.split(value, posix=True):
        key, _, val = word.partition("=")
        pairs[key] = val
    return pairs


def substitute(text: str, variables: Mapping[str, str]) -> str:
    """``${NAME}`` and ``$NAME`` replaced from ``variables`` (as Docker does for ARG/ENV)."""
    return re.sub(r"\$\{(\w+)\}|\$(\w+)",
                  lambda m: variables.get(m.group(1) or m.group(2), m.group(0)), text)


# --- pip ---------------------------------------------------------------------------------------

# pip options that take a value (the value is not a requirement).
_PIP_VALUE_OPTIONS = {
    "-c", "--constraint", "-r", "--requirement", "-t", "--target", "-w", "--wheel-dir",
    "-i", "--index-url", "--extra-index-url", "-f", "--find-links", "--prefix", "--root",
    "--platform", "--python-version", "--implementation", "--abi", "--only-binary",
    "--no-binary", "--progress-bar", "--cache-dir", "--src", "-e", "--editable",
    "--upgrade-strategy", "--config-settings", "-C", "--global-option", "--build-option",
    "--report", "--log", "--timeout", "--retries",
}


@dataclass(frozen=True)
class PipCommand:
    """One ``pip install`` / ``pip wheel`` of a RUN."""

    subcommand: str
    options: dict[str, str | None]  # option -> its value (None for flags)
    arguments: tuple[str, ...]  # requirements and paths
    words: tuple[str, ...]  # the whole command, for replaying it

    @property
    def paths(self) -> list[str]:
        return [a for a in self.arguments if a.startswith(("/", ".")) or a.endswith(".whl")]

    @property
    def requirements(self) -> list[Requirement]:
        return [Requirement(a) for a in self.arguments if a not in self.paths]


def shell_commands(run_value: str) -> list[list[str]]:
    """The simple commands of a RUN's shell form, split on ``&&``, ``||``, ``;`` and ``|``."""
    lexer = shlex.shlex(run_value, posix=True, punctuation_chars=";&|")
    lexer.whitespace_split = True
    commands, current = [], []
    for word in lexer:
        if word and set(word) <= set(";&|"):
            commands.append(current)
            current = []
        else:
            current.append(word)
    commands.append(current)
    return [c for c in commands if c]


def pip_commands(run_value: str) -> list[PipCommand]:
    """The ``pip install`` and ``pip wheel`` commands of a RUN."""
    found = []
    for words in shell_commands(run_value):
        start = next((index for index, word in enumerate(words)
                      if word in ("pip", "pip3") or re.fullmatch(r"(.*/)?pip3?(\.\d+)?", word)),
                     None)
        if start is None:
            continue
        rest = words[start + 1:]
        if not rest or rest[0] not in ("install", "wheel"):
            continue
        options: dict[str, str | None] = {}
        arguments = []
        i = 1
        while i < len(rest):
            word = rest[i]
            if word.startswith("-"):
                key, equals, val = word.partition("=")
                if equals:
                    options[key] = val
                elif key in _PIP_VALUE_OPTIONS:
                    options[key] = rest[i + 1]
                    i += 1
                else:
                    options[key] = None
            else:
                arguments.append(word)
            i += 1
        found.append(PipCommand(rest[0], options, tuple(arguments), tuple(words)))
    return found


def is_exact_pin(requirement: Requirement) -> bool:
    specs = list(requirement.specifier)
    return len(specs) == 1 and specs[0].operator == "==" and "*" not in specs[0].version


def constraint_pins(path: Path = CONSTRAINTS) -> dict[str, str]:
    """``name -> version`` of every ``==`` line of constraints.txt (names canonicalised)."""
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        requirement = Requirement(line)
        if is_exact_pin(requirement):
            pins[canonicalize_name(requirement.name)] = next(iter(requirement.specifier)).version
    return pins


# --- .dockerignore -----------------------------------------------------------------------------

def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as Docker matches it (Go filepath.Match, plus ``**``)."""
    out, i = [], 0
    while i < len(pattern):
        char = pattern[i]
        if char == "*":
            if pattern[i + 1:i + 2] == "*":
                i += 1
                if pattern[i + 1:i + 2] == "/":
                    i += 1
                    out.append("(.*/)?")
                else:
                    out.append(".*")
            else:
                out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[":
            end = pattern.index("]", i + 1)
            body = pattern[i + 1:end]
            out.append("[" + ("^" + body[1:] if body.startswith(("!", "^")) else body) + "]")
            i = end
        elif char == "\\" and i + 1 < len(pattern):
            i += 1
            out.append(re.escape(pattern[i]))
        else:
            out.append(re.escape(char))
        i += 1
    return re.compile("^" + "".join(out) + "$")


@dataclass(frozen=True)
class DockerIgnore:
    """The rules of a .dockerignore: the last pattern matching a path or a parent decides."""

    rules: tuple[tuple[str, bool, re.Pattern[str]], ...]  # (pattern, exclusion, regex)

    @classmethod
    def read(cls, path: Path = DOCKERIGNORE) -> DockerIgnore:
        rules = []
        for line in path.read_text().splitlines() if path.exists() else []:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            negated = line.startswith("!")
            pattern = os.path.normpath(line[1:] if negated else line).lstrip("/")
            rules.append((pattern, negated, _pattern_regex(pattern)))
        return cls(tuple(rules))

    def excluded(self, path: str) -> bool:
        parts = PurePosixPath(path).parts
        candidates = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
        result = False
        for _, negated, regex in self.rules:
            if any(regex.match(candidate) for candidate in candidates):
                result = not negated
        return result

    def may_include_below(self, directory: str) -> bool:
        """Whether a ``!`` pattern could bring back something under an excluded ``directory``."""
        depth = len(PurePosixPath(directory).parts)
        for pattern, negated, _ in self.rules:
            if not negated:
                continue
            parts = PurePosixPath(pattern).parts
            if "**" in pattern:
                return True
            if len(parts) > depth and _pattern_regex("/".join(parts[:depth])).match(directory):
                return True
        return False


def context_files(root: Path = REPO_ROOT, ignore: DockerIgnore | None = None) -> list[str]:
    """The files of the build context rooted at ``root``, as relative POSIX paths."""
    ignore = ignore or DockerIgnore.read(root / ".dockerignore")
    found = []
    for current, dirs, files in os.walk(root):
        relative = Path(current).relative_to(root).as_posix()
        prefix = "" if relative == "." else relative + "/"
        dirs[:] = [d for d in dirs if not (ignore.excluded(prefix + d)
                                           and not ignore.may_include_below(prefix + d))]
        found.extend(prefix + f for f in files if not ignore.excluded(prefix + f))
    return sorted(found)


# --- replaying a build -------------------------------------------------------------------------

class UnsupportedError(Exception):
    """An instruction this offline replay does not model; the test says which."""


@dataclass
class Replay:
    """A build replayed into directories standing for each stage's filesystem."""

    roots: dict[str, Path]  # stage key (name or index) -> its filesystem root
    final: Path  # the image's filesystem root
    env: dict[str, str]  # the image's ENV, as written
    commands: list[str]  # what was run, for the test's report


def _in_root(root: Path, image_path: str, workdir: str = "/") -> Path:
    absolute = PurePosixPath(workdir) / image_path
    return root / str(absolute).lstrip("/")


def _copy(sources: list[Path], destination: Path, dest_is_dir: bool) -> None:
    for source in sources:
        if source.is_dir():
            shutil.copytree(source, destination, dirs_exist_ok=True)
        else:
            target = destination / source.name if dest_is_dir else destination
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


def _replay_copy(value: str, root: Path, workdir: str, sources_root: Mapping[str, Path],
                 context: Path) -> None:
    words = shlex.split(value)
    flags = dict(w.split("=", 1) for w in words if w.startswith("--") and "=" in w)
    if set(flags) - {"--from", "--chown", "--chmod"}:
        raise UnsupportedError(f"COPY {value}")
    origin = sources_root[flags["--from"]] if "--from" in flags else context
    *sources, dest = [w for w in words if not w.startswith("--")]
    matched = []
    for source in sources:
        hits = sorted(glob.glob(str(_in_root(origin, source))))
        if not hits:
            where = f"stage {flags['--from']}" if "--from" in flags else "the build context"
            raise FileNotFoundError(f"COPY {value}: no {source} in {where}")
        matched.extend(Path(hit) for hit in hits)
    _copy(matched, _in_root(root, dest, workdir), dest.endswith("/") or len(matched) > 1)


def _replay_pip(value: str, root: Path, workdir: str, python: str) -> list[str]:
    """Runs the RUN's pip commands that write into the image's filesystem; returns them."""
    commands = []
    for pip in pip_commands(value):
        if not {"--wheel-dir", "-w", "--target", "-t"} & set(pip.options):
            continue
        words = []
        for word in pip.words[pip.words.index(pip.subcommand):]:
            if word.startswith("/") or word == ".":
                in_root = str(_in_root(root, word, workdir))
                words.extend(sorted(glob.glob(in_root)) or [in_root])
            else:
                words.append(word)
        command = [python, "-m", "pip", *words]
        subprocess.run(command, check=True, capture_output=True, text=True,
                       cwd=_in_root(root, workdir))
        commands.append(" ".join(command))
    return commands


def assemble(dockerfile: Path, workspace: Path, python: str = sys.executable) -> Replay:
    """Replays ``dockerfile``'s COPYs and its pip ``--wheel-dir`` / ``--target`` commands.

    The build context is a copy of the files ``docker build`` would send. Pip commands that
    only change the base image's environment (``pip install pkg==x``) are not run: this
    machine has TFX already, and they are checked statically by the tests. ADD and shell
    commands other than pip are not modelled (ADD raises ``UnsupportedError``).
    """
    context = workspace / "context"
    for relative in context_files():
        target = context / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / relative, target)
    roots: dict[str, Path] = {}
    commands: list[str] = []
    env: dict[str, str] = {}
    all_stages = stages(dockerfile)
    for index, stage in enumerate(all_stages):
        root = workspace / f"stage{index}"
        root.mkdir(parents=True)
        roots[str(index)] = root
        if stage.name:
            roots[stage.name] = root
        workdir, env = "/", {}
        for instruction, value in stage.instructions:
            if instruction == "WORKDIR":
                workdir = str(PurePosixPath(workdir) / value)
                _in_root(root, workdir).mkdir(parents=True, exist_ok=True)
            elif instruction == "ENV":
                env.update(key_values(value))
            elif instruction == "ADD":
                raise UnsupportedError(f"ADD {value}")
            elif instruction == "COPY":
                _replay_copy(value, root, workdir, roots, context)
            elif instruction == "RUN":
                commands.extend(_replay_pip(value, root, workdir, python))
    return Replay(roots=roots, final=roots[str(len(all_stages) - 1)], env=env, commands=commands)


# --- distributions -----------------------------------------------------------------------------

def _module_file(dotted: str) -> str | None:
    """The file of an importable module or package, found on sys.path without importing it.

    Follows the import system's order: the first regular package or module found wins;
    directories without ``__init__.py`` are namespace portions, searched together.
    """
    suffixes = importlib.machinery.all_suffixes()
    locations = [entry or os.getcwd() for entry in sys.path]
    origin = None
    for part in dotted.split("."):
        portions, origin = [], None
        for location in locations:
            base = os.path.join(location, part)
            init = os.path.join(base, "__init__.py")
            if os.path.isfile(init):
                origin, portions = init, [base]
                break
            module = next((base + s for s in suffixes if os.path.isfile(base + s)), None)
            if module:
                origin, portions = module, []
                break
            if os.path.isdir(base):
                portions.append(base)
        if origin is None and not portions:
            return None
        locations = portions
    return os.path.normpath(origin) if origin else None


def _files_to_distributions() -> dict[str, str]:
    owners = {}
    for dist in importlib.metadata.distributions():
        name = canonicalize_name(dist.name)
        for file in dist.files or []:
            owners[os.path.normpath(dist.locate_file(file))] = name
    return owners


def imported_modules(package_dir: Path) -> set[str]:
    """Absolute imports anywhere in the package's sources (functions included), dotted."""
    modules = set()
    for source in package_dir.rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text(), str(source))):
            if isinstance(node, ast.Import):
                modules.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module)
                modules.update(f"{node.module}.{alias.name}" for alias in node.names)
    return modules


def imported_distributions(package_dir: Path) -> dict[str, set[str]]:
    """``distribution -> modules`` for the third-party modules the package imports."""
    owners = _files_to_distributions()
    top_level = package_dir.name
    result: dict[str, set[str]] = {}
    for module in sorted(imported_modules(package_dir)):
        root = module.split(".")[0]
        if root in sys.stdlib_module_names or root in (top_level, "__future__"):
            continue
        file = _module_file(module)
        if file is None or file not in owners:
            continue  # a name imported from a module, not a module itself
        result.setdefault(owners[file], set()).add(module)
    return result


def marker_environment(python_full_version: str = IMAGE_PYTHON) -> dict[str, str]:
    env = dict(default_environment())
    env["python_full_version"] = python_full_version
    env["python_version"] = ".".join(python_full_version.split(".")[:2])
    return env


def requirement_closure(requirements: Iterable[str],
                        environment: Mapping[str, str] | None = None) -> set[str]:
    """Every distribution ``requirements`` pull in, by the installed distributions' metadata.

    Markers are evaluated for ``environment`` (default: the TFX image's Python); extras are
    followed. Distributions not installed here end the walk at their own name.
    """
    environment = dict(environment or marker_environment())
    names: set[str] = set()
    seen: set[tuple[str, str]] = set()
    queue = [(Requirement(r), "") for r in requirements]
    while queue:
        requirement, via_extra = queue.pop()
        if requirement.marker and not requirement.marker.evaluate({**environment,
                                                                   "extra": via_extra}):
            continue
        name = canonicalize_name(requirement.name)
        names.add(name)
        for extra in ("", *sorted(requirement.extras)):
            if (name, extra) in seen:
                continue
            seen.add((name, extra))
            try:
                requires = importlib.metadata.requires(name) or []
            except importlib.metadata.PackageNotFoundError:
                continue
            queue.extend((Requirement(line), extra) for line in requires)
    return names
