# ccguard container: config mounted at /etc/ccguard/ccguard.toml, state in /var/lib/ccguard.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    CCGUARD_CONFIG=/etc/ccguard/ccguard.toml

# Pango: WeasyPrint lays out the evidence report's PDF with it (`ccguard report --format pdf`).
RUN apt-get update && apt-get install -y --no-install-recommends libpango-1.0-0 libpangoft2-1.0-0 \
    && rm -rf /var/lib/apt/lists/*
RUN useradd --system --uid 10025 --home-dir /var/lib/ccguard --create-home ccguard
WORKDIR /opt/ccguard
COPY pyproject.toml README.md ./
COPY relay ./relay
RUN pip install --no-compile . && rm -rf /root/.cache

USER ccguard
WORKDIR /var/lib/ccguard
# SMTP front, admin UI / metrics. In the config, listen on 0.0.0.0 (not loopback) in a
# container and set allowed_networks to your mail servers' addresses.
EXPOSE 10025 8025
VOLUME ["/var/lib/ccguard"]
HEALTHCHECK --interval=30s --timeout=10s --start-period=10s --retries=3 \
  CMD ["ccguard", "health", "--timeout", "5"]
ENTRYPOINT ["ccguard"]
CMD ["serve"]
