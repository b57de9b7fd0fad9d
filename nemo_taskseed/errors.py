"""Errors a user can fix (bad name, missing file, impossible plan): the CLI prints them without a traceback."""


class UserError(Exception):
    """Base of every user-fixable error; the message names the file, line or key at fault."""


# Errors of the machine, not of the code: a full disk, a read-only or foreign folder. A step that
# hits one stops with the path and the reason instead of a traceback; what it committed before
# (finished shards, cached requests) stays, so a rerun after the fix resumes.
ENVIRONMENT_ERRNOS = {"ENOSPC", "EDQUOT", "EROFS", "EACCES", "EPERM", "EFBIG"}


def environment_error(exc: BaseException, folder: str | None = None) -> str | None:
    """A one-line description if `exc` (or what caused it) is a full disk, read-only folder or
    permission error; None otherwise. `folder`: named when the error names no file. SQLite reports these as its own errors ("database or disk is
    full", "attempt to write a readonly database", "disk I/O error")."""
    import errno
    import sqlite3

    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and errno.errorcode.get(exc.errno or 0) in ENVIRONMENT_ERRNOS:
            where = exc.filename or folder or "the output folder"
            return f"{where}: {exc.strerror}"
        if isinstance(exc, sqlite3.OperationalError) and any(
            s in str(exc) for s in ("disk is full", "readonly database", "disk I/O error", "unable to open")
        ):
            return f"request cache: {exc} (the disk of the output folder is full, read-only or failing)"
        exc = exc.__cause__ or exc.__context__
    return None
