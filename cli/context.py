"""What every command group shares: the settings read from the environment, and the services' logging."""

from __future__ import annotations

import logging
import sys

from signalements.settings import Settings


def settings_from_environment() -> Settings:
    return Settings()


def configure_logging(settings: Settings) -> None:
    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("kafka").setLevel(settings.kafka_client_log_level)


def consumer_settings(database_url: str | None) -> Settings:
    """The settings of a command reading a case store, ``--database-url`` replacing the configured one."""
    settings = settings_from_environment()
    return settings.model_copy(update={"consumer_database_url": database_url}) if database_url else settings
