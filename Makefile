# mcbuild: build, test and demo. Every target installs what it needs.
SHELL := /bin/bash
GO ?= go
# buildah as a library: openpgp instead of gpgme, no btrfs headers; cgo is
# required (chroot isolation relies on storage's cgo constructor).
TAGS := containers_image_openpgp exclude_graphdriver_btrfs
export CGO_ENABLED := 1
GOFLAGS_TAGS := -tags "$(TAGS)"

TOOLS := $(CURDIR)/bin/tools
REGISTRY_VERSION := v3.1.2
REGISTRY_BIN := $(TOOLS)/registry
# The oras CLI pushes trusted artifacts in the e2e tests, as Konflux's
# build-trusted-artifacts does.
ORAS_VERSION := v1.3.6
ORAS_BIN := $(TOOLS)/oras
ROOTFS := $(CURDIR)/examples/busybox-base/rootfs
ARCHES := amd64 arm64
APT_PACKAGES := busybox-static qemu-user-static binfmt-support skopeo curl runc

.PHONY: all build test demo deps apt-deps rootfs binfmt vet fmt clean bench tasks

all: build

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)

build: ## bin/mcbuild
	$(GO) build $(GOFLAGS_TAGS) -ldflags "-X main.buildVersion=$(VERSION)" -o bin/mcbuild ./cmd/mcbuild

apt-deps: ## Debian packages the tests and the demo use
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

$(REGISTRY_BIN):
	cd /tmp && GOFLAGS= GOBIN=$(TOOLS) $(GO) install github.com/distribution/distribution/v3/cmd/registry@$(REGISTRY_VERSION)

$(ORAS_BIN):
	cd /tmp && GOFLAGS= GOBIN=$(TOOLS) $(GO) install oras.land/oras/cmd/oras@$(ORAS_VERSION)

rootfs: apt-deps ## busybox root filesystems per architecture (no docker.io here)
	hack/busybox-rootfs.sh $(ROOTFS) $(ARCHES)

binfmt: apt-deps ## qemu emulation for foreign-architecture RUN steps
	hack/qemu-binfmt.sh $(ARCHES)

deps: apt-deps $(REGISTRY_BIN) $(ORAS_BIN) rootfs binfmt

# The Go files gofmt checks: not bench/.cache, where the benchmark's base
# workload holds a copy of the Go toolchain's source tree (bench/README.md).
GOFMT_FILES = $$(find cmd pkg internal test bench -path bench/.cache -prune -o -name '*.go' -print)

vet:
	$(GO) vet $(GOFLAGS_TAGS) ./...
	cd hack/seccomp && $(GO) vet ./...
	@out=$$(gofmt -l $(GOFMT_FILES) hack/seccomp 2>/dev/null); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# test/tekton is a nested module (Tekton and Chains stay out of go.mod): it
