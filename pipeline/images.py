"""What counts as a pinned container image reference.

A compiled spec and a serving pod must run the image they were tested with: a reference is
pinned by a sha256 digest, or by a tag other than ``latest`` (or ``latest-*``).
"""

import re

_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_FLOATING_TAG = "latest"


def is_pinned(image: str) -> bool:
    name, at, digest = image.partition("@")
    if at:
        return bool(_DIGEST.match(digest))
    _, separator, tag = name.rpartition(":")
    if not separator or "/" in tag:  # no tag: the colon belonged to a registry port
        return False
    return bool(tag) and tag != _FLOATING_TAG and not tag.startswith(f"{_FLOATING_TAG}-")
