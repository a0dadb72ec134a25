#!/usr/bin/env bash
# setup.sh — install everything CASA needs on a Debian 12 machine. Idempotent; run as root.
#
#   sudo ./setup.sh            # what `make run` and `make test` call when .venv is missing or stale
#
# What it does, in order:
#   1. apt: bcc (bpfcc-tools python3-bpfcc libbpfcc), bpftool, python3-venv, iproute2, gcc (the
#      benchmark workloads are small C programs), and the tools the attack suite's scenarios and
#      developer tasks run inside their sandboxes (curl, wget, git, patch, zip/unzip, sqlite3,
#      ssh-keygen, openssl, perl, setcap): a minimal Debian has few of them.
#   2. Kernel headers for the running kernel: linux-headers-$(uname -r) when Debian has it; otherwise
#      (custom kernels, e.g. Firecracker VMs) the newest Debian 6.12 amd64 headers are unpacked into
#      /opt/casa/kernel-headers and linked as /lib/modules/$(uname -r)/{build,source}. bcc only needs
#      them to compile; kernel struct offsets are read from BTF at start-up, never from these headers.
#   3. Mounts tracefs if it is not mounted.
#   4. The `casa` system user/group (runs every stage except the collector) and the runtime
#      directories (docs/security.md): /run/casa (bus sockets, root:casa 0770), /var/log/casa (the
#      JSONL records, casa:casa 0750), /var/lib/casa (stage checkpoints, casa:casa 0750), and the two
#      only root writes: /run/casa-root (supervisord's socket and pid, root 0755) and
#      /var/log/casa-root (supervisord's and every stage's own log, root:casa 0750).
#   5. .venv with the hash-pinned requirements.txt (runtime) and requirements-test.txt (pytest),
#      installed with --require-hashes, made able to import Debian's bcc (and nothing else from
#      dist-packages) through a .pth file. The venv is rebuilt when either lock or pyproject.toml
#      changes (a stamp of their hashes in .venv).
#   6. Lets the `casa` user traverse to this checkout (o+x on parent directories that lack it, and
#      says so) and read the code, the configuration and the venv (o+rX on those only). Removes
#      group/other write from them: the collector runs this code as root, and refuses to start
#      when anyone else can change it (StrictModes, trust/strict_modes.py). A .env file is never
#      made world-readable (it may hold secrets): it becomes root's, group casa, 0640 (the sinks
#      read it as casa).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
VENV="$ROOT/.venv"
HEADERS_DIR=/opt/casa/kernel-headers
export DEBIAN_FRONTEND=noninteractive

