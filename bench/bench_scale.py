"""Scaling of the sharded filter and tokenize steps: records, workers, memory, cores.

    .venv/bin/python bench/bench_scale.py                                  # 100k and 1M records
    .venv/bin/python bench/bench_scale.py --sizes 20000 200000             # quick
    .venv/bin/python bench/bench_scale.py --sizes 5000 20000 --records-per-shard 2500 --steps filter

Makes synthetic `taskseed.generated/1` records (4 variants per item, each with an enrichment) whose
question/option texts are random words of the fixture vocabulary (../shared/fixtures/hf, or a
built-in list), so no two items are near copies except the planted ones: 1% exact copies
(upper-cased question), 1% one-word near copies (both placed in a later shard than their original)
and 0.1% copies of seed items; plus a seeds folder from `generate.fixture_seeds`. Data of one size
is written once (`<workdir>/data-<N>`, reused by every configuration and by later runs with the same
--workdir) as `generated/part-<shard>.jsonl`, --records-per-shard records each.

Then, per size and configuration, `taskseed filter` (verification off, smoke benchmark list against
the fixture mirror, the embedding checks off unless --embeddings: their per-item model cost is
bench_decontam.py's) and `taskseed tokenize --in <filter out>` run as subprocesses:

    ray x1   a local Ray cluster with --num-cpus 1 (`ray start --head --block`, a child of this
    ray x2   process, private ports and temp dir), steps with --executor ray_data and RAY_ADDRESS;
             the cluster is started before and stopped after each configuration
    inline   --executor inline, no Ray (reference)

Measured per step: wall time; peak RSS summed over the whole process tree (the step, its children
and every process of the Ray cluster: raylet, GCS, workers, ...), polled from /proc every
--interval s; cores used = CPU time (user+system) of that tree during the step / wall time (the
step's own CPU from wait4, so reaped children count; Ray processes by polling, remembering the last
value of processes that exit); and whether the kept set (sorted curated record ids; for tokenize the
.bin/.idx bytes) equals the 1-worker run's at the same size. "others" is the number of cores the
rest of the machine kept busy meanwhile (/proc/stat minus the measured tree): on a shared 2-core box
a 2-worker run cannot use 2 cores while others hold one, so read the speed-up next to it.

Goals (issue): time from the smallest to the largest size within 1.2x of linear; peak tree RSS at
the largest size at most 2x that at the smallest; 2 workers at least 1.6x faster than 1 (2 cores).
If a configuration would not finish within --max-minutes for the whole bench (estimated from the
throughput measured at the smaller sizes), it is not run: its line is extrapolated and marked so.
Step output (progress bars, summaries) goes to `<workdir>/logs/`; nothing is left running at the end.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import re
import secrets
import shutil
import signal
import socket
import string
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("TASKSEED_CACHE_DIR", str(REPO / ".cache"))
FIXTURES = REPO.parent / "shared" / "fixtures" / "hf"
PYTHON = str(REPO / ".venv" / "bin" / "python") if (REPO / ".venv" / "bin" / "python").exists() else sys.executable
RAY = str(Path(PYTHON).parent / "ray")
SMOKE_CONFIG = "configs/benchmarks/smoke.yaml"
GEN_VERSION = 1
LETTERS = string.ascii_uppercase
WORD = re.compile(r"[a-z][a-z'-]{0,18}")
VARIANTS = ("label", "answer", "reasoning", "context")
# Ray >= 2.5x `ray start` turns token authentication on when ~/.ray/auth_token exists, and a driver
# in another process sends a token only with RAY_AUTH_MODE=token. Each bench cluster gets a token
# of its own (RAY_AUTH_TOKEN, given to the cluster and the steps): a fresh machine has no token file.
RAY_AUTH = {"RAY_AUTH_MODE": "token"}
CONFIGS = {"ray1": ("ray x1", 1), "ray2": ("ray x2", 2), "inline": ("inline", 0)}

from bench_dedup import FALLBACK_WORDS  # noqa: E402 - the benches' shared built-in word list (bench/ is on sys.path)

# family, task, kind, template, license
FAMILIES = (
    ("arc", "arc_easy", "knowledge", "mc4", "cc-by-sa-4.0"),
    ("commonsense_qa", "commonsense_qa", "knowledge", "mc5", "mit"),
    ("gsm8k", "gsm8k", "reasoning", "math", "mit"),
    ("mbpp", "mbpp", "reasoning", "code", "cc-by-4.0"),
)


# ----------------------------------------------------------------------------------------- data


def vocabulary(fixtures: Path) -> list[str]:
    """Words of the fixtures' training rows (never eval splits), or a built-in list."""
    words: set[str] = set()
    if fixtures.is_dir():
        for path in sorted(fixtures.rglob("train.jsonl")):
            for line in path.read_text(encoding="utf-8").splitlines():
                stack: list[Any] = [json.loads(line)]
                while stack:
                    value = stack.pop()
                    if isinstance(value, str):
                        words.update(w.strip(".,?!;:()[]{}\"'`").lower() for w in value.split())
                    elif isinstance(value, dict):
                        stack.extend(value.values())
                    elif isinstance(value, list):
                        stack.extend(value)
    words = {w for w in words if WORD.fullmatch(w)}
    return sorted(words) if len(words) > 1000 else list(FALLBACK_WORDS)


def write_seeds(seeds_dir: Path, fixtures: Path) -> list[dict]:
    """~400 real seeds (100 rows of each fixture task), so dedup against seeds runs."""
    from nemo_taskseed.generate.fixture_seeds import FIXTURE_TASKS, fixture_seeds

    seeds = fixture_seeds({t: 100 for t in FIXTURE_TASKS}, fixtures_dir=fixtures)
    seeds_dir.mkdir(parents=True, exist_ok=True)
    with open(seeds_dir / "seeds.jsonl", "w", encoding="utf-8") as fh:
        for s in seeds:
            fh.write(json.dumps(s, ensure_ascii=False) + "\n")
    return seeds


