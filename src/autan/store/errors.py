"""What the store refuses: an unknown id (or another user's, which is the same to the caller), or a bad value."""

from autan.errors import AutanError


class NotFound(AutanError, LookupError):
    pass


class Invalid(AutanError, ValueError):
    pass


class Conflict(AutanError, RuntimeError):
    """The change no longer applies: the thing it changes has moved on (a finished answer)."""
