# The NICEPAY CVS service image. One image runs the API, the one-off migration and the
# NICEPAY simulator; only the command differs (see docker-compose.yml).
#
# Migrations are a separate one-shot step, never part of `serve`, so that several replicas
# never race to upgrade the schema:
#     docker compose run --rm migrate
#     docker run --rm -e DATABASE_URL=... IMAGE python -m app migrate
# Other commands: `python -m app doctor`, `python -m app reconcile`,
# `python -m simulator --host 0.0.0.0 --port 8900`.

# Both stages must use the same Python: the venv's interpreter is a symlink into the base image.
ARG PYTHON_IMAGE=python:3.11-slim

# --- builder: the locked dependencies and the project into /opt/venv -------------------
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    UV_PROJECT_ENVIRONMENT=/opt/venv \
    UV_PYTHON_DOWNLOADS=never \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy

WORKDIR /src
# uv, at the version pyproject.toml's [tool.uv] requires (uv refuses to run at any other,
# so a stale UV_VERSION here fails the build), in a venv of its own that the runtime image
# does not get.
ARG UV_VERSION=0.13.9
RUN python -m venv /opt/uv && /opt/uv/bin/pip install --no-cache-dir "uv==${UV_VERSION}"

# The dependencies first, from uv.lock alone, so this layer survives code changes.
# --locked: exactly uv.lock, and a pyproject.toml that does not match it fails the build.
# --no-dev and no extras: no pytest, mypy, ruff, pre-commit; uvicorn without [standard]
# (no file watcher), with uvloop and httptools.
COPY pyproject.toml uv.lock ./
RUN /opt/uv/bin/uv sync --locked --no-install-project --python python
# The project itself, a regular (non-editable) install: the runtime stage copies only
# /opt/venv, not /src.
COPY README.md ./
COPY app ./app
COPY simulator ./simulator
RUN /opt/uv/bin/uv sync --locked --no-editable --python python

# --- runtime -----------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

# TZ is deliberately left at the image default (UTC): the service stores UTC and converts
# to WIB (Asia/Jakarta) itself for NICEPAY's date fields, with tzdata from the venv.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH="/opt/venv/bin:$PATH"

# A fixed numeric uid so orchestrators (Kubernetes runAsNonRoot) can verify it is not root.
# /app is the working directory and is writable by `app` only so the default SQLite
# DATABASE_URL (./nicepay_cvs.db) works in a quick `docker run`; production uses PostgreSQL.
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin app \
    && mkdir /app \
    && chown app:app /app

COPY --from=builder /opt/venv /opt/venv

WORKDIR /app
# `python -m app migrate` reads alembic.ini from the working directory. The application
# code itself lives only in the venv, so nothing here shadows the installed package.
COPY alembic.ini ./
COPY migrations ./migrations

USER 10001:10001

EXPOSE 8000

# Liveness only (no database): /readyz is for load balancers and orchestrator readiness.
# Python instead of curl, which the slim image does not have; urlopen raises on non-2xx.
# A container that serves on another port (e.g. with host networking) sets HEALTHCHECK_URL.
ENV HEALTHCHECK_URL=http://127.0.0.1:8000/healthz
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ['HEALTHCHECK_URL'], timeout=4)"]

# Exec form: python is PID 1 and gets SIGTERM directly, so uvicorn shuts down gracefully.
CMD ["python", "-m", "app", "serve", "--host", "0.0.0.0", "--port", "8000"]
