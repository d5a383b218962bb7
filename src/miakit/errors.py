"""One exception type for bad input, so the CLI can print it as one clear message."""


class MiakitError(Exception):
    """Bad input or state: the message says what was expected and how to fix it."""
