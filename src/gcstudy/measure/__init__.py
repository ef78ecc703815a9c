"""Measuring a network: what a trace records at each evaluation step (traced) and
the evaluation files written after training (evaluations). The math is in
gcstudy.metrics."""
