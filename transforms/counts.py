"""The manifest's counts: nested dicts of numbers that every stage emits and one combine sums.

Summing is order-free, so the manifest is the same on every runner however elements are
bundled; a stage that counts many elements may sum them itself and emit one dict.
"""

from __future__ import annotations

from collections.abc import Iterable

import apache_beam as beam

# Names kept as examples of a reported case (images merged from several files, ...).
SAMPLE = 5


def add_counts(total: dict, more: dict) -> dict:
    """Adds nested dicts of numbers key by key, in place. Lists are samples of names: the
    first few in sorted order are kept, so the result is the same in any order of adding."""
    for key, value in more.items():
        if isinstance(value, dict):
            add_counts(total.setdefault(key, {}), value)
        elif isinstance(value, list):
            total[key] = sorted(set(total.get(key, [])) | set(value))[:SAMPLE]
        else:
            total[key] = total.get(key, 0) + value
    return total


class SumCounts(beam.CombineFn):
    """Sums the nested count dicts that each stage emits into one dict for the manifest."""

    def create_accumulator(self) -> dict:
        return {}

    def add_input(self, accumulator: dict, counts: dict) -> dict:
        return add_counts(accumulator, counts)

    def merge_accumulators(self, accumulators: Iterable[dict]) -> dict:
        total: dict = {}
        for accumulator in accumulators:
            add_counts(total, accumulator)
        return total

    def extract_output(self, accumulator: dict) -> dict:
        return accumulator