# validates tasks/ and pipelines/ and simulates their steps. It runs the build
# step in a user namespace as the pod would, which needs newuidmap (uidmap),
# and runs the Tasks' steps as pods on real container runtimes (Docker 20.10,
# containerd 1.6, podman 4.3 with runc) from the step image `make step-image`
# builds; apparmor brings apparmor_parser, which checks the Task's AppArmor
# profile. No recommended packages: podman's would bring crun, which buildah
# then prefers to runc for --isolation oci, and Debian's crun is too old.
TEKTON_APT_PACKAGES := uidmap docker.io containerd podman runc apparmor
.PHONY: tekton-deps
tekton-deps: apt-deps
	@missing=""; for p in $(TEKTON_APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

test: deps tekton-deps cluster-deps vet build step-image seccomp-check ## every test: unit and integration against real loopback registries, the Tekton tasks, then the real cluster (test-cluster)
	MCBUILD_REGISTRY_BIN=$(REGISTRY_BIN) MCBUILD_BIN=$(CURDIR)/bin/mcbuild MCBUILD_ORAS_BIN=$(ORAS_BIN) \
	  $(GO) test $(GOFLAGS_TAGS) -count=1 -timeout 20m ./...
	cd test/tekton && $(GO) vet ./... && $(GO) vet -tags cluster ./cluster/
	cd test/tekton && MCBUILD_REGISTRY_BIN=$(REGISTRY_BIN) MCBUILD_BIN=$(CURDIR)/bin/mcbuild \
	  $(GO) test -count=1 -timeout 20m ./...
	$(MAKE) --no-print-directory fuzz FUZZTIME=3s
	$(MAKE) --no-print-directory test-cluster

# The Tasks and the Pipeline on a real single-node cluster (test/cluster,
# README "Tested on"): Kubernetes, etcd, Tekton and Chains built from the Go
# module proxy and cached in .cache/cluster; the node runs Debian's containerd
# and runc with the CNI plugins, all inside a network namespace the test makes.
CLUSTER_APT_PACKAGES := containernetworking-plugins iptables jq openssl util-linux iproute2
.PHONY: test-cluster cluster-deps
cluster-deps: tekton-deps
	@missing=""; for p in $(CLUSTER_APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
test-cluster: deps cluster-deps step-image ## the Tasks and the Pipeline on a real single-node Kubernetes with Tekton and Chains
	test/cluster/run.sh

# The build Task's Localhost seccomp profile is generated (hack/seccomp):
# containerd's RuntimeDefault for the step's capabilities, on amd64 and arm64
# (arm64 under qemu, hence binfmt), plus the syscalls the step needs.
# `make seccomp` writes it; `make test` checks the committed file is exactly that.
SECCOMP_ARGS := -task ../../tasks/mcbuild/0.1/mcbuild.yaml
SECCOMP_PROFILE := ../../tasks/mcbuild/0.1/seccomp/mcbuild.json
.PHONY: seccomp seccomp-check
seccomp: binfmt ## regenerate tasks/mcbuild/0.1/seccomp/mcbuild.json
	cd hack/seccomp && $(GO) run . $(SECCOMP_ARGS) -out $(SECCOMP_PROFILE)
seccomp-check: binfmt
	cd hack/seccomp && $(GO) run . $(SECCOMP_ARGS) -check $(SECCOMP_PROFILE)

demo: deps build ## loopback registry, example build, results and index table
	REGISTRY_BIN=$(REGISTRY_BIN) MCBUILD=$(CURDIR)/bin/mcbuild hack/demo.sh

# Issue #5's benchmark (bench/README.md): mcbuild vs the naive copy.Image path
# vs the buildah 1.45 CLI vs the encoder floors, alternating; BENCH_RUNS (3),
# BENCH_BIG=1 (1 GiB layer), BENCH_ARMS; results under bench/results/<date>/.
# BENCH_WORKLOAD=base: issue 12's, an app on a 191 MiB base with and without
# layer reuse and with buildah (about 12 minutes a round).
bench: build $(REGISTRY_BIN) ## benchmark of issue #5; about 5 minutes with the defaults
	REGISTRY_BIN=$(REGISTRY_BIN) MCBUILD=$(CURDIR)/bin/mcbuild GO=$(GO) bench/run.sh

fmt:
	gofmt -w $(GOFMT_FILES)

# tasks/mcbuild-oci-ta is generated from tasks/mcbuild (test/tekton checks it).
tasks: ## regenerate the generated Tasks after editing tasks/mcbuild
	cd test/tekton && $(GO) test -count=1 -run '^TestOciTATaskGenerated$$' . -update-tasks

clean:
	rm -rf bin .cache

# Fuzzing: every parser of outside input (compression formats, platform
# lists, image references, the subjects document, index inputs, build-args
# files, --secret specs) and the zstd:chunked encoder against upstream's, each
# for FUZZTIME. `go test ./...` (make test)
# already replays the seeds and every testdata/fuzz crash as regression
# tests. A longer hunt: make fuzz FUZZTIME=10m, or one target:
#   go test -tags "$(TAGS)" -run '^$$' -fuzz '^FuzzCollect$$' -fuzztime 1h ./internal/index
# A crash is written to <pkg>/testdata/fuzz/<Target>/: commit it with the fix.
FUZZTIME ?= 10s
# Minimising each new "interesting" input may otherwise take up to 60s.
FUZZMINIMIZETIME ?= 2s
FUZZ_TARGETS := internal/formats:FuzzParse internal/oci:FuzzParsePlatforms internal/imageref:FuzzParse \
	internal/index:FuzzAssemble internal/index:FuzzCollect pkg/subjects:FuzzDecode pkg/subjects:FuzzFetch \
	internal/build:FuzzParseArgs internal/build:FuzzCheckSecret pkg/zstdchunked:FuzzMatchesUpstream \
	internal/sourceartifact:FuzzExtract
.PHONY: fuzz
fuzz: ## run every fuzz target for FUZZTIME (default 10s)
	@failed=""; for t in $(FUZZ_TARGETS); do pkg=$${t%%:*}; fn=$${t##*:}; \
	  echo "== $$pkg $$fn ($(FUZZTIME))"; \
	  $(GO) test $(GOFLAGS_TAGS) -run '^$$' -fuzz "^$$fn\$$" -fuzztime $(FUZZTIME) \
	    -fuzzminimizetime $(FUZZMINIMIZETIME) ./$$pkg || failed="$$failed $$pkg:$$fn"; \
	done; \
	if [ -n "$$failed" ]; then echo "fuzz failures:$$failed"; exit 1; fi

# The step image (Containerfile, README "Step image"): bases made locally and
# pushed to a loopback registry, then built with bin/mcbuild and pushed to
# $(IMAGE). Slow (minutes).
IMAGE ?= 127.0.0.1:5050/mcbuild/mcbuild:dev
.PHONY: image step-image
image: apt-deps $(REGISTRY_BIN) build ## the step image, built with mcbuild itself, pushed to $(IMAGE)
	REGISTRY_BIN=$(REGISTRY_BIN) MCBUILD=$(CURDIR)/bin/mcbuild IMAGE=$(IMAGE) VERSION=$(VERSION) GO=$(GO) hack/image.sh

# What test/tekton runs on container runtimes: `make image` into
# .cache/image/registry (a free loopback port for the run), skipped when the
# image there was built from the same inputs (hack/image.sh, IMAGE_REUSE).
step-image: apt-deps $(REGISTRY_BIN) build ## the step image for the runtime tests, rebuilt only when its inputs change
	IMAGE_REUSE=1 REGISTRY_BIN=$(REGISTRY_BIN) MCBUILD=$(CURDIR)/bin/mcbuild IMAGE=127.0.0.1:0/mcbuild/mcbuild:test \
	  VERSION=$(VERSION) GO=$(GO) hack/image.sh

# A release (hack/release.sh): the step image built as `make image` does and
# pushed to RELEASE_IMAGE (REGISTRY/REPO:TAG), or PREBUILT=REPO[:TAG]@sha256:...
# pushed already; then every Task's image is pinned to REPO@sha256:... and the
# Tasks are validated with Tekton's code. TASKS_ROOT (default: here) is the
# tree whose tasks/ are rewritten; MCBUILD_FLAGS go to the checks.
.PHONY: release
release: apt-deps $(REGISTRY_BIN) build ## publish the step image and pin tasks/ to its digest
	@if [ -n "$(PREBUILT)" ]; then set -- --prebuilt "$(PREBUILT)"; \
	elif [ -n "$(RELEASE_IMAGE)" ]; then set -- "$(RELEASE_IMAGE)"; \
	else echo "make release RELEASE_IMAGE=REGISTRY/REPO:TAG (or PREBUILT=REPO@sha256:...)" >&2; exit 2; fi; \
	REGISTRY_BIN=$(REGISTRY_BIN) MCBUILD=$(CURDIR)/bin/mcbuild VERSION=$(VERSION) GO=$(GO) hack/release.sh "$$@"
