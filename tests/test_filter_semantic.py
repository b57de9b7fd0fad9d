"""Paraphrase-aware decontamination on real fixture rows: rule-made paraphrases of real test items
(ARC-Easy, CommonsenseQA, GSM8K, OpenBookQA) planted among real training items, checked by the real
embedding model and faiss index through the filter stage. The model is loaded once per module."""

from __future__ import annotations

import json
import random
import re

import pandas as pd
import pytest
from nemo_curator.tasks import DocumentBatch
from test_filter_fixtures import fixture_rows, gsm8k_fields, make_generated, make_seed, mc_fields

from nemo_taskseed.config import load_config, to_container
from nemo_taskseed.filter.indexes import ensure_decontam_index, ensure_semantic_index
from nemo_taskseed.filter.records import KEPT, records_to_frame
from nemo_taskseed.filter.semantic.check import SemanticSettings
from nemo_taskseed.filter.semantic.dedup import SemanticDedupSettings
from nemo_taskseed.filter.semantic.stage import SemanticDecontaminationStage
from nemo_taskseed.filter.semantic.views import item_windows
from nemo_taskseed.llm.backends import Backend, Completion, Usage, as_feed

# filter.dedup.semantic as configs/base sets it.
DEDUP = SemanticDedupSettings.from_config(load_config())

SOURCES = [  # (family, dataset, config, scored split, training split, fields)
    ("arc", "allenai/ai2_arc", "ARC-Easy", "test", "train", mc_fields),
    ("commonsense_qa", "tau/commonsense_qa", "default", "validation", "train", mc_fields),
    ("gsm8k", "openai/gsm8k", "main", "test", "train", gsm8k_fields),
    ("openbookqa", "allenai/openbookqa", "main", "test", "train", mc_fields),
]
PLANTED_PER_BENCHMARK = 50
JUDGED = slice(2 * PLANTED_PER_BENCHMARK, 2 * PLANTED_PER_BENCHMARK + 6)  # six GSM8K paraphrases
CLEAN_PER_FAMILY = 75

# Rule-made paraphrases: synonym swaps, changed numbers and names, dropped words, clause reordering.
SYNONYMS = {
    "largest": "biggest",
    "large": "big",
    "small": "little",
    "most": "mostly",
    "best": "most accurately",
    "explains": "describes",
    "Which": "What",
    "which": "what",
    "people": "folks",
    "buy": "purchase",
    "uses": "utilizes",
    "use": "utilize",
    "makes": "produces",
    "help": "assist",
    "shows": "demonstrates",
    "likely": "probably",
    "student": "pupil",
    "students": "pupils",
    "each": "every",
    "total": "overall",
    "many": "numerous",
    "starts": "begins",
    "start": "begin",
    "found": "discovered",
    "fast": "quickly",
    "made": "created",
    "after": "following",
    "before": "prior to",
    "wants": "would like",
    "needs": "requires",
    "because": "since",
    "bought": "purchased",
    "gets": "receives",
    "has": "possesses",
    "How": "In what way",
}
NAMES = ["Maria", "Tom", "Aisha", "Kenji", "Olga", "Pedro"]
DROPPABLE = {"the", "very", "a", "that", "also", "really"}


