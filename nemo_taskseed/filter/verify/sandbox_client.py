"""The client of the code sandbox service (sandbox_server.py), for `filter.verify.code.sandbox=http`.

`execute_http` sends a program and its test expressions to the service and gets back the same
`RawRun` the local sandbox gives (the expected values never leave this process);
`service_health` asks which bounds the service's node enforces.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import asdict, replace
from typing import Any

from nemo_taskseed.errors import UserError
from nemo_taskseed.filter.verify.sandbox_runner import RawRun
from nemo_taskseed.filter.verify.sandbox_settings import Limits


def _http_opener():
    # The service is on this node or the cluster's network: never through a proxy from the environment.
    return urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _service_error(url: str, exc: BaseException) -> UserError:
    return UserError(
        f"the code sandbox service at {url} (filter.verify.code.sandbox_url) cannot be used: {exc}; start it "
        "with `python -m nemo_taskseed.filter.verify.sandbox_server --port N` on a node with bubblewrap, or "
        "set filter.verify.code.sandbox=local"
    )


def execute_http(url: str, code: str, exprs: list[str], limits: Limits) -> RawRun:
    """The same run, by the service at `url` (nemo_taskseed/filter/verify/sandbox_server.py)."""
    body = json.dumps({"code": code, "exprs": exprs, "limits": asdict(limits)}).encode()
    request = urllib.request.Request(
        url.rstrip("/") + "/run", data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        # The service's own timeout kills the run; this one only covers a service that stopped
        # answering (with room for a turn in its queue: it runs --workers sandboxes at once).
        with _http_opener().open(request, timeout=limits.timeout_s + 300) as response:
            raw = RawRun.from_dict(json.loads(response.read()))
    except urllib.error.HTTPError as exc:
        raise _service_error(url, f"HTTP {exc.code}: {exc.read()[:300].decode('utf-8', 'replace')}") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise _service_error(url, f"{type(exc).__name__}: {exc}") from None
    return replace(raw, sandbox=f"http:{raw.sandbox}")


def service_health(url: str, timeout: float = 10) -> dict[str, Any]:
    with _http_opener().open(url.rstrip("/") + "/health", timeout=timeout) as response:
        return json.loads(response.read())
