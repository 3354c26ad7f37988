"""The single source of rvoslib's version number."""

__all__ = ["__version__"]

__version__ = "0.2.0.dev0"