def paraphrase(question: str, rng: random.Random, word_problem: bool = False) -> str:
    """A reworded question: synonyms swapped, numbers changed, filler words dropped, the last
    sentence's clauses reordered, and (word problems) the people renamed consistently."""
    words = [t.strip(".,?!:;'s") for t in question.split()]
    names: dict[str, str] = {}
    if word_problem:  # a capitalized word met twice in a word problem is a person ("Raymond ... Raymond")
        people = sorted(
            {
                w
                for w in words
                if w[:1].isupper()
                and w.isalpha()
                and words.count(w) >= 2
                and w not in SYNONYMS
                and w.lower() not in DROPPABLE | {"he", "she", "they", "if", "how"}
            }
        )
        names = {p: NAMES[i % len(NAMES)] for i, p in enumerate(people)}
    out: list[str] = []
    for token in question.split():
        core = token.strip(".,?!:;")
        base = core[:-2] if core.endswith("'s") else core
        if base in names:
            token = token.replace(base, names[base])
        elif core in SYNONYMS and rng.random() < 0.8:
            token = token.replace(core, SYNONYMS[core])
        elif re.fullmatch(r"\d+", core):
            token = token.replace(core, str(int(core) + rng.randint(1, 5)))
        elif core.lower() in DROPPABLE and rng.random() < 0.4:
            continue
        out.append(token)
    text = " ".join(out)
    # The last sentence "X, Y?" becomes "Y, x?" (half of the time).
    head_text, _, last = text.rpartition(". ")
    if ", " in last and rng.random() < 0.5:
        first, rest = last.split(", ", 1)
        end = rest[-1] if rest[-1] in "?." else ""
        rest = rest.rstrip("?.")
        last = rest[:1].upper() + rest[1:] + ", " + first[:1].lower() + first[1:] + end
    return f"{head_text}. {last}" if head_text else last


@pytest.fixture(scope="module")
def semantic(fixtures_hf, tmp_path_factory):
    """The benchmark indexes of the four benchmarks (n-gram and embedding), built as the step builds them."""
    work = tmp_path_factory.mktemp("semantic_work")
    dc = {
        "benchmarks": [{"name": f, "task_dirs": [f]} for f, *_ in SOURCES],
        "extra_benchmarks": [],
        "source": "mirror",
        "mirror": str(fixtures_hf),
        "include_paths": [],
        "ngram_size": 13,
        "short_min_words": 8,
        "unordered": True,
        "semantic": to_container(load_config())["filter"]["decontam"]["semantic"],  # the defaults
    }
    _, info = ensure_decontam_index(dc, work)
    prefix, sem_info = ensure_semantic_index(SemanticSettings.from_config(dc["semantic"]), work, info)
    return {"dc": dc, "prefix": prefix, "info": sem_info, "work": work}


@pytest.fixture(scope="module")
def records(fixtures_hf):
    rng = random.Random(13)
    planted, clean = [], []
    for family, dataset, config, scored, train, fields in SOURCES:
        test_rows = fixture_rows(fixtures_hf, dataset, config, scored)[:PLANTED_PER_BENCHMARK]
        train_rows = fixture_rows(fixtures_hf, dataset, config, train)
        seed = make_seed(family, family, fields(train_rows[0]), 0)
        for i, row in enumerate(test_rows):
            item = fields(row)
            item["question"] = paraphrase(item["question"], rng, word_problem=not item.get("options"))
            if item.get("options"):  # options reordered too: the check must not depend on their order
                order = list(range(len(item["options"])))
                rng.shuffle(order)
                item["options"] = [item["options"][j] for j in order]
                item["answer_index"] = order.index(item["answer_index"])
            planted.append(make_generated(seed, item, sample_index=i))
        # Real items the benchmark does not score: what clean generated items look like.
        for i, row in enumerate(train_rows[100 : 100 + CLEAN_PER_FAMILY]):
            clean.append(make_generated(seed, fields(row), sample_index=1000 + i))
    return planted, clean


def _run_stage(semantic, recs, shard="part-00000", judge=None, cache_dir="") -> pd.DataFrame:
    return _run_stage_task(semantic, recs, shard, judge, cache_dir).to_pandas()


def _run_stage_task(semantic, recs, shard="part-00000", judge=None, cache_dir="") -> DocumentBatch:
    # With a judge, every pair from 0.6 up is in the review band (the judge decides it); without,
    # the configured levels.
    # GSM8K paraphrases are used there (JUDGED): their numbers changed, so no window copies a test row
    # exactly (an unchanged ARC question scores 1.0 and is dropped without asking).
    levels = {"threshold": 0.99, "review_threshold": 0.6} if judge is not None else {}
    stage = SemanticDecontaminationStage(
        index_prefix=semantic["prefix"],
        settings=SemanticSettings.from_config(
            semantic["dc"]["semantic"],
            judge={**semantic["dc"]["semantic"]["judge"], "enabled": judge is not None},
            **levels,
        ),
        judge_backend=judge,
        cache_dir=cache_dir,
    )
    stage.setup()
    task = DocumentBatch(dataset_name=shard, data=records_to_frame(recs), _metadata={"shard": shard})
    return stage.process(task)


