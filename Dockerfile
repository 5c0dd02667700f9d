# The image of every Python service of the pipeline (intake, stream worker, per-unit consumers, topic set-up):
# one `signalements` command line, the service chosen by the container's command (see docker-compose.yml).
# Settings come from the environment: KAFKA_BOOTSTRAP_SERVERS and SIGNALEMENTS_* (signalements/settings.py).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    SIGNALEMENTS_STATE_DIR=/var/lib/signalements

WORKDIR /app

# The repository's parts that the services use: the packaging and its lock, the packages that pyproject.toml lists
# except the development kit (devkit/: local broker, synthetic traffic, benchmarks; the command line then offers no
# development commands), and the jurisdiction reference (Settings.reference_dir defaults to /app/reference/demo).
# Copied one by one so that a developer's .venv, var/ and .cache/ never end up in the image.
COPY pyproject.toml constraints.txt ./
COPY schemas ./schemas
COPY signalements ./signalements
COPY producers ./producers
COPY streams ./streams
COPY consumers ./consumers
COPY ops ./ops
COPY cli ./cli
COPY reference ./reference
RUN pip install -c constraints.txt -e .

# Run as an unprivileged user owning the state directory (Faust tables, unit stores), on which docker-compose.yml
# mounts a named volume for the services that keep state.
RUN useradd --system --create-home --home-dir /home/signalements --uid 10001 signalements \
    && mkdir -p /var/lib/signalements \
    && chown signalements:signalements /var/lib/signalements
USER signalements

# 8080 intake (HTTP API and its /metrics), 9101 worker metrics, 9102 unit consumer metrics.
EXPOSE 8080 9101 9102

ENTRYPOINT ["signalements"]
CMD ["--help"]