class Generator:
    """Valid generated records from random words; ids as the generate step makes them."""

    def __init__(self, vocab: list[str], seeds: list[dict], seed: int):
        from nemo_taskseed.generate.render import render_text
        from nemo_taskseed.schema.records import content_id

        self.render, self.cid = render_text, content_id
        self.vocab = vocab
        self.idents = [w for w in vocab if w.isascii() and w.isalpha()] or FALLBACK_WORDS
        self.seed = seed
        self.seed_ids: dict[str, list[str]] = {}
        for s in seeds:
            self.seed_ids.setdefault(s["family"], []).append(s["id"])
        self.mc_seeds = [s for s in seeds if s.get("format") == "multiple_choice" and s.get("options")]
        self.pool: list[tuple[int, dict]] = []  # (shard, item) from earlier shards: originals of planted copies
        self.planted = {"exact": 0, "near": 0, "seed_copy": 0}

    def words(self, rng: random.Random, lo: int, hi: int) -> str:
        return " ".join(rng.choices(self.vocab, k=rng.randint(lo, hi)))

    def item(self, rng: random.Random) -> dict:
        family, task, kind, template, license_ = FAMILIES[rng.randrange(len(FAMILIES))]
        item = {
            "family": family,
            "task": task,
            "kind": kind,
            "license": license_,
            "context": None,
            "reference": None,
            "tests": None,
        }
        if template.startswith("mc"):
            n = int(template[2:])
            options: list[str] = []
            while len(options) < n:
                o = self.words(rng, 2, 5)
                if o.casefold() not in {x.casefold() for x in options}:
                    options.append(o)
            index = rng.randrange(n)
            item.update(
                format="multiple_choice",
                question=self.words(rng, 18, 36) + "?",
                options=options,
                answer_index=index,
                answer_text=options[index],
            )
        elif template == "math":
            a, b = rng.randint(2, 99), rng.randint(2, 99)
            question = f"{self.words(rng, 10, 20)} {a} {self.words(rng, 8, 16)} {b} {self.words(rng, 3, 8)}?"
            answer = str(a * b)
            item.update(
                format="generative",
                question=question,
                options=None,
                answer_index=None,
                answer_text=answer,
                reference=f"{self.words(rng, 12, 30)} {a} * {b} = {answer}.\n#### {answer}",
            )
        else:  # code
            name = "_".join(rng.choices(self.idents, k=3))
            code = f"def {name}(x):\n    return x"
            item.update(
                format="generative",
                question=f"Write a function to {self.words(rng, 18, 30)}.",
                options=None,
                answer_index=None,
                answer_text=code,
                reference=code,
                tests=[f"assert {name}({k}) == {k}" for k in rng.sample(range(100), 3)],
            )
        return item

    def enrichment(self, rng: random.Random, item: dict) -> dict:
        if item["options"]:
            alternatives = [
                {"option": LETTERS[i], "why_wrong": self.words(rng, 5, 12)}
                for i in range(len(item["options"]))
                if i != item["answer_index"]
            ]
        else:
            alternatives = [{"option": None, "why_wrong": self.words(rng, 6, 12)}]
        return {
            "reasoning": self.words(rng, 15, 40),
            "alternatives": alternatives,
            "knowledge": self.words(rng, 10, 25),
        }

    def records(self, rng: random.Random, item: dict, enrichment: dict) -> list[dict]:
        fields = {
            k: item[k]
            for k in (
                "family",
                "task",
                "question",
                "context",
                "options",
                "answer_index",
                "answer_text",
                "reference",
                "tests",
            )
        }
        item_id = self.cid(*fields.values())
        family_seeds = self.seed_ids.get(item["family"]) or [self.cid("seed", item["family"])]
        seed_id = family_seeds[rng.randrange(len(family_seeds))]
        lineage = {
            "seed_id": seed_id,
            "item_id": item_id,
            "template_id": "similar_question",
            "template_version": 1,
            "model": "SmolLM2-135M-Instruct",
            "backend": "vllm",
            "sampling": {"n": 1, "temperature": 0.8, "top_p": 0.95, "max_tokens": 512, "seed": 0},
            "request_key": hashlib.sha256(item_id.encode()).hexdigest(),
            "sample_index": 0,
            "raw_output": "{}",
        }
        render_item = {**fields, "format": item["format"]}
        return [
            {
                "schema_version": "taskseed.generated/1",
                "id": self.cid(item_id, v),
                "seed_id": seed_id,
                "kind": item["kind"],
                "format": item["format"],
                **fields,
                "license": item["license"],
                "lineage": lineage,
                "enrichment": enrichment,
                "variant": v,
                "text": self.render(render_item, v, enrichment),
            }
            for v in VARIANTS
        ]

    def shard(self, index: int, n_items: int, exact: float, near: float, seed_copy: float) -> list[dict]:
        rng = random.Random(f"{self.seed}:{index}")
        out: list[dict] = []
        originals: list[dict] = []
        for _ in range(n_items):
            r = rng.random()
            if self.pool and r < exact:
                _, src = self.pool[rng.randrange(len(self.pool))]
                item = dict(src, question=src["question"].upper())
                self.planted["exact"] += 1
            elif self.pool and r < exact + near:
                _, src = self.pool[rng.randrange(len(self.pool))]
                words = src["question"].split()
                pos = rng.randrange(2, len(words) - 2)
                words[pos] = rng.choice([w for w in rng.choices(self.vocab, k=3) if w != words[pos]] or ["zzz"])
                item = dict(src, question=" ".join(words))
                self.planted["near"] += 1
            elif self.mc_seeds and r < exact + near + seed_copy:
                s = self.mc_seeds[rng.randrange(len(self.mc_seeds))]
                family = next(f for f in FAMILIES if f[0] == s["family"])
                item = {
                    "family": s["family"],
                    "task": s["task"],
                    "kind": s["kind"],
                    "license": family[4],
                    "context": None,
                    "reference": None,
                    "tests": None,
                    "format": "multiple_choice",
                    "question": s["question"],
                    "options": list(s["options"]),
                    "answer_index": s["answer_index"],
                    "answer_text": s["answer_text"],
                }
                self.planted["seed_copy"] += 1
            else:
                item = self.item(rng)
                originals.append(item)
            out.extend(self.records(rng, item, self.enrichment(rng, item)))
        # Originals of later shards' copies: a bounded sample of this shard's items.
        for item in rng.sample(originals, min(len(originals), 200)):
            if len(self.pool) < 4000:
                self.pool.append((index, item))
            else:
                self.pool[rng.randrange(len(self.pool))] = (index, item)
        return out


