"""The small JSON records kept beside the app's data (the kernel check's verdicts, the files that
passed their trial load, the downloads verified): written whole or not at all."""

from __future__ import annotations

import json
import os
from pathlib import Path


def write_json_record(path: Path, data) -> None:
    """Write `data` to a sibling file, then rename it over `path` (atomic); OSError as it comes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(data, indent=1), encoding="utf-8")
    os.replace(partial, path)
