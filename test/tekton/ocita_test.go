package tekton

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	corev1 "k8s.io/api/core/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content"

	"github.com/mcbuild/mcbuild/internal/formats"
	"github.com/mcbuild/mcbuild/internal/imagecheck"
	"github.com/mcbuild/mcbuild/internal/testfixture"
	"github.com/mcbuild/mcbuild/internal/testregistry"
)

// fakeCalls is a stand-in mcbuild that records every call (its arguments,
// NUL-separated, and its /proc status) and, for `source fetch REF DIR`,
// restores a one-line Containerfile into DIR.
const fakeCalls = `#!/bin/sh
n=$(ls "$FAKE_MCBUILD_OUT" | wc -l)
printf '%s\0' "$@" >"$FAKE_MCBUILD_OUT/$n.args"
cat /proc/$$/status >"$FAKE_MCBUILD_OUT/$n.status"
if [ "$1 $2" = "source fetch" ]; then
  for dir; do :; done
  mkdir -p "$dir" && echo 'FROM scratch' >"$dir/Containerfile"
fi
`

// simulateCalls runs sim with fakeCalls and returns each call's arguments
// and status, in order.
func simulateCalls(t *testing.T, sim taskRunSim) (*taskRunOutcome, [][]string, []string) {
	t.Helper()
	bin, outDir := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(bin, "mcbuild"), []byte(fakeCalls), 0o755); err != nil {
		t.Fatal(err)
	}
	sim.BinDir = bin
	sim.Env = append(sim.Env, "FAKE_MCBUILD_OUT="+outDir)
	out := simulate(t, sim)
	var calls [][]string
	var statuses []string
	for i := 0; ; i += 2 {
		raw, err := os.ReadFile(filepath.Join(outDir, strconv.Itoa(i)+".args"))
		if err != nil {
			break
		}
		status, _ := os.ReadFile(filepath.Join(outDir, strconv.Itoa(i)+".status"))
		calls = append(calls, strings.Split(strings.TrimSuffix(string(raw), "\x00"), "\x00"))
		statuses = append(statuses, string(status))
	}
	return out, calls, statuses
}

// TestOciTASteps: the use-source step runs `mcbuild source fetch` with
// SOURCE_ARTIFACT, the TLS setting, credentials and CA bundle into
// /var/workdir/source, holding no capability; the build step then builds
// there as the build Task's does; a SOURCE_ARTIFACT that is not an oci:
// reference with a digest is refused before mcbuild runs. Every shell.
func TestOciTASteps(t *testing.T) {
	const ref = "oci:127.0.0.1:5000/ns/source@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	forEachShell(t, func(t *testing.T, shell []string) {
		auth := t.TempDir()
		if err := os.WriteFile(filepath.Join(auth, "config.json"), []byte(`{"auths":{}}`), 0o600); err != nil {
			t.Fatal(err)
		}
		ca := t.TempDir()
		if err := os.WriteFile(filepath.Join(ca, "ca-bundle.crt"), []byte("-"), 0o644); err != nil {
			t.Fatal(err)
		}
		out, calls, statuses := simulateCalls(t, taskRunSim{TaskFile: ociTATaskFile, Shell: shell,
			Params:     v1.Params{strParam("IMAGE", "127.0.0.1:5000/ns/app:v1"), strParam("SOURCE_ARTIFACT", ref), strParam("TLSVERIFY", "false")},
			Workspaces: map[string]string{"dockerconfig": auth},
			Volumes:    map[string]string{"trusted-ca": ca}})
		if out.StepErr != nil || len(calls) != 2 {
			t.Fatalf("step failed (%v) or %d mcbuild calls, want 2:\n%s", out.StepErr, len(calls), out.Output)
		}
		workdir := filepath.Join(out.Root, "volumes", "workdir")
		want := []string{"source", "fetch", "--tls-verify=false", "--authfile", filepath.Join(auth, "config.json"), "--cert-dir", ca, ref, workdir + "/source"}
		if !slices.Equal(calls[0], want) {
			t.Errorf("use-source ran mcbuild with\n%s\nwant\n%s", joinLines(calls[0]), joinLines(want))
		}
		if capEff(t, statuses[0]) != 0 {
			t.Errorf("use-source holds capabilities:\n%s", statuses[0])
		}
		if calls[1][0] != "build" || !containsRun(calls[1], []string{"--context", "."}) || !slices.Contains(calls[1], "--konflux-labels") {
			t.Errorf("build step ran mcbuild with %q", calls[1])
		}
		for _, bad := range []string{"", "127.0.0.1:5000/ns/source@sha256:00", "oci:127.0.0.1:5000/ns/source:tag", "file:source@sha256:00"} {
			out, calls, _ := simulateCalls(t, taskRunSim{TaskFile: ociTATaskFile, Shell: shell,
				Params: v1.Params{strParam("IMAGE", "127.0.0.1:5000/ns/app:v1"), strParam("SOURCE_ARTIFACT", bad)}})
			if out.StepErr == nil || len(calls) != 0 || !strings.Contains(out.Output, "SOURCE_ARTIFACT must be oci:REGISTRY/REPO@sha256:HEX") {
				t.Errorf("SOURCE_ARTIFACT %q: calls %q, want a refusal before mcbuild:\n%s", bad, calls, out.Output)
			}
		}
	})
}