def test_paraphrases_of_test_items_are_caught_and_clean_items_kept(semantic, records):
    planted, clean = records
    assert semantic["info"]["rows"] >= 4 * 100  # every scored split of the four benchmarks was embedded
    df = _run_stage(semantic, planted + clean)
    planted_ids = {r["id"] for r in planted}
    is_planted = df["id"].isin(planted_ids)
    caught = (df[is_planted]["status"] != KEPT).mean()
    flagged_clean = (df[~is_planted]["status"] != KEPT).mean()
    per_family = df[is_planted].groupby("family")["status"].apply(lambda s: round(float((s != KEPT).mean()), 3))
    print(
        f"semantic decontam: caught {caught:.3f} of {is_planted.sum()} paraphrases {dict(per_family)}, "
        f"flagged {flagged_clean:.4f} of {(~is_planted).sum()} clean items"
    )
    assert caught >= 0.95
    assert flagged_clean <= 0.01
    # Every flagged pair names the benchmark row and carries both texts, the score and the verdict.
    rejected = df[df["status"] != KEPT]
    assert set(rejected["stage"]) == {"semantic_decontam"} and set(rejected["reason"]) == {"benchmark_paraphrase"}
    by_question = {r["id"]: r for r in planted}
    for row in rejected[rejected["id"].isin(planted_ids)].itertuples():
        detail = json.loads(row.detail)
        assert detail["verdict"] == "above_threshold" and detail["score"] >= 0.8
        # The evidence names the item's window that matched, and its text.
        windows = dict(
            item_windows(by_question[row.id], SemanticSettings.from_config(semantic["dc"]["semantic"]).windows)
        )
        assert windows[detail["window"]] == detail["item_text"]
        assert detail["benchmark"] in {f for f, *_ in SOURCES} and detail["benchmark_text"]
    # The paraphrase of the first ARC test item is matched to that very row.
    first = json.loads(df[df["id"] == planted[0]["id"]]["detail"].iloc[0])
    assert (first["benchmark"], first["split"], first["row"]) == ("arc", "allenai/ai2_arc/ARC-Easy:test", 0)


def test_evidence_is_identical_across_runs_and_shardings(semantic, records):
    planted, _ = records
    sample = planted[::4]
    once = _run_stage(semantic, sample)
    # Second run: the same records split over two shards in another order (other embedding batches).
    half = len(sample) // 2
    twice = _run_stage(semantic, sample[half:][::-1], shard="b")
    twice = pd.concat([twice, _run_stage(semantic, sample[:half], shard="a")])
    a = {r.id: (r.status, r.reason, r.detail) for r in once.itertuples()}
    b = {r.id: (r.status, r.reason, r.detail) for r in twice.itertuples()}
    assert a == b and sum(s != KEPT for s, _, _ in a.values()) >= 0.9 * len(sample)


class _AnswerNoBackend(Backend):
    """A judge that says "no" to every pair: the pairs must be kept and still reported. (The judge's
    plumbing is what is tested; a real model's verdicts are its own.)"""

    name = "rule-judge"

    def __init__(self) -> None:
        super().__init__("rule-judge")
        self.prompts: list[str] = []

    def stream(self, requests):
        feed = as_feed(requests)
        while batch := feed.take(8):
            for request in batch:
                self.prompts.append(request.messages[-1]["content"])
                yield from feed.hand_out(Completion(request, ["No."], Usage(requests=1, completions=1)))


def test_judge_verdict_keeps_rejected_pairs_and_reports_them(semantic, records):
    from nemo_taskseed.filter.report import contamination_rows

    planted, _ = records
    judge = _AnswerNoBackend()
    df = _run_stage(semantic, planted[JUDGED], judge=judge)
    assert (df["status"] == KEPT).all() and len(judge.prompts) >= 5
    assert any(planted[JUDGED][0]["question"].split()[0] in p for p in judge.prompts)
    rows = contamination_rows(df)
    assert len(rows) == len(judge.prompts)
    assert {r["verdict"] for r in rows} == {"judge_rejected"} and all(r["judge_answer"] == "No." for r in rows)


