#!/usr/bin/env bash
# Idempotent set-up: Debian packages, .venv with pinned dependencies, the project in
# editable mode, and a running Open vSwitch. Prints nothing when there is nothing to do.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "setup needs root (Open vSwitch, Mininet, apt): run it with sudo, e.g. 'sudo make test'" >&2
  exit 1
fi

# The shipped credentials hold keys (AK/KDK impersonate the server and every terminal): git
# checks files out 0644, and the controller refuses a credentials file others may read.
chmod 600 config/credentials.yaml

PACKAGES=(openvswitch-switch mininet iperf3 ethtool iputils-ping tcpdump wpasupplicant hostapd
          python3-venv python3-dev postgresql socat prometheus chromium freeradius libjemalloc2)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi

# hostapd and wpa_supplicant are run by tests on demand; their packaged services must not
# grab interfaces on their own. FreeRADIUS likewise: tests and benchmarks start their own
# servers on free ports with generated configurations (controller/emulation/radiusserver.py);
# the packaged one (on 1812, where systemd starts it) is not needed.
# (PostgreSQL's own service is left alone: tests start private clusters on Unix sockets in
# directories of their own, controller/emulation/pgcluster.py, and never touch a system
# cluster.)
for svc in hostapd wpa_supplicant freeradius; do
  if systemctl is-enabled "$svc" >/dev/null 2>&1; then systemctl disable --now "$svc" >/dev/null 2>&1 || true; fi
done

VENV=.venv
PY=/usr/bin/python3        # Debian's interpreter: Mininet lives in its dist-packages
STAMP=$VENV/.crs-setup-stamp
want=$(cat requirements/constraints.txt setup.cfg pyproject.toml | sha256sum | cut -d' ' -f1)
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$STAMP" 2>/dev/null)" != "$want" ]; then
  echo "setup: building $VENV (pinned dependencies from requirements/constraints.txt)"
  [ -x "$VENV/bin/python" ] || "$PY" -m venv --system-site-packages "$VENV"
  pip=("$VENV/bin/pip" install -q --disable-pip-version-check -c requirements/constraints.txt)
  # Ryu 4.34's setup.py (ryu.hooks.save_orig) reads setuptools' easy_install.get_script_args,
  # which newer setuptools no longer has (faucetsdn/ryu issue 201): build it with the pinned
  # setuptools of the venv, i.e. without build isolation.
  "${pip[@]}" setuptools wheel pbr 2>&1 | grep -v '^WARNING: Location' || true
  "${pip[@]}" --no-build-isolation ryu eventlet dnspython scapy cryptography pyOpenSSL PyYAML \
      pytest pytest-timeout hypothesis matplotlib numpy ruff inotify_simple psycopg \
      psycopg-binary prometheus-client os-ken pyrad 2>&1 | grep -v '^WARNING: Location' || true
  "${pip[@]}" --no-build-isolation --no-deps -e . 2>&1 | grep -v '^WARNING: Location' || true
  "$VENV/bin/python" -c 'import ryu, os_ken, eventlet, scapy, cryptography, yaml, mininet.net, psycopg, prometheus_client, pyrad, controller' \
    || { echo "setup: the venv does not import its dependencies" >&2; exit 1; }
  echo "$want" > "$STAMP"
fi

# Open vSwitch: userspace datapath only (no kernel module here); nothing starts it for us.
# It runs with the jemalloc allocator, as Open vSwitch's install guide suggests for speed
# ("./configure LIBS=-ljemalloc"; here preloaded into Debian's build): the userspace datapath's
# main thread allocates and frees a batch of packet buffers for every port at every wake-up:
# on the benchmark networks (~50 ports) glibc's allocator added ~0.4 ms to the switch's part
# of a terminal's first packet (docs/benchmarks.md, 2026-12-02). `sudo CRS_OVS_JEMALLOC=0 make
# setup` starts it with glibc's allocator. An Open vSwitch already running is left as it is.
if ! ovs-vsctl --timeout=3 show >/dev/null 2>&1; then
  jemalloc=
  if [ "${CRS_OVS_JEMALLOC:-1}" != 0 ]; then
    jemalloc=$(dpkg -L libjemalloc2 2>/dev/null | grep '/libjemalloc\.so\.2$' | head -1 || true)
  fi
  echo "setup: starting Open vSwitch${jemalloc:+ (with jemalloc)}"
  LD_PRELOAD=$jemalloc /usr/share/openvswitch/scripts/ovs-ctl start --system-id=random >/dev/null 2>&1 || true
  ovs-vsctl --timeout=10 show >/dev/null || { echo "setup: Open vSwitch did not start" >&2; exit 1; }
fi
