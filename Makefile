# claudegate — build, test, release, install.
#
#   make test      THE test command: installs what the tests need, then fmt, clippy, all tests
#   make e2e-deps  the real clients the end-to-end tests drive (Claude Code and Codex CLIs,
#                  the anthropic and openai Python SDKs),
#                  at the versions pinned in tests/e2e/, into target/e2e/ (part of `make test`)
#   make build     debug build
#   make release   static x86_64 musl binary in target/x86_64-unknown-linux-musl/release/
#   make install   copy the release binary to $(PREFIX)/bin (default ~/.local/bin)
#   make clean
#
# Every setup step is idempotent and only runs when something is missing, so a fresh Debian
# machine (or CI) and a developer's laptop run the same commands.

PREFIX ?= $(HOME)/.local
BIN    := claudegate
X86    := x86_64-unknown-linux-musl
CARGO  ?= cargo

# apt-get as root, or through sudo for a normal user.
APT := $(if $(filter 0,$(shell id -u)),apt-get,sudo apt-get)
# $(call need,COMMAND,DEBIAN-PACKAGE): install the package when the command is missing.
need = @command -v $(1) >/dev/null 2>&1 || { $(APT) update -qq && DEBIAN_FRONTEND=noninteractive $(APT) install -y -qq $(2) >/dev/null; }

.PHONY: build release test test-deps e2e-deps release-deps lint install uninstall clean

build:
	$(CARGO) build --locked

test-deps:
	$(call need,script,bsdutils)
	@rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy rustfmt

lint: test-deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

# Idempotent: a second run only checks the installed versions (well under a second).
e2e-deps:
	@bash tests/e2e/install.sh

# CLAUDEGATE_E2E_REQUIRED=1: a missing client fails tests/e2e_clients.rs instead of skipping it.
test: lint e2e-deps
	CLAUDEGATE_E2E_REQUIRED=1 $(CARGO) test --locked

release-deps:
	$(call need,musl-gcc,musl-tools)
	@rustup target list --installed | grep -qx $(X86) || rustup target add $(X86)

release: release-deps
	$(CARGO) build --release --locked --target $(X86)
	@ls -l target/$(X86)/release/$(BIN) | awk '{print "release binary: " $$9 " (" $$5 " bytes)"}'

install: release
	install -d $(PREFIX)/bin
	install -m 0755 target/$(X86)/release/$(BIN) $(PREFIX)/bin/$(BIN)
	@echo "installed $(PREFIX)/bin/$(BIN); next: $(BIN) keys add my-app && $(BIN) serve"

uninstall:
	rm -f $(PREFIX)/bin/$(BIN)

clean:
	$(CARGO) clean
