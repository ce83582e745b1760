package tekton

import (
	"context"
	"fmt"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/tektoncd/chains/pkg/artifacts"
	"github.com/tektoncd/chains/pkg/chains/objects"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	prresources "github.com/tektoncd/pipeline/pkg/reconciler/pipelinerun/resources"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"knative.dev/pkg/apis"
	duckv1 "knative.dev/pkg/apis/duck/v1"
	"oras.land/oras-go/v2/registry/remote"

	"github.com/mcbuild/mcbuild/internal/formats"
	"github.com/mcbuild/mcbuild/internal/imagecheck"
	"github.com/mcbuild/mcbuild/internal/oci"
	"github.com/mcbuild/mcbuild/internal/testfixture"
	"github.com/mcbuild/mcbuild/internal/testregistry"
)

// runBuild has a RUN step, so each platform really executes (arm64 under
// qemu) inside the step's user namespace with chroot isolation.
var runBuild = map[string]string{
	"Containerfile": "FROM scratch\nARG TARGETARCH\nCOPY rootfs/${TARGETARCH}/ /\nRUN echo built-by-tekton-matrix > /built\n",
}

// TestMatrixPipeline walks the pipeline the way Tekton's PipelineRun reconciler
// does, with its own functions: pipeline params are applied, the clone task's
// results (a stub TaskRun: git-clone is not run here) are resolved into the
// build task, the build task's matrix fans out into one simulated mcbuild
// TaskRun per platform, their IMAGE_REF results are resolved into the index
// task's IMAGES, the index task runs, its results feed the verify task, and
// the pipeline results are computed. Then the published images are read back.
func TestMatrixPipeline(t *testing.T) {
	ctx := tektonContext(t)
	reg := testregistry.StartOlareg(t) // referrers API; the results test uses distribution's fallback tag
	repoName := reg.Repo("tekton/matrix")
	image := repoName + ":v1"
	platformsWanted := []string{"linux/amd64", "linux/arm64"}
	src := testfixture.Context(t, runBuild, "amd64", "arm64")

	p := loadPipeline(t, pipelineFile)
	pr := &v1.PipelineRun{
		ObjectMeta: metav1.ObjectMeta{Name: "app-on-push-x1y2z", Namespace: "default"},
		Spec: v1.PipelineRunSpec{
			PipelineRef: &v1.PipelineRef{Name: p.Name},
			Params: v1.Params{
				strParam("git-url", "https://git.example/org/app.git"),
				strParam("revision", "main"),
				strParam("output-image", image),
				arrParam("build-platforms", platformsWanted...),
				strParam("tls-verify", "false"),
			},
		},
	}
	if err := validated(t, "PipelineRun", pr.Validate(ctx)); err != nil {
		t.Fatal(err)
	}
	if err := prresources.ValidateRequiredParametersProvided(&p.Spec.Params, &pr.Spec.Params); err != nil {
		t.Fatal(err)
	}
	if err := prresources.ValidateParamTypesMatching(&p.Spec, pr); err != nil {
		t.Fatal(err)
	}
	spec, err := prresources.ApplyParameters(p.Spec.DeepCopy(), pr)
	if err != nil {
		t.Fatal(err)
	}
	spec = prresources.ApplyContexts(spec, p.Name, pr)
	state := prresources.PipelineRunState{}
	rpt := map[string]*prresources.ResolvedPipelineTask{}
	for i := range spec.Tasks {
		r := &prresources.ResolvedPipelineTask{PipelineTask: &spec.Tasks[i]}
		state = append(state, r)
		rpt[spec.Tasks[i].Name] = r
	}
	// resolve applies Tekton's result resolution to one pipeline task.
	resolve := func(name string) *v1.PipelineTask {
		t.Helper()
		target := prresources.PipelineRunState{rpt[name]}
		refs, _, err := prresources.ResolveResultRefs(state, target)
		if err != nil {
			t.Fatalf("resolving results for %s: %v", name, err)
		}
		prresources.ApplyTaskResults(target, refs)
		return rpt[name].PipelineTask
	}

	// clone-repository: a stub TaskRun with the results git-clone writes.
	const commit = "0123456789abcdef0123456789abcdef01234567"
	rpt["clone-repository"].TaskRuns = []*v1.TaskRun{succeededTaskRun("app-on-push-x1y2z-clone-repository", map[string]string{
		"url": "https://git.example/org/app.git", "commit": commit, "CHAINS-GIT_URL": "https://git.example/org/app.git", "CHAINS-GIT_COMMIT": commit,
	})}

	// build-images: one TaskRun per matrix combination.
	build := resolve("build-images")
	combos := build.Matrix.FanOut()
	if len(combos) != len(platformsWanted) {
		t.Fatalf("matrix fans out into %d TaskRuns, want %d", len(combos), len(platformsWanted))
	}
	var buildRuns []*taskRunOutcome
	for i, combo := range combos {
		params := append(build.Params.DeepCopy(), combo...)
		out := simulate(t, taskRunSim{TaskFile: localTaskFile(build.TaskRef), Params: params, Workspaces: map[string]string{"source": src}})
		if out.StepErr != nil {
			t.Fatalf("build-images[%d]: %v\n%s", i, out.StepErr, out.Output)
		}
		out.TaskRun.Name = fmt.Sprintf("app-on-push-x1y2z-build-images-%d", i)
		rpt["build-images"].TaskRuns = append(rpt["build-images"].TaskRuns, out.TaskRun)
		buildRuns = append(buildRuns, out)
	}
	repo := testregistry.OpenRepo(t, repoName)
	for i, out := range buildRuns {
		suffix := strings.ReplaceAll(platformsWanted[i], "/", "-")
		if got, want := out.Results["IMAGE_URL"], image+"-"+suffix; got != want {
			t.Errorf("build-images[%d] IMAGE_URL %s, want %s", i, got, want)
		}
		idx, manifests := readIndex(t, repo, out.Results["IMAGE_DIGEST"])
		checkEntries(t, repo, manifests, platformsWanted[i:i+1], commit)
		want := []string{repoName + "@" + idx.Digest.String()}
		for _, m := range manifests {
			want = append(want, repoName+"@"+m.Digest.String())
		}
		if got := chainsTaskRunImages(t, out.TaskRun); !sameSet(got, want) {
			t.Errorf("build-images[%d]: Chains extracts\n%s\nwant\n%s", i, joinLines(got), joinLines(want))
		}
	}

	// build-image-index: IMAGES resolved from the matrix's IMAGE_REF results.
	index := resolve("build-image-index")
	var images []string
	for _, prm := range index.Params {
		if prm.Name == "IMAGES" {
			images = prm.Value.ArrayVal
		}
	}
	if len(images) != len(buildRuns) || images[0] != buildRuns[0].Results["IMAGE_REF"] || images[1] != buildRuns[1].Results["IMAGE_REF"] {
		t.Fatalf("IMAGES resolved to %q, want the IMAGE_REF results in matrix order", images)
	}
	idxOut := simulate(t, taskRunSim{TaskFile: localTaskFile(index.TaskRef), Params: index.Params})
	if idxOut.StepErr != nil {
		t.Fatalf("build-image-index: %v\n%s", idxOut.StepErr, idxOut.Output)
	}
	idxOut.TaskRun.Name = "app-on-push-x1y2z-build-image-index"
	rpt["build-image-index"].TaskRuns = []*v1.TaskRun{idxOut.TaskRun}
	checkMessage(t, idxOut, true)
	idx, manifests := readIndex(t, repo, idxOut.Results["IMAGE_DIGEST"])
	if tagged, err := repo.Resolve(context.Background(), "v1"); err != nil || tagged.Digest != idx.Digest {
		t.Errorf("tag v1 is %v (%v), want the merged index %s", tagged.Digest, err, idx.Digest)
	}
	checkEntries(t, repo, manifests, platformsWanted, commit)
	checkSubjects(t, repo, idxOut.Results["SUBJECTS_REF"], idx, manifests)
	want := []string{repoName + "@" + idx.Digest.String()}
	for _, m := range manifests {
		want = append(want, repoName+"@"+m.Digest.String())
	}
	if got := chainsTaskRunImages(t, idxOut.TaskRun); !sameSet(got, want) {
		t.Errorf("build-image-index: Chains extracts\n%s\nwant\n%s", joinLines(got), joinLines(want))
	}

	// verify-subjects: IMAGE_URL and IMAGE_DIGEST of the index task.
	verify := resolve("verify-subjects")
	verOut := simulate(t, taskRunSim{TaskFile: localTaskFile(verify.TaskRef), Params: verify.Params})
	if verOut.StepErr != nil || !strings.Contains(verOut.Output, "matches its index") {
		t.Fatalf("verify-subjects: %v\n%s", verOut.StepErr, verOut.Output)
	}
	rpt["verify-subjects"].TaskRuns = []*v1.TaskRun{verOut.TaskRun}

	// The pipeline's results, and what Chains takes from the PipelineRun.
	taskResults := map[string][]v1.TaskRunResult{}
	for name, r := range rpt {
		for _, tr := range r.TaskRuns {
			taskResults[name] = append(taskResults[name], tr.Status.Results...)
		}
	}
	prResults, err := prresources.ApplyTaskResultsToPipelineResults(spec.Results, taskResults, nil, map[string]string{})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, r := range prResults {
		got[r.Name] = r.Value.StringVal
	}
	for k, v := range map[string]string{
		"IMAGE_URL": image, "IMAGE_DIGEST": idx.Digest.String(), "IMAGE_REF": image + "@" + idx.Digest.String(),
		"SUBJECTS_REF": idxOut.Results["SUBJECTS_REF"], "CHAINS-GIT_URL": "https://git.example/org/app.git", "CHAINS-GIT_COMMIT": commit,
		"IMAGES": strings.Join(want, ","),
	} {
		if got[k] != v {
			t.Errorf("pipeline result %s = %q, want %q", k, got[k], v)
		}
	}
	pr.Status.Results = prResults
	fromPR := digestNames(t, (&artifacts.OCIArtifact{}).ExtractObjects(context.Background(), objects.NewPipelineRunObjectV1(pr)))
	// The Pipeline's IMAGES: the PipelineRun's provenance (what Konflux
	// uses) names every manifest, not only the index.
	if !sameSet(fromPR, want) {
		t.Errorf("Chains extracts\n%s\nfrom the PipelineRun, want the merged index and every manifest\n%s", joinLines(fromPR), joinLines(want))
	}

	// Every build attached its platform's SBOM and the index task the
	// index SBOM: the verify task passes with REQUIRE_SBOM.
	good := simulate(t, taskRunSim{TaskFile: verifyTaskFile, Params: v1.Params{
		strParam("IMAGE_URL", image), strParam("IMAGE_DIGEST", idx.Digest.String()), strParam("TLSVERIFY", "false"), strParam("REQUIRE_SBOM", "true"),
	}})
	if good.StepErr != nil || !good.TaskRun.IsSuccessful() || !strings.Contains(good.Output, "has an SBOM") {
		t.Errorf("verify with REQUIRE_SBOM of the merged index failed:\n%s", good.Output)
	}

	// The verify task fails on a digest that is not an index with a subjects
	// artifact (here: a manifest).
	bad := simulate(t, taskRunSim{TaskFile: verifyTaskFile, Params: v1.Params{
		strParam("IMAGE_URL", image), strParam("IMAGE_DIGEST", manifests[0].Digest.String()), strParam("TLSVERIFY", "false"),
	}})
	if bad.StepErr == nil || bad.TaskRun.IsSuccessful() {
		t.Errorf("verify of a manifest digest passed:\n%s", bad.Output)
	}
}

