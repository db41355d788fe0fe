"""The one exception type a user can cause; the CLI prints its message on one line and exits 2."""


class GankitError(Exception):
    """Bad input or a state the user can fix: the message says what was wrong and what to do."""
