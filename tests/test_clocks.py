"""Design clocks (gcstudy.study.clocks): the steps at which runs of a sweep are compared."""

import pytest

from gcstudy.study import clocks


def test_examples_clock_reads_each_batch_at_equal_examples_seen():
    # batch 16, 32, 64, 128 for 480 steps: batch 16 sees the fewest, 16 * 480 = 7680
    sweep = [(0.05, b, 480) for b in (16, 32, 64, 128)]
    lrs, batches, steps = zip(*sweep, strict=True)
    common = clocks.common_value("examples", lrs, batches, steps)
    assert common == 7680
    assert list(clocks.read_step("examples", common, lrs, batches, steps)) == [480, 240, 120, 60]
    assert clocks.scheduled_steps(["examples"], sweep[3], sweep) == {60, 40}


def test_lr_clock_reads_each_lr_at_equal_lr_times_steps():
    sweep = [(lr, 32, 300) for lr in (0.01, 0.03, 0.1)]
    lrs, batches, steps = zip(*sweep, strict=True)
    common = clocks.common_value("lr_steps", lrs, batches, steps)
    assert common == pytest.approx(3.0)
    assert list(clocks.read_step("lr_steps", common, lrs, batches, steps)) == [300, 100, 30]


def test_a_sweep_that_changes_no_rate_reads_every_clock_at_the_same_steps():
    sweep = [(0.05, 32, 450, l2)[:3] for l2 in (0.0, 1e-3)]
    assert clocks.scheduled_steps(clocks.CLOCKS, sweep[0], sweep) == {300, 450}


def test_reading_steps_stay_within_the_budget():
    assert list(clocks.read_step("examples", 1.0, [0.1], [512], [100])) == [1]
    assert list(clocks.read_step("steps", 1e9, [0.1], [512], [100])) == [100]


def test_an_unknown_clock_is_refused_by_name():
    with pytest.raises(ValueError, match="unknown clock 'epochs'"):
        clocks.rate("epochs", 0.1, 32)
