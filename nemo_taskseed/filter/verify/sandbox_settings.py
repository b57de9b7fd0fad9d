"""The settings of code verification (`filter.verify.code`) and the limits of one check.

`Limits` are the bounds one sandboxed run gets, the same for the local sandbox and the HTTP
service (which receives them with each request); `CodeSettings` reads them from the config with
where the sandbox runs (this node, or the service) and the opt-out of the sandbox.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nemo_taskseed.config import section_settings
from nemo_taskseed.errors import UserError

MIB = 1 << 20


@dataclass(frozen=True)
class Limits:
    """The bounds of one check: the same for the local sandbox and the HTTP service.

    max_processes counts every task of the sandbox (processes and threads, bwrap's own included);
    write_mb is the size of each writable path (/tmp, /dev/shm, the working folder /sandbox)."""

    timeout_s: float
    memory_mb: int
    max_processes: int
    write_mb: int

    def problems(self) -> list[str]:
        out = []
        if not self.timeout_s > 0:
            out.append(f"timeout_s must be > 0, got {self.timeout_s}")
        if self.memory_mb < 1:
            out.append(f"memory_mb must be >= 1, got {self.memory_mb}")
        # bwrap, its init process in the sandbox and the interpreter are three tasks already.
        if self.max_processes < 4:
            out.append(f"max_processes must be >= 4 (bwrap and the interpreter are 3), got {self.max_processes}")
        if self.write_mb < 1:
            out.append(f"write_mb must be >= 1, got {self.write_mb}")
        return out

    @classmethod
    def from_dict(cls, d: dict) -> Limits:
        return cls(float(d["timeout_s"]), int(d["memory_mb"]), int(d["max_processes"]), int(d["write_mb"]))


@dataclass(frozen=True)
class CodeSettings:
    """`filter.verify.code` (configs/base/filter.yaml): limits of one check, where the sandbox runs
    (this node, or an HTTP service), and the opt-out of the sandbox (a plain subprocess, no isolation)."""

    timeout_s: float
    memory_mb: int
    max_processes: int
    write_mb: int
    sandbox: str
    sandbox_url: str | None
    unsafe_no_sandbox: bool

    @classmethod
    def from_config(cls, cfg: Any, **overrides: Any) -> CodeSettings:
        values = {**section_settings(cls, cfg, "filter.verify.code"), **overrides}
        out = cls(
            float(values["timeout_s"]),
            int(values["memory_mb"]),
            int(values["max_processes"]),
            int(values["write_mb"]),
            str(values["sandbox"]),
            str(values["sandbox_url"]) if values["sandbox_url"] else None,
            bool(values["unsafe_no_sandbox"]),
        )
        problems = out.limits.problems()
        if problems:
            raise UserError("filter.verify.code: " + "; ".join(problems))
        if out.sandbox not in ("local", "http"):
            raise UserError(f"filter.verify.code.sandbox must be local or http, got {out.sandbox!r}")
        if out.sandbox == "http" and not (out.sandbox_url or "").startswith(("http://", "https://")):
            raise UserError(
                "filter.verify.code.sandbox=http needs filter.verify.code.sandbox_url=http://HOST:PORT "
                f"(the service's address), got {out.sandbox_url!r}"
            )
        return out

    @property
    def limits(self) -> Limits:
        return Limits(self.timeout_s, self.memory_mb, self.max_processes, self.write_mb)
