package tekton

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/tektoncd/chains/pkg/artifacts"
	"github.com/tektoncd/chains/pkg/chains/objects"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	prresources "github.com/tektoncd/pipeline/pkg/reconciler/pipelinerun/resources"
	"github.com/tektoncd/pipeline/pkg/termination"
	"go.uber.org/zap"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/registry/remote"

	"github.com/mcbuild/mcbuild/internal/results"
	"github.com/mcbuild/mcbuild/internal/testfixture"
	"github.com/mcbuild/mcbuild/internal/testregistry"
	"github.com/mcbuild/mcbuild/pkg/subjects"
)

// copyOnly builds without RUN, so any platform builds without emulation.
var copyOnly = map[string]string{
	"Containerfile": "FROM scratch\nCOPY hello.txt /\n",
	"hello.txt":     "hello\n",
}

// twentyPlatforms differ in os, architecture or variant, so each gets its own
// config and its own manifests.
var twentyPlatforms = []string{
	"linux/amd64", "linux/arm64", "linux/arm/v5", "linux/arm/v6", "linux/arm/v7", "linux/386", "linux/ppc64le",
	"linux/ppc64", "linux/s390x", "linux/riscv64", "linux/mips64le", "linux/mips64", "linux/mipsle", "linux/mips",
	"linux/loong64", "freebsd/amd64", "freebsd/arm64", "openbsd/amd64", "openbsd/arm64", "netbsd/amd64",
}

// TestBuildResultsAndChains runs the mcbuild Task's step for 1, 4 and 20
// platforms: the termination message always fits Tekton's 4096 bytes, every
// declared result is written (IMAGES empty when its digests do not fit: a
// Pipeline result naming a missing Task result fails the PipelineRun), and
// Chains extracts the index and every manifest while IMAGES fits, the index
// alone (IMAGE_URL + IMAGE_DIGEST, skipping the empty IMAGES) with
// SUBJECTS_REF carrying every digest when it does not.
func TestBuildResultsAndChains(t *testing.T) {
	reg := testregistry.StartDistribution(t)
	src := testfixture.Context(t, copyOnly)
	for _, tc := range []struct {
		name       string
		platforms  []string
		wantImages bool
	}{
		{"1-platform", []string{"linux/amd64"}, true},
		{"4-platforms", []string{"linux/amd64", "linux/arm64", "linux/arm/v7", "linux/s390x"}, true},
		{"20-platforms", twentyPlatforms, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			repoName := reg.Repo("tekton/" + tc.name)
			out := simulate(t, taskRunSim{
				TaskFile: buildTaskFile,
				Params: v1.Params{
					strParam("IMAGE", repoName+":v1"),
					strParam("PLATFORM", strings.Join(tc.platforms, ",")),
					strParam("TLSVERIFY", "false"),
				},
				Workspaces: map[string]string{"source": src},
			})
			if out.StepErr != nil {
				t.Fatalf("%v\n%s", out.StepErr, out.Output)
			}
			checkMessage(t, out, tc.wantImages)
			repo := testregistry.OpenRepo(t, repoName)
			idx, manifests := readIndex(t, repo, out.Results["IMAGE_DIGEST"])
			if len(manifests) != 2*len(tc.platforms) {
				t.Fatalf("index lists %d manifests, want %d", len(manifests), 2*len(tc.platforms))
			}
			want := []string{repoName + "@" + idx.Digest.String()}
			if tc.wantImages {
				for _, m := range manifests {
					want = append(want, repoName+"@"+m.Digest.String())
				}
			}
			if got := chainsTaskRunImages(t, out.TaskRun); !sameSet(got, want) {
				t.Errorf("Chains extracts\n%s\nwant\n%s", joinLines(got), joinLines(want))
			}
			checkPipelineResults(t, out, want)
			checkSubjects(t, repo, out.Results["SUBJECTS_REF"], idx, manifests)
		})
	}
}

