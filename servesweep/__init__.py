"""servesweep: measure LLM serving cost and latency across GPUs, quantizations and batch sizes."""

__version__ = "0.1.0"
