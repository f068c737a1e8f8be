"""User-facing errors: one line that names the key or file and the fix, exit code 2."""


class SparseyConfigError(Exception):
    """A bad configuration value, path or input; printed as one line, exit code 2."""

    exit_code = 2

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))
