//go:build cluster

// Package cluster runs the Tasks and the Pipeline on a real single-node
// Kubernetes cluster with the real Tekton controller and Chains, brought up
// by test/cluster/ (`make test-cluster`); see README "Tested on". It needs
// the cluster's network namespace (test/cluster/run.sh runs it there) and
// these variables: KUBECONFIG, CLUSTER_REGISTRY (host:port the pods push
// to), CLUSTER_STATE (the cluster's state directory, for hostPath volumes),
// CLUSTER_STEP_IMAGE (the step image on that registry), CLUSTER_SHELL_IMAGE.
package cluster

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	tekton "github.com/tektoncd/pipeline/pkg/client/clientset/versioned"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"knative.dev/pkg/apis"
	"oras.land/oras-go/v2/registry/remote"
	"sigs.k8s.io/yaml"

	"github.com/mcbuild/mcbuild/pkg/referrer"
	"github.com/mcbuild/mcbuild/pkg/subjects"
)

// placeholderImage is the checked-in Tasks' step image (test/tekton
// release_test.go): the one thing the cluster's copies change.
const placeholderImage = "quay.io/mcbuild/mcbuild@sha256:0000000000000000000000000000000000000000000000000000000000000000"

var (
	kube       kubernetes.Interface
	tkn        tekton.Interface
	registry   string
	state      string
	stepImage  string
	shellImage string
	repoRoot   string
)

func TestMain(m *testing.M) {
	for _, v := range []struct {
		name string
		to   *string
	}{{"CLUSTER_REGISTRY", &registry}, {"CLUSTER_STATE", &state}, {"CLUSTER_STEP_IMAGE", &stepImage}, {"CLUSTER_SHELL_IMAGE", &shellImage}} {
		*v.to = os.Getenv(v.name)
		if *v.to == "" {
			fmt.Fprintf(os.Stderr, "%s is not set: run the cluster test with `make test-cluster` (test/cluster/run.sh)\n", v.name)
			os.Exit(2)
		}
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", os.Getenv("KUBECONFIG"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "KUBECONFIG:", err)
		os.Exit(2)
	}
	cfg.QPS, cfg.Burst = 50, 100
	kube = kubernetes.NewForConfigOrDie(cfg)
	tkn = tekton.NewForConfigOrDie(cfg)
	wd, _ := os.Getwd()
	repoRoot = filepath.Clean(filepath.Join(wd, "..", "..", ".."))
	os.Exit(m.Run())
}

// apisSucceeded is the condition a finished run reports.
const apisSucceeded = apis.ConditionSucceeded

// podSecurity is a namespace's Pod Security admission level.
type podSecurity string

const (
	baseline   podSecurity = "baseline"
	restricted podSecurity = "restricted"
)

// namespace creates a namespace enforcing level, holding this repository's
// Tasks with the step image replaced, and a stub git-clone Task.
func namespace(t *testing.T, name string, level podSecurity) string {
	t.Helper()
	ctx := context.Background()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{
		"pod-security.kubernetes.io/enforce": string(level),
	}}}
	if _, err := kube.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, rel := range []string{"tasks/mcbuild/0.1/mcbuild.yaml", "tasks/mcbuild-index/0.1/mcbuild-index.yaml", "tasks/mcbuild-verify/0.1/mcbuild-verify.yaml"} {
		raw, err := os.ReadFile(filepath.Join(repoRoot, rel))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(raw, []byte(placeholderImage)) {
			t.Fatalf("%s does not use the step image placeholder %s", rel, placeholderImage)
		}
		raw = bytes.ReplaceAll(raw, []byte(placeholderImage), []byte(stepImage))
		var task v1.Task
		if err := yaml.UnmarshalStrict(raw, &task); err != nil {
			t.Fatalf("%s: %v", rel, err)
		}
		if _, err := tkn.TektonV1().Tasks(name).Create(ctx, &task, metav1.CreateOptions{}); err != nil {
			t.Fatalf("creating %s: %v", rel, err)
		}
	}
	if _, err := tkn.TektonV1().Tasks(name).Create(ctx, gitCloneStub(), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return name
}

