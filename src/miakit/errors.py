"""The exceptions of bad input, so the CLI can print each as one clear message."""


class MiakitError(Exception):
    """Bad input or state: the message says what was expected and how to fix it."""


class AttackUnavailable(MiakitError):
    """An attack cannot run on the signals given (e.g. LiRA on predicted labels alone, QMIA
    without the records' features); the message says why."""


class StaleInputs(MiakitError):
    """What a stage reads is missing or stale (models, scores, metrics); the message names the
    command that makes it current."""