def make_data(root: Path, n_records: int, per_shard: int, seeds: list[dict], vocab: list[str], seed: int) -> dict:
    """`root/generated/part-synth.<i>.jsonl`; reused when `root/meta.json` says it has this content."""
    from nemo_taskseed.pipeline import shards

    meta = {
        "version": GEN_VERSION,
        "records": n_records,
        "records_per_shard": per_shard,
        "seed": seed,
        "vocab": len(vocab),
        "seeds": len(seeds),
        "planted_share": {"exact": 0.01, "near": 0.01, "seed_copy": 0.001},
    }
    meta_path = root / "meta.json"
    if meta_path.is_file():
        old = json.loads(meta_path.read_text())
        if {k: old.get(k) for k in meta} == meta:
            return {**old, "reused": True}
    shutil.rmtree(root, ignore_errors=True)
    gen = Generator(vocab, seeds, seed)
    t0 = time.perf_counter()
    n_items = n_records // len(VARIANTS)
    items_per_shard = max(1, per_shard // len(VARIANTS))
    size = 0
    for index, start in enumerate(range(0, n_items, items_per_shard)):
        records = gen.shard(index, min(items_per_shard, n_items - start), **meta["planted_share"])
        path = shards.part_path(root, "generated", shards.shard_name("synth", index))
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", encoding="utf-8") as fh:
            fh.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
        size += path.stat().st_size
    meta.update(shards=index + 1, bytes=size, planted_items=gen.planted, seconds=round(time.perf_counter() - t0, 1))
    meta_path.write_text(json.dumps(meta, indent=2))
    return {**meta, "reused": False}


# ------------------------------------------------------------------------------------ processes

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def proc_table() -> dict[int, tuple[int, float, int, int, str]]:
    """pid -> (ppid, cpu seconds user+system, rss bytes, start time ticks, name), one pass over /proc."""
    table = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                data = fh.read()
        except OSError:
            continue
        end = data.rindex(b")")
        f = data[end + 2 :].split()
        table[int(name)] = (
            int(f[1]),
            (int(f[11]) + int(f[12])) / CLK_TCK,
            int(f[21]) * PAGE,
            int(f[19]),
            data[data.index(b"(") + 1 : end].decode(errors="replace"),
        )
    return table


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine spent busy (every process, /proc/stat), for the load of others."""
    with open("/proc/stat") as fh:
        f = [int(x) for x in fh.readline().split()[1:]]
    return (sum(f[:8]) - f[3] - f[4]) / CLK_TCK  # all but idle and iowait (guest time is inside user)


def descendants(table: dict, roots: list[int]) -> set[int]:
    children: dict[int, list[int]] = {}
    for pid, row in table.items():
        children.setdefault(row[0], []).append(pid)
    found, stack = set(), [r for r in roots if r in table]
    while stack:
        pid = stack.pop()
        if pid not in found:
            found.add(pid)
            stack.extend(children.get(pid, ()))
    return found


class TreeMonitor(threading.Thread):
    """Polls the step's tree and the Ray cluster's tree: peak summed RSS, and the Ray side's CPU."""

    def __init__(self, ray_root: int | None, interval: float):
        super().__init__(daemon=True)
        self.ray_root, self.interval = ray_root, interval
        self.step_pid: int | None = None
        self.stop_event = threading.Event()
        self.cpu_last: dict[tuple[int, int], float] = {}
        self.names: dict[tuple[int, int], str] = {}
        self.cpu_base: dict[tuple[int, int], float] = {}
        self.peak_rss = self.peak_procs = 0
        self.samples = 0
        self.sample()
        self.cpu_base = dict(self.cpu_last)
        self.idle_rss = self.peak_rss  # the Ray cluster alone, before the step starts
        self.peak_rss = self.peak_procs = 0

    def sample(self) -> None:
        table = proc_table()
        ray = descendants(table, [self.ray_root]) if self.ray_root else set()
        step = descendants(table, [self.step_pid]) if self.step_pid else set()
        pids = ray | step
        self.peak_rss = max(self.peak_rss, sum(table[p][2] for p in pids))
        self.peak_procs = max(self.peak_procs, len(pids))
        for pid in ray:
            self.cpu_last[(pid, table[pid][3])] = table[pid][1]
            self.names[(pid, table[pid][3])] = table[pid][4]
        self.samples += 1

    def run(self) -> None:
        while not self.stop_event.wait(self.interval):
            self.sample()

    def ray_cpu(self) -> float:
        return sum(v - self.cpu_base.get(k, 0.0) for k, v in self.cpu_last.items())

    def ray_cpu_by_name(self) -> dict[str, float]:
        """Where the Ray side's CPU went: seconds per process name (raylet, gcs_server, ray::..., ...)."""
        out: dict[str, float] = {}
        for k, v in self.cpu_last.items():
            out[self.names[k]] = out.get(self.names[k], 0.0) + v - self.cpu_base.get(k, 0.0)
        return {n: round(c, 1) for n, c in sorted(out.items(), key=lambda x: -x[1]) if c >= 0.05}


LIVE: dict[int, subprocess.Popen] = {}  # process groups to end on the way out


def kill_group(proc: subprocess.Popen, grace: float = 10.0) -> None:
    """SIGTERM the child's process group and every descendant, then SIGKILL what is left."""
    table = proc_table()
    pids = descendants(table, [proc.pid])
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except OSError:
            pass
        for pid in pids:
            try:
                os.kill(pid, sig)
            except OSError:
                pass
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pids = {p for p in pids if _alive(p)}
                if not pids:
                    break
            time.sleep(0.2)
        else:
            continue
        break
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass
    LIVE.pop(proc.pid, None)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except OSError:
        return False


def free_ports(n: int) -> list[int]:
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


class RayCluster:
    """`ray start --head --block` as a child process group with its own ports and temp dir."""

    def __init__(self, num_cpus: int, log: Path):
        self.num_cpus, self.log = num_cpus, log
        self.proc: subprocess.Popen | None = None
        self.tmp = Path(tempfile.mkdtemp(prefix="bsray-", dir="/tmp"))  # short: Ray's socket paths are limited
        self.address = ""
        self.seconds = 0.0
        self.auth = {**RAY_AUTH, "RAY_AUTH_TOKEN": secrets.token_hex(32)}  # what a step needs to join
        self.pids: dict[int, int] = {}  # pid -> start time of every process seen in the cluster's tree

    def start(self, timeout: float = 180.0) -> None:
        port, client, agent, agent_grpc, runtime_env, metrics, dashboard = free_ports(7)
        cmd = [
            RAY,
            "start",
            "--head",
            f"--num-cpus={self.num_cpus}",
            "--num-gpus=0",
            f"--port={port}",
            f"--temp-dir={self.tmp / 'ray'}",
            "--include-dashboard=false",
            f"--dashboard-port={dashboard}",
            f"--ray-client-server-port={client}",
            f"--dashboard-agent-listen-port={agent}",
            f"--dashboard-agent-grpc-port={agent_grpc}",
            f"--runtime-env-agent-port={runtime_env}",
            f"--metrics-export-port={metrics}",
            "--disable-usage-stats",
            "--block",
        ]
        env = dict(os.environ, RAY_TMPDIR=str(self.tmp), RAY_USAGE_STATS_ENABLED="0", **self.auth)
        env.pop("RAY_ADDRESS", None)
        t0 = time.perf_counter()
        with open(self.log, "wb") as fh:  # fresh: readiness is read from this log
            self.proc = subprocess.Popen(
                cmd,
                stdout=fh,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=REPO,
                start_new_session=True,
            )
        LIVE[self.proc.pid] = self.proc
        while "Ray runtime started" not in self.log.read_text(errors="replace"):
            if self.proc.poll() is not None:
                raise RuntimeError(f"ray start exited with {self.proc.returncode}; see {self.log}")
            if time.perf_counter() - t0 > timeout:
                raise RuntimeError(f"ray start not ready after {timeout:.0f} s; see {self.log}")
            time.sleep(0.5)
        self.address = f"127.0.0.1:{port}"
        self.seconds = time.perf_counter() - t0

    def stop(self) -> list[int]:
        """Stops every process of the cluster; returns pids still alive afterwards (should be none)."""
        if self.proc is None:
            return []
        self.remember()
        kill_group(self.proc)
        tag = str(self.tmp).encode()
        table = proc_table()
        # Processes seen in the tree (same pid and start time: not a reused pid), and orphans
        # re-parented away from the tree whose command line still names our temp dir.
        strays = {pid for pid, start in self.pids.items() if pid in table and table[pid][3] == start}
        for pid in table:
            try:
                if tag in Path(f"/proc/{pid}/cmdline").read_bytes():
                    strays.add(pid)
            except OSError:
                pass
        for pid in strays:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(0.5)
        table = proc_table()
        left = sorted(p for p in strays if p in table and _alive(p))
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.proc = None
        return left

    def remember(self) -> None:
        if self.proc is not None:
            table = proc_table()
            self.pids.update({p: table[p][3] for p in descendants(table, [self.proc.pid])})


def run_step(cmd: list[str], env: dict, log: Path, cluster: RayCluster | None, interval: float) -> dict:
    """Runs one step as a subprocess; wall, tree peak RSS, cores; raises if it fails."""
    monitor = TreeMonitor(cluster.proc.pid if cluster else None, interval)
    with open(log, "ab") as fh:
        fh.write(("$ " + " ".join(cmd) + "\n").encode())
        fh.flush()
        t0, busy0 = time.perf_counter(), machine_busy_seconds()
        proc = subprocess.Popen(
            cmd,
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=REPO,
            start_new_session=True,
        )
    LIVE[proc.pid] = proc
    monitor.step_pid = proc.pid
    monitor.start()
    try:
        _, status, usage = os.wait4(proc.pid, 0)
        wall, busy = time.perf_counter() - t0, machine_busy_seconds() - busy0
        proc.returncode = os.waitstatus_to_exitcode(status)
    finally:
        monitor.stop_event.set()
        monitor.join()
        if proc.returncode is None:
            kill_group(proc)
        LIVE.pop(proc.pid, None)
    if cluster:
        cluster.remember()
    if proc.returncode != 0:
        raise RuntimeError(f"step failed with exit code {proc.returncode}: {' '.join(cmd)}\n  see {log}")
    step_cpu = usage.ru_utime + usage.ru_stime
    cpu = step_cpu + monitor.ray_cpu()
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "cores": cpu / wall if wall else 0.0,
        "peak_rss_mb": monitor.peak_rss / 2**20,
        "step_maxrss_mb": usage.ru_maxrss / 1024,
        "step_cpu_s": step_cpu,
        "ray_cpu_s": cpu - step_cpu,
        "peak_processes": monitor.peak_procs,
        "samples": monitor.samples,
        "ray_idle_rss_mb": monitor.idle_rss / 2**20,
        "ray_cpu_by_process": monitor.ray_cpu_by_name(),
        # cores busy with anything else meanwhile (other users, this bench's own polling)
        "other_cores": max(0.0, busy - cpu) / wall if wall else 0.0,
    }


