"""Rate limits and transient errors of OpenAI-compatible endpoints, against real local HTTP servers.

Each test starts one or two small OpenAI-compatible servers (`http.server` in a thread, on
127.0.0.1) that answer `/v1/chat/completions` with HTTP 429 (with or without Retry-After), 503 or
nothing at all for a number of requests or seconds, then with normal completions. The backend is
the real `OpenAIBackend` (Curator's `AsyncOpenAIClient`, the openai SDK, httpx), built from the
config with small backoff settings so every test takes seconds.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from nemo_taskseed.llm.backends import BackendUnavailable, OpenAIBackend, Request, build_backend
from nemo_taskseed.llm.server import free_port

# (status, headers) for the i-th request a server receives (0-based) at `elapsed` seconds after
# its first one; status 200 is a completion.
Policy = Callable[[int, float], tuple[int, dict[str, str]]]


def ok(i: int, elapsed: float) -> tuple[int, dict[str, str]]:
    return 200, {}


def first(n: int, status: int = 429, headers: dict[str, str] | None = None) -> Policy:
    """`status` for the first `n` requests, then completions."""
    return lambda i, elapsed: (status, dict(headers or {})) if i < n else (200, {})


def during(seconds: float, headers: dict[str, str]) -> Policy:
    """429 for the first `seconds` after the first request, then completions."""
    return lambda i, elapsed: (429, dict(headers)) if elapsed < seconds else (200, {})


class FakeServer:
    """An OpenAI-compatible chat endpoint whose replies follow `policy`; counts what it answered."""

    def __init__(self, policy: Policy, port: int = 0, reply_s: float = 0.0):
        self.policy = policy
        self.reply_s = reply_s  # how long a completion takes
        self.statuses: Counter[int] = Counter()
        self.times: list[float] = []  # when each request arrived (monotonic)
        self._lock = threading.Lock()
        self._first: float | None = None
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as a real server

            def log_message(self, *args):  # no per-request lines on stderr
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                if self.path.rstrip("/") != "/v1/chat/completions":
                    return self._send(404, {"error": {"message": f"no route {self.path}"}})
                with server._lock:
                    now = time.monotonic()
                    if server._first is None:
                        server._first = now
                    status, headers = server.policy(len(server.times), now - server._first)
                    server.times.append(now)
                    server.statuses[status] += 1
                if status != 200:
                    kind = "rate_limit_exceeded" if status == 429 else "server_error"
                    return self._send(status, {"error": {"message": f"test server: {status}", "type": kind}}, headers)
                time.sleep(server.reply_s)
                question = body["messages"][-1]["content"]
                n = int(body.get("n") or 1)
                reply = {
                    "id": "chatcmpl-test",
                    "object": "chat.completion",
                    "created": 0,
                    "model": body.get("model", "m"),
                    "choices": [
                        {
                            "index": k,
                            "message": {"role": "assistant", "content": f"re: {question}"},
                            "finish_reason": "stop",
                        }
                        for k in range(n)
                    ],
                    "usage": {"prompt_tokens": 5, "completion_tokens": 3 * n, "total_tokens": 5 + 3 * n},
                }
                self._send(200, reply)

            def _send(self, status: int, payload: dict, headers: dict[str, str] | None = None):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> FakeServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


def backend(urls: list[str], **openai) -> OpenAIBackend:
    """An OpenAI backend from the config (configs/base and these overrides), small backoffs."""
    from nemo_taskseed.config import load_config

    settings = {"backoff_s": 0.02, "max_backoff_s": 0.2, "max_wait_s": 5, "timeout_s": 5, **openai}
    overrides = [
        "generate.backend.kind=openai",
        "generate.backend.model=test-model",
        f"generate.backend.openai.base_url={','.join(urls)}",
        *[f"generate.backend.openai.{k}={v}" for k, v in settings.items()],
    ]
    built = build_backend(load_config(overrides=overrides))
    assert isinstance(built, OpenAIBackend)
    return built


def ask(b: OpenAIBackend, count: int) -> tuple[list[list[str]], float]:
    """`count` one-completion requests through `chat`; the replies and the wall time."""
    conversations = [[{"role": "user", "content": f"q{i}"}] for i in range(count)]
    started = time.monotonic()
    replies = b.chat(conversations, n=1, temperature=0.0, top_p=1.0, max_tokens=4)
    return replies, time.monotonic() - started


def test_first_requests_rate_limited_with_retry_after_back_off_and_all_complete():
    """The server's first 6 replies are 429 with `retry-after-ms: 100`: every request completes,
    exactly the 6 rate-limited ones are sent again, and the endpoint stays in rotation."""
    with FakeServer(first(6, 429, {"retry-after-ms": "100"})) as server:
        b = backend([server.url], max_concurrency=4)
        replies, seconds = ask(b, 10)
        assert replies == [[f"re: q{i}"] for i in range(10)]
        assert server.statuses == {429: 6, 200: 10}
        assert b.usage.retries == 6 and b.usage.rate_limited == 6 and b.usage.requests == 10
        (endpoint,) = b.endpoints
        assert endpoint.rate_limited == 6 and endpoint.down is None and endpoint.outages == 0
        # 4 sent at once, all 429 (one cool-down), then single probes 100 ms apart (429, 429, ok)
        # and the ramp back up: the Retry-After waits were kept, and nothing waited much longer.
        assert 0.3 <= seconds < 3.0, seconds
        # The same backend keeps working (a second stream, a new event loop).
        assert ask(b, 3)[0] == [[f"re: q{i}"] for i in range(3)]
        assert b.usage.retries == 6
        b.close()


def test_retry_after_seconds_header_is_honoured():
    """`Retry-After: 1` (whole seconds, the standard header) makes the retry wait a second, even
    though backoff_s alone would have retried after 20 ms."""
    with FakeServer(first(2, 429, {"Retry-After": "1"})) as server:
        b = backend([server.url], max_concurrency=2)
        replies, seconds = ask(b, 2)
        assert len(replies) == 2 and b.usage.retries == 2
        retried = server.times[2] - server.times[1]
        assert retried >= 0.95, retried
        assert seconds < 3.0, seconds
        b.close()


def test_rate_limited_for_a_while_then_serving():
    """429 for 1.5 s, half of them without any Retry-After (exponential backoff with jitter, capped
    at max_backoff_s): the run waits it out and finishes soon after the limit lifts."""

    def policy(i: int, elapsed: float) -> tuple[int, dict[str, str]]:
        if elapsed >= 1.5:
            return 200, {}
        return 429, ({"retry-after-ms": "150"} if i % 2 else {})

    with FakeServer(policy) as server:
        b = backend([server.url], max_concurrency=8)
        replies, seconds = ask(b, 24)
        assert len(replies) == 24 and all(r[0].startswith("re: q") for r in replies)
        assert server.statuses[200] == 24
        assert b.usage.rate_limited == server.statuses[429] == b.usage.retries
        # 8 at once, then one probe at a time: max_backoff_s (0.2 s) bounds the gaps between probes.
        assert 8 <= server.statuses[429] <= 8 + 1.5 / 0.02, server.statuses
        assert 1.5 <= seconds < 4.0, seconds
        assert b.endpoints[0].down is None
        b.close()


def test_rate_limits_longer_than_the_budget_stop_with_a_clear_error(tmp_path):
    """A server that answers 2 requests and then only 429s: the run stops once a request has
    waited max_wait_s, naming the endpoint, the status and the key; what finished is in the cache."""
    from nemo_taskseed.llm.cache import RequestCache
    from nemo_taskseed.llm.requests import make_request, run_requests

    with FakeServer(lambda i, elapsed: (200, {}) if i < 2 else (429, {"retry-after-ms": "100"})) as server:
        b = backend([server.url], max_concurrency=1, max_wait_s=0.6)
        sampling = {"n": 1, "temperature": 0.0, "top_p": 1.0, "max_tokens": 4, "seed": None}
        requests = [make_request([{"role": "user", "content": f"q{i}"}], b.model, sampling, None) for i in range(5)]
        cache = RequestCache(tmp_path / "shard.generate.sqlite")
        started = time.monotonic()
        with pytest.raises(BackendUnavailable) as caught:
            run_requests({"shard": requests}, b, {"shard": cache})
        seconds = time.monotonic() - started
        message = str(caught.value)
        assert server.url in message and "HTTP 429 (rate limited)" in message
        assert "generate.backend.openai.max_wait_s=0.6" in message and "raise it to wait longer" in message
        assert 0.6 <= seconds < 3.0, seconds
        cache.close()
        # The two answered requests were committed before the failure: a rerun sends only the rest.
        kept = RequestCache(tmp_path / "shard.generate.sqlite")
        assert len(kept) == 2 and len(kept.get_many([r.key for r in requests])) == 2
        kept.close()
        b.close()


def test_retry_after_beyond_the_budget_fails_at_once():
    """`Retry-After: 3600` with 5 s of budget: no point waiting, the error says so at once."""
    with FakeServer(first(100, 429, {"Retry-After": "3600"})) as server:
        b = backend([server.url], max_concurrency=1, max_wait_s=5)
        started = time.monotonic()
        with pytest.raises(BackendUnavailable, match=r"the server asks to wait 3600\.0s") as caught:
            ask(b, 1)
        assert time.monotonic() - started < 2.0
        assert "would have to wait 3600.0s more" in str(caught.value)
        assert server.statuses == {429: 1}
        b.close()


def test_a_rate_limited_endpoint_cools_down_while_the_other_takes_the_load():
    """Two endpoints, one answering only 429 (Retry-After 0.3 s), the other fine: every request
    is answered by the second, none fails, and the first is probed again after each cool-down
    (never dropped for good)."""
    with FakeServer(lambda i, elapsed: (429, {"retry-after-ms": "300"})) as limited, FakeServer(ok) as fine:
        b = backend([limited.url, fine.url], max_concurrency=4, max_wait_s=1)
        replies, seconds = ask(b, 40)
        assert len(replies) == 40
        assert fine.statuses == {200: 40} and set(limited.statuses) == {429}
        assert b.usage.rate_limited == limited.statuses[429] == b.usage.retries
        # The first burst (up to 4) plus about one probe per 0.3 s cool-down, not one per request.
        assert limited.statuses[429] <= 4 + seconds / 0.3 + 1, (limited.statuses, seconds)
        assert seconds < 3.0, seconds
        assert b.endpoints[0].down is not None and b.endpoints[1].down is None
        assert b.endpoints[0].strikes == 0  # a 429 is an answer: the server is there
        b.close()


def test_queueing_for_a_busy_healthy_endpoint_is_not_counted_as_backing_off():
    """One endpoint only 429s, the other is healthy but slow (0.2 s a reply, 2 at a time): the
    requests queue for its slots far longer than max_wait_s=0.3 in all, and none fails, because
    waiting for a healthy endpoint that is merely full is not backing off."""
    with (
        FakeServer(lambda i, elapsed: (429, {"retry-after-ms": "100"})) as limited,
        FakeServer(ok, reply_s=0.2) as slow,
    ):
        b = backend([limited.url, slow.url], max_concurrency=2, max_wait_s=0.3)
        replies, seconds = ask(b, 12)
        assert len(replies) == 12 and slow.statuses == {200: 12}
        assert seconds >= 12 / 2 * 0.2 > 0.3, seconds
        b.close()


def test_server_errors_are_retried_with_backoff():
    """503 for the first 3 requests (no Retry-After): backed off and sent again, all complete."""
    with FakeServer(first(3, 503)) as server:
        b = backend([server.url], max_concurrency=4, max_retries=2)
        replies, _ = ask(b, 8)
        assert len(replies) == 8 and server.statuses == {503: 3, 200: 8}
        assert b.usage.retries == 3 and b.usage.rate_limited == 0
        assert b.endpoints[0].down is None
        b.close()


def test_a_dead_endpoint_is_probed_again_not_dropped_and_a_restarted_one_is_used():
    """One endpoint with nobody listening, one fine: all requests are answered (even with
    max_retries=0, the request moves to the other endpoint). Then a server comes up on the dead
    port and, once its cool-down ends, requests go to it again."""
    port = free_port()
    dead = f"http://127.0.0.1:{port}/v1"
    with FakeServer(ok) as fine:
        b = backend([dead, fine.url], max_concurrency=2, max_retries=0, max_backoff_s=0.1)
        replies, _ = ask(b, 6)
        assert len(replies) == 6 and fine.statuses == {200: 6}
        assert b.endpoints[0].down is not None and b.usage.retries >= 1
        # The dead endpoint's server comes back on the same port.
        with FakeServer(ok, port) as revived:
            time.sleep(0.15)  # past the capped cool-down
            replies, _ = ask(b, 20)
        assert len(replies) == 20 and revived.statuses[200] >= 1
        assert b.endpoints[0].down is None
        b.close()


def test_all_endpoints_unreachable_stop_after_max_retries_not_max_wait():
    """Nobody listening anywhere: the run stops after max_retries backoffs per endpoint, with
    'cannot reach', well before max_wait_s."""
    dead = [f"http://127.0.0.1:{free_port()}/v1" for _ in range(2)]
    b = backend(dead, max_concurrency=8, max_retries=2, max_wait_s=60)
    started = time.monotonic()
    with pytest.raises(BackendUnavailable, match=r"cannot reach .* after 3 attempts") as caught:
        ask(b, 16)
    assert time.monotonic() - started < 5.0
    message = str(caught.value)
    assert all(url in message for url in dead) and "generate.backend.openai.max_retries=2" in message
    b.close()


def test_other_client_errors_stop_at_once():
    """HTTP 401 is not transient: no retry, the error names the endpoint."""
    with FakeServer(lambda i, elapsed: (401, {})) as server:
        b = backend([server.url], max_concurrency=2)
        with pytest.raises(BackendUnavailable, match="refused the request"):
            ask(b, 2)
        assert server.statuses[401] <= 2 and b.usage.retries == 0
        b.close()


@pytest.mark.parametrize(
    "override, message",
    [
        ("max_wait_s=-1", "generate.backend.openai.max_wait_s must be >= 0"),
        ("backoff_s=0", "generate.backend.openai.backoff_s must be > 0"),
        ("max_backoff_s=0.01", "generate.backend.openai.max_backoff_s must be >= backoff_s"),
    ],
)
def test_bad_retry_settings_name_the_key(override, message):
    from nemo_taskseed.errors import UserError

    key, value = override.split("=")
    with pytest.raises(UserError, match=message):
        backend(["http://127.0.0.1:9/v1"], **{key: value})


def test_settings_left_out_come_from_the_base_config():
    """A partial section (a verifier's `{kind: openai, model: ...}`) gets configs/base's values."""
    from nemo_taskseed.config import base_config, to_container
    from nemo_taskseed.llm.backends import OpenAISettings

    base = to_container(base_config())["generate"]["backend"]["openai"]
    s = OpenAISettings(model="m", max_wait_s=7)
    assert s.max_wait_s == 7
    assert (s.max_backoff_s, s.max_retries, s.backoff_s, s.base_url) == (
        base["max_backoff_s"],
        base["max_retries"],
        base["backoff_s"],
        base["base_url"],
    )
    assert isinstance(build_backend({"kind": "openai", "model": "m"}), OpenAIBackend)


def test_retry_counts_reach_the_request_stats():
    """`Completion.usage` carries each request's retries, so shard markers and the step summary
    (`backend.usage.retries`, `rate_limited`) add them up."""
    with FakeServer(first(1, 429, {"retry-after-ms": "50"})) as server:
        b = backend([server.url], max_concurrency=1)
        sampling = {"n": 1, "temperature": 0.0, "top_p": 1.0, "max_tokens": 4}
        done = list(
            b.stream(
                [
                    Request("a", [{"role": "user", "content": "q"}], sampling),
                    Request("b", [{"role": "user", "content": "r"}], sampling),
                ]
            )
        )
        by_key = {c.request.key: c.usage for c in done}
        assert by_key["a"].retries == 1 and by_key["a"].rate_limited == 1
        assert by_key["b"].retries == 0 and server.statuses == {429: 1, 200: 2}
        b.close()


def test_generate_step_summary_counts_the_retries(tmp_path, fixtures_hf):
    """`taskseed generate` against a server whose first 2 replies are 429: the run finishes and
    `summary.json` says how many requests were sent again (`backend.usage`)."""
    from nemo_taskseed.config import load_config
    from nemo_taskseed.generate.fixture_seeds import fixture_seeds, write_seeds
    from nemo_taskseed.generate.step import run_step

    write_seeds(tmp_path / "seeds" / "seeds.jsonl", fixture_seeds({"arc_easy": 3}, fixtures_dir=fixtures_hf))
    with FakeServer(first(2, 429, {"retry-after-ms": "50"})) as server:
        cfg = load_config(
            overrides=[
                "generate.backend.kind=openai",
                "generate.backend.model=test-model",
                f"generate.backend.openai.base_url={server.url}",
                "generate.backend.openai.backoff_s=0.02",
                "generate.backend.openai.max_backoff_s=0.2",
            ]
        )
        summary = run_step(cfg, tmp_path / "seeds", tmp_path / "out")
    assert summary["requests"]["generate"]["sent"] == 3 and server.statuses == {429: 2, 200: 3}
    assert summary["backend"]["usage"]["retries"] == 2 and summary["backend"]["usage"]["rate_limited"] == 2
    on_disk = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert on_disk["backend"]["usage"]["retries"] == 2
