"""One project exception: the CLI turns it into one red line and exit code 1."""


class W2VEmbedError(Exception):
    """An error the user can act on; its message is shown as-is."""


class UsageError(W2VEmbedError):
    """Bad command-line usage (exit code 2)."""