# ------------------------------------------------------------------------------------- outputs


def curated_digest(filter_out: Path) -> dict:
    """Kept set: sorted curated ids (hash + count); also a hash of the curated part bytes."""
    ids, blob = [], hashlib.sha256()
    for path in sorted((filter_out / "curated").glob("part-*.jsonl")):
        blob.update(path.name.encode())
        with open(path, "rb") as fh:
            for line in fh:
                blob.update(line)
                if line.strip():
                    ids.append(json.loads(line)["id"])
    ids.sort()
    return {
        "kept": len(ids),
        "ids_sha": hashlib.sha256("\n".join(ids).encode()).hexdigest(),
        "bytes_sha": blob.hexdigest(),
    }


def tokenized_digest(tok_out: Path) -> dict:
    blob = hashlib.sha256()
    for path in sorted(list(tok_out.glob("*.bin")) + list(tok_out.glob("*.idx"))):
        blob.update(path.name.encode())
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 22), b""):
                blob.update(chunk)
    manifest = json.loads((tok_out / "manifest.json").read_text())
    return {
        "documents": manifest["totals"]["documents"],
        "tokens": manifest["totals"]["tokens"],
        "bytes_sha": blob.hexdigest(),
    }


_HELP: dict[str, str] = {}


def tokenize_executor_args(executor: str) -> tuple[list[str], str]:
    """`--executor` when the tokenize CLI has it, else the config key (same effect)."""
    if "tokenize" not in _HELP:
        _HELP["tokenize"] = subprocess.run(
            [PYTHON, "-m", "nemo_taskseed", "tokenize", "--help"], capture_output=True, text=True, cwd=REPO
        ).stdout
    if "--executor" in _HELP["tokenize"]:
        return ["--executor", executor], "--executor"
    return [f"tokenize.executor={executor}"], "tokenize.executor= (the CLI has no --executor)"


