# pamstyle — build, test, demo, benchmark, install.
# `make test` and `make demo` work on a fresh Debian 12 clone: `setup` installs what is missing.

PREFIX    ?= /usr/local
SWIFT     ?= swift
DEBS      := libnetpbm-dev libopenblas-dev netpbm imagemagick parallel
SUDO      := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
RELEASE   := .build/release

.PHONY: all setup build test demo figures bench install uninstall clean

DEMO_CONTENT := examples/images/chelsea.ppm
DEMO_STYLE   := examples/images/scream.ppm
DEMO_OUT     := examples/out/chelsea-scream
BENCH_SIZES  ?= 256 512 1024 2048 4096x3072
BENCH_JOB_SIZES ?= 256x160 512x384 512 1024

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

## test: the whole test suite; the release binary first, which the command-line property test runs
test: setup
	$(SWIFT) build -c release --product pamstyle
	$(SWIFT) build
	$(SWIFT) test

## demo: stylize the bundled photo with the default settings
demo: build
	@mkdir -p examples/out
	@echo "demo: repainting $(DEMO_CONTENT) in the style of $(DEMO_STYLE) (default settings; a few minutes on a CPU)"
	$(RELEASE)/pamstyle $(DEMO_STYLE) < $(DEMO_CONTENT) > $(DEMO_OUT).ppm.tmp
	mv $(DEMO_OUT).ppm.tmp $(DEMO_OUT).ppm
	pnmtopng $(DEMO_OUT).ppm > $(DEMO_OUT).png
	@echo "demo: wrote $(DEMO_OUT).ppm and $(DEMO_OUT).png"

## figures: the pictures of docs/ (style losses, layout, borders, masks, video) from the bundled example images; half an hour or so
figures: build
	./docs/figures.sh

## bench: pamstyle's own evaluation and L-BFGS step at each size in BENCH_JOB_SIZES, against the machine's measured
## multiply-add peak; then the network alone (seconds, GFLOP/s, peak memory) at each size in BENCH_SIZES; one process each
bench: setup
	$(SWIFT) build -c release --product pamstyle-bench
	@for size in $(BENCH_JOB_SIZES); do $(RELEASE)/pamstyle-bench --job --repeats 3 --sizes $$size || exit 1; done
	@for size in $(BENCH_SIZES); do $(RELEASE)/pamstyle-bench --style-losses --repeats 3 --sizes $$size || exit 1; done

## install: the binary, the manual and the weights under PREFIX
install: build
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/man/man1 $(DESTDIR)$(PREFIX)/share/pamstyle
	install -m 755 $(RELEASE)/pamstyle $(DESTDIR)$(PREFIX)/bin/pamstyle
	install -m 644 man/pamstyle.1 $(DESTDIR)$(PREFIX)/share/man/man1/pamstyle.1
	install -m 644 weights/vgg19-conv-q8.pstw $(DESTDIR)$(PREFIX)/share/pamstyle/vgg19-conv-q8.pstw

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/pamstyle $(DESTDIR)$(PREFIX)/share/man/man1/pamstyle.1
	rm -rf $(DESTDIR)$(PREFIX)/share/pamstyle

clean:
	rm -rf .build examples/out fuzz/build fuzz/corpus-run

## fuzz: libFuzzer with ASan/UBSan on the Netpbm reader and the weights loader, SECONDS (default 60) per
## target; see fuzz/README.md. Not part of `test`.
fuzz: setup
	./fuzz/run.sh $(or $(SECONDS),60)

.PHONY: fuzz
