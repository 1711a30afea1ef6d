# opsagent image. Checked with hadolint in the test suite (no image is built there).
# Build:  docker build -t opsagent:0.1.0 .
# The agent reaps its children itself (gorun's reaper), so no tini/dumb-init is needed as PID 1.

# ---- build stage: wheels only; no compiler needed (all deps ship manylinux wheels) ----
FROM python:3.11.14-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY opsagent ./opsagent
COPY gorun ./gorun
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

# ---- final stage ----
FROM python:3.11.14-slim-bookworm
LABEL org.opencontainers.image.title="opsagent" \
      org.opencontainers.image.description="Node-level ops agent: cron, log rotation with quotas, profile statistics, Kafka forwarding" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels opsagent==0.1.0 \
    && groupadd --system --gid 10001 opsagent \
    && useradd --system --uid 10001 --gid opsagent --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin opsagent \
    && mkdir -p /etc/opsagent /var/lib/opsagent \
    && chown opsagent:opsagent /var/lib/opsagent
COPY config/opsagent.example.toml /etc/opsagent/opsagent.toml
# Non-root by default (the sidecar runs so); the DaemonSet sets runAsUser: 0 because it rotates
# files other containers own (docs/deploy.md).
USER 10001:10001
EXPOSE 9101
ENTRYPOINT ["opsagent"]
CMD ["run", "--config", "/etc/opsagent/opsagent.toml"]
