"""Errors a user can act on.

Every message says what is wrong, where (file, CSV line, config key) and what to do; the
CLI prints it without a traceback and exits with status 2.
"""


class DuiitError(Exception):
    """A problem with the user's input or environment, explained for the user."""
