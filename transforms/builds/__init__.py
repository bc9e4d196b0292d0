"""Builds: the output's layout and lock, its index and reuse, publishing, reports, safe writes."""
