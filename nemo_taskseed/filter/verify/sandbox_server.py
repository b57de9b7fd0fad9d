"""The code sandbox as a small HTTP service, for nodes where bubblewrap cannot run.

Inside pyxis/enroot containers there are often no unprivileged user namespaces, so bwrap cannot
make its sandbox where the filter runs. This service runs on a node where it can (a CPU node, or
the same node outside the container) and runs each check with the very same harness, namespaces
and limits as the local sandbox (`sandbox.execute`); the filter selects it with
`filter.verify.code.sandbox=http filter.verify.code.sandbox_url=http://HOST:PORT`.

    python -m nemo_taskseed.filter.verify.sandbox_server --port 8731 [--host 0.0.0.0] [--workers 4]

  GET  /health  {"ok": true, "bounds": {...}}: which mechanism bounds what on the service's node
                (the filter's summary warns about each bound listed under "unbounded").
  POST /run     {"code": str, "exprs": [str], "limits": {timeout_s, memory_mb, max_processes,
                write_mb}} -> the run's report lines and stderr tail (`sandbox.RawRun`).

The service never sees a test's expected value: the client sends only the expressions to
evaluate and judges the reported values itself, as it does with the local sandbox. It has no
authentication: it runs arbitrary code (inside the sandbox), so bind it to localhost or to the
cluster's private network only (the default is 127.0.0.1).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from nemo_taskseed.errors import UserError
from nemo_taskseed.filter.verify.sandbox import Limits, execute, sandbox_plan

# A request larger than this is refused before it is read (a program and its test expressions).
MAX_REQUEST_BYTES = 8 << 20
# What a client may ask for at most, so one request cannot hold the service's node for long.
MAX_LIMITS = Limits(timeout_s=300.0, memory_mb=16384, max_processes=4096, write_mb=4096)


class _Handler(BaseHTTPRequestHandler):
    server: _SandboxServer

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        if self.path.rstrip("/") == "/health":
            self._send(200, {"ok": True, "bounds": self.server.bounds, "unbounded": self.server.bounds["unbounded"]})
        else:
            self._send(404, {"error": f"no such path {self.path}; GET /health, POST /run"})

    def do_POST(self) -> None:  # noqa: N802
        if self.path.rstrip("/") != "/run":
            self._send(404, {"error": f"no such path {self.path}; GET /health, POST /run"})
            return
        try:
            length = int(self.headers.get("Content-Length") or -1)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_REQUEST_BYTES:
            self._send(413, {"error": f"a request needs a Content-Length of at most {MAX_REQUEST_BYTES} bytes"})
            return
        try:
            request = json.loads(self.rfile.read(length))
            code, exprs = request["code"], request["exprs"]
            limits = Limits.from_dict(request["limits"])
            if not isinstance(code, str) or not isinstance(exprs, list) or not all(isinstance(e, str) for e in exprs):
                raise ValueError("code must be a string and exprs a list of strings")
        except (ValueError, KeyError, TypeError) as exc:
            self._send(400, {"error": f"bad request: {exc}"})
            return
        problems = limits.problems() + [
            f"{name} {getattr(limits, name)} is over this service's maximum {getattr(MAX_LIMITS, name)}"
            for name in ("timeout_s", "memory_mb", "max_processes", "write_mb")
            if getattr(limits, name) > getattr(MAX_LIMITS, name)
        ]
        if problems:
            self._send(400, {"error": "; ".join(problems)})
            return
        with self.server.slots:  # at most --workers sandboxes at once; the others wait their turn
            try:
                raw = execute(code, exprs, limits)
            except (UserError, OSError) as exc:
                self._send(503, {"error": str(exc)})
                return
        self._send(200, raw.to_dict())

    def log_message(self, format: str, *args: Any) -> None:
        if not self.server.quiet:
            super().log_message(format, *args)


class _SandboxServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], workers: int, quiet: bool) -> None:
        # Fails here, before listening, where bwrap cannot make its sandbox on this node.
        self.bounds = sandbox_plan()
        self.slots = threading.BoundedSemaphore(workers)
        self.quiet = quiet
        super().__init__(address, _Handler)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m nemo_taskseed.filter.verify.sandbox_server",
        description="Run the code sandbox as an HTTP service (docs/filter.md).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, required=True, help="port to listen on; 0 picks a free one")
    parser.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="sandboxes run at once (default: the CPU count)"
    )
    parser.add_argument("--quiet", action="store_true", help="no line per request on stderr")
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be >= 1")
    try:
        server = _SandboxServer((args.host, args.port), args.workers, args.quiet)
    except UserError as exc:
        print(f"sandbox_server: {exc}", file=sys.stderr)
        return 2
    host, port = server.server_address[:2]
    # The first line of stdout, for whoever started the service on port 0.
    print(f"sandbox service on http://{host}:{port} bounds: {json.dumps(server.bounds)}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
