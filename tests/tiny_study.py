"""The run-spec defaults of the smallest study that trains through the real workflow in
seconds (digits, a 1/16-width VGG-11, 6 steps, checkpoints every 3), shared by the
workflow tests that train it."""

TINY_DEFAULTS = {
    "width": 0.0625, "steps": 6, "eval_steps": [0, 3], "gc_examples": 20,
    "feature_examples": 60, "test_examples": 60, "bn_recalibration_examples": 32,
    "checkpoint_every": 3, "device": "cpu",
}  # fmt: skip
