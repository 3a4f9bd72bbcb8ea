"""TF Serving's model base path: which versions exist, and changing them whole.

TF Serving polls ``<base>/`` and considers only integer-named directories; with its default
``latest`` version policy it serves the highest. Every change made here keeps what it can
see whole:

- **publish**: a version is written under a hidden ``.partial-<version>`` name and renamed
  into place, which is atomic on a filesystem. Object stores (``gs://``) cannot rename;
  there ``saved_model.pb``, the file TF Serving needs before it loads a version, is written
  last.
- **retire** (retention): an old version is renamed to a hidden ``.retired-<version>`` name,
  then deleted, so it vanishes at once; on object stores its ``saved_model.pb`` goes first.
- **leftovers** of an interrupted publish or retire carry those hidden names and are
  removed before the next change.
- **roll back**: the chosen version is published again as the newest, so the ``latest``
  policy serves it and history stays. The models it replaces are recorded as revoked in
  ``.revoked.json``; the Pusher never publishes a revoked model again, or the next run
  would undo the rollback by pushing the same (cached) model.

Versions always increase (Unix time, or one more than the newest), so a rollback or a push
never reuses a number TF Serving has seen.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import time
from dataclasses import dataclass

import tensorflow as tf
from absl import logging
from tfx.utils import io_utils

from pipeline.errors import InputError

PARTIAL_PREFIX = ".partial-"
RETIRED_PREFIX = ".retired-"
REVOKED_FILE = ".revoked.json"
SAVED_MODEL_FILE = "saved_model.pb"


class VersionError(InputError):
    """A version that is not there to act on; one line naming the directory."""


@dataclass(frozen=True)
class Rollback:
    restored: int  # the version asked for
    published_as: int  # the new newest version holding its model (== restored: nothing done)
    revoked: tuple[int, ...]  # newer versions whose models the Pusher will not publish again


def _is_object_store(path: str) -> bool:
    return "://" in path


def version_numbers(base_directory: str) -> list[int]:
    """Every integer-named directory, oldest first: numbers TF Serving has seen or may see.

    A new version must be above all of them, complete or not, so none is ever reused.
    """
    if not tf.io.gfile.isdir(base_directory):
        return []
    names = (entry.rstrip("/") for entry in tf.io.gfile.listdir(base_directory))
    return sorted(int(name) for name in names
                  if name.isdigit() and tf.io.gfile.isdir(os.path.join(base_directory, name)))


def served_versions(base_directory: str) -> list[int]:
    """The versions TF Serving can load, oldest first: the one rule for "a served version".

    An integer-named directory holding ``saved_model.pb``. A version directory without it
    (a publish to an object store that stopped before its last file) is not one: TF Serving
    would fail to load it, so it is neither a baseline nor a rollback target.
    """
    return [version for version in version_numbers(base_directory)
            if tf.io.gfile.exists(os.path.join(version_path(base_directory, version),
                                               SAVED_MODEL_FILE))]


def version_path(base_directory: str, version: int) -> str:
    return os.path.join(base_directory, str(version))


def directory_digest(path: str) -> str:
    """Content hash of a directory tree (relative paths and file bytes)."""
    digest = hashlib.sha256()
    for directory, _, files in sorted(tf.io.gfile.walk(path)):
        for name in sorted(files):
            file = os.path.join(directory, name)
            digest.update(os.path.relpath(file, path).encode())
            with tf.io.gfile.GFile(file, "rb") as handle:
                digest.update(hashlib.sha256(handle.read()).digest())
    return digest.hexdigest()


def remove_leftovers(base_directory: str) -> None:
    """Deletes what an interrupted publish or retire left under hidden names."""
    if not tf.io.gfile.isdir(base_directory):
        return
    for entry in tf.io.gfile.listdir(base_directory):
        if entry.startswith((PARTIAL_PREFIX, RETIRED_PREFIX)):
            leftover = os.path.join(base_directory, entry.rstrip("/"))
            logging.warning("Removing %s left by an interrupted change.", leftover)
            tf.io.gfile.rmtree(leftover)


def publish(model_path: str, base_directory: str) -> int:
    """Copies ``model_path`` in as a new, highest version; returns its number."""
    tf.io.gfile.makedirs(base_directory)
    versions = version_numbers(base_directory)
    version = max(int(time.time()), versions[-1] + 1 if versions else 0)
    final = version_path(base_directory, version)
    if _is_object_store(base_directory):
        io_utils.copy_dir(model_path, final, deny_regex_patterns=[SAVED_MODEL_FILE])
        io_utils.copy_file(os.path.join(model_path, SAVED_MODEL_FILE),
                           os.path.join(final, SAVED_MODEL_FILE))
        return version
    partial = os.path.join(base_directory, f"{PARTIAL_PREFIX}{version}")
    io_utils.copy_dir(model_path, partial)
    os.rename(partial, final)
    return version


def retire_old(base_directory: str, keep: int) -> list[int]:
    """Deletes all but the newest ``keep`` versions (``keep`` < 1: none); returns them.

    The newest version, the one TF Serving's ``latest`` policy serves (just pushed, or just
    restored by a rollback), is always among those kept. Incomplete version directories
    older than the oldest kept version go too; a newer one may be a publish in progress.
    """
    kept = served_versions(base_directory)[-keep:] if keep >= 1 else []
    if not kept:
        return []
    retired = [version for version in version_numbers(base_directory) if version < kept[0]]
    for version in retired:
        path = version_path(base_directory, version)
        if _is_object_store(base_directory):
            if tf.io.gfile.exists(os.path.join(path, SAVED_MODEL_FILE)):
                tf.io.gfile.remove(os.path.join(path, SAVED_MODEL_FILE))
            tf.io.gfile.rmtree(path)
            continue
        hidden = os.path.join(base_directory, f"{RETIRED_PREFIX}{version}")
        os.rename(path, hidden)
        tf.io.gfile.rmtree(hidden)
    return retired


def revoked_models(base_directory: str) -> dict[str, dict]:
    """``{model digest: {"version", "restored", "at"}}`` of models a rollback replaced."""
    path = os.path.join(base_directory, REVOKED_FILE)
    if not tf.io.gfile.exists(path):
        return {}
    with tf.io.gfile.GFile(path) as handle:
        return json.load(handle)


def _write_revoked(base_directory: str, revoked: dict[str, dict]) -> None:
    path = os.path.join(base_directory, REVOKED_FILE)
    content = json.dumps(revoked, indent=2, sort_keys=True) + "\n"
    if _is_object_store(base_directory):
        io_utils.write_string_file(path, content)  # one object: written whole or not at all
        return
    partial = f"{path}.partial"
    io_utils.write_string_file(partial, content)
    os.replace(partial, path)


def rollback(base_directory: str, version: int) -> Rollback:
    """Makes ``version``'s model the newest served version again, keeping history.

    Its model is published as a new version (TF Serving's ``latest`` policy then serves it,
    and the next pipeline run takes it as its baseline). The models of the versions after
    it are revoked first, so an interrupted rollback never lets the next push bring one
    back; rolling back to a revoked model is a person's decision and lifts its revocation.
    Raises ``VersionError`` and changes nothing when ``version`` is not a complete version.
    """
    versions = served_versions(base_directory)
    source = version_path(base_directory, version)
    if version not in version_numbers(base_directory):
        listed = ", ".join(map(str, versions)) or "none"
        raise VersionError(f"{base_directory}: no version {version} (versions: {listed})")
    if version not in versions:
        raise VersionError(f"{source}: version {version} has no {SAVED_MODEL_FILE}")
    if version == versions[-1]:
        return Rollback(restored=version, published_as=version, revoked=())
    remove_leftovers(base_directory)
    digest = directory_digest(source)
    revoked = revoked_models(base_directory)
    revoked.pop(digest, None)
    at = datetime.datetime.now(datetime.timezone.utc).isoformat()
    newly_revoked = []
    for newer in (v for v in versions if v > version):
        newer_digest = directory_digest(version_path(base_directory, newer))
        if newer_digest != digest:
            revoked[newer_digest] = {"version": newer, "restored": version, "at": at}
            newly_revoked.append(newer)
    _write_revoked(base_directory, revoked)
    published_as = publish(source, base_directory)
    return Rollback(restored=version, published_as=published_as, revoked=tuple(newly_revoked))
