"""The one exception users see: a one-line message, a non-zero exit, nothing half-written."""


class RdmdError(Exception):
    """Bad input or a failed run; the CLI prints ``rdmd: error: <message>`` and exits 2."""
