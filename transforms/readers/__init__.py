"""Readers: one module per annotation format, each producing the canonical records."""
