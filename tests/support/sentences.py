"""Check a report's sentences against the lake: every number a sentence states is a value of the rows of its
own comparison group (read again from the views, not from the report), to the precision the sentence prints.

A sentence's numbers are found after removing the names it may quote (config labels, models, quantizations,
accelerators, machine types: they hold digits such as 'llama3-8b' or 'fp8'). A number matches a row value
when it is that value rounded to the digits shown ('1.475e+04' matches 14745.3; '4.9%' matches 0.0491).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import duckdb

# A number standing alone: not the digits of a word (p99, x1, llama3), optionally a price or a percentage.
_NUMBER = re.compile(r"(?<![A-Za-z_\d.\-])(\$?)(-?\d[\d,]*(?:\.\d+)?(?:e[+-]?\d+)?)(%?)(?![A-Za-z\d])")
CONSTANTS = (95.0, 100.0, 1e6)  # '95 % intervals', 'fewer than 100 requests', 'per million'


@dataclass
class GroupValues:
    """What one comparison group's rows hold: the numbers and the names a sentence about it may quote."""

    numbers: set[float] = field(default_factory=set)
    names: set[str] = field(default_factory=set)

    def add_row(self, row: dict[str, object]) -> None:
        for value in row.values():
            self.add(value)

    def add(self, value: object) -> None:
        if isinstance(value, bool) or value is None:
            return
        if isinstance(value, int | float):
            if math.isfinite(value):
                self.numbers.add(float(value))
        elif isinstance(value, str):
            self.names.add(value)
        elif isinstance(value, list):
            for item in value:
                self.add(item)

    def with_ratios(self, pairs: Iterable[tuple[float | None, float | None]]) -> None:
        """Shares a sentence derives from two values of the group (e.g. throughput at the ideal / the best)."""
        for a, b in pairs:
            if a is not None and b:
                self.numbers.add(a / b)


def group_values(connection: duckdb.DuckDBPyConnection, group: str) -> GroupValues:
    """Every value of the group's rows in point_costs, ideal_batch, prefill_decode and quantize_variants (weight
    bytes, accuracy), plus the SLO bounds."""
    values = GroupValues(names={group})
    for view in ("point_costs", "ideal_batch", "prefill_decode", "quantize_variants"):
        relation = connection.sql(f"SELECT * FROM {view} WHERE comparison_group = ?", params=[group])
        for row in relation.to_arrow_table().to_pylist():
            values.add_row(row)
    for row in connection.sql("SELECT * FROM params").to_arrow_table().to_pylist():
        values.add_row(row)
    ideals = connection.sql("SELECT output_token_throughput, max_output_token_throughput FROM ideal_batch "
                            "WHERE comparison_group = ?", params=[group]).fetchall()
    values.with_ratios(ideals)
    return values


def numbers_in(sentence: str, names: Iterable[str]) -> list[tuple[str, float, float]]:
    """(as printed, value, half a unit of its last printed digit) for each number of the sentence."""
    text = sentence
    for name in sorted(names, key=len, reverse=True):
        if name and any(ch.isdigit() for ch in name):
            text = text.replace(name, " ")
    found = []
    for match in _NUMBER.finditer(text):
        _, digits, percent = match.groups()
        printed = digits.replace(",", "")
        value = float(printed)
        mantissa, _, exponent = printed.partition("e")
        decimals = len(mantissa.partition(".")[2])
        step = 10.0 ** (-decimals + (int(exponent) if exponent else 0))
        if percent:
            value, step = value / 100, step / 100
        found.append((match.group(0), value, step / 2))
    return found


def unmatched(sentence: str, values: GroupValues, extra: Sequence[float] = ()) -> list[str]:
    """The numbers of a sentence that no value of its group rounds to."""
    candidates = [*values.numbers, *CONSTANTS, *extra]
    missing = []
    for printed, value, tolerance in numbers_in(sentence, values.names):
        slack = tolerance * (1 + 1e-9) + 1e-12
        if not any(abs(value - candidate) <= slack for candidate in candidates):
            missing.append(printed)
    return missing
