"""Shared test setup.  The helpers for real peers live in ``tests/peers.py``."""
