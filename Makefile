# Tenancy — see README.md. `make dev` runs the whole system locally; `make unit` runs the tests
# that need nothing but Go, `make test` every check and test.

SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec
export GOTOOLCHAIN ?= local

TENANCY_CACHE ?= $(HOME)/.cache/tenancy
TOOLS_DIR := $(TENANCY_CACHE)/tools
K8S_VERSION ?= 1.37.2
CONTROLLER_TOOLS_VERSION ?= v0.23.0
GOLANGCI_LINT_VERSION ?= v2.15.0
CONTROLLER_GEN := $(TOOLS_DIR)/controller-gen-$(CONTROLLER_TOOLS_VERSION)
GOLANGCI_LINT := $(TOOLS_DIR)/golangci-lint-$(GOLANGCI_LINT_VERSION)

# Ginkgo/`go test` flags, e.g. `make test TEST_ARGS='-run TestControllers -v'` or
# `make test TEST_ARGS='-ginkgo.focus=APIKey'`. TEST_PKGS narrows the packages:
# `make test TEST_PKGS=./controllers/`.
TEST_ARGS ?=
TEST_PKGS ?= ./...
TEST_TIMEOUT ?= 30m

# The release version: the VERSION file, stamped into both binaries (--version, the
# tenancy_build_info metric) and used as the image tag and the chart's appVersion.
VERSION ?= v$(shell cat VERSION)
# Where the images go: $(REGISTRY)/tenancy-manager:$(VERSION) and $(REGISTRY)/tenancy-authd:$(VERSION).
REGISTRY ?= ghcr.io/tenancy-dev
GO_LDFLAGS := -s -w -X github.com/tenancy-dev/tenancy/internal/version.Version=$(VERSION)

.PHONY: all
all: build

##@ Development

.PHONY: help
help: ## Show the targets.
	@awk 'BEGIN {FS = ":.*##"} /^[a-zA-Z_-]+:.*?##/ { printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2 } /^##@/ { printf "\n%s\n", substr($$0, 5) }' $(MAKEFILE_LIST)

.PHONY: manifests
manifests: $(CONTROLLER_GEN) ## Generate CRDs (config/ and the chart), the manager's RBAC role and docs/reference.md from the Go markers.
	$(CONTROLLER_GEN) rbac:roleName=manager-role crd webhook paths="./..." output:crd:artifacts:config=config/crd/bases output:rbac:artifacts:config=config/rbac output:webhook:artifacts:config=config/webhook
	go run ./hack/crdref --crds config/crd/bases --out docs/reference.md
	rm -f charts/tenancy/crds/*.yaml && mkdir -p charts/tenancy/crds && cp config/crd/bases/*.yaml charts/tenancy/crds/

.PHONY: generate
generate: $(CONTROLLER_GEN) ## Generate the deepcopy functions of the API types.
	$(CONTROLLER_GEN) object:headerFile="hack/boilerplate.go.txt" paths="./api/..."

.PHONY: verify-generated
verify-generated: $(CONTROLLER_GEN) ## Fail when generated files are stale (run `make manifests generate`).
	CONTROLLER_GEN=$(CONTROLLER_GEN) hack/verify-generated.sh

.PHONY: fmt
fmt: ## Run gofmt on the code.
	gofmt -s -w $$(git ls-files --cached --others --exclude-standard '*.go')

.PHONY: verify-fmt
verify-fmt: ## Fail when gofmt would change a file.
	@out="$$(gofmt -s -l $$(git ls-files --cached --others --exclude-standard '*.go'))"; \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

.PHONY: vet
vet: ## Run go vet.
	go vet ./...

.PHONY: lint
lint: $(GOLANGCI_LINT) ## Run golangci-lint.
	$(GOLANGCI_LINT) run ./...

##@ Test

.PHONY: unit
unit: ## Run the tests that need nothing but Go (`go test -short`): seconds, no API server, database or browser.
	go test -short -count=1 $(TEST_PKGS) $(TEST_ARGS)

.PHONY: test
test: verify-generated verify-fmt vet lint ## Run every check and test: generated files, lint, unit, envtest and PostgreSQL.
	export KUBEBUILDER_ASSETS="$$(hack/setup-envtest.sh)"; \
	export TENANCY_TEST_DATABASE_URL="$$(hack/postgres.sh)"; \
	export TENANCY_CHROMIUM="$$(hack/chromium.sh)"; \
	export TENANCY_MAILPIT="$$(hack/mailpit.sh)"; \
	export TENANCY_PYTHON="$$(hack/python.sh)"; \
	go test -race -timeout $(TEST_TIMEOUT) -count=1 $(TEST_PKGS) $(TEST_ARGS)

.PHONY: bench
bench: ## Run the benchmarks (figures belong in docs/benchmarks.md).
	export KUBEBUILDER_ASSETS="$$(hack/setup-envtest.sh)"; \
	export TENANCY_TEST_DATABASE_URL="$$(hack/postgres.sh)"; \
	go test -run '^$$' -bench . -benchmem -timeout 120m $(TEST_PKGS) $(TEST_ARGS)

.PHONY: envtest
envtest: ## Build (once) the kube-apiserver, etcd, kubectl and kube-controller-manager binaries.
	hack/setup-envtest.sh

.PHONY: mailpit
mailpit: ## Build (once) Mailpit, the mail catcher of make dev and the tests.
	hack/mailpit.sh

##@ Build and run

.PHONY: build
build: ## Build the static, version-stamped binaries into bin/.
	CGO_ENABLED=0 go build -trimpath -ldflags '$(GO_LDFLAGS)' -o bin/ ./cmd/manager ./cmd/authd ./cmd/kubectl-tenancy ./cmd/tenancy

.PHONY: image
image: ## Build the images without Docker (linux/amd64, linux/arm64): OCI layouts and docker-archive tarballs in bin/images/.
	go run ./hack/image build --version $(VERSION) --registry $(REGISTRY) --out bin/images

.PHONY: image-push
image-push: image ## Push the images to REGISTRY (credentials from ~/.docker/config.json).
	go run ./hack/image push --version $(VERSION) --registry $(REGISTRY) --out bin/images

.PHONY: release
release: manifests image ## Write dist/: install.yaml (cert-manager), install-self-signed.yaml, the chart package and the images.
	go run ./hack/release --version $(VERSION) --registry $(REGISTRY) --images bin/images --out dist

.PHONY: run
run: ## Run the manager against the current kubeconfig and TENANCY_DATABASE_URL.
	go run ./cmd/manager --enable-webhooks=false

.PHONY: dev
dev: ## Run the whole system on this machine with no cluster; DEV_ARGS=--clean starts afresh.
	go run ./hack/devstack $(DEV_ARGS)

##@ Tools

$(CONTROLLER_GEN):
	@mkdir -p $(TOOLS_DIR)
	GOBIN=$(TOOLS_DIR)/controller-gen.tmp go install sigs.k8s.io/controller-tools/cmd/controller-gen@$(CONTROLLER_TOOLS_VERSION)
	mv $(TOOLS_DIR)/controller-gen.tmp/controller-gen $@ && rmdir $(TOOLS_DIR)/controller-gen.tmp

$(GOLANGCI_LINT):
	@mkdir -p $(TOOLS_DIR)
	GOBIN=$(TOOLS_DIR)/golangci-lint.tmp go install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)
	mv $(TOOLS_DIR)/golangci-lint.tmp/golangci-lint $@ && rmdir $(TOOLS_DIR)/golangci-lint.tmp
