"""The engine's error for bad configuration (its own module, so the config and the checkpoint reader share it)."""


class ConfigError(Exception):
    """Invalid configuration; the message is one line naming the file and key."""
