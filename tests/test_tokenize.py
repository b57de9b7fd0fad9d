"""`taskseed tokenize`: fixture-derived documents -> Megatron .bin/.idx, read back token for token."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from nemo_taskseed.config import load_config
from nemo_taskseed.tokenize import TokenizeOptions, read_manifest, tokenize_files, verify_prefixes
from nemo_taskseed.tokenize import megatron as tokenize_megatron


def _mc_text(question: str, labels: list[str], options: list[str], answer: str) -> str:
    lines = [f"Question: {question}"] + [f"{label}. {text}" for label, text in zip(labels, options)]
    return "\n".join(lines + [f"Answer: {answer}"])


def fixture_documents(fixtures_hf: Path, per_source: int = 60) -> list[dict]:
    """Pretraining documents built from real benchmark training rows (question + options + answer)."""
    docs = []
    with open(fixtures_hf / "allenai/ai2_arc/ARC-Easy/train.jsonl") as handle:
        for i, line in zip(range(per_source), handle):
            row = json.loads(line)
            labels, options = row["choices"]["label"], row["choices"]["text"]
            answer = options[labels.index(row["answerKey"])]
            docs.append({"text": _mc_text(row["question"], labels, options, answer), "family": "arc_easy",
                         "kind": "knowledge", "format": "multiple_choice", "variant": "answer" if i % 2 else "label"})
    with open(fixtures_hf / "tau/commonsense_qa/default/train.jsonl") as handle:
        for _, line in zip(range(per_source), handle):
            row = json.loads(line)
            labels, options = row["choices"]["label"], row["choices"]["text"]
            answer = options[labels.index(row["answerKey"])]
            docs.append({"text": _mc_text(row["question"], labels, options, answer), "family": "commonsense_qa",
                         "kind": "knowledge", "format": "multiple_choice"})  # no variant: falls back to "all"
    with open(fixtures_hf / "openai/gsm8k/main/train.jsonl") as handle:
        for _, line in zip(range(per_source), handle):
            row = json.loads(line)
            docs.append({"text": f"Question: {row['question']}\nAnswer: {row['answer']}", "family": "gsm8k",
                         "kind": "reasoning", "format": "generative", "variant": "reasoning"})
    return docs


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def tokenizer(model_dir):
    from nemo_taskseed.tokenize.encoder import load_hf_tokenizer

    return load_hf_tokenizer(model_dir)


@pytest.fixture(scope="module")
def documents(fixtures_hf) -> list[dict]:
    return fixture_documents(fixtures_hf)


@pytest.fixture(scope="module")
def tokenized(tmp_path_factory, documents, model_dir):
    """One tokenize run shared by the read-back tests (two input files, three families)."""
    root = tmp_path_factory.mktemp("tokenized")
    files = [write_jsonl(root / "part-0.jsonl", documents[::2]), write_jsonl(root / "part-1.jsonl", documents[1::2])]
    opts = TokenizeOptions(tokenizer_path=str(model_dir), batch_size=16, progress=False)
    manifest = tokenize_files(files, root / "out", opts)
    return manifest, root / "out", files


def _megatron_dataset(prefix: Path):
    return tokenize_megatron.megatron_datasets().IndexedDataset(str(prefix))


def test_tokens_match_the_tokenizer_document_for_document(tokenized, documents, tokenizer):
    manifest, out, files = tokenized
    assert manifest["dtype"] == "uint16" and manifest["tokenizer"]["vocab_size"] == 49152
    eod = tokenizer.eos_token_id
    assert manifest["tokenizer"]["eod_token_id"] == eod

    # Expected per prefix, in input order (file order, then line order).
    expected: dict[str, list[list[int]]] = {}
    for path in files:
        for line in path.read_text().splitlines():
            row = json.loads(line)
            name = f"{row['family']}__{row.get('variant') or 'all'}"
            ids = tokenizer(row["text"], add_special_tokens=False)["input_ids"]
            expected.setdefault(name, []).append(list(ids) + [eod])

    assert sorted(p["name"] for p in manifest["prefixes"]) == sorted(expected) == [
        "arc_easy__answer", "arc_easy__label", "commonsense_qa__all", "gsm8k__reasoning"]
    for entry in manifest["prefixes"]:
        dataset = _megatron_dataset(out / entry["path"])
        want = expected[entry["name"]]
        assert len(dataset) == entry["documents"] == len(want)
        assert entry["tokens"] == sum(map(len, want))
        for i, ids in enumerate(want):
            got = dataset[i]
            assert got.dtype == np.uint16
            assert got.tolist() == ids, f"{entry['name']} document {i}"
        # Decoding the stored tokens gives the original text back.
        first = next(d for d in documents if f"{d['family']}__{d.get('variant') or 'all'}" == entry["name"])
        assert tokenizer.decode(dataset[0][:-1].tolist()) == first["text"]


def test_manifest_records_groups_kinds_and_checksums(tokenized, documents):
    manifest, out, _ = tokenized
    by_name = {p["name"]: p for p in manifest["prefixes"]}
    assert by_name["gsm8k__reasoning"]["group"] == {"family": "gsm8k", "variant": "reasoning"}
    assert by_name["gsm8k__reasoning"]["kind"] == "reasoning"
    assert by_name["commonsense_qa__all"]["kind"] == "knowledge"
    assert manifest["totals"]["documents"] == len(documents)
    assert manifest["totals"]["rejected"] == 0 and not (out / "rejects.jsonl").exists()
    on_disk, root = read_manifest(out)
    assert on_disk == manifest and root == out
    for entry in manifest["prefixes"]:
        assert entry["files"]["bin"]["bytes"] == 2 * entry["tokens"]  # uint16
        assert len(entry["files"]["idx"]["sha256"]) == 64
    assert verify_prefixes(out, manifest) == []


def test_verify_catches_a_corrupted_dataset(tokenized, tmp_path):
    manifest, out, _ = tokenized
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    entry = manifest["prefixes"][0]
    data = bytearray((copy / f"{entry['path']}.bin").read_bytes())
    data[3] ^= 0xFF
    (copy / f"{entry['path']}.bin").write_bytes(bytes(data))
    problems = verify_prefixes(copy, manifest)
    assert problems == [f"{entry['name']}: {copy / entry['path']}.bin checksum differs from the manifest"]


def test_bad_lines_are_rejected_with_file_and_line_and_the_rest_tokenizes(tmp_path, documents, model_dir):
    good = documents[:5]
    path = tmp_path / "mixed.jsonl"
    with open(path, "wb") as handle:
        handle.write((json.dumps(good[0]) + "\n").encode())
        handle.write(b'{"family": "arc_easy", "kind": "knowledge"}\n')            # line 2: no text
        handle.write((json.dumps(good[1]) + "\n").encode())
        handle.write(b'{"text": "   ", "family": "arc_easy"}\n')                # line 4: empty text
        handle.write(b'{"text": "caf\xe9 ", "family": "arc_easy"}\n')           # line 5: latin-1 byte
        handle.write(b'{"text": "cut off\n')                                      # line 6: broken JSON
        handle.write(b'{"text": "no family here"}\n')                            # line 7: no family
        for row in good[2:]:
            handle.write((json.dumps(row) + "\n").encode())
    manifest = tokenize_files([path], tmp_path / "out", TokenizeOptions(str(model_dir), progress=False))
    rejects = [json.loads(x) for x in (tmp_path / "out" / "rejects.jsonl").read_text().splitlines()]
    assert [(r["line"], r["reason"].split(":")[0]) for r in rejects] == [
        (2, "missing field 'text'"), (4, "empty field 'text'"), (5, "undecodable line"),
        (6, "invalid JSON"), (7, "missing grouping field 'family'")]
    assert all(r["file"] == str(path) for r in rejects)
    assert manifest["totals"]["documents"] == 5 and manifest["totals"]["rejected"] == 5
    assert manifest["inputs"] == [{"path": str(path), "accepted": 5, "rejected": 5}]


def test_interrupted_run_leaves_nothing_that_looks_complete(tmp_path, documents, model_dir, monkeypatch):
    src = write_jsonl(tmp_path / "in.jsonl", documents)
    out = tmp_path / "out"
    opts = TokenizeOptions(str(model_dir), batch_size=8, progress=False)
    tokenize_files([src], out, opts)  # a complete earlier run sits in `out`
    assert (out / "manifest.json").is_file()

    calls = {"n": 0}
    real_publish = tokenize_megatron._publish

    def publish_then_die(builder, out_dir):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # killed while moving the second prefix into place
        return real_publish(builder, out_dir)

    monkeypatch.setattr(tokenize_megatron, "_publish", publish_then_die)
    with pytest.raises(KeyboardInterrupt):
        tokenize_files([src], out, opts)
    # No manifest vouches for anything, and no hidden partial folder is left behind.
    assert not (out / "manifest.json").exists()
    assert not list(out.glob(".partial-*"))
    monkeypatch.setattr(tokenize_megatron, "_publish", real_publish)
    manifest = tokenize_files([src], out, opts)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["manifest.json"] + [f"{p['name']}{s}" for p in manifest["prefixes"] for s in (".bin", ".idx")])


def test_worker_processes_write_identical_datasets(tmp_path, documents, model_dir):
    src = write_jsonl(tmp_path / "in.jsonl", documents[:90])
    one = tokenize_files([src], tmp_path / "one", TokenizeOptions(str(model_dir), batch_size=8, progress=False))
    two = tokenize_files([src], tmp_path / "two", TokenizeOptions(str(model_dir), batch_size=8, workers=2,
                                                                  progress=False))
    assert [p["files"] for p in one["prefixes"]] == [p["files"] for p in two["prefixes"]]


def test_group_by_family_only_and_int32(tmp_path, documents, model_dir):
    write_jsonl(tmp_path / "curated.jsonl", documents)
    write_jsonl(tmp_path / "rejected.jsonl", documents[:3])  # a filter folder's rejects are not input
    cfg = load_config(None, ["tokenize.group_by=[family]", "tokenize.dtype=int32", "tokenize.progress=false",
                             f"tokenize.tokenizer={model_dir}"])
    from nemo_taskseed.tokenize.step import run_step

    summary = run_step(cfg, tmp_path, tmp_path / "out")
    assert summary["prefixes"] == 3 and summary["documents"] == len(documents)
    manifest, _ = read_manifest(tmp_path / "out")
    assert manifest["dtype"] == "int32"
    assert sorted(p["name"] for p in manifest["prefixes"]) == ["arc_easy", "commonsense_qa", "gsm8k"]


def test_cli_tokenize_and_verify(tmp_path, documents, model_dir, capsys):
    from nemo_taskseed.cli import main

    src = write_jsonl(tmp_path / "curated.jsonl", documents[:20])
    assert main(["tokenize", str(src), "--out", str(tmp_path / "out"), "--tokenizer", str(model_dir),
                 "--set", "tokenize.progress=false"]) == 0
    assert main(["tokenize", "verify", str(tmp_path / "out")]) == 0
    assert "OK" in capsys.readouterr().out
    assert main(["tokenize", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "o2"),
                 "--tokenizer", str(model_dir)]) == 2
    assert "missing.jsonl" in capsys.readouterr().err
    # --in DIR takes every tokenize.input_glob file; with fail_on_rejects a bad line makes the run fail after writing.
    with open(tmp_path / "curated.jsonl", "a") as handle:
        handle.write('{"family": "x"}\n')
    assert main(["tokenize", "--in", str(tmp_path), "--out", str(tmp_path / "o3"), "--tokenizer", str(model_dir),
                 "-s", "tokenize.progress=false", "-s", "tokenize.fail_on_rejects=true"]) == 1
    assert "rejected" in capsys.readouterr().err
    assert (tmp_path / "o3" / "rejects.jsonl").read_text().count("missing field 'text'") == 1
