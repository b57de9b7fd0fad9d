"""Errors a user can fix (bad name, missing file, impossible plan): the CLI prints them without a traceback."""


class UserError(Exception):
    """Base of every user-fixable error; the message names the file, line or key at fault."""
