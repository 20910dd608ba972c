"""The package version: one place, read by ``pyproject.toml`` and the server's replies."""

__version__ = "0.1.0"
