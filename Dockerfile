# The driftline worker image (docker-compose.yml builds it as driftline:local).
#   docker build -t driftline .
#   docker run --rm driftline worker --help
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Only what the package needs (see .dockerignore): the four packages and the packaging files.
# They are installed, not run from the source tree, which is removed afterwards.
COPY pyproject.toml README.md /tmp/driftline-src/
COPY detectors/ /tmp/driftline-src/detectors/
COPY schemas/ /tmp/driftline-src/schemas/
COPY sinks/ /tmp/driftline-src/sinks/
COPY stream/ /tmp/driftline-src/stream/
RUN pip install /tmp/driftline-src \
    && rm -rf /tmp/driftline-src \
    && driftline --help > /dev/null

RUN useradd --system --uid 10001 --create-home --home-dir /var/lib/driftline --shell /usr/sbin/nologin driftline
USER driftline
WORKDIR /var/lib/driftline
# driftline's data directory (reference profiles, the worker's Faust state); mount a volume here to keep it.
ENV DRIFTLINE_DATA_DIR=/var/lib/driftline/data

# Prometheus metrics (`driftline worker --metrics-port 9464 --metrics-address 0.0.0.0`).
EXPOSE 9464

ENTRYPOINT ["driftline"]
CMD ["--help"]