// checkPipelineResults: a Pipeline passing every result of this TaskRun on
// as its own (IMAGES: $(tasks.build.results.IMAGES), as
// pipelines/mcbuild-multi-platform does) gets them all from Tekton's
// ApplyTaskResultsToPipelineResults, which fails the PipelineRun when one
// names a result the TaskRun did not write, and Chains extracts want from
// the PipelineRun.
func checkPipelineResults(t *testing.T, out *taskRunOutcome, want []string) {
	t.Helper()
	var prs []v1.PipelineResult
	for _, name := range []string{"IMAGE_URL", "IMAGE_DIGEST", "IMAGE_REF", "IMAGES", "SUBJECTS_REF", "SBOM_BLOB_URL"} {
		prs = append(prs, v1.PipelineResult{Name: name, Type: v1.ResultsTypeString, Value: *v1.NewStructuredValues("$(tasks.build.results." + name + ")")})
	}
	got, err := prresources.ApplyTaskResultsToPipelineResults(prs, map[string][]v1.TaskRunResult{"build": out.TaskRun.Status.Results}, nil, map[string]string{})
	if err != nil {
		t.Fatalf("pipeline results: %v", err)
	}
	values := map[string]string{}
	for _, r := range got {
		values[r.Name] = r.Value.StringVal
	}
	if len(values) != len(prs) {
		t.Errorf("pipeline results %v, want all %d", values, len(prs))
	}
	for k, v := range out.Results {
		if w, ok := values[k]; !ok || w != v {
			t.Errorf("pipeline result %s = %q (%v), want the TaskRun's %q", k, w, ok, v)
		}
	}
	pr := &v1.PipelineRun{ObjectMeta: metav1.ObjectMeta{Name: "build-run", Namespace: "default"}}
	pr.Status.Results = got
	fromPR := digestNames(t, (&artifacts.OCIArtifact{}).ExtractObjects(context.Background(), objects.NewPipelineRunObjectV1(pr)))
	if !sameSet(fromPR, want) {
		t.Errorf("Chains extracts from the PipelineRun\n%s\nwant\n%s", joinLines(fromPR), joinLines(want))
	}
}

// checkMessage: the termination message parses with Tekton's parser and holds
// every result (SBOM_BLOB_URL included: the Tasks make SBOMs by default)
// plus StartedAt, IMAGES with digests when wantImages and empty otherwise;
// the TaskRun's results match.
func checkMessage(t *testing.T, out *taskRunOutcome, wantImages bool) {
	t.Helper()
	if len(out.Message) > termination.MaxContainerTerminationMessageLength {
		t.Errorf("termination message %d bytes, over %d", len(out.Message), termination.MaxContainerTerminationMessageLength)
	}
	parsed, err := termination.ParseMessage(zap.NewNop().Sugar(), out.Message)
	if err != nil {
		t.Fatalf("termination message does not parse: %v\n%s", err, out.Message)
	}
	var keys []string
	for _, r := range parsed {
		keys = append(keys, r.Key)
		if r.Key == "IMAGES" && (r.Value != "") != wantImages {
			t.Errorf("termination message IMAGES = %q, want digests: %v", r.Value, wantImages)
		}
	}
	want := []string{"IMAGE_DIGEST", "IMAGE_REF", "IMAGE_URL", "IMAGES", "SUBJECTS_REF", "SBOM_BLOB_URL", "StartedAt"}
	if !sameSet(keys, want) {
		t.Errorf("termination message keys %v, want %v", keys, want)
	}
	var trKeys []string
	for k, v := range out.Results {
		trKeys = append(trKeys, k)
		if strings.HasSuffix(v, "\n") {
			t.Errorf("result %s ends with a newline", k)
		}
	}
	if !sameSet(trKeys, slices.DeleteFunc(want, func(s string) bool { return s == "StartedAt" })) {
		t.Errorf("TaskRun results %v", trKeys)
	}
	if images, ok := out.Results["IMAGES"]; !ok || (images != "") != wantImages {
		t.Errorf("TaskRun result IMAGES = %q (present: %v), want digests: %v", images, ok, wantImages)
	}
	if !wantImages && (!strings.Contains(out.Output, "IMAGES written empty") || !strings.Contains(out.Output, "SUBJECTS_REF="+out.Results["SUBJECTS_REF"])) {
		t.Errorf("IMAGES written empty without a warning naming SUBJECTS_REF:\n%s", out.Output)
	}
	values := map[string]string{}
	for k, v := range out.Results {
		values[k] = v
	}
	if n := results.EncodedSize(values); n > results.DefaultBudget {
		t.Errorf("mcbuild's own size check says %d bytes, over %d", n, results.DefaultBudget)
	}
	t.Logf("termination message: %d bytes", len(out.Message))
}

// chainsTaskRunImages is what Chains would sign for this TaskRun: its OCI
// artifact extraction over the TaskRun's results, as repo@digest.
func chainsTaskRunImages(t *testing.T, tr *v1.TaskRun) []string {
	t.Helper()
	return digestNames(t, (&artifacts.OCIArtifact{}).ExtractObjects(context.Background(), objects.NewTaskRunObjectV1(tr)))
}

func digestNames(t *testing.T, objs []interface{}) []string {
	t.Helper()
	var out []string
	for _, o := range objs {
		d, ok := o.(name.Digest)
		if !ok {
			t.Fatalf("Chains extracted a %T, want name.Digest", o)
		}
		out = append(out, d.Name())
	}
	return out
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	sort.Strings(a)
	sort.Strings(b)
	return slices.Equal(a, b)
}

// readIndex fetches the index by digest and returns it and its manifests.
func readIndex(t *testing.T, repo *remote.Repository, dgst string) (ocispec.Descriptor, []ocispec.Descriptor) {
	t.Helper()
	ctx := context.Background()
	desc, err := repo.Resolve(ctx, dgst)
	if err != nil {
		t.Fatalf("resolving index %s: %v", dgst, err)
	}
	if desc.MediaType != ocispec.MediaTypeImageIndex {
		t.Fatalf("%s is %s, want an OCI index", dgst, desc.MediaType)
	}
	raw, err := content.FetchAll(ctx, repo, desc)
	if err != nil {
		t.Fatal(err)
	}
	var idx ocispec.Index
	if err := json.Unmarshal(raw, &idx); err != nil {
		t.Fatal(err)
	}
	return desc, idx.Manifests
}

