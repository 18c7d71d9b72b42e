"""Longbow's test kit: real S3-compatible servers on 127.0.0.1, hostile fake ones, proxies that
inject faults or re-sign requests, and the SIGKILL chaos runner.

It drives the product (`s3longbow`) from outside; the product never imports it.
"""
