# claudegate — build, test, release, install.
#
#   make test       THE test command: installs what the tests need, then fmt, clippy, all tests
#                   (with the aarch64 binary under qemu too when qemu-aarch64 is installed; CI
#                   installs it, and `make test TEST_ARM=1` forces it)
#   make browser-deps  headless Chromium and chromedriver (Debian's chromium, chromium-driver)
#                   for the status page's browser tests, tests/it/status_browser.rs (part of
#                   `make test`)
#   make e2e-deps   the real clients the end-to-end tests drive (Claude Code and Codex CLIs,
#                   the anthropic and openai Python SDKs, the Vercel AI SDK and OpenCode on a
#                   pinned Node 22),
#                   at the versions pinned in tests/e2e/, into target/e2e/ (part of `make test`)
#   make build      debug build
#   make release    static x86_64 and aarch64 musl binaries in target/<target>/release/,
#                   checked to be static, sizes printed
#   make test-arm   the aarch64 binary under qemu-user against the mock upstream (tests/it/arm.rs)
#   make image      the container image (contrib/Containerfile, FROM scratch with the static
#                   binary for this machine) as $(IMAGE), with podman, or docker when that is
#                   what the host has (ENGINE=docker forces it)
#   make dist       static x86_64 and aarch64 tarballs (binary, README, LICENSE,
#                   config.example.json, contrib/claudegate.service) and SHA256SUMS, in
#                   target/dist/
#   make install    the static binary for this machine to $(PREFIX)/bin (default ~/.local/bin),
#                   plus a systemd --user service (contrib/claudegate.service), enabled and started
#   make uninstall  stop and remove the service and the binary; keeps config and data
#   make bench      what the proxy adds, measured against the upstream served directly (nginx,
#                   wrk, a timed SSE server), every figure with its target and pass/fail;
#                   results in target/bench/results.{md,json} (see BENCHMARKS.md; not in CI)
#   make soak       30 minutes of mixed load (SOAK_SECONDS), memory/threads/fds sampled every
#                   10 s; results in target/bench/soak.{md,json} (not in CI)
#   make fuzz       a short cargo-fuzz run of each target in tests/fuzz/ (FUZZ_SECONDS each,
#                   default 60; nightly toolchain; not part of `make test` or CI)
#   make clean
#
# Every setup step is idempotent and only runs when something is missing, so a fresh Debian
# machine (or CI) and a developer's laptop run the same commands.
#
# Cross settings live here rather than in .cargo/config.toml: they name Debian's cross gcc,
# which this Makefile installs, and plain `cargo build`/`cargo test` never need them.

PREFIX ?= $(HOME)/.local
BIN    := claudegate
X86    := x86_64-unknown-linux-musl
ARM    := aarch64-unknown-linux-musl
CARGO  ?= cargo

HOST_ARCH := $(shell uname -m)

# apt-get as root, or through sudo for a normal user (env: sudo would drop DEBIAN_FRONTEND).
APT := $(if $(filter 0,$(shell id -u)),,sudo )env DEBIAN_FRONTEND=noninteractive apt-get
# $(call need,COMMAND,DEBIAN-PACKAGE): install the package when the command is missing.
need = @command -v $(1) >/dev/null 2>&1 || { echo "installing $(2) from Debian's packages (for $(1))"; \
	$(APT) update -qq && $(APT) install -y -qq $(2) >/dev/null; }

