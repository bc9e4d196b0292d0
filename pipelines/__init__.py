"""Runnable Beam graphs of odrecords and the `odrecords` command."""
