"""Mitosis SDK: wire schemas, typed errors and the HTTP client shared by every program."""

__version__ = "0.1.0"