// gitCloneStub stands in for Konflux's git-clone (no git server or network
// here): same params, workspaces and results; the checkout is already on the
// workspace's volume.
func gitCloneStub() *v1.Task {
	return &v1.Task{
		ObjectMeta: metav1.ObjectMeta{Name: "git-clone"},
		Spec: v1.TaskSpec{
			Params: v1.ParamSpecs{{Name: "url", Type: v1.ParamTypeString}, {Name: "revision", Type: v1.ParamTypeString, Default: v1.NewStructuredValues("")},
				{Name: "subdirectory", Type: v1.ParamTypeString, Default: v1.NewStructuredValues("")}},
			Workspaces: []v1.WorkspaceDeclaration{{Name: "output"}, {Name: "basic-auth", Optional: true}},
			Results:    []v1.TaskResult{{Name: "url"}, {Name: "commit"}},
			Steps: []v1.Step{{
				Name:  "checkout",
				Image: shellImage,
				Script: `#!/bin/sh
set -e
test -f "$(workspaces.output.path)/Containerfile"
printf %s "$(params.url)" > "$(results.url.path)"
printf %s 0123456789abcdef0123456789abcdef01234567 > "$(results.commit.path)"`,
			}},
		},
	}
}

// sourceVolume makes a PersistentVolumeClaim in ns bound to a hostPath
// volume holding files (name -> content) and, for each arch, the busybox
// root filesystem under rootfs/<arch>/ (what the Containerfiles copy in).
func sourceVolume(t *testing.T, ns string, files map[string]string, arches ...string) string {
	t.Helper()
	return sourceVolumeNamed(t, ns, "source", files, arches...)
}

// sourceVolumeNamed is sourceVolume with the claim called claim.
func sourceVolumeNamed(t *testing.T, ns, claim string, files map[string]string, arches ...string) string {
	t.Helper()
	ctx := context.Background()
	dir := filepath.Join(state, "volumes", ns, claim)
	for n, body := range files {
		p := filepath.Join(dir, n)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, arch := range arches {
		src := filepath.Join(repoRoot, "examples", "busybox-base", "rootfs", arch)
		if err := os.CopyFS(filepath.Join(dir, "rootfs", arch), os.DirFS(src)); err != nil {
			t.Fatalf("copying the busybox rootfs (make rootfs): %v", err)
		}
	}
	size := resource.MustParse("1Gi")
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: ns + "-" + claim},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: size},
			AccessModes:                   []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimRetain,
			StorageClassName:              "manual",
			PersistentVolumeSource:        corev1.PersistentVolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: dir}},
		},
	}
	if _, err := kube.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	class := "manual"
	pvc := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: claim},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			StorageClassName: &class,
			VolumeName:       pv.Name,
			Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: size}},
		},
	}
	if _, err := kube.CoreV1().PersistentVolumeClaims(ns).Create(ctx, pvc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return pvc.Name
}

// waitTaskRun waits until the TaskRun is done and returns it.
func waitTaskRun(t *testing.T, ns, name string, timeout time.Duration) *v1.TaskRun {
	t.Helper()
	return waitDone(t, "TaskRun "+ns+"/"+name, timeout, func() (*v1.TaskRun, error) {
		return tkn.TektonV1().TaskRuns(ns).Get(context.Background(), name, metav1.GetOptions{})
	})
}

// waitPipelineRun waits until the PipelineRun is done and returns it.
func waitPipelineRun(t *testing.T, ns, name string, timeout time.Duration) *v1.PipelineRun {
	t.Helper()
	return waitDone(t, "PipelineRun "+ns+"/"+name, timeout, func() (*v1.PipelineRun, error) {
		return tkn.TektonV1().PipelineRuns(ns).Get(context.Background(), name, metav1.GetOptions{})
	})
}

func waitDone[R interface{ IsDone() bool }](t *testing.T, what string, timeout time.Duration, get func() (R, error)) R {
	t.Helper()
	var run R
	poll(t, what+" to finish", timeout, func() (bool, error) {
		var err error
		if run, err = get(); err != nil {
			return false, err
		}
		return run.IsDone(), nil
	})
	return run
}

func poll(t *testing.T, what string, timeout time.Duration, done func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		ok, err := done()
		if ok {
			return
		}
		if err != nil && !apierrors.IsNotFound(err) {
			last = err
		}
		time.Sleep(2 * time.Second)
	}
	t.Fatalf("timed out after %s waiting for %s (last error: %v)", timeout, what, last)
}

// succeeded fails the test with the run's condition when it did not succeed.
func succeeded(t *testing.T, what string, cond *apis.Condition) {
	t.Helper()
	if cond == nil || !cond.IsTrue() {
		t.Fatalf("%s did not succeed: %+v", what, cond)
	}
}