def test_a_restarted_shard_does_not_ask_the_judge_again(semantic, records, tmp_path):
    """The judge's verdicts are committed to the shard's own cache (`<cache_dir>/<shard>.judge.sqlite`):
    the same shard run again (a restart after a kill) reads them instead of asking the judge, and
    reaches the same verdicts; another shard has its own file."""
    from nemo_taskseed.filter.report import contamination_rows

    planted, _ = records
    first, again, other = _AnswerNoBackend(), _AnswerNoBackend(), _AnswerNoBackend()
    task = _run_stage_task(semantic, planted[JUDGED], shard="s1", judge=first, cache_dir=str(tmp_path))
    asked = len(first.prompts)
    assert asked >= 5 and (tmp_path / "s1.judge.sqlite").is_file()
    # The counts travel with the shard to its phase-1 marker and the step's summary.
    assert task._metadata["requests.judge"] == {"total": asked, "cached": 0, "sent": asked, "refused": 0}
    again_task = _run_stage_task(semantic, planted[JUDGED], shard="s1", judge=again, cache_dir=str(tmp_path))
    assert again.prompts == []
    assert again_task._metadata["requests.judge"] == {"total": asked, "cached": asked, "sent": 0, "refused": 0}
    assert contamination_rows(again_task.to_pandas()) == contamination_rows(task.to_pandas())
    _run_stage(semantic, planted[JUDGED], shard="s2", judge=other, cache_dir=str(tmp_path))
    assert sorted(other.prompts) == sorted(first.prompts)


def test_verdict_parsing():
    from nemo_taskseed.filter.semantic.check import parse_verdict

    assert parse_verdict(" Yes, it is.") == "judge_confirmed"
    assert parse_verdict("no") == "judge_rejected"
    assert parse_verdict("maybe") == "judge_unclear"


def _embedded(records, embedder):
    from nemo_taskseed.filter.semantic import item_text
    from nemo_taskseed.filter.semantic.store import Embedded

    texts = [item_text(r) for r in records]
    return Embedded(
        [r["lineage"]["item_id"] if "lineage" in r else r["id"] for r in records],
        [r.get("seed_id", r["id"]) for r in records],
        [r["family"] for r in records],
        texts,
        embedder.embed(texts),
    )


