"""User-facing errors: one class, one line, naming file, key and what was expected.

The CLI prints ``str(err)`` and exits with status 2; anything that is not a
``CooptError`` is a bug and keeps its traceback.
"""
from __future__ import annotations


class CooptError(Exception):
    """A mistake in the user's input (file, key, value) or an impossible request."""

    def __init__(self, message: str, *, file: str | None = None, key: str | None = None,
                 expected: str | None = None):
        self.message = message
        self.file = file
        self.key = key
        self.expected = expected
        super().__init__(self.format())

    def format(self) -> str:
        where = []
        if self.file:
            where.append(str(self.file))
        if self.key:
            where.append(str(self.key))
        text = ": ".join(where + [self.message]) if where else self.message
        if self.expected:
            text += f" (expected {self.expected})"
        return text

    def at(self, *, file: str | None = None, key_prefix: str | None = None) -> "CooptError":
        """Return the same error located in ``file`` and/or under ``key_prefix``."""
        key = self.key
        if key_prefix:
            key = f"{key_prefix}.{key}" if key else key_prefix
        err = type(self)(self.message, file=file or self.file, key=key, expected=self.expected)
        return err


class SpecError(CooptError):
    """An architecture, problem, mapping or search-space file is malformed."""


class MappingError(CooptError):
    """A mapping does not fit the layer or the architecture."""


class BinaryNotFound(CooptError):
    """An external tool (timeloop-model, accelergy, ...) is not installed."""
