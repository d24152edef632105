# ccguard container: config mounted at /etc/ccguard/ccguard.toml, state in /var/lib/ccguard.
#   docker build -t ccguard .                     (BuildKit: Docker 23+ by default)
# Any Debian-based image with Python 3.11+ and pip can be the base; CI uses a
# debootstrap stand-in when the registry cannot be reached (scripts/docker-base-image.sh).
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="ccguard" \
      org.opencontainers.image.description="SMTP relay that stops bulk-CC leaks" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/ccguard/ccguard" \
      org.opencontainers.image.documentation="https://github.com/ccguard/ccguard#docker"

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 CCGUARD_CONFIG=/etc/ccguard/ccguard.toml

# Pango: WeasyPrint lays out the evidence report's PDF with it (`ccguard report --format pdf`).
RUN apt-get update && apt-get install -y --no-install-recommends libpango-1.0-0 libpangoft2-1.0-0 \
    && rm -rf /var/lib/apt/lists/*

# No --create-home: /etc/skel's dot files have no business in the quarantine's folder.
# A new named volume takes this folder's owner and mode (0700), so held messages stay
# private to the ccguard user.
RUN useradd --system --uid 10025 --user-group --no-create-home \
      --home-dir /var/lib/ccguard --shell /usr/sbin/nologin ccguard \
 && install -d -m 0700 -o ccguard -g ccguard /var/lib/ccguard \
 && install -d -m 0755 /etc/ccguard

WORKDIR /opt/ccguard
COPY pyproject.toml README.md constraints.txt ./
COPY relay ./relay
# constraints.txt pins every dependency (`make lock`). Behind a TLS-intercepting proxy,
# hand its CA bundle in without baking it into a layer:
#   docker build --secret id=pip_cert,src=/etc/ssl/certs/ca-certificates.crt ...
RUN --mount=type=secret,id=pip_cert \
    if [ -s /run/secrets/pip_cert ]; then export PIP_CERT=/run/secrets/pip_cert; fi \
 && python3 -m pip install --no-compile -c constraints.txt . \
 && cd / && rm -rf /opt/ccguard /root/.cache

USER 10025:10025
WORKDIR /var/lib/ccguard
# SMTP front, admin UI / metrics. config/container.toml listens on 0.0.0.0; set
# allowed_networks to your mail servers' addresses.
EXPOSE 10025 8025
VOLUME ["/var/lib/ccguard"]
# SIGTERM starts the graceful stop: no new connections, open transactions get
# [smtp] shutdown_grace (30 s) to finish. Give `docker stop` longer than that:
# docker run --stop-timeout 35, or stop_grace_period: 35s in Compose.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=10s --start-period=10s --retries=3 \
  CMD ["ccguard", "health", "--timeout", "5"]
ENTRYPOINT ["ccguard"]
CMD ["serve"]