def test_semantic_dedup_ignores_option_order_and_shard_size(records):
    from nemo_taskseed.filter.semantic import Embedder
    from nemo_taskseed.filter.semantic.dedup import SemanticDedupSettings, semantic_duplicates
    from nemo_taskseed.filter.semantic.store import Embedded

    _, clean = records
    embedder = Embedder()
    # Copies of 8 real items with their options reversed (a new item id each).
    mc = [r for r in clean if r.get("options")][:8]
    copies = []
    for i, r in enumerate(mc):
        fields = {k: r[k] for k in ("question", "answer_text")}
        fields.update(options=r["options"][::-1], answer_index=len(r["options"]) - 1 - r["answer_index"])
        seed = {
            "id": r["seed_id"],
            "family": r["family"],
            "task": r["task"],
            "kind": r["kind"],
            "license": r["license"],
        }
        copies.append(make_generated(seed, fields, sample_index=500 + i))
    sample = [r for k, r in enumerate(clean) if k % CLEAN_PER_FAMILY < 30]  # 30 real items per family
    everything = sample + copies
    # Shard sizes 1 (and the rest) vs 37: embeddings made in different batches, items in another order.
    one = Embedded.concat([_embedded([r], embedder) for r in everything[:10]] + [_embedded(everything[10:], embedder)])
    other = Embedded.concat([_embedded(everything[k : k + 37], embedder) for k in range(0, len(everything), 37)][::-1])
    a = semantic_duplicates(one, Embedded(), DEDUP, 0.95)
    b = semantic_duplicates(other, Embedded(), DEDUP, 0.95)
    assert [(d.item_id, d.reason, d.detail) for d in a] == [(d.item_id, d.reason, d.detail) for d in b]
    # The clustered path (forced: 4 k-means buckets) on the same two batchings decides the same.
    forced = SemanticDedupSettings.from_config(load_config(), exact_max_items=0, cluster_size=32)
    ca, cb = (
        semantic_duplicates(one, Embedded(), forced),
        semantic_duplicates(other, Embedded(), forced),
    )
    assert [(d.item_id, d.reason, d.detail) for d in ca] == [(d.item_id, d.reason, d.detail) for d in cb]
    assert [(d.item_id, d.reason, d.detail) for d in ca] == [(d.item_id, d.reason, d.detail) for d in a]
    # Each copy and its original are one cluster; the smaller item id survives; nothing else is
    # merged among 120 real training items of four datasets.
    pairs = {frozenset((c["lineage"]["item_id"], r["lineage"]["item_id"])) for c, r in zip(copies, mc)}
    assert {frozenset((d.item_id, d.detail["kept_item_id"])) for d in a} == pairs
    assert all(d.item_id > d.detail["kept_item_id"] and d.detail["score"] >= 0.99 for d in a)
    # Against the seeds: an item that restates its seed is a copy of it.
    seeds = _embedded(mc[:2], embedder)
    seeds.ids = seeds.seed_ids = [r["seed_id"] for r in mc[:2]]
    found = semantic_duplicates(_embedded(copies[:2] + clean[100:110], embedder), seeds, DEDUP, 0.95)
    assert sorted(d.item_id for d in found if d.reason == "semantic_copy_of_seed") == sorted(
        c["lineage"]["item_id"] for c in copies[:2]
    )


@pytest.fixture(scope="module")
def dedup_set(records):
    """~600 embedded items with real near copies: the 500 planted and clean items, a rule-made
    paraphrase of 80 clean items and 20 clean items with their options reversed (a copy's seed is its
    original's), plus 4 of the originals as seeds. Embeddings cached (`cached_embeddings`)."""
    from nemo_taskseed.filter.indexes import cached_embeddings
    from nemo_taskseed.filter.semantic import Embedder, item_text
    from nemo_taskseed.filter.semantic.store import Embedded

    planted, clean = records
    rng = random.Random(7)
    copies = []
    for i, r in enumerate(clean[:100]):
        fields = {k: r[k] for k in ("question", "answer_text", "options", "answer_index")}
        if i < 80:
            fields["question"] = paraphrase(r["question"], rng, word_problem=not r.get("options"))
        elif r.get("options"):
            fields.update(options=r["options"][::-1], answer_index=len(r["options"]) - 1 - r["answer_index"])
        seed = {k: r[k] for k in ("family", "task", "kind", "license")} | {"id": r["seed_id"]}
        copies.append(make_generated(seed, fields, sample_index=700 + i))
    seen = {r["lineage"]["item_id"] for r in planted + clean}
    recs = planted + clean + [c for c in copies if c["lineage"]["item_id"] not in seen]  # unchanged: same id
    texts = [item_text(r) for r in recs]
    vectors, _ = cached_embeddings(Embedder(), texts)
    items = Embedded(
        [r["lineage"]["item_id"] for r in recs],
        [r["seed_id"] for r in recs],
        [r["family"] for r in recs],
        texts,
        vectors,
    )
    seeds = items.select([280, 281, 282, 283])  # four originals of option-reversed copies, as seeds
    seeds.ids = [f"seed-{k}" for k in range(4)]
    return items, seeds


def _exact_pairs(items, threshold=0.95):
    from nemo_taskseed.filter.semantic.index import flat_index

    lims, dist, nbr = flat_index(items.vectors).range_search(items.vectors, threshold - 1e-4)
    return {
        frozenset((items.ids[a], items.ids[int(b)]))
        for a in range(len(items.ids))
        for s, b in zip(dist[lims[a] : lims[a + 1]], nbr[lims[a] : lims[a + 1]])
        if a != int(b) and round(float(s), 4) >= threshold
    }


