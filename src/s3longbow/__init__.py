"""Longbow: move massive sets of objects between S3-compatible stores, resumably and verifiably."""

__version__ = "0.1.0"
__all__ = ["__version__"]
