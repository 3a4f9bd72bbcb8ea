"""Checks an installed pipeline package the way its steps will use it; exits 1 on any problem.

Run as the last build step of docker/pipeline/Dockerfile, so an image whose TFX stack cannot
import the package, or lacks what the added distributions need, fails to build instead of
failing in a step pod. tests/docker runs it on the wheel installed outside Docker.

Checks:
1. every module of ``pipeline`` imports, from ``<source root>/pipeline``;
2. the requirements of each ``--dist`` are met by what is installed (their own install used
   --no-deps, so nothing else checked them);
3. the curated schema is at the path compiled specs give it
   (``pipeline.runners.kubeflow.compiler.IMAGE_SCHEMA_FILE``), taken relative to the source root.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import pkgutil
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name


def import_all(package: str = "pipeline") -> list[str]:
    """Imports ``package`` and every module under it; returns the module names."""
    root = importlib.import_module(package)
    names = [package]
    for module in pkgutil.walk_packages(root.__path__, prefix=f"{package}."):
        importlib.import_module(module.name)
        names.append(module.name)
    return names


def unmet_requirements(dist: str) -> list[str]:
    """Requirements of the installed distribution ``dist`` that nothing installed satisfies."""
    problems = []
    metadata = importlib.metadata.metadata(dist)
    python = metadata.get("Requires-Python")
    running = default_environment()["python_full_version"]
    if python and not SpecifierSet(python).contains(running, prereleases=True):
        problems.append(f"{dist} needs Python {python}: this is {running}")
    for line in importlib.metadata.requires(dist) or []:
        requirement = Requirement(line)
        if requirement.marker and not requirement.marker.evaluate({"extra": ""}):
            continue
        try:
            installed = importlib.metadata.version(requirement.name)
        except importlib.metadata.PackageNotFoundError:
            problems.append(f"{dist} needs {requirement}: not installed")
            continue
        if not requirement.specifier.contains(installed, prereleases=True):
            problems.append(f"{dist} needs {requirement}: {installed} is installed")
    return problems


def check(dists: Sequence[str], source_root: str | None) -> list[str]:
    """Every problem found, one line each; empty when the install is usable."""
    problems = []
    try:
        modules = import_all()
    except Exception as error:  # noqa: BLE001 - reported, then the build fails
        traceback.print_exc()
        return [f"import failed: {type(error).__name__}: {error}"]
    from pipeline.runners.kubeflow import compiler

    root = Path(source_root or compiler.IMAGE_SOURCE_ROOT)
    package_dir = Path(sys.modules["pipeline"].__file__).parent
    print(f"imported {len(modules)} modules from {package_dir}")
    if package_dir != root / "pipeline":
        problems.append(f"pipeline imported from {package_dir}, not {root / 'pipeline'}")
    schema = root / Path(compiler.IMAGE_SCHEMA_FILE).relative_to(compiler.IMAGE_SOURCE_ROOT)
    if not schema.is_file():
        problems.append(
            f"compiled specs read the schema at {compiler.IMAGE_SCHEMA_FILE}; "
            f"no file at {schema}"
        )
    for dist in dists:
        try:
            problems.extend(unmet_requirements(dist))
        except importlib.metadata.PackageNotFoundError:
            problems.append(f"{canonicalize_name(dist)} is not installed")
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dist", action="append", default=[],
                        help="an installed distribution whose requirements must be met")
    parser.add_argument("--source-root",
                        help="where the package is installed (default: IMAGE_SOURCE_ROOT)")
    args = parser.parse_args(argv)
    problems = check(args.dist, args.source_root)
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    if not problems:
        print("ok: the installed package is usable")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
