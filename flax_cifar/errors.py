"""Errors that mean "fix the input", reported as one line without a traceback."""


class InputError(ValueError):
    """A config field, data file, checkpoint or argument that cannot be used, named."""