# C compiler (ring has C and assembly) and linker per target. The musl targets link Rust's own
# bundled musl (self-contained), so a glibc cross gcc serves as linker. cc-rs finds `musl-gcc`
# for x86_64-musl by itself; for aarch64-musl it would look for aarch64-linux-musl-gcc, which
# Debian does not ship, hence the explicit CC.
# Link flags of the static binaries, for size (figures in Cargo.toml's [profile.release]):
# - Relative relocations packed (DT_RELR, `-z pack-relative-relocs`, GNU ld >= 2.38 and lld):
#   the static-pie binary relocates itself at start (musl >= 1.2.4's rcrt1 reads DT_RELR; Rust
#   bundles musl 1.2.5), and its 88 KB of .rela.dyn become 1 KB of .relr.dyn, with address-space
#   randomisation kept (a non-PIE binary would drop the table too, and ASLR with it).
# - Identical code folding (`--icf=all`) with the lld that rustup ships beside rustc (its
#   gcc-ld/ld.lld wrapper, picked by the C compiler driver through -B): 28 KB more. Where that
#   lld is missing, GNU ld links without folding, and the binary is that much bigger.
LLD_DIR := $(shell rustc --print sysroot 2>/dev/null)/lib/rustlib/$(shell rustc -vV 2>/dev/null | sed -n 's/^host: //p')/bin/gcc-ld
comma := ,
SIZE_FLAGS := -C link-arg=-Wl,-z,pack-relative-relocs$(if $(wildcard $(LLD_DIR)/ld.lld), \
	-C link-arg=-fuse-ld=lld -C link-arg=-B$(LLD_DIR) -C link-arg=-Wl$(comma)--icf=all)

ifeq ($(HOST_ARCH),aarch64)
X86_CC  := x86_64-linux-gnu-gcc
X86_PKG := gcc-x86-64-linux-gnu
X86_ENV := CC_x86_64_unknown_linux_musl=$(X86_CC) CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_LINKER=$(X86_CC)
ARM_CC  := musl-gcc
ARM_PKG := musl-tools
ARM_ENV := CC_aarch64_unknown_linux_musl=$(ARM_CC)
else
X86_CC  := musl-gcc
X86_PKG := musl-tools
X86_ENV :=
ARM_CC  := aarch64-linux-gnu-gcc
ARM_PKG := gcc-aarch64-linux-gnu
ARM_ENV := CC_aarch64_unknown_linux_musl=$(ARM_CC) CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER=$(ARM_CC)
endif
X86_ENV += CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_RUSTFLAGS="$(SIZE_FLAGS)"
ARM_ENV += CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_RUSTFLAGS="$(SIZE_FLAGS)"

# The static binaries link a standard library compiled with them, from the toolchain's own
# rust-src, instead of the prebuilt one (issue 15; figures in Cargo.toml):
# - compiled at the release profile's opt-level "z" (the prebuilt std is built for speed), with
#   std's `optimize_for_size` (smaller sort and formatting code paths);
# - without std's `backtrace` feature: the symbolizer behind RUST_BACKTRACE (gimli, addr2line,
#   miniz_oxide, about 0.2 MB) has nothing to read in a stripped binary, where it prints
#   `<unknown>` for every frame anyway. Panics still unwind (`panic-unwind`): one request's
#   panic is caught and answered 500, and the log still gets its location.
# `-Zbuild-std` is a cargo option not yet stable, so RUSTC_BOOTSTRAP=1 allows it on the
# pinned stable compiler (the same rustc, no nightly); only these two targets use it. std's own
# dependencies come from crates.io at the versions locked in rust-src.
BUILD_STD := RUSTC_BOOTSTRAP=1
BUILD_STD_FLAGS := -Zbuild-std=std,panic_unwind -Zbuild-std-features=panic-unwind,optimize_for_size

X86_OUT := target/$(X86)/release/$(BIN)
ARM_OUT := target/$(ARM)/release/$(BIN)
# The static binary for this machine: what `make install`, `make image`, `make bench` and the
# container test (tests/it/container.rs, as CLAUDEGATE_BIN) use.
HOST_OUT := target/$(HOST_ARCH)-unknown-linux-musl/release/$(BIN)

# qemu-user for the aarch64 binary (Debian qemu-user-static, or qemu-user). Recursive on purpose:
# evaluated when a recipe runs, after test-arm-deps may have installed it.
QEMU ?= $(firstword $(shell command -v qemu-aarch64-static qemu-aarch64 2>/dev/null))
# What runs the aarch64 binary: qemu, or nothing on an aarch64 host.
ARM_RUNNER = $(if $(filter aarch64,$(HOST_ARCH)),,$(QEMU))
# `make test` includes the aarch64 tests when qemu is installed (or on an aarch64 host).
TEST_ARM ?= $(if $(or $(QEMU),$(filter aarch64,$(HOST_ARCH))),1)
ARM_TEST_ENV = CLAUDEGATE_ARM_BIN=$(CURDIR)/$(ARM_OUT) CLAUDEGATE_QEMU=$(ARM_RUNNER)