def test_clustered_semantic_dedup_finds_what_the_exact_path_finds(dedup_set):
    """k-means buckets (cluster_size 60: ~10 buckets for 600 items) against the exact all-pairs path."""
    from nemo_taskseed.filter.semantic.dedup import (
        LAST_STATS,
        SemanticDedupSettings,
        _exact,
        assign,
        semantic_duplicates,
        train_centroids,
    )

    items, seeds = dedup_set
    exact = _exact(items, seeds, 0.95)
    # The default settings keep a run this small on the exact path: small runs decide as before.
    assert semantic_duplicates(items, seeds, DEDUP, 0.95) == exact
    pairs = _exact_pairs(items)
    assert len(pairs) >= 60 and sum(d.reason == "semantic_copy_of_seed" for d in exact) >= 4
    results = {}
    for margin in (0.0, 0.02):
        forced = SemanticDedupSettings.from_config(
            load_config(), exact_max_items=0, cluster_size=60, second_margin=margin
        )
        drops = semantic_duplicates(items, seeds, forced)
        assert LAST_STATS["centroids"] == 10 and LAST_STATS["largest_bucket"] < 0.4 * len(items.ids)
        # pair recall: exact pairs whose items share a bucket
        first, second = assign(items.vectors, train_centroids([_MemPart(items)], forced), margin)
        where = {i: {int(a)} | ({int(b)} if b >= 0 else set()) for i, a, b in zip(items.ids, first, second)}
        found = sum(bool(where[a] & where[b]) for a, b in map(tuple, pairs))
        results[margin] = (found / len(pairs), drops)
        print(
            f"clustered semantic dedup, margin {margin}: pair recall {found}/{len(pairs)}, drops {len(drops)} vs {len(exact)}"
        )
    assert results[0.0][0] >= 0.9 and results[0.02][0] >= 0.97
    # What the clustered path drops, the exact path drops too, for the same reason and with the same
    # kept item (a missed pair can only keep an item, never drop a different one).
    exact_by_id = {d.item_id: d for d in exact}
    for d in results[0.02][1]:
        assert d.item_id in exact_by_id and d.reason == exact_by_id[d.item_id].reason
    assert len(results[0.02][1]) >= 0.95 * len(exact)


class _MemPart:
    def __init__(self, emb):
        import numpy as np

        from nemo_taskseed.filter.dedup.sharded import key_of

        self.count, self.keep = len(emb.ids), np.ones(len(emb.ids), dtype=bool)
        self.keys = np.array([key_of(i) for i in emb.ids], dtype=np.uint64)
        self._vectors = emb.vectors

    def vectors(self):
        return self._vectors