// TestOciTASecurity: the use-source step drops every capability; the build
// step is the build Task's (root and SETFCAP).
func TestOciTASecurity(t *testing.T) {
	task := loadTask(t, ociTATaskFile)
	if len(task.Spec.Steps) != 2 || task.Spec.Steps[0].Name != "use-source" {
		t.Fatalf("steps %d, want use-source then build", len(task.Spec.Steps))
	}
	fetch, build := task.Spec.Steps[0].SecurityContext, task.Spec.Steps[1].SecurityContext
	if c := fetch.Capabilities; c == nil || len(c.Add) != 0 || !slices.Equal(c.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("use-source capabilities %+v, want drop ALL", fetch.Capabilities)
	}
	base := loadTask(t, buildTaskFile)
	if build.String() != base.Spec.Steps[0].SecurityContext.String() {
		t.Errorf("build step securityContext %v, want the build Task's %v", build, base.Spec.Steps[0].SecurityContext)
	}
	for _, w := range task.Spec.Workspaces {
		if w.Name == "source" {
			t.Error("the oci-ta Task declares a source workspace")
		}
	}
}

// pushSourceArtifact archives dir as build-trusted-artifacts' create does
// (GNU tar, gzip -n) and pushes it as `oras push REPO:TAG source` would,
// with oras-go; it returns oci:REPO@sha256:<archive>.
func pushSourceArtifact(t *testing.T, repoName, dir string, archive []byte) string {
	t.Helper()
	if dir != "" {
		f := filepath.Join(t.TempDir(), "source")
		if out, err := exec.Command("tar", "--create", "--use-compress-program=gzip -n", "--file", f, "--directory="+dir, ".").CombinedOutput(); err != nil {
			t.Fatalf("tar: %v\n%s", err, out)
		}
		var err error
		if archive, err = os.ReadFile(f); err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	repo := testregistry.OpenRepo(t, repoName)
	blob := content.NewDescriptorFromBytes("application/vnd.oci.image.layer.v1.tar", archive)
	blob.Annotations = map[string]string{ocispec.AnnotationTitle: "source"}
	if err := repo.Push(ctx, blob, strings.NewReader(string(archive))); err != nil {
		t.Fatal(err)
	}
	m, err := oras.PackManifest(ctx, repo, oras.PackManifestVersion1_1, "application/vnd.unknown.artifact.v1", oras.PackManifestOptions{Layers: []ocispec.Descriptor{blob}})
	if err != nil {
		t.Fatal(err)
	}
	if err := repo.Tag(ctx, m, "taskrun-source"); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(archive)
	return "oci:" + repoName + "@sha256:" + hex.EncodeToString(sum[:])
}

// TestOciTABuild runs the oci-ta Task with the real mcbuild: the source
// artifact is fetched, checked and unpacked by the use-source step and
// built (a RUN in the step's user namespace) by the build step; a
// malicious artifact stops the TaskRun in use-source, naming the entry.
func TestOciTABuild(t *testing.T) {
	reg := testregistry.StartDistribution(t)
	src := testfixture.Context(t, map[string]string{"Containerfile": "FROM scratch\nCOPY rootfs/amd64/ /\nRUN echo built-from-the-artifact > /built\n"}, "amd64")
	ref := pushSourceArtifact(t, reg.Repo("tekton/source"), src, nil)
	repoName := reg.Repo("tekton/oci-ta")
	out := simulate(t, taskRunSim{TaskFile: ociTATaskFile, Params: v1.Params{
		strParam("IMAGE", repoName+":v1"), strParam("SOURCE_ARTIFACT", ref), strParam("PLATFORM", "linux/amd64"), strParam("TLSVERIFY", "false"),
	}})
	if out.StepErr != nil {
		t.Fatalf("%v\n%s", out.StepErr, out.Output)
	}
	repo := testregistry.OpenRepo(t, repoName)
	_, manifests := readIndex(t, repo, out.Results["IMAGE_DIGEST"])
	v, err := imagecheck.Check(context.Background(), repo, manifests[0], formats.Gzip)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(v.Files["built"])); got != "built-from-the-artifact" {
		t.Errorf("/built = %q", got)
	}

	evil := testfixture.TarGz(t, testfixture.TarFile("Containerfile", "FROM scratch\n"), testfixture.TarSymlink("creds", "/workspace/dockerconfig"))
	out = simulate(t, taskRunSim{TaskFile: ociTATaskFile, Params: v1.Params{
		strParam("IMAGE", repoName+":evil"), strParam("SOURCE_ARTIFACT", pushSourceArtifact(t, reg.Repo("tekton/source"), "", evil)), strParam("TLSVERIFY", "false"),
	}})
	if out.StepErr == nil || !strings.Contains(out.StepErr.Error(), "use-source") || !strings.Contains(out.Output, `unsafe archive entry "creds"`) {
		t.Fatalf("malicious artifact: %v, want use-source to fail naming the entry:\n%s", out.StepErr, out.Output)
	}
	if out.TaskRun.IsSuccessful() {
		t.Error("the TaskRun succeeded")
	}
}