# $(call check_static,BINARY): prints `file`'s verdict; fails unless the binary is a static ELF
# (no program interpreter, no shared libraries), which `ldd` confirms for the host's own arch.
check_static = @info=$$(file -b $(1)); echo "$(1): $$info"; \
	echo "$$info" | grep -Eq 'static(ally|-pie) linked' \
	  || { echo "error: $(1) is not statically linked" >&2; exit 1; }; \
	if readelf -lW $(1) | grep -q 'program interpreter' || readelf -dW $(1) | grep -q '(NEEDED)'; then \
	  echo "error: $(1) has a program interpreter or needs shared libraries" >&2; exit 1; fi; \
	if [ "$(2)" = "$(HOST_ARCH)" ]; then l=$$(ldd $(1) 2>&1 || true); echo "  ldd: $$l"; \
	  echo "$$l" | grep -Eq 'statically linked|not a dynamic executable' \
	    || { echo "error: ldd finds shared libraries in $(1)" >&2; exit 1; }; fi

.PHONY: build release release-deps release-x86_64 release-aarch64 release-x86_64-deps rust-src \
	release-aarch64-deps test test-deps test-arm test-arm-deps e2e-deps browser-deps caddy-deps lint \
	install uninstall clean fuzz bench bench-deps soak image container-deps dist

build:
	$(CARGO) build --locked

# python3 and node run the drop-in clients (contrib/clients/) in tests/it/clients.rs; Debian's
# nodejs (18 on bookworm) has the global fetch the JS client needs.
test-deps:
	$(call need,cc,build-essential)
	$(call need,script,bsdutils)
	$(call need,systemd-analyze,systemd)
	$(call need,openssl,openssl)
	$(call need,python3,python3)
	$(call need,node,nodejs)
	@rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy rustfmt

# The fuzz targets are a separate crate that `make test` never runs; checking that it still
# compiles keeps its paths from rotting when the library moves things (about 20 s).
lint: test-deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --all-targets -- -D warnings
	$(CARGO) check --locked --quiet --manifest-path tests/fuzz/Cargo.toml --all-targets

# Caddy, the TLS front door tests/it/caddy.rs puts in front of the server (Debian's package;
# the tests run their own instance with a private config and CA, never the system service).
caddy-deps:
	$(call need,caddy,caddy)

# Idempotent: a second run only checks the installed versions (a few seconds).
e2e-deps:
	@bash tests/e2e/install.sh

# The status page is tested in a real browser (tests/it/status_browser.rs), at the paths the test
# looks for. chromium-driver depends on chromium, so a fresh machine installs both at once.
browser-deps:
	$(call need,/usr/bin/chromedriver,chromium chromium-driver)
	$(call need,/usr/bin/chromium,chromium)

# CLAUDEGATE_E2E_REQUIRED=1: a missing client fails tests/it/e2e_clients.rs instead of skipping it,
# and a missing Chromium fails tests/it/status_browser.rs.
# The static binary for this machine goes into the container image (tests/it/container.rs,
# with podman). With TEST_ARM, the aarch64 release binary is built first and tests/it/arm.rs
# runs it, and both make the release tarballs, which tests/it/dist.rs checks.
# A test that cannot run here (the aarch64 ones without qemu, say) skips with a banner and a
# line in target/test-skips.txt, listed at the end; under CI (CLAUDEGATE_CI=1) it fails instead.
SKIP_LOG := $(CURDIR)/target/test-skips.txt
test: lint e2e-deps browser-deps caddy-deps container-deps release-$(HOST_ARCH) \
	$(if $(TEST_ARM),test-arm-deps release-aarch64 dist)
	@mkdir -p target && rm -f $(SKIP_LOG)
	@CLAUDEGATE_E2E_REQUIRED=1 CLAUDEGATE_SKIP_LOG=$(SKIP_LOG) CLAUDEGATE_BIN=$(CURDIR)/$(HOST_OUT) \
	  $(if $(TEST_ARM),$(ARM_TEST_ENV) CLAUDEGATE_DIST=$(CURDIR)/$(DIST)) \
	  $(CARGO) test --locked; status=$$?; \
	if [ -s $(SKIP_LOG) ]; then echo "SKIPPED: $$(wc -l < $(SKIP_LOG)) test(s) did not run here:"; \
	  sed 's/^/  /' $(SKIP_LOG); else echo "no test skipped"; fi; exit $$status