# ---------------------------------------------------------------------------------------- bench


def fmt_s(x: float) -> str:
    return f"{x:,.1f}" if x < 1000 else f"{x:,.0f}"


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--sizes", type=int, nargs="+", default=[100_000, 1_000_000], help="records (generated, 4 per item)"
    )
    ap.add_argument("--steps", nargs="+", default=["filter", "tokenize"], choices=["filter", "tokenize"])
    ap.add_argument(
        "--configs",
        nargs="+",
        default=["ray1", "ray2", "inline"],
        choices=list(CONFIGS),
        help="ray1/ray2: local Ray cluster with 1/2 CPUs (--executor ray_data); inline: no Ray",
    )
    ap.add_argument("--records-per-shard", type=int, default=10_000)
    ap.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="data, outputs, logs (default: a new /tmp dir, removed "
        "at the end unless --keep); an existing one's data is reused",
    )
    ap.add_argument("--keep", action="store_true", help="keep the step outputs (and the default workdir)")
    ap.add_argument(
        "--embeddings",
        action="store_true",
        help="keep the embedding checks on (semantic decontamination and dedup, diversity): on CPU they "
        "embed ~20 items/s per core, which turns this bench into hours; bench_decontam.py measures them",
    )
    ap.add_argument("--max-minutes", type=float, default=90.0, help="time budget of the whole bench")
    ap.add_argument("--interval", type=float, default=0.5, help="process-tree polling interval, s")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    return ap.parse_args()


def filter_step_overrides(mirror: bool, embeddings: bool) -> list[str]:
    """`taskseed filter` overrides: verification off, decontamination off without the fixture mirror."""
    overrides = ["filter.verify.enabled=false"] + ([] if mirror else ["filter.decontam.enabled=false"])
    if not embeddings:
        # The embedding checks are the filter's one per-item model cost (measured on its own by
        # bench_decontam.py, combined in docs/benchmarks.md's projection); this bench measures how
        # the sharded steps scale with records and workers.
        overrides += [
            "filter.decontam.semantic.enabled=false",
            "filter.dedup.semantic.enabled=false",
            "filter.diversity.enabled=false",
        ]
    return overrides


def raise_on_termination() -> None:
    """SIGTERM and SIGHUP end the bench as Ctrl-C does: clusters stopped, the report printed."""

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)


