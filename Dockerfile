# One image for every Procfile process type. ECS runs each service as
# ["bash", "-c", <its Procfile line>] (ops/terraform); locally the entrypoint picks the line:
#   docker run --rm --init --env-file .env IMAGE purchase   # or query, events, worker, flower, release
# gunicorn's settings come from the environment (gunicorn.conf.py: PORT, GUNICORN_*).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: a virtualenv with the pinned dependencies, then the project
FROM ${PYTHON_IMAGE} AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH

RUN python -m venv /opt/venv
WORKDIR /src

# The dependencies exactly as pinned in pyproject.toml, in a layer of their own (rebuilt only
# when pyproject.toml changes).
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install --prefer-binary -r /tmp/requirements.txt

COPY . .
RUN pip install --no-deps . \
    && rm -rf build ./*.egg-info \
    && python -m compileall -q /opt/venv /src

# --- runtime: no compiler, no pip cache, a non-root user, a read-only application tree
FROM ${PYTHON_IMAGE} AS runtime

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PORT=8000 \
    CATALOG_FILE=/app/models/catalog.json \
    PROCESS_TYPE=web

RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin app

# Amazon RDS certificate authorities: DATABASE_URL verifies Aurora's TLS certificate with it
# (ssl_ca=/etc/ssl/certs/rds-global-bundle.pem).
ADD --chmod=644 https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem \
    /etc/ssl/certs/rds-global-bundle.pem

COPY --from=build /opt/venv /opt/venv
COPY --from=build /src /app
WORKDIR /app

# ECS mounts a task-local scratch volume here (the root filesystem is read-only); declaring the
# volume makes ECS copy the directory with its permissions (1777) into it.
RUN chmod 1777 /tmp
VOLUME ["/tmp"]

USER 10001:10001
EXPOSE 8000 5555

ENTRYPOINT ["/app/ops/scripts/docker-entrypoint.sh"]
CMD []
