"""Reusable Beam transforms of odrecords: readers, image loading, validation, encoding, sinks."""
