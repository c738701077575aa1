"""What the store refuses: an unknown id (or another user's, which is the same to the caller), or a bad value.
The API's refusals (`autan.errors`), so every route words them alike; each also the built-in
error it is a kind of."""

from autan import errors


class NotFound(errors.NotFound, LookupError):
    pass


class Invalid(errors.Invalid, ValueError):
    pass


class Conflict(errors.Conflict, RuntimeError):
    """The change no longer applies: the thing it changes has moved on (a finished answer)."""
