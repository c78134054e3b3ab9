r"""Math problems from local data in three formats, with one field mapping and ``file:row`` errors.

Specs (options as for ``jsonl:``, :class:`ladtrain.tasks.math_jsonl.MathOptions`, plus those below):

* ``jsonl:FILE``: one JSON object per line (errors name ``FILE:LINE``, lines counted from 1);
* ``parquet:FILE``: the rows of a Parquet file, read with ``pyarrow`` (errors name ``FILE:row I``);
* ``hf:PATH``: a ``datasets`` folder written by ``save_to_disk`` (a ``Dataset`` or a ``DatasetDict``),
  or a local data file (``.json``, ``.jsonl``, ``.csv``, ``.parquet``, ``.txt``) loaded with
  ``datasets.load_dataset(<format>, data_files=PATH)``; errors name ``PATH:row I`` (``PATH[split]:row I``
  in a DatasetDict);
* ``gsm8k:PATH`` and ``math:PATH``: the ``gsm8k``/``math`` preset with the reader chosen from PATH (a
  folder: ``hf``; ``.parquet``: ``parquet``; ``.jsonl``: ``jsonl``; another file: ``hf``).

Row indices ``I`` count from 0, as ``dataset[I]`` and ``table.slice(I, 1)`` do; a problem's default id
is ``NAME:row I`` (JSONL keeps ``NAME:LINE``). Every row is validated before the run; the first bad one
stops it with one line (a missing or empty field, a value that is not a string or a number, no answer
in the reference).

Extra options:

* ``preset=gsm8k``: ``prompt_field=question, answer_field=answer, reference_extract=hash`` (GSM8K's
  ``#### 72``); ``preset=math``: ``prompt_field=problem, answer_field=solution, reference_extract=boxed,
  extract=boxed`` (Hendrycks MATH and MATH-500). Options given in the spec override the preset's.
* ``hf:`` only: ``split=NAME`` (the split a DatasetDict trains on, default ``train``) and
  ``test_split=NAME`` (its held-out split; default ``test`` when the DatasetDict has one, else
  ``test_every`` applies). ``test_file=PATH`` (all formats) reads the held-out split from a second source
  of the same format.

No network: a path that does not exist is an error (a hub name such as ``openai/gsm8k`` is never
downloaded; point at a local copy), and ``datasets`` is imported with ``HF_DATASETS_OFFLINE=1`` and
``HF_HUB_OFFLINE=1`` unless they are already set. ``load_dataset`` keeps its Arrow cache under
``$LADTRAIN_CACHE/hf-datasets`` (default ``~/.cache/ladtrain/hf-datasets``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator

from ladtrain.tasks import TaskError
from ladtrain.tasks.base import every_nth
from ladtrain.tasks.math_jsonl import MathTask, check_options, instruction_text, load_problems

PRESETS: dict[str, dict[str, str]] = {
    "gsm8k": {"prompt_field": "question", "answer_field": "answer", "reference_extract": "hash"},
    "math": {"prompt_field": "problem", "answer_field": "solution", "reference_extract": "boxed",
             "extract": "boxed"},
}
LOAD_DATASET_FORMATS = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet",
                        ".txt": "text"}

Rows = Iterator[tuple[str, str, "dict | None", "str | None"]]


def _exists(path: Path, spec: str) -> None:
    if not path.exists():
        raise TaskError(f"{spec}: {path}: no such file or folder (only local copies are read; nothing is "
                        "downloaded)")


def _table_rows(records, name: str, where: str) -> Rows:
    for i, row in enumerate(records):
        at = f"{where}:row {i}"
        if not isinstance(row, dict):
            yield f"{name}:row {i}", at, None, f"{at}: expected a record of fields, got {type(row).__name__}"
        else:
            yield f"{name}:row {i}", at, row, None


def parquet_rows(path: Path) -> Rows:
    """The rows of a Parquet file as dicts, batch by batch (pyarrow); ``FILE:row I`` locations."""
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise TaskError("parquet: needs pyarrow (pip install 'lad[data]')") from None
    try:
        reader = pq.ParquetFile(path)
    except FileNotFoundError:
        raise TaskError(f"{path}: no such file") from None
    except Exception as err:  # pyarrow raises ArrowInvalid (a ValueError) or OSError on a non-Parquet file
        raise TaskError(f"{path}: not a readable Parquet file: {str(err).splitlines()[0]}") from None

    def records():
        for batch in reader.iter_batches(batch_size=1024):
            yield from batch.to_pylist()

    return _table_rows(records(), path.name, str(path))


def _datasets():
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        import datasets
    except ImportError:
        raise TaskError("hf: needs the datasets package (pip install 'lad[data]')") from None
    return datasets


def hf_dataset(path: Path, spec: str):
    """A ``datasets.Dataset`` or ``DatasetDict`` from a ``save_to_disk`` folder, or a ``Dataset`` from a
    local data file (module docstring)."""
    ds = _datasets()
    _exists(path, spec)
    if path.is_dir():
        try:
            return ds.load_from_disk(str(path))
        except Exception as err:  # FileNotFoundError: not a save_to_disk folder
            raise TaskError(f"{spec}: {path} is not a folder written by datasets' save_to_disk "
                            f"({type(err).__name__}: {str(err).splitlines()[0][:200]})") from None
    fmt = LOAD_DATASET_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise TaskError(f"{spec}: {path}: unknown data file type {path.suffix!r}; known: "
                        f"{', '.join(sorted(LOAD_DATASET_FORMATS))}")
    cache = Path(os.environ.get("LADTRAIN_CACHE") or Path.home() / ".cache" / "ladtrain") / "hf-datasets"
    try:
        return ds.load_dataset(fmt, data_files=str(path), split="train", cache_dir=str(cache))
    except Exception as err:  # a malformed file: datasets raises its own errors
        raise TaskError(f"{spec}: {path}: datasets could not read it ({type(err).__name__}: "
                        f"{str(err).splitlines()[0][:200]})") from None


def hf_rows(data, path: Path, split: str | None, spec: str) -> Rows:
    """The rows of one table: ``data`` itself, or its split ``split`` when it is a DatasetDict."""
    if split is None:
        return _table_rows(iter(data), path.name, str(path))
    if split not in data:
        raise TaskError(f"{spec}: {path} has no split {split!r}; it has {', '.join(data)}")
    return _table_rows(iter(data[split]), f"{path.name}[{split}]", f"{path}[{split}]")


def _with_preset(spec: str, options: dict[str, Any]) -> dict[str, Any]:
    preset = options.pop("preset", None)
    if preset is None:
        return options
    if preset not in PRESETS:
        raise TaskError(f"{spec}: unknown preset={preset!r}; known: {', '.join(PRESETS)}")
    return {**PRESETS[preset], **options}


def _kind_of(path: Path) -> str:
    if path.is_dir():
        return "hf"
    return {".parquet": "parquet", ".jsonl": "jsonl"}.get(path.suffix.lower(), "hf")


def build(kind: str, arg: str | None, options: dict[str, Any], name: str | None = None) -> MathTask:
    """A math task from a local ``jsonl``, ``parquet`` or ``hf`` source (module docstring)."""
    name = name or kind
    spec = f"{name}:{arg}"
    if not arg:
        what = "a local file or a save_to_disk folder" if kind == "hf" else "a file"
        suffix = "parquet" if kind == "parquet" else "jsonl"
        raise TaskError(f"{name}: give {what}, e.g. {name}:data/test.{suffix}")
    options = dict(options)
    split, test_split = options.pop("split", None), options.pop("test_split", None)
    if kind != "hf" and (split is not None or test_split is not None):
        raise TaskError(f"{spec}: split= and test_split= are options of hf: sources only")
    opts = check_options(spec, _with_preset(spec, options))
    instruction = instruction_text(opts.instruction, opts.instruction_file, spec)

    def load(p: Path, which: str | None = None) -> list:
        _exists(p, spec)
        if kind == "jsonl":
            return load_problems(p, opts, instruction)
        if kind == "parquet":
            return load_problems(p, opts, instruction, parquet_rows(p))
        data = hf_dataset(p, spec)
        if isinstance(data, _datasets().DatasetDict):
            which = which or ("test" if "test" in data and p != Path(arg) else "train")
        elif which is not None:
            raise TaskError(f"{spec}: split=/test_split= need a DatasetDict folder ({p} is one table)")
        return load_problems(p, opts, instruction, hf_rows(data, p, which, spec))

    path, test = Path(arg), None
    train = load(path, split)
    if opts.test_file:
        test = load(Path(opts.test_file), None)
    elif kind == "hf":
        data = hf_dataset(path, spec)
        if isinstance(data, _datasets().DatasetDict):
            if test_split or "test" in data:
                test = load(path, test_split or "test")
        elif test_split:
            raise TaskError(f"{spec}: split=/test_split= need a DatasetDict folder ({path} is one table)")
    if test is None:
        train, test = every_nth(train, opts.test_every, at_least_one=True)
    return MathTask(spec, tuple(train), tuple(test), opts)


def make_jsonl(arg: str | None = None, **options) -> MathTask:
    """Registry factory for ``jsonl:FILE``."""
    return build("jsonl", arg, options)


def make_parquet(arg: str | None = None, **options) -> MathTask:
    """Registry factory for ``parquet:FILE``."""
    return build("parquet", arg, options)


def make_hf(arg: str | None = None, **options) -> MathTask:
    """Registry factory for ``hf:PATH``."""
    return build("hf", arg, options)


def make_gsm8k(arg: str | None = None, **options) -> MathTask:
    """Registry factory for ``gsm8k:PATH`` (the gsm8k preset; reader from the path)."""
    path = Path(arg) if arg else None
    return build(_kind_of(path) if path else "jsonl", arg, {"preset": "gsm8k", **options}, name="gsm8k")


def make_math(arg: str | None = None, **options) -> MathTask:
    """Registry factory for ``math:PATH`` (the math preset; reader from the path)."""
    path = Path(arg) if arg else None
    return build(_kind_of(path) if path else "jsonl", arg, {"preset": "math", **options}, name="math")


__all__ = ["LOAD_DATASET_FORMATS", "PRESETS", "build", "hf_dataset", "hf_rows", "make_gsm8k", "make_hf",
           "make_jsonl", "make_math", "make_parquet", "parquet_rows"]
