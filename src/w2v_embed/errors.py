"""One project exception: the CLI turns it into one red line and exit code 1."""


class W2VEmbedError(Exception):
    """An error the user can act on; its message is shown as-is."""


class UsageError(W2VEmbedError):
    """Bad command-line usage (exit code 2)."""


class AudioError(W2VEmbedError):
    """A file that cannot be turned into samples; the message names the file and the reason."""


def one_line(text: str, limit: int = 200) -> str:
    """The last non-empty line of a tool's message (where the reason usually is), cut to `limit`."""
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    line = lines[-1] if lines else "unknown error"
    return line if len(line) <= limit else line[: limit - 1] + "…"
