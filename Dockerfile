# opsagent image. Built and run by tests/integration/image (podman), linted by hadolint.
# Build:  docker build -t opsagent:0.1.0 .
# Any Debian-like image with python3 (>= 3.11) and its venv module can be the base, for example a
# local one where no registry is reachable (docs/deploy.md#the-image):
#   podman build --build-arg BASE_IMAGE=localhost/opsagent-base:bookworm -t opsagent:0.1.0 .
# The agent reaps its children itself (gorun's reaper), so no tini/dumb-init is needed as PID 1.
ARG BASE_IMAGE=python:3.11.14-slim-bookworm

# ---- build stage: a virtualenv with the agent and its dependencies; no compiler needed (every
# dependency ships manylinux wheels) ----
FROM ${BASE_IMAGE} AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY opsagent ./opsagent
COPY gorun ./gorun
# pip and setuptools leave the venv once it is complete: nothing in the final stage builds.
RUN python3 -m venv /opt/opsagent \
    && /opt/opsagent/bin/pip wheel --no-cache-dir --wheel-dir /wheels . \
    && /opt/opsagent/bin/pip install --no-cache-dir --no-index --find-links=/wheels opsagent==0.1.0 \
    && /opt/opsagent/bin/pip uninstall --yes pip setuptools \
    && /opt/opsagent/bin/python -m compileall -q /opt/opsagent/lib

# ---- final stage: the venv copied in, no pip cache, no wheels, no sources ----
FROM ${BASE_IMAGE}
LABEL org.opencontainers.image.title="opsagent" \
      org.opencontainers.image.description="Node-level ops agent: cron, log rotation with quotas, profile statistics, Kafka forwarding" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/opsagent/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
COPY --from=build /opt/opsagent /opt/opsagent
# /usr/local/bin keeps the commands where crontabs (deploy/) call them.
RUN ln -s /opt/opsagent/bin/opsagent /opt/opsagent/bin/gorun /usr/local/bin/ \
    && groupadd --system --gid 10001 opsagent \
    && useradd --system --uid 10001 --gid opsagent --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin opsagent \
    && mkdir -p /etc/opsagent /var/lib/opsagent \
    && chown opsagent:opsagent /var/lib/opsagent \
    && printf '# No jobs: mount a crontab here (deploy/ mounts the ConfigMap over /etc/opsagent).\n' \
       >/etc/opsagent/crontab
# The default config is the documented example; Kubernetes mounts its own over /etc/opsagent.
COPY config/opsagent.example.toml /etc/opsagent/opsagent.toml
# Non-root by default (the sidecar runs so); the DaemonSet sets runAsUser: 0 because it rotates
# files other containers own (docs/deploy.md).
USER 10001:10001
EXPOSE 9101
ENTRYPOINT ["opsagent"]
CMD ["run", "--config", "/etc/opsagent/opsagent.toml"]
