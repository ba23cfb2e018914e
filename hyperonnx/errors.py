"""The one error type for user mistakes: the CLI prints its message as one line and exits with status 2."""


class HyperonnxError(Exception):
    """A problem with the user's input or options (missing or corrupt file, unknown codec, bad path...)."""
