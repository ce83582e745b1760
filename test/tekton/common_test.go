// Package tekton proves the Tekton Tasks in tasks/ and the Pipeline in
// pipelines/ with Tekton's and Chains' own code, offline:
//
//   - every file is strict-decoded into tektoncd/pipeline v1 types, defaulted
//     and validated (feature flag enable-api-fields: beta), plus checks
//     Validate is blind to (result paths, params and results across taskRefs);
//   - each Task's step is simulated: Tekton's parameter, context, result and
//     workspace substitution is applied, the script runs under Tekton's own
//     entrypoint code (pkg/entrypoint) with the pod's capability set against
//     the real mcbuild binary and a loopback registry, and the TaskRun status
//     is built from the termination message by Tekton's pkg/pod;
//   - Chains' extraction code (pkg/artifacts) then decides what gets signed;
//   - the Tasks also run as pods (pod_test.go): Tekton's pod builder makes the
//     Pod and its containers run on real container runtimes (runtime_test.go:
//     containerd 1.6, Docker 20.10, podman 4.3 standing in for CRI-O) from the
//     step image, under the seccomp profiles and capability sets clusters
//     apply (clusters_test.go).
//
// Environment: MCBUILD_BIN (default ../../bin/mcbuild) and
// MCBUILD_REGISTRY_BIN (see internal/testregistry), both set by `make test`.
// The simulation runs as root with util-linux (unshare, setpriv, mount) and
// newuidmap (Debian package uidmap); the pods need the step image `make
// step-image` leaves in ../../.cache/image, and the runtimes (docker.io,
// containerd, podman, runc) and apparmor_parser. `make test` provides all.
package tekton

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/tektoncd/pipeline/pkg/apis/config"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"knative.dev/pkg/apis"
	"sigs.k8s.io/yaml"
)

// repoRoot is the mcbuild work tree (two levels up from this package).
var repoRoot string

func TestMain(m *testing.M) {
	wd, err := os.Getwd()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	repoRoot = filepath.Clean(filepath.Join(wd, "..", ".."))
	// testfixture looks for the busybox root filesystems next to the nearest
	// go.mod, which here is this module's: point it at the repository's.
	if os.Getenv("MCBUILD_BUSYBOX_ROOTFS") == "" {
		os.Setenv("MCBUILD_BUSYBOX_ROOTFS", filepath.Join(repoRoot, "examples", "busybox-base", "rootfs"))
	}
	// hack/release.sh validates the Tasks it pinned in the tree it rewrote.
	if r := os.Getenv("MCBUILD_TASKS_ROOT"); r != "" {
		repoRoot = r
	}
	code := m.Run()
	for _, d := range tempDirs {
		os.RemoveAll(d)
	}
	os.Exit(code)
}

// tektonContext carries the feature flags a Konflux-style cluster runs with:
// enable-api-fields beta (the bundles resolver and matrix results need it).
func tektonContext(t testing.TB) context.Context {
	t.Helper()
	ff, err := config.NewFeatureFlagsFromMap(map[string]string{"enable-api-fields": "beta"})
	if err != nil {
		t.Fatal(err)
	}
	defaults, err := config.NewDefaultsFromMap(map[string]string{})
	if err != nil {
		t.Fatal(err)
	}
	return config.ToContext(context.Background(), &config.Config{FeatureFlags: ff, Defaults: defaults})
}

