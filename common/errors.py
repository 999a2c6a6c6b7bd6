"""The one error type for bad input.

Every check of what a user gave (a node input, a command-line argument, a file or folder they named)
raises InputError, which carries the name of the input it is about. The message always starts with
that name, so a traceback-free ComfyUI error or a command-line error reads "motion_db: ...". The node
layer may rename the input to the node's own word for it (`for_input`); nothing parses message text.
"""
from __future__ import annotations

import copy


class InputError(ValueError):
    """Bad input: `input` names it; the message says what was found and what was expected."""

    def __init__(self, input: str, message: str):
        self.input = str(input)
        self.message = str(message)
        super().__init__(f"{self.input}: {self.message}")

    def __reduce__(self):
        # exceptions pickle through their args; keep the two-argument form (worker processes, Ray)
        return (_rebuild, (type(self), self.__dict__))

    def for_input(self, name: str) -> "InputError":
        """The same error, about the input called `name` (a node's word for a library argument)."""
        if name == self.input:
            return self
        err = copy.copy(self)
        err.input = name
        err.args = (f"{name}: {self.message}",)
        return err


def _rebuild(cls, state):
    err = cls.__new__(cls)
    err.__dict__.update(state)
    err.args = (f"{state['input']}: {state['message']}",)
    return err