say() { printf 'setup: %s\n' "$*"; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (it installs packages and creates the casa user): sudo $0"

apt_updated=0
apt_install() {
  local missing=()
  for p in "$@"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ $apt_updated = 0 ]; then apt-get update -qq; apt_updated=1; fi
  say "installing ${missing[*]}"
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

install_packages() {
  apt_install ca-certificates bpfcc-tools python3-bpfcc libbpfcc bpftool python3 python3-venv \
    iproute2 procps util-linux gcc libc6-dev \
    curl wget git patch zip unzip sqlite3 openssh-client openssl perl libcap2-bin
}

install_kernel_headers() {
  local kver; kver=$(uname -r)
  local mod="/lib/modules/$kver"
  if [ -e "$mod/build/include/linux/kconfig.h" ] || [ -e "$mod/build/include/generated/autoconf.h" ]; then
    return 0
  fi
  if [ $apt_updated = 0 ]; then apt-get update -qq; apt_updated=1; fi
  if apt-cache show "linux-headers-$kver" >/dev/null 2>&1; then
    say "installing linux-headers-$kver"
    apt-get install -y -qq "linux-headers-$kver" >/dev/null
    return 0
  fi
  # Fallback for kernels Debian does not package (see docs: REQUIREMENTS.md). Download, do not
  # install: the -amd64 headers package hard-depends on a kernel image we do not want.
  local flavour; flavour=$(apt-cache search --names-only '^linux-headers-6\.12\.[0-9.]+\+deb12-amd64$' \
    | awk '{print $1}' | sort -V | tail -n1)
  [ -n "$flavour" ] || die "no headers package for kernel $kver and no linux-headers-6.12.*-amd64 fallback in apt"
  local base=${flavour%-amd64}
  local common="$base-common"
  local kbuild_ver; kbuild_ver=$(echo "$base" | sed -E 's/^linux-headers-([0-9]+\.[0-9]+).*/\1/')
  say "no headers for $kver: unpacking $flavour into $HEADERS_DIR (fallback)"
  local tmp; tmp=$(mktemp -d); chmod 0755 "$tmp"   # apt downloads as the _apt user
  (cd "$tmp" && apt-get download -qq "$flavour" "$common" "linux-kbuild-$kbuild_ver" >/dev/null)
  rm -rf "$HEADERS_DIR"; mkdir -p "$HEADERS_DIR"
  for deb in "$tmp"/*.deb; do dpkg -x "$deb" "$HEADERS_DIR"; done
  rm -rf "$tmp"
  local hdr="${flavour#linux-headers-}"
  mkdir -p "$mod"
  ln -sfn "$HEADERS_DIR/usr/src/$flavour" "$mod/build"
  ln -sfn "$HEADERS_DIR/usr/src/$common" "$mod/source"
  # The -amd64 tree's scripts/ and tools link to /usr/lib/linux-kbuild-X: point them at our copy.
  if [ -d "$HEADERS_DIR/usr/lib/linux-kbuild-$kbuild_ver" ] && [ ! -e "/usr/lib/linux-kbuild-$kbuild_ver" ]; then
    ln -sfn "$HEADERS_DIR/usr/lib/linux-kbuild-$kbuild_ver" "/usr/lib/linux-kbuild-$kbuild_ver"
  fi
  say "headers $hdr linked at $mod/build"
}

mount_tracefs() {
  if [ ! -e /sys/kernel/tracing/events/syscalls ] && [ ! -e /sys/kernel/debug/tracing/events/syscalls ]; then
    say "mounting tracefs on /sys/kernel/tracing"
    mount -t tracefs nodev /sys/kernel/tracing
  fi
}

create_user_and_dirs() {
  getent group casa >/dev/null || groupadd --system casa
  id casa >/dev/null 2>&1 || useradd --system --gid casa --no-create-home --home-dir /nonexistent \
    --shell /usr/sbin/nologin casa
  install -d -o root -g casa -m 0770 /run/casa
  install -d -o casa -g casa -m 0750 /var/log/casa
  install -d -o casa -g casa -m 0750 /var/lib/casa
  install -d -o root -g root -m 0755 /run/casa-root
  install -d -o root -g casa -m 0750 /var/log/casa-root
}

create_venv() {
  local stamp="$VENV/.requirements.sha256"
  local locks=("$ROOT/requirements.txt" "$ROOT/requirements-test.txt")
  local want; want=$(sha256sum "${locks[@]}" "$ROOT/pyproject.toml" | sha256sum | cut -d' ' -f1)
  if [ -x "$VENV/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then return 0; fi
  say "creating $VENV with pinned requirements"
  [ -x "$VENV/bin/python" ] || /usr/bin/python3 -m venv "$VENV"
  # Every package, transitive ones included, must match a hash in the locks (make lock writes them).
  "$VENV/bin/pip" install -q --disable-pip-version-check --require-hashes \
    -r "$ROOT/requirements.txt" -r "$ROOT/requirements-test.txt"
  # Debian's bcc, alone: a directory holding only a link to the bcc package, put on sys.path by .pth.
  local site; site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  mkdir -p "$VENV/debian-bcc"
  ln -sfn /usr/lib/python3/dist-packages/bcc "$VENV/debian-bcc/bcc"
  echo "$VENV/debian-bcc" > "$site/casa-debian-bcc.pth"
  # This checkout's packages (bus, collector, ...) and the `casa` command.
  echo "$ROOT" > "$site/casa-checkout.pth"
  printf '#!/bin/sh\nexec "%s" -m cli "$@"\n' "$VENV/bin/python" > "$VENV/bin/casa"
  chmod 0755 "$VENV/bin/casa"
  "$VENV/bin/python" -c 'import bcc, zmq, msgpack, ormsgpack, celpy, opentelemetry.sdk, pytest' \
    || die "the virtualenv at $VENV cannot import its dependencies"
  echo "$want" > "$stamp"
}

# What the unprivileged stages (and the tests that run them as casa) read of the checkout.
CODE_PATHS=(agents analyzer bench bpf bus cli collector config evaluation policy sessionizer sinks
  trust tests rules.json pyproject.toml requirements.txt requirements-test.txt .venv)

grant_read() {
  local d="$ROOT"
  while [ "$d" != "/" ]; do
    if ! runuser -u casa -- test -x "$d" 2>/dev/null; then
      chmod o+x "$d"; say "granted traverse (o+x) on $d so the casa user can reach the checkout"
    fi
    d=$(dirname "$d")
  done
  chmod go-w "$ROOT"
  local p
  for p in "${CODE_PATHS[@]}"; do
    [ -e "$ROOT/$p" ] || continue
    # Read for casa, write for the owner only; evaluation/node is evaluation/install.sh's, and a
    # .env anywhere is left to protect_env.
    find "$ROOT/$p" \( -path "$ROOT/evaluation/node" -o -name .env \) -prune -o \
      ! -type l \( ! -perm -o+r -o -perm /022 -o \( -type d ! -perm -o+x \) \) -exec chmod o+rX,go-w {} +
  done
}

protect_env() {
  # May hold secrets: never world-readable; the sinks read it as casa; nobody but root changes it.
  local env="$ROOT/.env"
  [ -f "$env" ] || return 0
  chown root:casa "$env"
  chmod 0640 "$env"
}

install_packages
install_kernel_headers
mount_tracefs
create_user_and_dirs
create_venv
grant_read
protect_env
say "ready (python: $VENV/bin/python, bcc $("$VENV/bin/python" -c 'import bcc; print(getattr(bcc, "__version__", "?"))'))"