def test_sharded_semantic_dedup_ignores_shard_size_and_order(dedup_set, tmp_path):
    """The same items saved as shards two ways (sizes 1 and 250 vs 37, in another order): the
    clustered path over the files drops the same items with the same evidence; each drop names the
    shard that holds the item; exclusions (items dropped already, children of a contaminated seed)
    take no part."""
    from nemo_taskseed.filter.semantic.dedup import (
        SemanticDedupSettings,
        semantic_duplicates,
        semantic_duplicates_sharded,
    )

    items, seeds = dedup_set
    seeds.save(tmp_path / "seeds")
    n = len(items.ids)
    layouts = {
        "a": [list(range(k, k + 1)) for k in range(10)] + [list(range(k, min(n, k + 250))) for k in range(10, n, 250)],
        "b": [list(range(k, min(n, k + 37))) for k in range(0, n, 37)][::-1],
    }
    excluded_item = items.ids[5]
    dirty_seed = items.seed_ids[450]  # one family's seed: its children are out
    results = {}
    for name, layout in layouts.items():
        prefixes, excluded = [], {}
        for k, rows in enumerate(layout):
            prefix = tmp_path / name / f"part-{k:05d}"
            prefix.parent.mkdir(exist_ok=True)
            items.select(rows[::-1]).save(prefix)
            prefixes.append(prefix)
            if 5 in rows:
                excluded[k] = {excluded_item}
        forced = SemanticDedupSettings.from_config(load_config(), exact_max_items=0, cluster_size=60)
        drops = semantic_duplicates_sharded(
            prefixes,
            [tmp_path / "seeds"],
            forced,
            tmp_path / name / "buckets",
            excluded_items=excluded,
            excluded_seeds={dirty_seed},
        )
        for d in drops:
            assert d.item_id in json.loads(prefixes[d.part].with_suffix(".json").read_text())["ids"]
        assert not (tmp_path / name / "buckets").exists()  # bucket files are removed
        results[name] = [(d.item_id, d.reason, d.detail) for d in drops]
    assert results["a"] == results["b"] and len(results["a"]) >= 40
    dropped = {i for i, _, _ in results["a"]}
    kept_as = {d["kept_item_id"] for _, r, d in results["a"] if r == "semantic_duplicate"}
    children = {i for i, s in zip(items.ids, items.seed_ids) if s == dirty_seed}
    assert excluded_item not in dropped | kept_as and not children & (dropped | kept_as)
    # The exact path over the same files (the default for a run this small) = the in-memory exact path.
    rest = items.select(
        [k for k, (i, s) in enumerate(zip(items.ids, items.seed_ids)) if i != excluded_item and s != dirty_seed]
    )
    exact = semantic_duplicates_sharded(
        [tmp_path / "b" / f"part-{k:05d}" for k in range(len(layouts["b"]))],
        [tmp_path / "seeds"],
        DEDUP,
        tmp_path / "x",
        excluded_items={k: {excluded_item} for k in range(len(layouts["b"]))},
        excluded_seeds={dirty_seed},
    )
    assert [(d.item_id, d.reason, d.detail) for d in exact] == [
        (d.item_id, d.reason, d.detail) for d in semantic_duplicates(rest, seeds, DEDUP, 0.95)
    ]


def test_semantic_dedup_settings_come_from_the_config_and_name_bad_keys():
    from nemo_taskseed.errors import UserError
    from nemo_taskseed.filter.semantic.dedup import SemanticDedupSettings

    sem = to_container(load_config())["filter"]["dedup"]["semantic"]
    assert SemanticDedupSettings.from_config(sem) == DEDUP  # section or full config
    assert SemanticDedupSettings.from_config(load_config(), cluster_size=10).cluster_size == 10
    with pytest.raises(UserError, match=r"filter.dedup.semantic: unknown key\(s\) \['cluster_sise'\]"):
        SemanticDedupSettings.from_config({**sem, "cluster_sise": 10})
    with pytest.raises(UserError, match=r"config is missing filter.dedup.semantic.exact_max_items"):
        SemanticDedupSettings.from_config({"threshold": 0.9})
    with pytest.raises(UserError, match="threshold must be in"):
        SemanticDedupSettings.from_config(load_config(), threshold=0)


