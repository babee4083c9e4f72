"""The one exception the character-level model raises for bad input: data, checkpoints, output paths."""


class CharLMError(ValueError):
    """Bad input that the user can fix; its message is one line: what, where, and what to do.

    The command line prints it as `jaxrnn <command>: <message>` on stderr and exits non-zero.
    """
