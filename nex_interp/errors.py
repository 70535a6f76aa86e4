"""User-facing errors: one line saying what is wrong and what to do; the CLI exits 2 on them."""


class NexError(Exception):
    """A problem with the user's input (file, option, model), not a bug.

    The message is a single line naming the offending file or field, the problem, and the fix.
    The CLI prints ``nex: error: <message>`` and exits with status 2, without a traceback.
    """


class CacheError(NexError):
    """A sparse activation cache is missing, truncated or inconsistent."""


class WeightsError(NexError):
    """A neuron-weights file cannot be read."""


class ConfigError(NexError):
    """An option or configuration field is invalid."""


class ModelError(NexError):
    """A model cannot be found or loaded."""
