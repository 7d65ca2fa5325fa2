"""Helpers of ``tests/engine/test_faults.py``: fault servers (HTTP/1.1 and raw HTTP/2) and engine plumbing."""
