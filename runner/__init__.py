"""unified-test-runner: tiered pytest orchestration weighted by monthly recurring revenue."""

__version__ = "0.1.0"
