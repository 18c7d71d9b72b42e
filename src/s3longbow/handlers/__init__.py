"""Thin entry points for managed runtimes (AWS Lambda); the work happens in the package."""
