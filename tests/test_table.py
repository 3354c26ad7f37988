"""Console tables: alignment, the cell formats, errors."""

from __future__ import annotations

import pytest

from rvoslib._table import format_table, format_value
from rvoslib.training.logs import summary_table


def test_columns_are_as_wide_as_their_widest_cell_and_lines_have_no_trailing_spaces() -> None:
    rows = [{"name": "a", "J": 0.5, "n": 12}, {"name": "longer", "J": None}]
    lines = format_table(rows, ["name", "J", "n"], ["sequence", "J", "frames"]).splitlines()
    assert lines == [
        "sequence  J       frames",
        "--------  ------  ------",
        "a         0.5000  12",
        "longer    -       -",
    ]


def test_cells_round_to_four_decimals_and_keep_small_and_large_values_readable() -> None:
    assert format_value(0.123449) == "0.1234" and format_value(0.99996) == "1.0000"
    assert format_value(123.456) == "123.5" and format_value(-4e-4) == "-4.00e-04"
    assert format_value(True) == "True" and format_value(float("inf")) == "inf"


def test_headers_must_match_the_columns() -> None:
    with pytest.raises(ValueError, match="headers must name every column: 2 columns, got 1"):
        format_table([], ["a", "b"], ["a"])


def test_summary_table_keeps_its_layout() -> None:
    assert summary_table({"JF": 0.25, "stopped_by": None, "by_kind": {}}).splitlines() == [
        "metric      value",
        "----------  ------",
        "JF          0.2500",
        "stopped_by  -",
    ]


def test_eval_report_prints_json_lines_or_tables() -> None:
    import io
    import json

    from rvoslib.cli.eval_report import EvalReport

    rows = [{"sequence": "blackswan_1", "J": 0.5, "F": 0.25}]
    summary = {"protocol": "all", "JF": 0.375, "by_kind": {"color": {"count": 1, "JF": 0.375}}}
    for as_json in (True, False):
        stream = io.StringIO()
        report = EvalReport(as_json=as_json, stream=stream)
        report.header({"protocol": "all"})
        report.rows(rows)
        report.rows([])
        report.text("A2D report")
        report.summary(summary)
        lines = stream.getvalue().splitlines()
        if as_json:  # the report text is left out: the summary line holds its numbers
            assert [json.loads(line) for line in lines] == [{"protocol": "all"}, *rows, summary]
        else:
            assert lines[:5] == [
                "protocol: all",
                "sequence     J       F",
                "-----------  ------  ------",
                "blackswan_1  0.5000  0.2500",
                "A2D report",
            ]
            assert "JF        0.3750" in lines and lines[-1] == "color  1      -  -  0.3750"