// manifestFiles lists every YAML file under tasks/ and pipelines/, relative
// to the repository root.
func manifestFiles(t testing.TB) []string {
	t.Helper()
	var files []string
	for _, dir := range []string{"tasks", "pipelines"} {
		err := filepath.WalkDir(filepath.Join(repoRoot, dir), func(p string, d os.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if !d.IsDir() && (strings.HasSuffix(p, ".yaml") || strings.HasSuffix(p, ".yml")) {
				rel, _ := filepath.Rel(repoRoot, p)
				files = append(files, rel)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	sort.Strings(files)
	if len(files) == 0 {
		t.Fatal("no YAML files under tasks/ and pipelines/")
	}
	return files
}

// kindOf reads apiVersion and kind of a manifest.
func kindOf(t testing.TB, raw []byte) (apiVersion, kind string) {
	t.Helper()
	var tm struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
	}
	if err := yaml.Unmarshal(raw, &tm); err != nil {
		t.Fatal(err)
	}
	return tm.APIVersion, tm.Kind
}

// decodeStrict decodes YAML into v, refusing unknown and duplicate fields.
func decodeStrict(raw []byte, v any) error {
	return yaml.UnmarshalStrict(raw, v)
}

// validated reports a FieldError's error-level part as an error; warnings
// are logged.
func validated(t testing.TB, what string, fe *apis.FieldError) error {
	t.Helper()
	if fe == nil {
		return nil
	}
	if w := fe.Filter(apis.WarningLevel); w != nil {
		t.Logf("%s: validation warning: %v", what, w)
	}
	if e := fe.Filter(apis.ErrorLevel); e != nil {
		return fmt.Errorf("%s: %v", what, e)
	}
	return nil
}

func readRepoFile(t testing.TB, rel string) []byte {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(repoRoot, rel))
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// loadTask strict-decodes, defaults and validates a Task file.
func loadTask(t testing.TB, rel string) *v1.Task {
	t.Helper()
	raw := readRepoFile(t, rel)
	if av, k := kindOf(t, raw); av != "tekton.dev/v1" || k != "Task" {
		t.Fatalf("%s: %s %s, want tekton.dev/v1 Task", rel, av, k)
	}
	var task v1.Task
	if err := decodeStrict(raw, &task); err != nil {
		t.Fatalf("%s: %v", rel, err)
	}
	ctx := tektonContext(t)
	task.SetDefaults(ctx)
	if err := validated(t, rel, task.Validate(ctx)); err != nil {
		t.Fatal(err)
	}
	return &task
}

// loadPipeline strict-decodes, defaults and validates a Pipeline file.
func loadPipeline(t testing.TB, rel string) *v1.Pipeline {
	t.Helper()
	raw := readRepoFile(t, rel)
	if av, k := kindOf(t, raw); av != "tekton.dev/v1" || k != "Pipeline" {
		t.Fatalf("%s: %s %s, want tekton.dev/v1 Pipeline", rel, av, k)
	}
	var p v1.Pipeline
	if err := decodeStrict(raw, &p); err != nil {
		t.Fatalf("%s: %v", rel, err)
	}
	ctx := tektonContext(t)
	p.SetDefaults(ctx)
	if err := validated(t, rel, p.Validate(ctx)); err != nil {
		t.Fatal(err)
	}
	return &p
}

// The tasks and the pipeline under test.
const (
	buildTaskFile  = "tasks/mcbuild/0.1/mcbuild.yaml"
	indexTaskFile  = "tasks/mcbuild-index/0.1/mcbuild-index.yaml"
	verifyTaskFile = "tasks/mcbuild-verify/0.1/mcbuild-verify.yaml"
	pipelineFile   = "pipelines/mcbuild-multi-platform/0.1/mcbuild-multi-platform.yaml"
	// mcbuildRepoURL is how the pipeline's git resolver names this repository.
	mcbuildRepoURL = "https://github.com/mcbuild/mcbuild.git"
)

// localTaskFile maps a pipeline task's taskRef to a file in this repository:
// the git resolver with this repository's URL and a pathInRepo. Other refs
// (bundles, other repositories) give "".
func localTaskFile(ref *v1.TaskRef) string {
	if ref == nil || ref.Resolver != "git" {
		return ""
	}
	var url, path string
	for _, p := range ref.Params {
		switch p.Name {
		case "url":
			url = p.Value.StringVal
		case "pathInRepo":
			path = p.Value.StringVal
		}
	}
	if url != mcbuildRepoURL {
		return ""
	}
	return path
}

func joinLines(lines []string) string {
	var b bytes.Buffer
	for _, l := range lines {
		b.WriteString("  ")
		b.WriteString(l)
		b.WriteByte('\n')
	}
	return b.String()
}

// TestPinnedVersions: the proofs run against the Tekton and Chains releases
// the project targets. (A `go mod tidy` run while nothing imported Chains once
// dropped the requirement, and the next one picked an old Chains whose
// extraction differs.)
func TestPinnedVersions(t *testing.T) {
	raw, err := os.ReadFile("go.mod")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"github.com/tektoncd/pipeline v1.15.1", "github.com/tektoncd/chains v0.28.1"} {
		found := false
		for _, line := range strings.Split(string(raw), "\n") {
			if strings.TrimSpace(strings.SplitN(line, "//", 2)[0]) == want {
				found = true
			}
		}
		if !found {
			t.Errorf("go.mod does not require %s", want)
		}
	}
}
