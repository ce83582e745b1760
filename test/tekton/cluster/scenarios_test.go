//go:build cluster

package cluster

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tektoncd/pipeline/pkg/apis/pipeline/pod"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// runContainerfile has a RUN step, so a foreign platform's build runs under
// qemu (binfmt registered on the node).
const runContainerfile = `FROM scratch
ARG TARGETARCH
COPY rootfs/${TARGETARCH}/ /
RUN echo "built on $(uname -m)" > /built
COPY hello.txt /hello.txt
`

// copyContainerfile builds for any platform without running anything.
const copyContainerfile = "FROM scratch\nCOPY hello.txt /hello.txt\n"

// twentyPlatforms are more than IMAGES can list in a termination message.
var twentyPlatforms = []string{
	"linux/amd64", "openbsd/amd64", "openbsd/arm64", "linux/arm/v5", "linux/arm/v6", "linux/arm/v7", "linux/arm64",
	"linux/386", "linux/ppc64le", "linux/ppc64", "linux/s390x", "linux/riscv64", "linux/mips64le", "linux/mips64",
	"linux/mipsle", "linux/mips", "linux/loong64", "freebsd/amd64", "freebsd/arm64", "netbsd/amd64",
}

func str(s string) v1.ParamValue { return *v1.NewStructuredValues(s) }

// buildTaskRun is a TaskRun of tasks/mcbuild building claim's source into image.
func buildTaskRun(name, claim, image, platform string, tmpl *pod.PodTemplate) *v1.TaskRun {
	return &v1.TaskRun{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1.TaskRunSpec{
			TaskRef: &v1.TaskRef{Name: "mcbuild"},
			Params: v1.Params{
				{Name: "IMAGE", Value: str(image)},
				{Name: "PLATFORM", Value: str(platform)},
				{Name: "TLSVERIFY", Value: str("false")},
				{Name: "SOURCE_DATE_EPOCH", Value: str("1700000000")},
			},
			Workspaces:  []v1.WorkspaceBinding{{Name: "source", PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: claim}}},
			PodTemplate: tmpl,
			Timeout:     &metav1.Duration{Duration: 20 * time.Minute},
		},
	}
}

