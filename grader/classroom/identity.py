"""Who a submission is: its exact entry name in the class folder or zip, and the folder names
derived from it.

The identity is kept as it is, Unicode included (``Zoë`` and ``Zoé`` written two ways are two
students), in grades.csv, results.json and the class page. Every folder made for a submission
(staging, results, reports) is named by `folder_name`: a readable ASCII slug plus a short hash of
the exact name, so two entries never share a folder however the slug cleans them, and a re-run
finds each entry's own earlier results and nobody else's.
"""

from __future__ import annotations

import hashlib
import os
import re
import unicodedata

NOT_SLUG = re.compile(r"[^A-Za-z0-9._-]+")
SLUG_CHARS = 40
HASH_CHARS = 12  # 48 bits: no collision between the entries of any class


def exact_bytes(identity: str) -> bytes:
    """The name as the file system holds it (undecodable bytes come back as they were)."""
    return os.fsencode(identity)


def folder_name(identity: str) -> str:
    """'Zoë' -> 'Zoe-3f2a...': readable, safe as a folder name anywhere, and one per identity."""
    ascii_name = unicodedata.normalize("NFKD", identity).encode("ascii", "ignore").decode("ascii")
    slug = NOT_SLUG.sub("_", ascii_name).strip("._-")[:SLUG_CHARS].rstrip("._-") or "submission"
    return f"{slug}-{hashlib.sha256(exact_bytes(identity)).hexdigest()[:HASH_CHARS]}"


def shown(identity: str) -> str:
    """The identity as text that can be written anywhere (a name that is not UTF-8 keeps its
    bytes visible as escapes)."""
    return exact_bytes(identity).decode("utf-8", "backslashreplace")