def test_diversity_metrics_and_plot(records, tmp_path):
    from nemo_taskseed.filter.semantic import Embedder
    from nemo_taskseed.filter.semantic.diversity import diversity_metrics, plot_diversity

    planted, clean = records
    embedder = Embedder()
    arc_planted = [r for r in planted if r["family"] == "arc"][:10]
    # Seeds: the benchmark items the paraphrases were made from, each paraphrase assigned to the
    # NEXT item's seed: every item is closer to another seed than to its own.
    seeds = _embedded([{**r, "id": f"s{i}"} for i, r in enumerate(arc_planted)], embedder)
    seeds.ids = [f"s{i}" for i in range(10)]
    items = _embedded(arc_planted, embedder)
    items.seed_ids = [f"s{(i + 1) % 10}" for i in range(10)]
    gsm = _embedded([r for r in clean if r["family"] == "gsm8k"][:10], embedder)
    both = type(items).concat([items, gsm])
    metrics = diversity_metrics(both, seeds)
    assert metrics["arc"]["closer_to_other_seed"] == 1.0 and metrics["arc"]["items"] == 10
    assert 0 < metrics["arc"]["mean_seed_similarity"] < 0.6  # not the own seed
    assert "mean_seed_similarity" not in metrics["gsm8k"]  # their seeds are not given
    assert 0 < metrics["gsm8k"]["mean_nn_similarity"] < 1 and 0 < metrics["gsm8k"]["distinct_2"] <= 1
    path = plot_diversity(metrics, tmp_path / "diversity.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # From per-shard files, one shard at a time (what the filter step does): the same figures for
    # any sharding; with a cap per family, a sample chosen by id hash, whatever the sharding.
    from nemo_taskseed.filter.semantic.diversity import diversity_from_shards

    def shards(emb, size, name):
        prefixes = []
        for k in range(0, len(emb.ids), size):
            prefix = tmp_path / f"{name}{size}.{k}"
            emb.select(list(range(k, min(k + size, len(emb.ids))))).save(prefix)
            prefixes.append(prefix)
        return prefixes

    def from_files(size, cap, dropped=frozenset()):
        items = shards(both, size, "items")
        return diversity_from_shards(
            items,
            shards(seeds, 3, "seeds"),
            excluded_items=[set(dropped)] * len(items),
            excluded_seeds=set(),
            max_items_per_family=cap,
        )

    whole = from_files(7, 5000)
    assert whole == {fam: {**entry, "sampled": False} for fam, entry in metrics.items()}
    assert from_files(1, 5000) == whole
    assert not from_files(7, 10)["arc"]["sampled"]  # exactly at the cap: measured whole
    capped = from_files(7, 4)
    assert capped == from_files(3, 4) and capped["arc"]["items"] == 4 and capped["arc"]["sampled"]
    assert capped["arc"]["closer_to_other_seed"] == 1.0
    # Dropped items (dedup, contaminated seeds) are left out.
    assert from_files(7, 5000, {both.ids[0]})["arc"]["items"] == 9


def test_semantic_settings_and_warnings_name_the_keys():
    from nemo_taskseed.errors import UserError
    from nemo_taskseed.filter.checks import checks_run
    from nemo_taskseed.filter.settings import FilterSettings
    from nemo_taskseed.filter.summary import data_warnings

    section = to_container(load_config())["filter"]["decontam"]["semantic"]
    with pytest.raises(UserError, match=r"filter.decontam.semantic: unknown key\(s\) \['treshold'\]"):
        SemanticSettings.from_config({**section, "treshold": 0.9})
    with pytest.raises(UserError, match="filter.decontam.semantic.threshold must be in"):
        SemanticSettings.from_config(section, threshold=1.5)
    fcfg = FilterSettings.from_config(load_config(None, ["filter.decontam.semantic.enabled=false"]))
    assert not checks_run(fcfg)["semantic_decontam"] and checks_run(fcfg)["semantic_dedup"]
    warnings = data_warnings(fcfg, {"coverage": [{"loaded": True}]}, None)
    assert any(
        w.startswith("semantic decontamination is off (filter.decontam.semantic.enabled=false)") for w in warnings
    )


def test_embedding_device_follows_the_gpu_the_process_sees():
    """device=auto embeds on CUDA where the process sees a GPU and on CPU here; cuda without a GPU is
    a clear error; on Ray the stage declares `gpus` so its worker is given one."""
    from nemo_taskseed.errors import UserError
    from nemo_taskseed.filter.semantic.embed import resolve_device

    assert resolve_device("auto") == "cpu"  # this machine has no GPU
    with pytest.raises(UserError, match="device=cuda, but this process sees no GPU"):
        resolve_device("cuda")
    cfg = load_config()
    with pytest.raises(UserError, match="filter.decontam.semantic.device must be auto, cpu or cuda"):
        SemanticSettings.from_config(cfg, device="gpu")
    quarter = SemanticSettings.from_config(cfg, gpus=0.25)
    assert SemanticDecontaminationStage(settings=quarter).resources.gpus == 0.25
    assert SemanticDecontaminationStage(settings=SemanticSettings.from_config(cfg)).resources.gpus == 0.0
