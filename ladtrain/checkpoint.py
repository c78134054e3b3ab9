"""Checkpoints: ordinary Hugging Face folders (``save_pretrained``, safetensors), written atomically.

:func:`save` writes everything into a temporary sibling folder and renames it into place, so a reader
(or a crashed run) never sees a half-written checkpoint: the folder either holds the previous complete
checkpoint or the new complete one. Reload with ``AutoModelForCausalLM.from_pretrained(path)`` and
``AutoTokenizer.from_pretrained(path)``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any


def save(model, tokenizer, path: str | Path, extra: dict[str, Any] | None = None) -> Path:
    """Save ``model`` and ``tokenizer`` to ``path`` atomically; ``extra`` maps file names to JSON values
    written next to them (e.g. training state or provenance)."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # "Writing model shards" bars would interleave with ours
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        for name, value in (extra or {}).items():
            (tmp / name).write_text(json.dumps(value, indent=2, default=str))
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=path.parent))
            os.replace(path, old / "ckpt")
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


__all__ = ["save"]