# ---- static release binaries -------------------------------------------------------------

release-deps: release-x86_64-deps release-aarch64-deps
	$(call need,file,file)
	$(call need,readelf,binutils)

release-x86_64-deps: rust-src
	$(call need,cc,build-essential)
	$(call need,$(X86_CC),$(X86_PKG))
	@rustup target list --installed | grep -qx $(X86) || rustup target add $(X86)

release-aarch64-deps: rust-src
	$(call need,cc,build-essential)
	$(call need,$(ARM_CC),$(ARM_PKG))
	@rustup target list --installed | grep -qx $(ARM) || rustup target add $(ARM)

# The standard library's source, which the release builds compile (BUILD_STD above).
rust-src:
	@rustup component list --installed 2>/dev/null | grep -q '^rust-src' || rustup component add rust-src

release-x86_64: release-x86_64-deps
	$(X86_ENV) $(BUILD_STD) $(CARGO) build --release --locked --target $(X86) $(BUILD_STD_FLAGS)

release-aarch64: release-aarch64-deps
	$(ARM_ENV) $(BUILD_STD) $(CARGO) build --release --locked --target $(ARM) $(BUILD_STD_FLAGS)

release: release-deps release-x86_64 release-aarch64
	$(call check_static,$(X86_OUT),x86_64)
	$(call check_static,$(ARM_OUT),aarch64)
	@for f in $(X86_OUT) $(ARM_OUT); do \
	  stat -c '%s' $$f | awk -v f=$$f '{printf "release binary: %s (%d bytes, %.2f MB)\n", f, $$1, $$1/1e6}'; done

# ---- container image ---------------------------------------------------------------------

IMAGE ?= claudegate:latest
# podman, else docker. Recursive: evaluated when a recipe runs, after container-deps.
ENGINE ?= $(firstword $(shell command -v podman docker 2>/dev/null))

# podman and runc from Debian for the container test (runc: crun refuses the hybrid cgroup
# layout of some hosts; the test runs with --runtime runc).
container-deps:
	@command -v podman >/dev/null 2>&1 && command -v runc >/dev/null 2>&1 || { \
	  echo "installing Debian packages podman runc (the container test, tests/it/container.rs)"; \
	  $(APT) update -qq && $(APT) install -y -qq podman runc >/dev/null; }

# The build context is staged in target/image/ (the binary and an empty data/, the volume's
# mount point), so the engine is never sent the whole of target/. Under podman the image is
# built in docker format: the OCI format has no HEALTHCHECK.
image: release-$(HOST_ARCH)
	@[ -n "$(ENGINE)" ] || { echo "error: make image needs podman or docker (Debian: apt-get install podman)" >&2; exit 1; }
	rm -rf target/image && mkdir -p target/image/data && chmod 700 target/image/data
	cp $(HOST_OUT) target/image/$(BIN)
	$(ENGINE) build $(if $(findstring podman,$(notdir $(ENGINE))),--format docker) \
	  -t $(IMAGE) -f contrib/Containerfile target/image
	@$(ENGINE) image inspect --format '{{.Size}}' $(IMAGE) \
	  | awk '{printf "image $(IMAGE): %d bytes (%.2f MB)\n", $$1, $$1/1e6}'

# ---- release tarballs --------------------------------------------------------------------

DIST    := target/dist
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
# Reproducible archives: sorted names, owner root, every mtime the commit's time, modes set
# whatever the umask (0644 files, 0755 the binary and directories), gzip without a timestamp;
# so the same commit gives the same SHA256SUMS.
STAMP   := $(shell git log -1 --format=%ct 2>/dev/null || echo 0)

