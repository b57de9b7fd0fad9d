"""`taskseed tokenize`: fixture-derived documents -> Megatron .bin/.idx, read back token for token;
one shard per input file (per-shard prefixes + done markers), merged on the driver. The same on a
two-node Ray cluster, byte for byte, is in test_multinode.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
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
            docs.append(
                {
                    "text": _mc_text(row["question"], labels, options, answer),
                    "family": "arc_easy",
                    "kind": "knowledge",
                    "format": "multiple_choice",
                    "variant": "answer" if i % 2 else "label",
                }
            )
    with open(fixtures_hf / "tau/commonsense_qa/default/train.jsonl") as handle:
        for _, line in zip(range(per_source), handle):
            row = json.loads(line)
            labels, options = row["choices"]["label"], row["choices"]["text"]
            answer = options[labels.index(row["answerKey"])]
            docs.append(
                {
                    "text": _mc_text(row["question"], labels, options, answer),
                    "family": "commonsense_qa",
                    "kind": "knowledge",
                    "format": "multiple_choice",
                }
            )  # no variant: falls back to "all"
    with open(fixtures_hf / "openai/gsm8k/main/train.jsonl") as handle:
        for _, line in zip(range(per_source), handle):
            row = json.loads(line)
            docs.append(
                {
                    "text": f"Question: {row['question']}\nAnswer: {row['answer']}",
                    "family": "gsm8k",
                    "kind": "reasoning",
                    "format": "generative",
                    "variant": "reasoning",
                }
            )
    return docs


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return path


def tokenize_fixture_documents(root: Path, fixtures_hf: Path, tokenizer: Path, per_source: int = 40, **options) -> Path:
    """`fixture_documents` written to `root/synthetic.jsonl` and tokenized into `root/tok` (its
    manifest's folder, which blend and ablate read) with the real tokenizer; `options` change
    TokenizeOptions fields (e.g. group_by)."""
    write_jsonl(root / "synthetic.jsonl", fixture_documents(fixtures_hf, per_source=per_source))
    settings = TokenizeOptions.from_config(load_config(), str(tokenizer), **{"progress": False, **options})
    tokenize_files([root / "synthetic.jsonl"], root / "tok", settings)
    return root / "tok"


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
    opts = TokenizeOptions.from_config(load_config(), str(model_dir), batch_size=16, progress=False)
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

    assert (
        sorted(p["name"] for p in manifest["prefixes"])
        == sorted(expected)
        == ["arc_easy__answer", "arc_easy__label", "commonsense_qa__all", "gsm8k__reasoning"]
    )
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
    # Tokens per record format, next to those per kind: what blend.format_quotas weighs.
    gsm8k = by_name["gsm8k__reasoning"]
    assert gsm8k["format"] == "generative" and gsm8k["format_tokens"] == {"generative": gsm8k["tokens"]}
    assert by_name["arc_easy__label"]["format_tokens"] == {"multiple_choice": by_name["arc_easy__label"]["tokens"]}
    assert all(
        sum(p["format_tokens"].values()) == sum(p["kind_tokens"].values()) == p["tokens"] for p in by_name.values()
    )
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
        handle.write(b'{"family": "arc_easy", "kind": "knowledge"}\n')  # line 2: no text
        handle.write((json.dumps(good[1]) + "\n").encode())
        handle.write(b'{"text": "   ", "family": "arc_easy"}\n')  # line 4: empty text
        handle.write(b'{"text": "caf\xe9 ", "family": "arc_easy"}\n')  # line 5: latin-1 byte
        handle.write(b'{"text": "cut off\n')  # line 6: broken JSON
        handle.write(b'{"text": "no family here"}\n')  # line 7: no family
        for row in good[2:]:
            handle.write((json.dumps(row) + "\n").encode())
    manifest = tokenize_files(
        [path], tmp_path / "out", TokenizeOptions.from_config(load_config(), str(model_dir), progress=False)
    )
    rejects = [json.loads(x) for x in (tmp_path / "out" / "rejects.jsonl").read_text().splitlines()]
    # Lines that are not UTF-8, JSON or an object are rejected as every JSONL reader does (utils/jsonl.py).
    assert [(r["line"], r["reason"].split(":")[0]) for r in rejects] == [
        (2, "missing field 'text'"),
        (4, "empty field 'text'"),
        (5, "not valid JSON"),
        (6, "not valid JSON"),
        (7, "missing grouping field 'family'"),
    ]
    assert "can't decode byte 0xe9" in rejects[2]["reason"]  # not UTF-8: the byte, and where
    assert all(r["file"] == str(path) for r in rejects)
    assert manifest["totals"]["documents"] == 5 and manifest["totals"]["rejected"] == 5
    assert manifest["inputs"] == [{"path": str(path), "accepted": 5, "rejected": 5}]


def test_interrupted_run_leaves_nothing_that_looks_complete(tmp_path, documents, model_dir, monkeypatch):
    src = write_jsonl(tmp_path / "in.jsonl", documents)
    out = tmp_path / "out"
    opts = TokenizeOptions.from_config(load_config(), str(model_dir), batch_size=8, progress=False)
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
        [".taskseed.lock", "manifest.json", "shards"]  # the folder's run lock (pipeline/lock.py) stays, empty
        + [f"{p['name']}{s}" for p in manifest["prefixes"] for s in (".bin", ".idx")]
    )
    assert not list((out / "shards").glob(".partial-*"))


def test_worker_processes_write_identical_datasets(tmp_path, documents, model_dir):
    src = write_jsonl(tmp_path / "in.jsonl", documents[:90])
    one = tokenize_files(
        [src],
        tmp_path / "one",
        TokenizeOptions.from_config(load_config(), str(model_dir), batch_size=8, progress=False),
    )
    two = tokenize_files(
        [src],
        tmp_path / "two",
        TokenizeOptions.from_config(load_config(), str(model_dir), batch_size=8, workers=2, progress=False),
    )
    assert [p["files"] for p in one["prefixes"]] == [p["files"] for p in two["prefixes"]]


def test_one_large_file_is_tokenized_in_pieces_and_merges_to_the_same_datasets(tmp_path, documents, model_dir):
    """tokenize.shard_bytes cuts a file into shards (`<name>.r00000`, ...) that sort in file order:
    the merged prefixes are byte for byte those of the file tokenized whole."""
    src = write_jsonl(tmp_path / "curated.jsonl", documents[:90])
    opts = TokenizeOptions.from_config(load_config(), str(model_dir), batch_size=8, progress=False)
    whole = tokenize_files([src], tmp_path / "whole", opts)
    opts.shard_bytes = src.stat().st_size // 4
    cut = tokenize_files([src], tmp_path / "cut", opts)
    assert len(whole["shards"]) == 1 and len(cut["shards"]) >= 4
    assert all(s["shard"].startswith("curated.r") for s in cut["shards"])
    assert sum(s["documents"] for s in cut["shards"]) == whole["totals"]["documents"] == 90
    names = sorted(p.name for p in (tmp_path / "whole").glob("*.bin")) + sorted(
        p.name for p in (tmp_path / "whole").glob("*.idx")
    )
    assert names and all((tmp_path / "cut" / n).read_bytes() == (tmp_path / "whole" / n).read_bytes() for n in names)


def test_group_by_family_only_and_int32(tmp_path, documents, model_dir):
    write_jsonl(tmp_path / "curated.jsonl", documents)
    write_jsonl(tmp_path / "rejected.jsonl", documents[:3])  # a filter folder's rejects are not input
    cfg = load_config(
        None,
        [
            "tokenize.group_by=[family]",
            "tokenize.dtype=int32",
            "tokenize.progress=false",
            f"tokenize.tokenizer={model_dir}",
            "run.executor=inline",
        ],
    )  # inherit -> inline
    from nemo_taskseed.tokenize.step import run_step

    summary = run_step(cfg, tmp_path, tmp_path / "out")
    assert summary["prefixes"] == 3 and summary["documents"] == len(documents)
    assert summary["shards"]["executor"] == "inline" and summary["shards"]["run_now"] == 1
    manifest, _ = read_manifest(tmp_path / "out")
    assert manifest["dtype"] == "int32"
    assert sorted(p["name"] for p in manifest["prefixes"]) == ["arc_easy", "commonsense_qa", "gsm8k"]


def test_cli_tokenize_and_verify(tmp_path, documents, model_dir, capsys):
    from nemo_taskseed.cli import main

    src = write_jsonl(tmp_path / "curated.jsonl", documents[:20])
    assert (
        main(
            [
                "tokenize",
                str(src),
                "--out",
                str(tmp_path / "out"),
                "--tokenizer",
                str(model_dir),
                "tokenize.progress=false",
            ]
        )
        == 0
    )
    assert main(["tokenize", "verify", str(tmp_path / "out")]) == 0
    assert "OK" in capsys.readouterr().out
    assert (
        main(
            ["tokenize", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "o2"), "--tokenizer", str(model_dir)]
        )
        == 2
    )
    assert "missing.jsonl" in capsys.readouterr().err
    # --in DIR takes every tokenize.input_glob file; with fail_on_rejects a bad line makes the run fail after writing.
    with open(tmp_path / "curated.jsonl", "a") as handle:
        handle.write('{"family": "x"}\n')
    assert (
        main(
            [
                "tokenize",
                "--in",
                str(tmp_path),
                "--out",
                str(tmp_path / "o3"),
                "--tokenizer",
                str(model_dir),
                "tokenize.progress=false",
                "tokenize.fail_on_rejects=true",
            ]
        )
        == 1
    )
    assert "rejected" in capsys.readouterr().err
    assert (tmp_path / "o3" / "rejects.jsonl").read_text().count("missing field 'text'") == 1


# --- shards: one per input file, tokenized in parallel, merged on the driver ----------------------


def _default_section(*overrides: str):
    return load_config(None, ["tokenize.progress=false", *overrides]).tokenize


def _filter_folder(root: Path, documents: list[dict], parts: int, bad_lines: bool = False) -> Path:
    """A filter step's folder: kept records as curated/part-<shard>.jsonl, plus rejects (never input)."""
    (root / "curated").mkdir(parents=True)
    (root / "rejected").mkdir()
    for i in range(parts):
        path = write_jsonl(root / "curated" / f"part-mix.{i:05d}.jsonl", documents[i::parts])
        if bad_lines and i:
            with open(path, "a") as handle:
                handle.write('{"family": "arc_easy", "kind": "knowledge"}\n')  # no text
    write_jsonl(root / "rejected" / "part-mix.00000.jsonl", documents[:2])
    write_jsonl(root / "rejected.jsonl", documents[:2])
    return root


def _marker_mtimes(out: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in (out / "shards").glob("*.json")}


def test_input_discovery_takes_part_files_and_legacy_files_never_rejects(tmp_path):
    from nemo_taskseed.tokenize.options import TokenizeError
    from nemo_taskseed.tokenize.step import input_files, shard_names

    section = _default_section()
    filt, gen = tmp_path / "filter", tmp_path / "generate"
    for rel in [
        "curated/part-a.00000.jsonl",
        "curated/part-b.00000.jsonl",
        "curated.jsonl",
        "rejected/part-a.00000.jsonl",
        "rejected.jsonl",
        "generated/part-a.00000.jsonl",
        "summary.json",
    ]:
        (filt / rel).parent.mkdir(parents=True, exist_ok=True)
        (filt / rel).write_text("{}\n")
    # Curated records win over generated ones; rejects are never input.
    assert {p.relative_to(filt).as_posix() for p in input_files(section, filt)} == {
        "curated/part-a.00000.jsonl",
        "curated/part-b.00000.jsonl",
        "curated.jsonl",
    }
    for rel in [
        "generated/part-a.00000.jsonl",
        "generated.jsonl",
        "rejected/part-a.00000.jsonl",
        "rejected_seeds.jsonl",
    ]:
        (gen / rel).parent.mkdir(parents=True, exist_ok=True)
        (gen / rel).write_text("{}\n")
    assert {p.relative_to(gen).as_posix() for p in input_files(section, gen)} == {
        "generated/part-a.00000.jsonl",
        "generated.jsonl",
    }
    # A flat list is a union, and even a catch-all pattern skips rejects.
    assert {p.name for p in input_files(_default_section("tokenize.input_glob=['**/*.jsonl']"), gen)} == {
        "part-a.00000.jsonl",
        "generated.jsonl",
    }
    (tmp_path / "empty" / "rejected").mkdir(parents=True)
    (tmp_path / "empty" / "rejected.jsonl").write_text("{}\n")
    with pytest.raises(TokenizeError, match="curated/part-"):
        input_files(section, tmp_path / "empty")
    # The output folder is never the input's: its shards/ would clash with the producing step's markers.
    with pytest.raises(TokenizeError, match="inside the output folder"):
        tokenize_files(input_files(section, filt), filt, TokenizeOptions.from_config(load_config(), "unused"))
    # Shard names: part-<shard> keeps its name, other files their stem; clashes get a suffix.
    assert shard_names(
        [
            Path("x/curated/part-arc_easy.00003.jsonl"),
            Path("a/curated.jsonl"),
            Path("b/curated.jsonl"),
            Path("part-odd.json.jsonl"),
        ]
    ) == ["arc_easy.00003", "curated", "curated-2", "odd_json"]


def test_part_files_merge_to_the_tokenization_of_their_concatenation(tmp_path, documents, model_dir, tokenizer):
    from nemo_taskseed.tokenize.step import input_files, tokenize_inputs

    src = _filter_folder(tmp_path / "filter", documents, parts=3, bad_lines=True)
    section = _default_section(f"tokenize.tokenizer={model_dir}", "tokenize.batch_size=16")
    files = input_files(section, src)
    assert [f.name for f in files] == ["part-mix.00000.jsonl", "part-mix.00001.jsonl", "part-mix.00002.jsonl"]
    out = tmp_path / "out"
    manifest, run = tokenize_inputs(section, out, in_dir=src, run_executor="inline")
    assert run["executor"] == "inline" and run["run_now"] == 3 and len(run["nodes"]) == 1

    concat = tmp_path / "all.jsonl"
    concat.write_bytes(b"".join(f.read_bytes() for f in files))
    single = tokenize_files(
        [concat],
        tmp_path / "single",
        TokenizeOptions.from_config(load_config(), str(model_dir), progress=False),
        hf_tokenizer=tokenizer,
    )
    summary = {p["name"]: (p["documents"], p["tokens"], p["files"]) for p in manifest["prefixes"]}
    assert summary == {p["name"]: (p["documents"], p["tokens"], p["files"]) for p in single["prefixes"]}
    assert manifest["totals"]["documents"] == len(documents) and len(manifest["prefixes"]) == 4
    for entry in manifest["prefixes"]:
        merged, whole = _megatron_dataset(out / entry["path"]), _megatron_dataset(tmp_path / "single" / entry["path"])
        assert len(merged) == len(whole) == entry["documents"]
        assert all(np.array_equal(merged[i], whole[i]) for i in range(len(merged)))

    # Per shard: its prefixes under shards/<shard>/ and a done marker beside them.
    for i, path in enumerate(files):
        shard = f"mix.{i:05d}"
        marker = json.loads((out / "shards" / f"{shard}.json").read_text())
        assert marker["shard"] == shard and marker["node_id"] == marker["worker"]["node_id"]
        assert marker["inputs"] == [{"path": str(path), "accepted": len(documents[i::3]), "rejected": int(i > 0)}]
        assert marker["prefixes"] and all(e["path"].startswith(f"shards/{shard}/") for e in marker["prefixes"])
        assert all((out / f"{e['path']}.idx").is_file() for e in marker["prefixes"])
    assert [s["shard"] for s in manifest["shards"]] == ["mix.00000", "mix.00001", "mix.00002"]
    # Rejects from every shard, merged in shard order, with file and line.
    rejects = [json.loads(x) for x in (out / "rejects.jsonl").read_text().splitlines()]
    assert [(Path(r["file"]).name, r["line"], r["reason"]) for r in rejects] == [
        (files[1].name, len(documents[1::3]) + 1, "missing field 'text'"),
        (files[2].name, len(documents[2::3]) + 1, "missing field 'text'"),
    ]
    assert manifest["totals"]["rejected"] == 2 and manifest["rejects_file"] == "rejects.jsonl"

    # An empty input into the same folder is an error, and the earlier outputs stay (tokenizing
    # nothing used to "finish" by removing every prefix as stale).
    from nemo_taskseed.tokenize.options import TokenizeError

    before = sorted(p.relative_to(out) for p in out.rglob("*.bin"))
    empty = tmp_path / "empty" / "curated"
    empty.mkdir(parents=True)
    (empty / "part-mix.00000.jsonl").write_text("\n")
    with pytest.raises(TokenizeError, match="hold no documents .* the outputs already in .* are left as they are"):
        tokenize_inputs(section, out, in_dir=tmp_path / "empty", run_executor="inline")
    assert sorted(p.relative_to(out) for p in out.rglob("*.bin")) == before and before
    assert verify_prefixes(out, manifest) == []


def test_restart_skips_finished_shards_and_tokenizes_only_new_files(tmp_path, documents, model_dir, tokenizer):
    from nemo_taskseed.tokenize import run_tokenize
    from nemo_taskseed.tokenize.step import input_files

    src = _filter_folder(tmp_path / "filter", documents[:60], parts=2)
    section = _default_section()
    opts = TokenizeOptions.from_config(load_config(), str(model_dir), batch_size=16, progress=False)
    out = tmp_path / "out"
    first, run = run_tokenize(input_files(section, src), out, opts, hf_tokenizer=tokenizer)
    assert run["run_now"] == 2
    markers = _marker_mtimes(out)
    assert sorted(markers) == ["mix.00000.json", "mix.00001.json"]

    again, run = run_tokenize(input_files(section, src), out, opts, hf_tokenizer=tokenizer)
    assert (run["run_now"], run["finished_before"]) == (0, 2)
    assert _marker_mtimes(out) == markers
    assert [p["files"] for p in again["prefixes"]] == [p["files"] for p in first["prefixes"]]

    # A shard marker written before prefixes counted their formats is redone, so the merged
    # manifest never lacks (or undercounts) format_tokens.
    old = json.loads((out / "shards" / "mix.00001.json").read_text())
    for entry in old["prefixes"]:
        del entry["format_tokens"]
    (out / "shards" / "mix.00001.json").write_text(json.dumps(old))
    redone, run = run_tokenize(input_files(section, src), out, opts, hf_tokenizer=tokenizer)
    assert (run["run_now"], run["finished_before"]) == (1, 1)
    assert [p["format_tokens"] for p in redone["prefixes"]] == [p["format_tokens"] for p in first["prefixes"]]
    markers = _marker_mtimes(out)

    write_jsonl(src / "curated" / "part-mix.00002.jsonl", documents[60:90])
    third, run = run_tokenize(input_files(section, src), out, opts, hf_tokenizer=tokenizer)
    assert (run["run_now"], run["finished_before"]) == (1, 2)
    now = _marker_mtimes(out)
    assert {k: now[k] for k in markers} == markers and "mix.00002.json" in now
    assert third["totals"]["documents"] == 90
    fresh = tokenize_files(input_files(section, src), tmp_path / "fresh", opts, hf_tokenizer=tokenizer)
    assert [p["files"] for p in third["prefixes"]] == [p["files"] for p in fresh["prefixes"]]

    # A removed input takes its shard with it; settings that shape the output redo every shard.
    (src / "curated" / "part-mix.00000.jsonl").unlink()
    fourth, run = run_tokenize(input_files(section, src), out, opts, hf_tokenizer=tokenizer)
    assert run["run_now"] == 0 and run["removed_stale"] == ["mix.00000"]
    assert not (out / "shards" / "mix.00000").exists() and not (out / "shards" / "mix.00000.json").exists()
    assert fourth["totals"]["documents"] == 60
    opts.group_by = ("family",)
    _, run = run_tokenize(input_files(section, src), out, opts, hf_tokenizer=tokenizer)
    assert run["run_now"] == 2


def test_merge_false_lists_shard_prefixes_and_the_blend_plans_them_as_one_group(
    tmp_path, documents, model_dir, tokenizer
):
    from collections import defaultdict

    from nemo_taskseed.blend import plan_from_config
    from nemo_taskseed.blend.planner import write_plan
    from nemo_taskseed.tokenize import run_tokenize
    from nemo_taskseed.tokenize.step import input_files

    documents = [dict(d) for d in documents]
    first_gsm8k = next(i for i, d in enumerate(documents) if d["family"] == "gsm8k" and i % 3 == 0)
    documents[first_gsm8k]["kind"] = "knowledge"  # gsm8k is "mixed" as a whole, not in every shard
    src = _filter_folder(tmp_path / "filter", documents, parts=3)
    files = input_files(_default_section(), src)
    out = tmp_path / "tok"
    merged = tokenize_files(
        files, out, TokenizeOptions.from_config(load_config(), str(model_dir), progress=False), hf_tokenizer=tokenizer
    )
    blend_cfg = load_config(
        None,
        [
            f"blend.manifest={out}",
            "blend.synthetic_share=1",
            "blend.total_tokens=1000000",
            "blend.seq_length=256",
            "blend.max_epochs=null",
            "blend.plot=false",
            # Mixed by size (what this test is about), not the paper's quotas and caps, which
            # four ARC/CSQA/GSM8K groups of one kind each cannot meet.
            "blend.max_share=null",
            "blend.min_share=0",
            "blend.group_quotas=null",
            "blend.format_quotas=null",
            "blend.variants=all",
        ],
    ).blend
    merged_plan = plan_from_config(blend_cfg)

    manifest, run = run_tokenize(
        files,
        out,
        TokenizeOptions.from_config(load_config(), str(model_dir), progress=False, merge=False),
        hf_tokenizer=tokenizer,
    )
    assert run["run_now"] == 0  # switching merge off reuses the shards
    assert not list(out.glob("*.bin")) and not list(out.glob("*.idx"))  # nothing merged is vouched for now
    assert manifest["merged"] is False and manifest["totals"]["tokens"] == merged["totals"]["tokens"]
    entries = manifest["prefixes"]
    assert len(entries) == 12  # 4 groups x 3 shards
    for entry in entries:
        assert entry["path"] == f"shards/{entry['shard']}/{entry['group_name']}"
        assert entry["name"] == f"{entry['group_name']}@{entry['shard']}" and "family" in entry["group"]
    # A shard entry carries its group's kind, so all shards of a group land in one quota group.
    assert {e["shard"]: e["kind"] for e in entries if e["group_name"] == "gsm8k__reasoning"} == {
        "mix.00000": "mixed",
        "mix.00001": "mixed",
        "mix.00002": "mixed",
    }
    # ... and its own tokens per format (the blend weighs each shard's formats as they are).
    assert all(sum(e["format_tokens"].values()) == e["tokens"] for e in entries)
    merged_formats = {p["name"]: p["format_tokens"] for p in merged["prefixes"]}
    for name, formats in merged_formats.items():
        shards = [e["format_tokens"] for e in entries if e["group_name"] == name]
        assert {f: sum(s.get(f, 0) for s in shards) for f in formats} == formats
    assert verify_prefixes(out, manifest) == []

    plan = plan_from_config(blend_cfg)
    assert sorted(p for _, p in plan["data_paths"]) == sorted(str((out / e["path"]).resolve()) for e in entries)
    # Each family/variant gets what the merged plan gave its one prefix, split over its shards by size.
    want = {(e["family"], e["variant"]): e["tokens"] for e in merged_plan["entries"]}
    got, epochs = defaultdict(int), defaultdict(list)
    for e in plan["entries"]:
        got[(e["family"], e["variant"])] += e["tokens"]
        epochs[(e["family"], e["variant"])].append(e["epochs"])
    assert set(got) == set(want) and all(abs(got[k] - want[k]) <= 3 for k in want)
    assert all(max(v) - min(v) < 1e-3 * max(v) for v in epochs.values())
    written = write_plan(plan, tmp_path / "plan", blend_cfg)
    data_args = Path(written["data_args"]).read_text()
    assert all(str((out / e["path"]).resolve()) in data_args for e in entries)


_THREADS_SCRIPT = """
import json, os, sys, threading
from dataclasses import asdict
import pandas as pd
from nemo_curator.tasks import DocumentBatch
from nemo_taskseed.tokenize.encoder import load_hf_tokenizer, tokenizer_fingerprint
from nemo_taskseed.tokenize.options import ShardSpec
from nemo_taskseed.tokenize.stages import TASK_COLUMNS, TokenizeShardStage

model, src, out = sys.argv[1:4]
spec = ShardSpec(model, tokenizer_fingerprint(model), "text", ("family", "variant"), ("variant",), "all", False, 0, "int32")
tokenizer = load_hf_tokenizer(model)  # loaded first: loading starts threads of its own (an allocator's, ...)
native = lambda: len(os.listdir("/proc/self/task")) - threading.active_count()  # not Python's (tqdm's monitor)
# Pinned first: the tokenizer's thread pool, once started, stays for the life of the process.
for pinned in (True, False):
    stage = TokenizeShardStage(out_dir=out, spec=asdict(spec), threads_per_reserved_cpu=pinned, hf_tokenizer=tokenizer)
    os.environ["TOKENIZERS_PARALLELISM"] = "true"  # as a user may have set it
    shard = "pinned" if pinned else "unpinned"
    task = DocumentBatch(dataset_name=shard, data=pd.DataFrame([[shard, src, src, "fp", None]], columns=TASK_COLUMNS))
    before = native()
    result = stage.process(task).to_pandas()
    print(json.dumps({"pinned": pinned, "threads_added": native() - before, "documents": int(result["documents"][0])}))
"""


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="the tokenizer starts no extra threads on one core")
@pytest.mark.subprocess
def test_a_ray_task_tokenizes_on_the_one_cpu_it_reserved(tmp_path, documents, model_dir):
    """A shard task on Ray reserved one CPU (`tokenize.workers=1`). Pinned (what `run_tokenize`
    asks of every executor but inline), it starts no tokenizer thread, even with
    TOKENIZERS_PARALLELISM=true set by the user; unpinned, the fast tokenizer starts a native thread
    per core of the node on its first batch. Both write every document. Observed in a fresh
    process: this one's tokenizer threads may exist already."""
    src = write_jsonl(tmp_path / "in.jsonl", documents)
    proc = subprocess.run(
        [sys.executable, "-c", _THREADS_SCRIPT, str(model_dir), str(src), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    pinned, unpinned = (json.loads(line) for line in proc.stdout.strip().splitlines()[-2:])
    assert pinned["pinned"] and pinned["threads_added"] == 0, pinned
    assert not unpinned["pinned"] and unpinned["threads_added"] >= 2, unpinned
    assert pinned["documents"] == unpinned["documents"] == len(documents)
