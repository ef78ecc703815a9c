"""The test suite's own support code (slurm_support.py)."""

import pytest
from slurm_support import in_ci


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, False), ("", False), ("false", False), ("FALSE", False), ("0", False),
     ("true", True), ("True", True), ("1", True), ("yes", True), ("gitlab", True)],
)  # fmt: skip
def test_any_ci_value_but_false_or_0_counts_as_ci(value, expected):
    assert in_ci({} if value is None else {"CI": value}) is expected
