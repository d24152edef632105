#!/usr/bin/env bash
# Debian packages the test suite drives for real: swaks (SMTP client), chromium (admin UI
# browser tests), prometheus (promtool checks the alert rules), postfix (smtp-source/sink),
# openssl (makes the test certificates of the STARTTLS tests), libnet-ssleay-perl (swaks
# --tls), libsasl2-modules (Postfix's SASL client offers PLAIN/LOGIN only with it),
# haproxy (a real load balancer in front of ccguard sending PROXY protocol v2 headers),
# postgresql (initdb/pg_ctl: the tests start private clusters as the 'postgres' user),
# poppler-utils (pdftoppm/pdftotext: the evidence report's PDF is turned into PNG and text
# and checked),
# docker.io + debootstrap (the container tests build and run the image on a private
# dockerd, tests/helpers/docker.py), docker-compose (validates deploy/compose.yaml).
#
# Only the programs are wanted, never a system-wide service: scripts/apt-install-no-services.sh
# installs them so that no service is started, now or at boot (a Prometheus, a dockerd,
# a Postfix); enable one yourself if you want it (`systemctl enable --now prometheus`).
set -euo pipefail
need=()
command -v swaks >/dev/null || need+=(swaks)
[ -x /usr/bin/chromium ] || need+=(chromium)
command -v promtool >/dev/null || need+=(prometheus)
command -v smtp-source >/dev/null || [ -x /usr/sbin/smtp-source ] || need+=(postfix)
command -v sqlite3 >/dev/null || need+=(sqlite3)
command -v openssl >/dev/null || need+=(openssl)
perl -MNet::SSLeay -e1 2>/dev/null || need+=(libnet-ssleay-perl)
dpkg -s libsasl2-modules >/dev/null 2>&1 || need+=(libsasl2-modules)
command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || need+=(haproxy)
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || need+=(postgresql)
command -v pdftoppm >/dev/null || need+=(poppler-utils)
[ -x /usr/sbin/dockerd ] || need+=(docker.io)
command -v debootstrap >/dev/null || [ -x /usr/sbin/debootstrap ] || need+=(debootstrap)
command -v docker-compose >/dev/null || need+=(docker-compose)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "installing Debian packages: ${need[*]}"
  $SUDO apt-get update -qq
  # Only postfix's programs are needed (the tests start private instances): do not let
  # the package set up a system-wide mail server.
  echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
  # Only PostgreSQL's programs are needed too: no system-wide cluster is created or run.
  $SUDO mkdir -p /etc/postgresql-common
  [ -e /etc/postgresql-common/createcluster.conf ] ||
    echo "create_main_cluster = false" | $SUDO tee /etc/postgresql-common/createcluster.conf >/dev/null
  "$(dirname "$0")/apt-install-no-services.sh" "${need[@]}"
fi