func createTaskRun(t *testing.T, ns string, tr *v1.TaskRun) {
	t.Helper()
	if _, err := tkn.TektonV1().TaskRuns(ns).Create(context.Background(), tr, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// stepLog is the log of the TaskRun's step container.
func stepLog(t *testing.T, tr *v1.TaskRun, step string) string {
	t.Helper()
	if tr.Status.PodName == "" {
		t.Fatalf("TaskRun %s has no pod: %+v", tr.Name, tr.Status.GetCondition(apisSucceeded))
	}
	raw, err := kube.CoreV1().Pods(tr.Namespace).GetLogs(tr.Status.PodName, &corev1.PodLogOptions{Container: "step-" + step}).DoRaw(context.Background())
	if err != nil {
		t.Fatalf("reading the log of step %s: %v", step, err)
	}
	return string(raw)
}

// The scenarios run one after another: on two cores, parallel builds have
// made the kernel refuse to seal the memfd copy of the binary buildah
// re-executes (EBUSY, a transient condition under load).

// TestBuildTask is scenario (a) and, on the same tag, (e): tasks/mcbuild for
// one platform in a Pod Security baseline namespace under the kubelet's
// default (Unconfined) seccomp; its results read through the API; the
// registry holds the gzip-first index, both variants and the subjects
// artifact; Chains signs provenance naming every digest. Then a build of an
// invalid Containerfile fails, says which instruction, and the tag stays.
func TestBuildTask(t *testing.T) {
	ns := namespace(t, "build", baseline)
	claim := sourceVolume(t, ns, map[string]string{"Containerfile": runContainerfile, "hello.txt": "hello\n"}, "amd64")
	image := registry + "/app/single:v1"
	createTaskRun(t, ns, buildTaskRun("build", claim, image, "linux/amd64", nil))
	tr := waitTaskRun(t, ns, "build", 15*time.Minute)
	succeeded(t, "TaskRun build", tr.Status.GetCondition(apisSucceeded))

	res := taskRunResults(tr)
	if got, want := resultNames(res), []string{"IMAGES", "IMAGE_DIGEST", "IMAGE_REF", "IMAGE_URL", "SBOM_BLOB_URL", "SUBJECTS_REF"}; !slices.Equal(got, want) {
		t.Errorf("results %v, want %v", got, want)
	}
	if res["IMAGE_URL"] != image || res["IMAGE_REF"] != image+"@"+res["IMAGE_DIGEST"] {
		t.Errorf("IMAGE_URL %q, IMAGE_REF %q for IMAGE %s", res["IMAGE_URL"], res["IMAGE_REF"], image)
	}
	p := checkPushed(t, res, 1)
	want := p.digests()
	if got := imagesResult(t, res["IMAGES"], p.repoName); !slices.Equal(got, want) {
		t.Errorf("IMAGES lists %v, want the index then every manifest %v", got, want)
	}

	st := chainsStatement(t, "taskrun", func() (metav1.Object, error) {
		return tkn.TektonV1().TaskRuns(ns).Get(context.Background(), "build", metav1.GetOptions{})
	})
	if got := st.digests(); !slices.Equal(got, sorted(want)) {
		t.Errorf("Chains' TaskRun provenance subjects %v, want the index and every manifest %v", got, sorted(want))
	}
	chainsPushed(t, p.repo, want)

	// (e) An invalid Containerfile on the same tag.
	broken := sourceVolumeNamed(t, ns, "broken", map[string]string{"Containerfile": "FROM scratch\nCOPY hello.txt /\nRUNN echo hi\n", "hello.txt": "hello\n"})
	createTaskRun(t, ns, buildTaskRun("broken", broken, image, "linux/amd64", nil))
	failed := waitTaskRun(t, ns, "broken", 10*time.Minute)
	if c := failed.Status.GetCondition(apisSucceeded); c == nil || !c.IsFalse() {
		t.Fatalf("TaskRun broken: %+v, want it failed", c)
	}
	if log := stepLog(t, failed, "build"); !strings.Contains(log, "RUNN") {
		t.Errorf("the failed step's log does not name the bad instruction RUNN:\n%s", log)
	}
	if n := len(failed.Status.Results); n != 0 {
		t.Errorf("a failed build wrote %d results: %v", n, failed.Status.Results)
	}
	if d, err := p.repo.Resolve(context.Background(), "v1"); err != nil || d.Digest != p.index.Digest {
		t.Errorf("after the failed build, %s is %v (%v), want it unmoved at %s", image, d.Digest, err, p.index.Digest)
	}
}

// TestMultiPlatformPipeline is scenario (b) and the PipelineRun part of (c):
// pipelines/mcbuild-multi-platform, unchanged but for cluster-local taskRefs
// (no resolvers offline), as a matrix over linux/amd64 and linux/arm64 (arm64
// RUN under qemu), then mcbuild-index and mcbuild-verify, in a baseline
// namespace under the kubelet's default seccomp. Its results are the merged
// index, and Chains' PipelineRun provenance names the index and all four
// manifests through the Pipeline's IMAGES.
func TestMultiPlatformPipeline(t *testing.T) {
	ns := namespace(t, "pipeline", baseline)
	claim := sourceVolume(t, ns, map[string]string{"Containerfile": runContainerfile, "hello.txt": "hello\n"}, "amd64", "arm64")
	createPipeline(t, ns)
	image := registry + "/app/multi:v1"
	runPipeline(t, ns, "multi", claim, image, []string{"linux/amd64", "linux/arm64"}, nil)
	pr := waitPipelineRun(t, ns, "multi", 25*time.Minute)
	succeeded(t, "PipelineRun multi", pr.Status.GetCondition(apisSucceeded))

	res := pipelineRunResults(pr)
	for _, n := range []string{"IMAGE_URL", "IMAGE_DIGEST", "IMAGE_REF", "IMAGES", "SUBJECTS_REF", "SBOM_BLOB_URL", "CHAINS-GIT_URL", "CHAINS-GIT_COMMIT"} {
		if _, ok := res[n]; !ok {
			t.Errorf("PipelineRun result %s missing; have %v", n, resultNames(res))
		}
	}
	if res["IMAGE_URL"] != image {
		t.Errorf("IMAGE_URL %q, want the merged index %s", res["IMAGE_URL"], image)
	}
	p := checkPushed(t, res, 2)
	want := p.digests()
	if got := imagesResult(t, res["IMAGES"], p.repoName); !slices.Equal(got, want) {
		t.Errorf("the Pipeline's IMAGES lists %v, want the merged index then every manifest %v", got, want)
	}
	if len(pr.Status.ChildReferences) != 5 {
		t.Errorf("%d TaskRuns, want 5 (clone, 2 matrix builds, index, verify): %+v", len(pr.Status.ChildReferences), pr.Status.ChildReferences)
	}

	st := chainsStatement(t, "pipelinerun", func() (metav1.Object, error) {
		return tkn.TektonV1().PipelineRuns(ns).Get(context.Background(), "multi", metav1.GetOptions{})
	})
	if got := st.digests(); !slices.Equal(got, sorted(want)) {
		t.Errorf("Chains' PipelineRun provenance subjects %v, want the merged index and all %d manifests %v", got, len(want)-1, sorted(want))
	}
	chainsPushed(t, p.repo, want)
}

// TestResultsOverflow is the rest of (c): 20 platforms in one TaskRun, whose
// IMAGES cannot fit the termination message. IMAGES is empty, Chains then
// signs the index alone (IMAGE_URL + IMAGE_DIGEST), and the subjects
// artifact still lists the index and all 40 manifests.
func TestResultsOverflow(t *testing.T) {
	ns := namespace(t, "overflow", baseline)
	claim := sourceVolume(t, ns, map[string]string{"Containerfile": copyContainerfile, "hello.txt": "hello\n"})
	image := registry + "/app/many:v1"
	createTaskRun(t, ns, buildTaskRun("many", claim, image, strings.Join(twentyPlatforms, ","), nil))
	tr := waitTaskRun(t, ns, "many", 20*time.Minute)
	succeeded(t, "TaskRun many", tr.Status.GetCondition(apisSucceeded))
	res := taskRunResults(tr)
	if v, ok := res["IMAGES"]; !ok || v != "" {
		t.Errorf("IMAGES = %q (written: %v), want it written empty: 41 digests do not fit", v, ok)
	}
	p := checkPushed(t, res, len(twentyPlatforms))
	if len(p.subjects) != 1+2*len(twentyPlatforms) {
		t.Errorf("subjects artifact lists %d digests, want %d", len(p.subjects), 1+2*len(twentyPlatforms))
	}
	st := chainsStatement(t, "taskrun", func() (metav1.Object, error) {
		return tkn.TektonV1().TaskRuns(ns).Get(context.Background(), "many", metav1.GetOptions{})
	})
	if got, want := st.digests(), []string{p.index.Digest.String()}; !slices.Equal(got, want) {
		t.Errorf("Chains' provenance subjects %v, want the index alone %v", got, want)
	}
	t.Logf("IMAGES empty: Chains attested %d subject (the index); the subjects artifact lists %d digests", len(st.Subject), len(p.subjects))
	chainsPushed(t, p.repo, []string{p.index.Digest.String()})
}

// TestSecurityProfiles is scenario (d) and the Pod Security cases of (c):
// the Pipeline with the shipped Localhost seccomp profile (installed in the
// kubelet's seccomp directory) set through the PipelineRun's pod template
// in a baseline namespace succeeds; the build under RuntimeDefault fails
// with the Task's message; a restricted namespace refuses the build's pod
// while index and verify run there.
func TestSecurityProfiles(t *testing.T) {
	profile, err := os.ReadFile(filepath.Join(repoRoot, "tasks", "mcbuild", "0.1", "seccomp", "mcbuild.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(state, "kubelet", "root", "seccomp", "mcbuild.json"), profile, 0o644); err != nil {
		t.Fatal(err)
	}
	ns := namespace(t, "seccomp", baseline)
	claim := sourceVolume(t, ns, map[string]string{"Containerfile": runContainerfile, "hello.txt": "hello\n"}, "amd64")
	createPipeline(t, ns)
	localhost := "mcbuild.json"
	image := registry + "/app/seccomp:v1"
	runPipeline(t, ns, "localhost", claim, image, []string{"linux/amd64"}, &pod.PodTemplate{
		SecurityContext: &corev1.PodSecurityContext{SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeLocalhost, LocalhostProfile: &localhost}},
	})

	createTaskRun(t, ns, buildTaskRun("runtime-default", claim, registry+"/app/seccomp:runtime-default", "linux/amd64", &pod.PodTemplate{
		SecurityContext: &corev1.PodSecurityContext{SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}},
	}))
	tr := waitTaskRun(t, ns, "runtime-default", 10*time.Minute)
	if c := tr.Status.GetCondition(apisSucceeded); c == nil || !c.IsFalse() {
		t.Errorf("the build under RuntimeDefault: %+v, want it failed", c)
	} else if log := stepLog(t, tr, "build"); !strings.Contains(log, "cannot create the user namespace the build runs in") || !strings.Contains(log, "seccomp/mcbuild.json") {
		t.Errorf("the build under RuntimeDefault failed without the Task's message naming the Localhost profile:\n%s", log)
	}

	pr := waitPipelineRun(t, ns, "localhost", 20*time.Minute)
	succeeded(t, "PipelineRun localhost (Localhost seccomp profile)", pr.Status.GetCondition(apisSucceeded))
	for _, child := range pr.Status.ChildReferences {
		ctr, err := tkn.TektonV1().TaskRuns(ns).Get(context.Background(), child.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		p, err := kube.CoreV1().Pods(ns).Get(context.Background(), ctr.Status.PodName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if sp := p.Spec.SecurityContext.SeccompProfile; sp == nil || sp.Type != corev1.SeccompProfileTypeLocalhost || *sp.LocalhostProfile != localhost {
			t.Errorf("pod %s ran with seccomp %+v, want Localhost %s", p.Name, sp, localhost)
		}
	}
	checkPushed(t, pipelineRunResults(pr), 1)

	// restricted: the build's pod is refused at admission.
	rns := namespace(t, "restricted", restricted)
	rclaim := sourceVolume(t, rns, map[string]string{"Containerfile": copyContainerfile, "hello.txt": "hello\n"})
	createTaskRun(t, rns, buildTaskRun("refused", rclaim, registry+"/app/restricted:v1", "linux/amd64", nil))
	refused := waitTaskRun(t, rns, "refused", 5*time.Minute)
	c := refused.Status.GetCondition(apisSucceeded)
	if c == nil || !c.IsFalse() || c.Reason != "PodAdmissionFailed" || !strings.Contains(c.Message, `violates PodSecurity "restricted`) {
		t.Errorf("the build in a restricted namespace: %+v, want PodAdmissionFailed by PodSecurity restricted", c)
	}
	// mcbuild-verify's own step complies with restricted under the pod
	// template the README gives, but Tekton's injected init containers do
	// not unless Tekton's feature flag set-security-context is "true" (off
	// by default, and here): the pod is refused for them, not for the step.
	nonRoot, uid := true, int64(65532)
	res := pipelineRunResults(pr)
	verify := &v1.TaskRun{
		ObjectMeta: metav1.ObjectMeta{Name: "verify"},
		Spec: v1.TaskRunSpec{
			TaskRef: &v1.TaskRef{Name: "mcbuild-verify"},
			Params: v1.Params{{Name: "IMAGE_URL", Value: str(res["IMAGE_URL"])}, {Name: "IMAGE_DIGEST", Value: str(res["IMAGE_DIGEST"])},
				{Name: "TLSVERIFY", Value: str("false")}},
			PodTemplate: &pod.PodTemplate{SecurityContext: &corev1.PodSecurityContext{
				RunAsNonRoot: &nonRoot, RunAsUser: &uid,
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
			}},
		},
	}
	createTaskRun(t, rns, verify)
	vr := waitTaskRun(t, rns, "verify", 5*time.Minute)
	c = vr.Status.GetCondition(apisSucceeded)
	if c == nil || c.Reason != "PodAdmissionFailed" || !strings.Contains(c.Message, `containers "prepare", "place-scripts" must set`) || strings.Contains(c.Message, "step-verify") {
		t.Errorf("mcbuild-verify in a restricted namespace without set-security-context: %+v, want refused for Tekton's init containers only", c)
	}
}

// createPipeline creates pipelines/mcbuild-multi-platform in ns with every
// resolver taskRef made cluster-local: the git resolver's tasks/<name>/...
// becomes the Task <name>, the bundles resolver's git-clone the stub.
func createPipeline(t *testing.T, ns string) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(repoRoot, "pipelines", "mcbuild-multi-platform", "0.1", "mcbuild-multi-platform.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var pl v1.Pipeline
	if err := yaml.UnmarshalStrict(raw, &pl); err != nil {
		t.Fatal(err)
	}
	for i := range pl.Spec.Tasks {
		ref := pl.Spec.Tasks[i].TaskRef
		if ref == nil || ref.Resolver == "" {
			continue
		}
		var local string
		for _, p := range ref.Params {
			switch p.Name {
			case "pathInRepo":
				local = strings.Split(p.Value.StringVal, "/")[1]
			case "name":
				local = p.Value.StringVal
			}
		}
		if local == "" {
			t.Fatalf("pipeline task %s: cannot tell which Task its %s reference names", pl.Spec.Tasks[i].Name, ref.Resolver)
		}
		pl.Spec.Tasks[i].TaskRef = &v1.TaskRef{Name: local}
	}
	if _, err := tkn.TektonV1().Pipelines(ns).Create(context.Background(), &pl, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func runPipeline(t *testing.T, ns, name, claim, image string, platforms []string, tmpl *pod.PodTemplate) {
	t.Helper()
	pr := &v1.PipelineRun{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1.PipelineRunSpec{
			PipelineRef: &v1.PipelineRef{Name: "mcbuild-multi-platform"},
			Params: v1.Params{
				{Name: "git-url", Value: str("https://git.example/app.git")},
				{Name: "output-image", Value: str(image)},
				{Name: "build-platforms", Value: v1.ParamValue{Type: v1.ParamTypeArray, ArrayVal: platforms}},
				{Name: "tls-verify", Value: str("false")},
				{Name: "source-date-epoch", Value: str("1700000000")},
			},
			Workspaces:      []v1.WorkspaceBinding{{Name: "workspace", PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: claim}}},
			TaskRunTemplate: v1.PipelineTaskRunTemplate{PodTemplate: tmpl},
			Timeouts:        &v1.TimeoutFields{Pipeline: &metav1.Duration{Duration: 30 * time.Minute}},
		},
	}
	if _, err := tkn.TektonV1().PipelineRuns(ns).Create(context.Background(), pr, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func sorted(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return out
}
