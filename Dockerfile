# authserver on gunicorn. Build: docker build -t authserver .
# docker-compose.yml runs it with PostgreSQL and Redis.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Only what the wheel is built from: the package, its migrations and the embedded
# default config (pyproject.toml puts both into the wheel), and the README it names.
WORKDIR /src
COPY pyproject.toml README.md ./
COPY authserver ./authserver
COPY migrations ./migrations
COPY config ./config
RUN pip install '.[postgres]' && rm -rf /src

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
CMD ["authserver", "serve", "--bind", "0.0.0.0:8080"]