// checkSubjects: SUBJECTS_REF is the artifact found from the index, it lists
// the index then every manifest in index order, and Verify finds nothing amiss.
func checkSubjects(t *testing.T, repo *remote.Repository, subjectsRef string, idx ocispec.Descriptor, manifests []ocispec.Descriptor) {
	t.Helper()
	ctx := context.Background()
	repoName, dgst, ok := strings.Cut(subjectsRef, "@")
	if !ok || repoName != repo.Reference.Registry+"/"+repo.Reference.Repository {
		t.Fatalf("SUBJECTS_REF %q is not %s/%s@digest", subjectsRef, repo.Reference.Registry, repo.Reference.Repository)
	}
	found, err := subjects.ResolveArtifact(ctx, repo, idx.Digest.String())
	if err != nil {
		t.Fatalf("finding the subjects artifact from the index: %v", err)
	}
	if found.Digest.String() != dgst {
		t.Errorf("artifact found from the index is %s, SUBJECTS_REF says %s", found.Digest, dgst)
	}
	doc, _, err := subjects.Fetch(ctx, repo, found)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{idx.Digest.String()}
	for _, m := range manifests {
		want = append(want, m.Digest.String())
	}
	var got []string
	for _, s := range doc.Subjects {
		got = append(got, s.DigestOf().String())
	}
	if !slices.Equal(got, want) {
		t.Errorf("subjects list\n%s\nwant the index then every manifest\n%s", joinLines(got), joinLines(want))
	}
	mismatches, err := subjects.Verify(ctx, repo, repoName, found)
	if err != nil || len(mismatches) > 0 {
		t.Errorf("subjects.Verify: %v %v", mismatches, err)
	}
}

// TestDockerconfigSecret: a kubernetes.io/dockerconfigjson Secret bound to the
// dockerconfig workspace (its key .dockerconfigjson) is what the build, index
// and verify steps authenticate with against a registry that requires it; the
// build fails without it.
func TestDockerconfigSecret(t *testing.T) {
	reg := testregistry.StartDistribution(t, testregistry.WithHtpasswd("builder", "s3cret"))
	secret := t.TempDir()
	auth := base64.StdEncoding.EncodeToString([]byte("builder:s3cret"))
	cfg := fmt.Sprintf(`{"auths":{%q:{"auth":%q}}}`, reg.Host, auth)
	if err := os.WriteFile(filepath.Join(secret, ".dockerconfigjson"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	src := testfixture.Context(t, copyOnly)
	image := reg.Repo("tekton/private") + ":v1"
	params := v1.Params{strParam("IMAGE", image), strParam("PLATFORM", "linux/amd64"), strParam("TLSVERIFY", "false")}

	denied := simulate(t, taskRunSim{TaskFile: buildTaskFile, Params: params, Workspaces: map[string]string{"source": src}})
	if denied.StepErr == nil {
		t.Fatalf("build without credentials succeeded against a registry requiring them:\n%s", denied.Output)
	}
	if !strings.Contains(strings.ToLower(denied.Output), "unauthorized") && !strings.Contains(strings.ToLower(denied.Output), "credentials") {
		t.Errorf("want the build refused for credentials, got:\n%s", denied.Output)
	}
	build := simulate(t, taskRunSim{TaskFile: buildTaskFile, Params: params, Workspaces: map[string]string{"source": src, "dockerconfig": secret}})
	if build.StepErr != nil {
		t.Fatalf("build with the dockerconfig workspace: %v\n%s", build.StepErr, build.Output)
	}
	index := simulate(t, taskRunSim{TaskFile: indexTaskFile, Workspaces: map[string]string{"dockerconfig": secret}, Params: v1.Params{
		strParam("IMAGE", reg.Repo("tekton/private")+":merged"), arrParam("IMAGES", build.Results["IMAGE_REF"]), strParam("TLSVERIFY", "false"),
	}})
	if index.StepErr != nil {
		t.Fatalf("index with the dockerconfig workspace: %v\n%s", index.StepErr, index.Output)
	}
	verify := simulate(t, taskRunSim{TaskFile: verifyTaskFile, Workspaces: map[string]string{"dockerconfig": secret}, Params: v1.Params{
		strParam("IMAGE_URL", index.Results["IMAGE_URL"]), strParam("IMAGE_DIGEST", index.Results["IMAGE_DIGEST"]), strParam("TLSVERIFY", "false"),
	}})
	if verify.StepErr != nil {
		t.Fatalf("verify with the dockerconfig workspace: %v\n%s", verify.StepErr, verify.Output)
	}
}