class Bench:
    """One bench run: the data of each size, each configuration's steps run on it, what they measured,
    and the Ray clusters started (all stopped at the end)."""

    def __init__(self, args: argparse.Namespace, workdir: Path, configs: list[str]):
        self.args = args
        self.workdir = workdir
        self.configs = configs
        self.budget = args.max_minutes * 60
        self.started = time.perf_counter()
        self.base_env = dict(os.environ)
        self.base_env.pop("RAY_ADDRESS", None)
        self.base_env.setdefault("TOKENIZERS_PARALLELISM", "true")
        self.mirror_args = ["--mirror", str(FIXTURES)] if FIXTURES.is_dir() else []
        self.filter_overrides = filter_step_overrides(bool(self.mirror_args), args.embeddings)
        self.tok_note = ""
        self.results: list[dict] = []
        self.datasets: dict[int, dict] = {}
        self.leftovers: list[int] = []
        self.clusters: list[RayCluster] = []
        self.vocab: list[str] = []
        self.seeds: list[dict] = []
        self.seeds_args: list[str] = []
        self.gen_rate: float | None = None  # records/s of the data generation, once measured

    def prepare(self) -> None:
        """The vocabulary and the seeds folder every size's data is made from."""
        self.vocab = vocabulary(FIXTURES)
        try:
            self.seeds = write_seeds(self.workdir / "seeds", FIXTURES)
            self.seeds_args = ["--seeds", str(self.workdir / "seeds")]
        except Exception as exc:  # fixtures missing: dedup against seeds is not exercised
            print(f"no seeds ({exc}); dedup against seeds is skipped", flush=True)
            self.seeds, self.seeds_args = [], []
        print(
            f"vocabulary {len(self.vocab):,} words "
            f"({'fixtures' if len(self.vocab) > len(FALLBACK_WORDS) else 'built-in'}); "
            f"{len(self.seeds)} seeds; filter: {SMOKE_CONFIG} {' '.join(self.filter_overrides)}"
            f"{' --mirror ' + str(FIXTURES) if self.mirror_args else ''}",
            flush=True,
        )
        if "tokenize" in self.args.steps:
            _, self.tok_note = tokenize_executor_args("inline")
            print(f"tokenize executor via {self.tok_note}", flush=True)

    def within_budget(self, n: int) -> list[tuple[str, float]]:
        """The configurations to run at `n` records with their estimated seconds: those that the
        time left can hold (the others are reported as extrapolated)."""
        todo: list[tuple[str, float]] = []
        made = (self.workdir / f"data-{n}" / "meta.json").is_file()
        gen_estimate = 0.0 if made or self.gen_rate is None else n / self.gen_rate
        for key in self.configs:
            estimate = estimate_seconds(self.results, key, n, self.args.steps)
            elapsed = time.perf_counter() - self.started
            if estimate is not None and elapsed + gen_estimate + estimate + sum(e for _, e in todo) > self.budget:
                print(
                    f"{n:>10,} {CONFIGS[key][0]:<7} not run: ~{estimate / 60:.0f} min estimated, "
                    f"{(self.budget - elapsed) / 60:.0f} min of the budget left -> extrapolated",
                    flush=True,
                )
                continue
            todo.append((key, estimate or 0.0))
        return todo

    def run_size(self, n: int) -> None:
        """Make (or reuse) the data of `n` records and run every configuration the budget allows."""
        todo = self.within_budget(n)
        if not todo:
            return
        data_root = self.workdir / f"data-{n}"
        data = make_data(data_root, n, self.args.records_per_shard, self.seeds, self.vocab, self.args.seed)
        self.datasets[n] = data
        if not data["reused"] and data["seconds"]:
            self.gen_rate = n / data["seconds"]
        print(
            f"{n:>10,} records: {data['shards']} shards, {data['bytes'] / 1e6:,.0f} MB, planted items "
            f"{data['planted_items']} ({'reused' if data['reused'] else 'made in ' + str(data['seconds']) + ' s'})",
            flush=True,
        )
        for key, _ in todo:
            self.run_config(n, key, data_root)

    def run_config(self, n: int, key: str, data_root: Path) -> None:
        """The steps of configuration `key` on `n` records, on a Ray cluster of its own (stopped after)."""
        label, cpus = CONFIGS[key]
        run_dir = self.workdir / "runs" / f"{n}-{key}"
        shutil.rmtree(run_dir, ignore_errors=True)
        for old_log in (self.workdir / "logs").glob(f"{n}-{key}-*.log"):
            old_log.unlink()
        env = dict(self.base_env)
        executor = "inline"
        cluster = None
        if cpus:
            cluster = RayCluster(cpus, self.workdir / "logs" / f"{n}-{key}-ray.log")
            self.clusters.append(cluster)
            cluster.start()
            env.update(RAY_ADDRESS=cluster.address, RAY_TMPDIR=str(cluster.tmp), **cluster.auth)
            executor = "ray_data"
        row: dict[str, Any] = {
            "records": n,
            "config": key,
            "label": label,
            "steps": {},
            "cluster_start_s": round(cluster.seconds, 1) if cluster else None,
        }
        try:
            fout, tout = run_dir / "filter", run_dir / "tokenize"
            log = self.workdir / "logs" / f"{n}-{key}"
            if "filter" in self.args.steps:
                row["steps"]["filter"] = self.run_filter(data_root, fout, executor, env, log, cluster)
            if "tokenize" in self.args.steps:
                src = fout if "filter" in self.args.steps else data_root
                row["steps"]["tokenize"] = self.run_tokenize(src, tout, executor, env, log, cluster)
        finally:
            if cluster:
                left = cluster.stop()
                self.leftovers += left
                if left:
                    print(f"WARNING: processes of the {label} cluster still alive: {left}", flush=True)
            if not self.args.keep:
                shutil.rmtree(run_dir, ignore_errors=True)
        self.results.append(row)
        print(config_line(row), flush=True)

    def run_filter(self, data_root: Path, fout: Path, executor: str, env: dict, log: Path, cluster) -> dict:
        cmd = [
            PYTHON,
            "-m",
            "nemo_taskseed",
            "filter",
            "--in",
            str(data_root),
            *self.seeds_args,
            "--out",
            str(fout),
            "--config",
            SMOKE_CONFIG,
            *self.mirror_args,
            "--executor",
            executor,
            *self.filter_overrides,
        ]
        m = run_step(cmd, env, log.with_name(log.name + "-filter.log"), cluster, self.args.interval)
        summary = json.loads((fout / "summary.json").read_text())
        m.update(
            records_in=summary["in"],
            rejected_by_reason=summary["rejected_by_reason"],
            by_node=summary["shards"]["by_node"],
            **curated_digest(fout),
        )
        return m

    def run_tokenize(self, src: Path, tout: Path, executor: str, env: dict, log: Path, cluster) -> dict:
        cmd = [
            PYTHON,
            "-m",
            "nemo_taskseed",
            "tokenize",
            "--in",
            str(src),
            "--out",
            str(tout),
            *tokenize_executor_args(executor)[0],
        ]
        m = run_step(cmd, env, log.with_name(log.name + "-tokenize.log"), cluster, self.args.interval)
        m.update(records_in=None, **tokenized_digest(tout))
        m["records_in"] = m["documents"]
        return m

    def stop_everything(self) -> None:
        """Stop every cluster and step process still running (their pids, if alive, go to leftovers)."""
        for cluster in self.clusters:
            self.leftovers += cluster.stop()
        for proc in list(LIVE.values()):
            kill_group(proc)

    def write_json(self, path: Path, report: dict) -> None:
        path.write_text(
            json.dumps(
                {
                    "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(self.args).items()},
                    "tokenize_executor_via": self.tok_note,
                    "datasets": {str(k): v for k, v in self.datasets.items()},
                    "results": self.results,
                    "extrapolated": report["extrapolated"],
                    "goals": report["goals"],
                    "leftover_processes": self.leftovers,
                },
                indent=2,
            )
        )


def main() -> int:
    args = parse_args()
    sizes = sorted(set(args.sizes))
    configs = list(dict.fromkeys(args.configs))
    own_workdir = args.workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="bench-scale-")) if own_workdir else args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "logs").mkdir(exist_ok=True)
    bench = Bench(args, workdir, configs)
    raise_on_termination()
    print(
        f"workdir {workdir} (step logs in {workdir / 'logs'}); {os.cpu_count()} cores; "
        f"{os.sysconf('SC_PHYS_PAGES') * PAGE / 2**30:.0f} GiB RAM; budget {args.max_minutes:g} min",
        flush=True,
    )
    try:
        bench.prepare()
        for n in sizes:
            bench.run_size(n)
    except KeyboardInterrupt as exc:
        print(f"\ninterrupted ({exc or 'SIGINT'})", flush=True)
        return_code = 130
    except Exception as exc:  # a failed step: report what was measured so far
        print(f"\nFAILED: {type(exc).__name__}: {exc}", flush=True)
        return_code = 1
    else:
        return_code = 0
    finally:
        bench.stop_everything()
        if own_workdir and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)

    report = build_report(bench.results, sizes, configs, args.steps)
    print(report["text"])
    if return_code == 0:  # a complete run replaces the recorded one in docs/benchmarks.md
        from _results import update_docs  # bench/_results.py (bench/ is on sys.path when run as a script)

        written = update_docs("scale", report["text"])
        if written is not None:
            print(f"results -> {written} (block bench:scale)")
    print(
        f"leftover processes: {bench.leftovers or 'none'}; "
        f"workdir {'removed' if own_workdir and not args.keep else workdir}"
    )
    if args.json:
        bench.write_json(args.json, report)
    return return_code