// checkEntries: per platform in order, a gzip manifest then a zstd:chunked one
// carrying the zstd annotation, both valid (layers decompress to the config's
// diffIDs, chunked TOC checksums match), sharing one config that has the
// clone's commit as a label.
func checkEntries(t *testing.T, repo *remote.Repository, manifests []ocispec.Descriptor, wantPlatforms []string, commit string) {
	t.Helper()
	order := []formats.Format{formats.Gzip, formats.ZstdChunked}
	if len(manifests) != len(order)*len(wantPlatforms) {
		t.Fatalf("%d manifests, want %d", len(manifests), len(order)*len(wantPlatforms))
	}
	configs := map[string]string{}
	for i, m := range manifests {
		plat, f := wantPlatforms[i/len(order)], order[i%len(order)]
		if got := platformOf(m); got != plat {
			t.Errorf("entry %d: platform %s, want %s", i, got, plat)
		}
		if ann := m.Annotations[oci.AnnotationZstd]; (ann == "true") != f.IsZstd() {
			t.Errorf("entry %d (%s %s): %s = %q", i, plat, f, oci.AnnotationZstd, ann)
		}
		v, err := imagecheck.Check(context.Background(), repo, m, f)
		if err != nil {
			t.Errorf("entry %d (%s %s): %v", i, plat, f, err)
			continue
		}
		if prev, ok := configs[plat]; ok && prev != v.ConfigDigest.String() {
			t.Errorf("%s: gzip and zstd:chunked have different configs", plat)
		}
		configs[plat] = v.ConfigDigest.String()
		if got := v.Config.Config.Labels["org.opencontainers.image.revision"]; got != commit {
			t.Errorf("entry %d: label org.opencontainers.image.revision = %q, want the clone's commit %s", i, got, commit)
		}
	}
}

func platformOf(d ocispec.Descriptor) string {
	if d.Platform == nil {
		return "<none>"
	}
	return oci.PlatformString(*d.Platform)
}

// succeededTaskRun is a finished, successful TaskRun with string results.
func succeededTaskRun(name string, res map[string]string) *v1.TaskRun {
	tr := &v1.TaskRun{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"}}
	tr.Status.Status = duckv1.Status{Conditions: duckv1.Conditions{{Type: apis.ConditionSucceeded, Status: corev1.ConditionTrue}}}
	for k, v := range res {
		tr.Status.Results = append(tr.Status.Results, v1.TaskRunResult{Name: k, Type: v1.ResultsTypeString, Value: *v1.NewStructuredValues(v)})
	}
	return tr
}
