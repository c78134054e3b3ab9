"""Local data sources: Parquet files and ``datasets`` folders/files load with the JSONL field mapping,
bad rows are ``file:row`` errors, presets map GSM8K and MATH fields, and nothing is downloaded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ladtrain.tasks import TaskError, get_task

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
datasets = pytest.importorskip("datasets")

DATA = Path(__file__).resolve().parents[1] / "data"


def rows_of(name: str) -> list[dict]:
    return [json.loads(line) for line in (DATA / name).read_text().splitlines() if line.strip()]


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LADTRAIN_CACHE", str(tmp_path / "cache"))  # load_dataset's Arrow cache goes here


def write_parquet(path: Path, rows: list[dict]) -> Path:
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def test_parquet_loads_like_the_same_jsonl(tmp_path):
    gsm = rows_of("gsm8k_style.jsonl")
    par = write_parquet(tmp_path / "gsm.parquet", gsm)
    from_jsonl = get_task(f"jsonl:{DATA / 'gsm8k_style.jsonl'},test_every=0")
    from_parquet = get_task(f"parquet:{par},test_every=0")
    for field in ("prompt", "reference", "meta"):
        got = [getattr(p, field) for p in from_parquet.problems("train")]
        assert got == [getattr(p, field) for p in from_jsonl.problems("train")]
    assert from_parquet.problems("train")[0].id == "gsm.parquet:row 0"
    first = from_parquet.problems("train")[0]
    assert from_parquet.score(first, f"so #### {first.reference}").reward == 1.0


def test_parquet_bad_row_is_named_by_file_and_row(tmp_path):
    rows = rows_of("gsm8k_style.jsonl")
    rows[2] = {"question": "What is 1+1?", "answer": ""}  # empty reference in row 2
    par = write_parquet(tmp_path / "bad.parquet", rows)
    with pytest.raises(TaskError, match=rf"^{par}:row 2: field 'answer' is empty$"):
        get_task(f"parquet:{par}")
    not_parquet = tmp_path / "x.parquet"
    not_parquet.write_text("hello")
    with pytest.raises(TaskError, match="not a readable Parquet file"):
        get_task(f"parquet:{not_parquet}")


def test_hf_save_to_disk_dataset_and_datasetdict(tmp_path, monkeypatch):
    import os

    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    math_rows = rows_of("math_style.jsonl")
    folder = tmp_path / "one"
    datasets.Dataset.from_list(math_rows).save_to_disk(str(folder))
    task = get_task(f"hf:{folder},preset=math,test_every=0")
    assert os.environ["HF_DATASETS_OFFLINE"] == "1" and os.environ["HF_HUB_OFFLINE"] == "1"
    assert [p.reference for p in task.problems("train")][:3] == ["2\\sqrt{2}", "\\frac{1}{2}", "x^2+2x+1"]
    assert task.problems("train")[1].meta["level"] == "Level 1"  # other columns reach user rewards
    assert task.score(task.problems("train")[1], "so \\boxed{0.5}").reward == 1.0

    both = tmp_path / "dict"
    datasets.DatasetDict({"train": datasets.Dataset.from_list(math_rows[:1]),
                          "test": datasets.Dataset.from_list(math_rows[1:])}).save_to_disk(str(both))
    task = get_task(f"math:{both}")  # the preset; the reader chosen from the folder; its own test split
    assert len(task.problems("train")) == 1 and len(task.problems("test")) == 3
    assert task.problems("test")[0].id == "dict[test]:row 0"
    swapped = get_task(f"hf:{both},preset=math,split=test,test_split=train")
    assert len(swapped.problems("train")) == 3 and len(swapped.problems("test")) == 1
    with pytest.raises(TaskError, match="has no split 'dev'; it has train, test"):
        get_task(f"hf:{both},preset=math,split=dev")
    for option in ("split=train", "test_split=test"):
        with pytest.raises(TaskError, match="need a DatasetDict"):
            get_task(f"hf:{folder},preset=math,{option}")


def test_hf_bad_row_in_a_datasetdict_split_names_the_split_and_row(tmp_path):
    rows = rows_of("math_style.jsonl")
    bad = [rows[0], {"problem": "Find x.", "solution": "no box here"}]
    folder = tmp_path / "d"
    datasets.DatasetDict({"train": datasets.Dataset.from_list(rows), "test": datasets.Dataset.from_list(bad)}
                         ).save_to_disk(str(folder))
    with pytest.raises(TaskError, match=r"d\[test\]:row 1: no answer found in field 'solution' "
                                        r"\(reference_extract=boxed\)"):
        get_task(f"math:{folder}")


def test_hf_local_data_file_through_load_dataset(tmp_path):
    csv = tmp_path / "gsm.csv"
    import csv as csv_module

    with csv.open("w", newline="") as fh:
        writer = csv_module.DictWriter(fh, fieldnames=["question", "answer"])
        writer.writeheader()
        writer.writerows(rows_of("gsm8k_style.jsonl"))
    task = get_task(f"hf:{csv},preset=gsm8k,test_every=0")
    assert [p.reference for p in task.problems("train")][:3] == ["29", "150", "2,500"]
    with pytest.raises(TaskError, match="unknown data file type '.xlsx'"):
        (tmp_path / "a.xlsx").write_text("x")
        get_task(f"hf:{tmp_path / 'a.xlsx'}")


def test_presets_and_explicit_options_override_them(tmp_path):
    task = get_task(f"gsm8k:{DATA / 'gsm8k_style.jsonl'},test_every=0")  # jsonl chosen from the suffix
    assert task.options.reference_extract == "hash" and task.problems("train")[0].reference == "29"
    task = get_task(f"jsonl:{DATA / 'gsm8k_style.jsonl'},preset=gsm8k,reference_extract=last_number")
    assert task.options.reference_extract == "last_number"
    with pytest.raises(TaskError, match="unknown preset='mmlu'; known: gsm8k, math"):
        get_task(f"jsonl:{DATA / 'gsm8k_style.jsonl'},preset=mmlu")
    with pytest.raises(TaskError, match="options of hf: sources only"):
        get_task(f"parquet:{DATA / 'x.parquet'},split=train")


def test_test_file_of_the_same_format(tmp_path):
    rows = rows_of("gsm8k_style.jsonl")
    train = write_parquet(tmp_path / "train.parquet", rows[:3])
    test = write_parquet(tmp_path / "test.parquet", rows[3:])
    task = get_task(f"parquet:{train},preset=gsm8k,test_file={test}")
    assert len(task.problems("train")) == 3 and len(task.problems("test")) == len(rows) - 3


def test_nothing_is_downloaded_for_a_hub_name(tmp_path, monkeypatch):
    """A hub id is not a local path: a one-line error, and datasets is never asked to fetch it."""
    monkeypatch.chdir(tmp_path)
    calls = []
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: calls.append(a) or None)
    for spec in ("hf:openai/gsm8k", "gsm8k:openai/gsm8k", "math:HuggingFaceH4/MATH-500"):
        with pytest.raises(TaskError, match="no such file or folder .*nothing is downloaded"):
            get_task(spec)
    assert calls == []