def estimate_seconds(results: list[dict], key: str, n: int, steps: list[str]) -> float | None:
    """Time of configuration `key` at `n` records, linear from its largest measured size (or from
    another configuration at this size); None when nothing is measured yet."""

    def total(row: dict) -> float:
        return sum(s["wall_s"] for s in row["steps"].values()) + (row["cluster_start_s"] or 0)

    own = [r for r in results if r["config"] == key and r["records"] < n]
    if own:
        r = max(own, key=lambda r: r["records"])  # linear incl. fixed costs: pessimistic when scaling is linear
        return total(r) * n / r["records"]
    same = [r for r in results if r["records"] == n]
    if same:
        return max(total(r) for r in same) * 1.1
    smaller = [r for r in results if r["records"] < n]
    if smaller:
        r = max(smaller, key=lambda r: r["records"])
        return total(r) * n / r["records"] * 1.3
    return None


def config_line(row: dict) -> str:
    parts = []
    for step, m in row["steps"].items():
        extra = f", kept {m['kept']:,}" if step == "filter" else f", {m['tokens']:,} tokens"
        parts.append(
            f"{step} {fmt_s(m['wall_s'])} s ({m['records_in'] / m['wall_s']:,.0f} rec/s, "
            f"{m['peak_rss_mb']:,.0f} MB, {m['cores']:.2f} cores, others {m['other_cores']:.2f}{extra})"
        )
    start = f" [cluster start {row['cluster_start_s']} s]" if row["cluster_start_s"] is not None else ""
    return f"{row['records']:>10,} {row['label']:<7} " + "; ".join(parts) + start


def report_steps(steps: list[str]) -> list[str]:
    """The steps a report lists: each step, and their total when there are several."""
    return [*steps, "total"] if len(steps) > 1 else steps


class Measurements:
    """What the runs measured, by records, configuration and step ("total": the steps summed), and
    what is extrapolated for the configurations not run at a size."""

    def __init__(self, results: list[dict], steps: list[str]):
        self.by = {(r["records"], r["config"]): r for r in results}
        self.steps = steps
        self.extrapolated: dict[tuple[int, str, str], dict] = {}

    def measured(self, n: int, key: str, step: str) -> dict | None:
        row = self.by.get((n, key))
        if not row:
            return None
        if step == "total":
            ms = [row["steps"][s] for s in self.steps if s in row["steps"]]
            if len(ms) != len(self.steps):
                return None
            wall = sum(m["wall_s"] for m in ms)
            return {
                "wall_s": wall,
                "records_in": ms[0]["records_in"],
                "peak_rss_mb": max(m["peak_rss_mb"] for m in ms),
                "cores": sum(m["cpu_s"] for m in ms) / wall,
                "other_cores": sum(m.get("other_cores", float("nan")) * m["wall_s"] for m in ms) / wall,
            }
        return row["steps"].get(step)

    def get(self, n: int, key: str, step: str) -> tuple[dict | None, bool]:
        """Measured figures, else extrapolated ones; and whether they are extrapolated."""
        m = self.measured(n, key, step)
        if m:
            return m, False
        e = self.extrapolated.get((n, key, step))
        return (e, True) if e else (None, False)


def growth_exponent(have: list[tuple[int, dict]]) -> tuple[float, str]:
    """k in t(n) ~ n^k between the two largest measured sizes (linear with fewer), and how it was found."""
    k, basis = 1.0, "linear"
    if len(have) >= 2:
        (n1, a), (n2, b) = have[-2], have[-1]
        k = math.log(b["wall_s"] / a["wall_s"]) / math.log(n2 / n1)
        basis = f"k={k:.2f} measured {n1:,}->{n2:,}" if k >= 1 else f"linear (measured k={k:.2f} < 1)"
    return k, basis


def extrapolate(ms: Measurements, sizes: list[int], configs: list[str], steps: list[str]) -> dict:
    """Extrapolation for configurations that were not run at size n, from their largest measured
    size n0: scaled as another configuration measured at both n0 and n did (ray x1 first), else
    t(n0) * (n/n0)^k with k measured between this configuration's two largest sizes, else linear
    (k < 1, i.e. fixed costs still dominating, also falls back to linear: pessimistic)."""
    extrapolated: dict[tuple[int, str, str], dict] = {}
    for key in configs:
        for step in [*steps, "total"]:
            have = [(n, ms.measured(n, key, step)) for n in sizes if ms.measured(n, key, step)]
            if not have:
                continue
            n0, m0 = have[-1]
            k, basis = growth_exponent(have)
            for n in sizes:
                if n <= n0 or ms.measured(n, key, step):
                    continue
                like = next(
                    (
                        o
                        for o in ("ray1", "ray2", "inline")
                        if o != key and ms.measured(n0, o, step) and ms.measured(n, o, step)
                    ),
                    None,
                )
                if like:
                    wall = m0["wall_s"] * ms.measured(n, like, step)["wall_s"] / ms.measured(n0, like, step)["wall_s"]
                    how = f"scaled as {CONFIGS[like][0]} measured {n0:,}->{n:,}"
                else:
                    wall, how = m0["wall_s"] * (n / n0) ** max(k, 1.0), basis
                extrapolated[(n, key, step)] = {"wall_s": wall, "from": n0, "basis": how}
    return extrapolated


