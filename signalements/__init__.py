"""The pipeline's small platform, beneath the flow packages: settings, metrics, Kafka links, service loops and
topic administration. It imports only ``schemas``."""

__version__ = "0.1.0"
