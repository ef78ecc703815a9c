"""Measuring a network: what a trace records at each evaluation step (traced), the
evaluation files written after training (evaluations), and ``gcstudy measure``: trained
networks read from a run folder, a model.pt or a state dict (loading), measured the trace's
way and ranked by GC (trained). The math is in gcstudy.metrics."""