def same_as_base(ms: Measurements, n: int, key: str, step: str, m: dict, base_key: str) -> str:
    """Whether a step kept the same set (and bytes) as the base configuration at the same size."""
    base = ms.by.get((n, base_key))
    if step != "total" and base and step in base["steps"] and key != base_key:
        same = base["steps"][step]["bytes_sha"] == m["bytes_sha"] and (
            step != "filter" or base["steps"][step]["ids_sha"] == m["ids_sha"]
        )
        return "yes" if same else "NO"
    if key == base_key and step != "total":
        return "(base)"
    return "-"


def table_lines(ms: Measurements, sizes: list[int], configs: list[str], steps: list[str], base_key: str) -> list[str]:
    """One line per size, configuration and step: measured, or extrapolated (and marked so)."""
    head = (
        f"{'records':>10} {'config':<7} {'step':<9} {'wall s':>9} {'rec/s':>8} {'peak RSS MB':>12} {'cores':>6} "
        f"{'same as 1w':>10} {'others':>6}"
    )
    lines = ["", head, "-" * len(head)]
    for n in sizes:
        for key in configs:
            for step in report_steps(steps):
                m = ms.measured(n, key, step)
                label = CONFIGS[key][0]
                if m:
                    same = same_as_base(ms, n, key, step, m, base_key)
                    lines.append(
                        f"{n:>10,} {label:<7} {step:<9} {fmt_s(m['wall_s']):>9} "
                        f"{m['records_in'] / m['wall_s']:>8,.0f} {m['peak_rss_mb']:>12,.0f} {m['cores']:>6.2f} "
                        f"{same:>10} {m.get('other_cores', float('nan')):>6.2f}"
                    )
                elif (n, key, step) in ms.extrapolated:
                    e = ms.extrapolated[(n, key, step)]
                    lines.append(
                        f"{n:>10,} {label:<7} {step:<9} {'~' + fmt_s(e['wall_s']):>9} "
                        f"{'~' + format(round(n / e['wall_s']), ','):>8} {'?':>12} {'?':>6} {'?':>10} {'':>6}"
                        f"  EXTRAPOLATED from {e['from']:,} ({e['basis']})"
                    )
    return lines


def linear_time_goals(ms: Measurements, lo: int, hi: int, configs: list[str], steps: list[str], goals, lines) -> None:
    """Goal: time from the smallest to the largest size within 1.2x of linear."""
    scale = hi / lo
    for key in configs:
        for step in report_steps(steps):
            a, _ = ms.get(lo, key, step)
            b, ext = ms.get(hi, key, step)
            if not (a and b):
                continue
            ratio = b["wall_s"] / a["wall_s"] / scale
            goals.append(
                {
                    "goal": "linear time",
                    "config": key,
                    "step": step,
                    "value": ratio,
                    "extrapolated": ext,
                    "pass": ratio <= 1.2,
                }
            )
            lines.append(
                f"  time {lo:,}->{hi:,} / linear     {CONFIGS[key][0]:<7} {step:<9} {ratio:6.2f}  (<= 1.2) "
                f"{'EXTRAPOLATED, not measured' if ext else ('PASS' if ratio <= 1.2 else 'MISS')}"
            )


def rss_goals(ms: Measurements, lo: int, hi: int, configs: list[str], steps: list[str], goals, lines) -> None:
    """Goal: peak tree RSS at the largest size at most 2x that at the smallest (measured only)."""
    for key in configs:
        for step in report_steps(steps):
            a, b = ms.measured(lo, key, step), ms.measured(hi, key, step)
            if a and b:
                ratio = b["peak_rss_mb"] / a["peak_rss_mb"]
                goals.append({"goal": "rss growth", "config": key, "step": step, "value": ratio, "pass": ratio <= 2})
                lines.append(
                    f"  peak tree RSS {hi:,}/{lo:,}   {CONFIGS[key][0]:<7} {step:<9} {ratio:6.2f}  (<= 2)   "
                    f"{'PASS' if ratio <= 2 else 'MISS'}"
                )
            elif a:
                lines.append(
                    f"  peak tree RSS {hi:,}/{lo:,}   {CONFIGS[key][0]:<7} {step:<9}      ?  (<= 2)   "
                    f"not measured at {hi:,}"
                )


def speedup_goals(ms: Measurements, sizes: list[int], steps: list[str], goals, lines) -> None:
    """Goal: 2 workers at least 1.6x faster than 1 at each size; inline vs 2 workers for reference."""
    for n in sizes:
        for step in report_steps(steps):
            a, ea = ms.get(n, "ray1", step)
            b, eb = ms.get(n, "ray2", step)
            if a and b:
                ratio = a["wall_s"] / b["wall_s"]
                ext = ea or eb
                goals.append(
                    {
                        "goal": "2 workers speed-up",
                        "records": n,
                        "step": step,
                        "value": ratio,
                        "extrapolated": ext,
                        "pass": ratio >= 1.6,
                    }
                )
                lines.append(
                    f"  t(ray x1)/t(ray x2) at {n:,} {step:<9} {ratio:6.2f}  (>= 1.6) "
                    f"{'EXTRAPOLATED, not measured' if ext else ('PASS' if ratio >= 1.6 else 'MISS')}"
                )
            inline = ms.measured(n, "inline", step)
            if inline and b:
                lines.append(
                    f"  (reference) t(inline)/t(ray x2) at {n:,} {step:<9} {inline['wall_s'] / b['wall_s']:6.2f}"
                )


def build_report(results: list[dict], sizes: list[int], configs: list[str], steps: list[str]) -> dict:
    ms = Measurements(results, steps)
    base_key = "ray1" if "ray1" in configs else configs[0]  # the kept set every other run is compared with
    ms.extrapolated = extrapolate(ms, sizes, configs, steps)
    lines = table_lines(ms, sizes, configs, steps, base_key)
    goals: list[dict] = []
    lines += ["", "goals:"]
    if len(sizes) >= 2:
        linear_time_goals(ms, sizes[0], sizes[-1], configs, steps, goals, lines)
        rss_goals(ms, sizes[0], sizes[-1], configs, steps, goals, lines)
    speedup_goals(ms, sizes, steps, goals, lines)
    return {
        "text": "\n".join(lines),
        "goals": goals,
        "extrapolated": [{"records": n, "config": k, "step": s, **e} for (n, k, s), e in ms.extrapolated.items()],
    }


if __name__ == "__main__":
    sys.exit(main())