// results maps a TaskRun's or PipelineRun's results to their string values.
func taskRunResults(tr *v1.TaskRun) map[string]string {
	out := map[string]string{}
	for _, r := range tr.Status.Results {
		out[r.Name] = r.Value.StringVal
	}
	return out
}

func pipelineRunResults(pr *v1.PipelineRun) map[string]string {
	out := map[string]string{}
	for _, r := range pr.Status.Results {
		out[r.Name] = r.Value.StringVal
	}
	return out
}

func resultNames(m map[string]string) []string {
	var names []string
	for n := range m {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// repository opens REGISTRY/REPO (plain HTTP: the cluster's registry).
func repository(t *testing.T, repoName string) *remote.Repository {
	t.Helper()
	repo, err := remote.NewRepository(repoName)
	if err != nil {
		t.Fatal(err)
	}
	repo.PlainHTTP = true
	return repo
}

// pushed is what one build or index run put on the registry.
type pushed struct {
	repo      *remote.Repository
	repoName  string
	index     ocispec.Descriptor
	manifests []ocispec.Descriptor
	subjects  []string // the subjects artifact's digests, index first
}

// digests is the index then every manifest, as "sha256:..." strings.
func (p pushed) digests() []string {
	out := []string{p.index.Digest.String()}
	for _, m := range p.manifests {
		out = append(out, m.Digest.String())
	}
	return out
}

// checkPushed reads the index IMAGE_URL/IMAGE_DIGEST name and checks it is
// gzip-first for every platform (each platform's gzip manifest, then its
// zstd:chunked one annotated as such), that SUBJECTS_REF, found from the
// index, lists the index and every manifest, and that each of them has an
// SBOM referrer (SBOM_BLOB_URL names the index's).
func checkPushed(t *testing.T, res map[string]string, platforms int) pushed {
	t.Helper()
	ctx := context.Background()
	// IMAGE_URL is REPO:TAG, and REPO may hold a registry port.
	i := strings.LastIndex(res["IMAGE_URL"], ":")
	if i < strings.LastIndex(res["IMAGE_URL"], "/") {
		t.Fatalf("IMAGE_URL %q is not REPO:TAG", res["IMAGE_URL"])
	}
	repoName, tag := res["IMAGE_URL"][:i], res["IMAGE_URL"][i+1:]
	repo := repository(t, repoName)
	desc, err := repo.Resolve(ctx, tag)
	if err != nil {
		t.Fatalf("resolving %s: %v", res["IMAGE_URL"], err)
	}
	if desc.Digest.String() != res["IMAGE_DIGEST"] {
		t.Fatalf("%s is %s on the registry, IMAGE_DIGEST says %s", res["IMAGE_URL"], desc.Digest, res["IMAGE_DIGEST"])
	}
	rc, err := repo.Fetch(ctx, desc)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	var idx ocispec.Index
	if err := json.Unmarshal(raw, &idx); err != nil {
		t.Fatal(err)
	}
	if len(idx.Manifests) != 2*platforms {
		t.Fatalf("index has %d manifests, want %d (gzip and zstd:chunked for %d platforms)", len(idx.Manifests), 2*platforms, platforms)
	}
	for i := 0; i < len(idx.Manifests); i += 2 {
		gz, zs := idx.Manifests[i], idx.Manifests[i+1]
		if gz.Platform == nil || zs.Platform == nil || gz.Platform.Architecture != zs.Platform.Architecture || gz.Platform.OS != zs.Platform.OS {
			t.Errorf("entries %d and %d are not one platform's pair: %v, %v", i, i+1, gz.Platform, zs.Platform)
		}
		if gz.Annotations["io.github.containers.compression.zstd"] == "true" || zs.Annotations["io.github.containers.compression.zstd"] != "true" {
			t.Errorf("platform %v: want gzip first, then zstd annotated io.github.containers.compression.zstd=true; got %v then %v", gz.Platform, gz.Annotations, zs.Annotations)
		}
		for _, m := range []ocispec.Descriptor{gz, zs} {
			if _, err := repo.Resolve(ctx, m.Digest.String()); err != nil {
				t.Errorf("manifest %s of the index is not on the registry: %v", m.Digest, err)
			}
		}
	}
	p := pushed{repo: repo, repoName: repoName, index: desc, manifests: idx.Manifests}
	subjRepo, subjDigest, ok := strings.Cut(res["SUBJECTS_REF"], "@")
	if !ok || subjRepo != repoName {
		t.Fatalf("SUBJECTS_REF %q is not %s@digest", res["SUBJECTS_REF"], repoName)
	}
	found, err := subjects.ResolveArtifact(ctx, repo, desc.Digest.String())
	if err != nil {
		t.Fatalf("finding the subjects artifact from the index: %v", err)
	}
	if found.Digest.String() != subjDigest {
		t.Errorf("subjects artifact found from the index is %s, SUBJECTS_REF says %s", found.Digest, subjDigest)
	}
	doc, _, err := subjects.Fetch(ctx, repo, found)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range doc.Subjects {
		p.subjects = append(p.subjects, s.DigestOf().String())
	}
	if !slices.Equal(p.subjects, p.digests()) {
		t.Errorf("subjects artifact lists\n%s\nwant the index then every manifest\n%s", strings.Join(p.subjects, "\n"), strings.Join(p.digests(), "\n"))
	}
	// At least one: a single-platform Pipeline's merged index is its one
	// build's index, digest for digest, and then carries both the build's
	// and the index task's index SBOM.
	for _, d := range append([]ocispec.Descriptor{desc}, idx.Manifests...) {
		if found, err := referrer.List(ctx, repo, d, "application/spdx+json"); err != nil || len(found) == 0 {
			t.Errorf("%s has no SPDX SBOM referrer (%v)", d.Digest, err)
		}
	}
	if blobRepo, _, ok := strings.Cut(res["SBOM_BLOB_URL"], "@"); !ok || blobRepo != repoName {
		t.Errorf("SBOM_BLOB_URL %q is not %s@digest", res["SBOM_BLOB_URL"], repoName)
	}
	return p
}

// imagesResult is IMAGES split on commas (as Conforma splits it), digests only.
func imagesResult(t *testing.T, v, repoName string) []string {
	t.Helper()
	var out []string
	for _, ref := range strings.Split(v, ",") {
		r, d, ok := strings.Cut(ref, "@")
		if !ok || r != repoName {
			t.Errorf("IMAGES entry %q is not %s@digest", ref, repoName)
			continue
		}
		out = append(out, d)
	}
	return out
}

// statement is the part of an in-toto statement the tests read.
type statement struct {
	PredicateType string `json:"predicateType"`
	Subject       []struct {
		Name   string            `json:"name"`
		Digest map[string]string `json:"digest"`
	} `json:"subject"`
}

func (s statement) digests() []string {
	var out []string
	for _, sub := range s.Subject {
		out = append(out, "sha256:"+sub.Digest["sha256"])
	}
	slices.Sort(out)
	return out
}

// chainsStatement waits for Chains to mark obj signed and returns the in-toto
// statement it stored on it (annotation payload-<kind>-<uid>).
func chainsStatement(t *testing.T, kind string, get func() (metav1.Object, error)) statement {
	t.Helper()
	var annotations map[string]string
	var uid string
	poll(t, "Chains to sign the "+kind, 4*time.Minute, func() (bool, error) {
		obj, err := get()
		if err != nil {
			return false, err
		}
		annotations, uid = obj.GetAnnotations(), string(obj.GetUID())
		switch annotations["chains.tekton.dev/signed"] {
		case "true":
			return true, nil
		case "failed":
			t.Fatalf("Chains failed to sign the %s: %v", kind, annotations)
		}
		return false, nil
	})
	raw, err := base64.StdEncoding.DecodeString(annotations["chains.tekton.dev/payload-"+kind+"-"+uid])
	if err != nil || len(raw) == 0 {
		t.Fatalf("no payload-%s-%s annotation from Chains (%v): %v", kind, uid, err, resultNames(annotations))
	}
	var st statement
	if err := json.Unmarshal(raw, &st); err != nil {
		t.Fatalf("Chains' payload is not an in-toto statement: %v\n%s", err, raw)
	}
	if !strings.HasPrefix(st.PredicateType, "https://slsa.dev/provenance/") {
		t.Errorf("predicateType %q, want SLSA provenance", st.PredicateType)
	}
	return st
}

// chainsPushed checks that Chains put a signature (.sig) and an attestation
// (.att) next to every digest, as cosign names them, on the registry.
func chainsPushed(t *testing.T, repo *remote.Repository, digests []string) {
	t.Helper()
	ctx := context.Background()
	for _, d := range digests {
		dg := digest.Digest(d)
		for _, suffix := range []string{".sig", ".att"} {
			tag := dg.Algorithm().String() + "-" + dg.Encoded() + suffix
			poll(t, "Chains' "+tag, 2*time.Minute, func() (bool, error) {
				_, err := repo.Resolve(ctx, tag)
				return err == nil, nil
			})
		}
	}
}
