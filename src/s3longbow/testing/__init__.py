"""Helpers for running s3longbow against real local S3-compatible servers."""
