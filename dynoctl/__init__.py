"""dynoctl: the operations CLI and maintenance toolkit for the Dyno platform."""

__version__ = "0.1.0"
