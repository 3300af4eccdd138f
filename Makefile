# pamstyle — build, test, demo, benchmark, install.
# `make test` and `make demo` work on a fresh Debian 12 clone: `setup` installs what is missing.

PREFIX    ?= /usr/local
SWIFT     ?= swift
DEBS      := libnetpbm-dev libopenblas-dev netpbm
SUDO      := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
RELEASE   := .build/release

.PHONY: all setup build test demo bench install uninstall clean

all: build

## setup: install the Debian packages pamstyle builds against, when missing
setup:
	@missing=""; for p in $(DEBS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "setup: installing$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

## build: release build of pamstyle
build: setup
	$(SWIFT) build -c release --product pamstyle

## test: the whole test suite
test: setup
	$(SWIFT) build
	$(SWIFT) test

clean:
	rm -rf .build

## fuzz: libFuzzer with ASan/UBSan on the Netpbm reader and the weights loader, SECONDS (default 60) per
## target; see fuzz/README.md. Not part of `test`.
fuzz: setup
	./fuzz/run.sh $(or $(SECONDS),60)

.PHONY: fuzz
