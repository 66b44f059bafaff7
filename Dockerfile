# syntax=docker/dockerfile:1
# Build stage: install the package and its dependencies into a virtualenv.
FROM python:3.11-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
RUN python -m venv /opt/venv
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY handlers ./handlers
RUN /opt/venv/bin/pip install .

# Runtime stage: the virtualenv, the migrations, a non-root user.
FROM python:3.11-slim-bookworm
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 \
    CROWSNEST_SERVER__HOST=0.0.0.0 \
    CROWSNEST_DATABASE__URL=sqlite+aiosqlite:////data/crowsnest.db
RUN groupadd --system --gid 10001 crowsnest \
 && useradd --system --uid 10001 --gid crowsnest --home-dir /app --shell /usr/sbin/nologin crowsnest \
 && mkdir -p /data /app && chown crowsnest:crowsnest /data
COPY --from=build /opt/venv /opt/venv
# bot/store/db.py finds the Alembic scripts at ../../migrations from the package, which a wheel does not
# ship; so the runtime keeps the source tree's layout under /app, first on the path.
COPY --chown=crowsnest:crowsnest bot /app/bot
COPY --chown=crowsnest:crowsnest handlers /app/handlers
COPY --chown=crowsnest:crowsnest migrations /app/migrations
WORKDIR /app
ENV PYTHONPATH=/app
USER 10001:10001
VOLUME ["/data"]
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s --retries=3 \
  CMD ["python", "-c", "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2).status == 200 else 1)"]
ENTRYPOINT ["crowsnest"]
CMD ["serve"]
