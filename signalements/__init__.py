"""Signalements de points de deal: the pipeline's shared platform (settings, command line, metrics, local broker)."""

__version__ = "0.1.0"
