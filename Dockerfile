# authserver on gunicorn. Build: docker build -t authserver .
# docker-compose.yml runs it with PostgreSQL and Redis; deploy/kubernetes/ on Kubernetes.
#
# Reproducible: the base image is pinned by tag, and every Python package comes from
# requirements.lock / requirements-build.lock (`make lock`) with its hash, so a rebuild
# installs the same files or fails. Pin the base by digest too where your registry can
# tell it (FROM python:3.11.13-slim-bookworm@sha256:...).
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

# -- the wheel, built with a locked hatchling ---------------------------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY requirements-build.lock ./
RUN pip install --require-hashes --no-deps -r requirements-build.lock
# Only what the wheel is built from: the package, its migrations and the embedded
# default config (pyproject.toml puts both into the wheel), and the README it names.
COPY pyproject.toml README.md ./
COPY authserver ./authserver
COPY migrations ./migrations
COPY config ./config
RUN pip wheel --no-deps --no-build-isolation --wheel-dir /wheels .

# -- the image --------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Dependencies first (a layer that only changes with the lock), then the package alone;
# `pip check` fails the build if the lock misses a dependency of anything installed.
COPY requirements.lock /tmp/requirements.lock
RUN pip install --require-hashes --no-deps -r /tmp/requirements.lock && rm /tmp/requirements.lock
COPY --from=build /wheels /tmp/wheels
RUN pip install --no-deps /tmp/wheels/*.whl && pip check && rm -rf /tmp/wheels

# A non-root user. Its home is the working directory, where relative paths of the
# config resolve, and the instance directory (the embedded default's SQLite database
# and secrets; a config's unset database_url and secret_key_file): mount a volume on it.
RUN useradd --system --uid 10001 --user-group --create-home \
        --home-dir /var/lib/authserver authserver
USER authserver
WORKDIR /var/lib/authserver
ENV AUTHSERVER_HOME=/var/lib/authserver
VOLUME /var/lib/authserver

EXPOSE 8080
# Ready, not merely alive: /readyz answers 200 only while the database (and Redis, when
# configured) answer and a signing key is loaded. The slim image has no curl.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/readyz', timeout=3)"]
CMD ["authserver", "serve", "--bind", "0.0.0.0:8080"]