dist: release
	rm -rf $(DIST) && mkdir -p $(DIST)
	@set -e; for arch in x86_64 aarch64; do \
	  d=$(BIN)-$(VERSION)-$$arch-linux-musl; mkdir $(DIST)/$$d; \
	  cp target/$$arch-unknown-linux-musl/release/$(BIN) README.md LICENSE config.example.json \
	    contrib/claudegate.service $(DIST)/$$d/; \
	  tar -C $(DIST) --sort=name --owner=0 --group=0 --numeric-owner --mtime=@$(STAMP) \
	    --mode='a+rX,go-w' -cf - $$d | gzip -9 -n > $(DIST)/$$d.tar.gz; \
	  rm -rf $(DIST)/$$d; echo "$(DIST)/$$d.tar.gz"; done
	cd $(DIST) && sha256sum *.tar.gz > SHA256SUMS && cat SHA256SUMS

# ---- the aarch64 binary under qemu ------------------------------------------------------

test-arm-deps: release-aarch64-deps
	@[ "$(HOST_ARCH)" = aarch64 ] || command -v qemu-aarch64-static >/dev/null 2>&1 \
	  || command -v qemu-aarch64 >/dev/null 2>&1 \
	  || { echo "installing qemu-user-static from Debian's packages (to run the aarch64 binary)"; \
	       $(APT) update -qq && $(APT) install -y -qq qemu-user-static >/dev/null; }

test-arm: test-arm-deps release-aarch64
	$(ARM_TEST_ENV) $(CARGO) test --locked --test it arm::

# ---- benchmark and soak (not in CI) ------------------------------------------------------

# Both run the static release binary for this machine (what users run), built first, against
# nginx (a static upstream that is never the bottleneck) and wrk (the load generator), from
# Debian's packages. BENCH_QUICK=1 shortens every phase for a smoke run.
bench-deps:
	$(call need,nginx,nginx-light)
	$(call need,wrk,wrk)

bench: bench-deps release-$(HOST_ARCH)
	CLAUDEGATE_BIN=$(CURDIR)/$(HOST_OUT) \
	  $(CARGO) bench --locked --bench proxy

SOAK_SECONDS ?= 1800

soak: release-$(HOST_ARCH)
	CLAUDEGATE_BIN=$(CURDIR)/$(HOST_OUT) \
	  SOAK_SECONDS=$(SOAK_SECONDS) $(CARGO) bench --locked --bench proxy -- soak

# ---- fuzzing (not in CI) -----------------------------------------------------------------

# tests/fuzz/run.sh: installs cargo-fuzz if missing, seeds the corpora from tests/golden/, runs
# each target for FUZZ_SECONDS (one at a time, one core), prints executions, exec/s, cov and
# ft per target, and fails if any target crashed. FUZZ_TARGETS="a b" runs a subset;
# FUZZ_COVERAGE=1 adds line coverage per target.
FUZZ_SECONDS ?= 60

fuzz:
	FUZZ_SECONDS=$(FUZZ_SECONDS) bash tests/fuzz/run.sh

# ---- install as a systemd --user service ------------------------------------------------

# The static musl binary for this machine (x86_64 or aarch64). If that cannot be built here (no
# apt, another architecture), the native release build is installed instead, and said so.
install:
	@case $(HOST_ARCH) in x86_64) t=$(X86);; aarch64) t=$(ARM);; *) t=;; esac; \
	if [ -n "$$t" ] && $(MAKE) --no-print-directory release-$(HOST_ARCH); then \
	  src=target/$$t/release/$(BIN); echo "installing the static $(HOST_ARCH) musl binary"; \
	else \
	  echo "no static musl build for $(HOST_ARCH) here; installing the native release build instead" >&2; \
	  $(CARGO) build --release --locked && src=target/release/$(BIN) || exit 1; \
	fi; \
	sh contrib/service.sh install "$$src" "$(PREFIX)"

uninstall:
	@sh contrib/service.sh uninstall "" "$(PREFIX)"

clean:
	$(CARGO) clean
