"""gcstudy: geometric complexity (GC) and neural collapse (NC) in transfer learning.

Reproduces Munn, Dherin & Gonzalvo, "The Impact of Geometric Complexity on Neural
Collapse in Transfer Learning" (NeurIPS 2024). The science core lives in
``gcstudy.models``, ``gcstudy.data`` and ``gcstudy.metrics``.
"""

__version__ = "0.1.0"
