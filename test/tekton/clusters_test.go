package tekton

import (
	"encoding/json"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	podtpl "github.com/tektoncd/pipeline/pkg/apis/pipeline/pod"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/mcbuild/mcbuild/internal/testfixture"
	"github.com/mcbuild/mcbuild/internal/testregistry"
)

// localhostProfile is the build Task's seccomp profile as a TaskRun names it
// (relative to the kubelet's seccomp root, here seccompRoot).
const localhostProfile = "mcbuild.json"

// hostnameBuild has a RUN step, which runs in the step's user namespace with
// buildah's chroot isolation, and prints the hostname RUN sees (buildah sets
// its own in RUN's UTS namespace when the profile lets it).
var hostnameBuild = map[string]string{
	"Containerfile": "FROM scratch\nARG TARGETARCH\nCOPY rootfs/${TARGETARCH}/ /\nRUN echo \"RUN hostname: $(hostname)\" && echo built > /built\n",
}

var runHostnameRe = regexp.MustCompile(`(?m)^RUN hostname: (\S+)$`)

// stepImage serves the step image `make step-image` (hack/image.sh) left in
// .cache/image/registry on a loopback registry and returns its reference.
func stepImage(t *testing.T) string {
	t.Helper()
	cache := filepath.Join(repoRoot, ".cache", "image")
	raw, err := os.ReadFile(filepath.Join(cache, "step-image.ref"))
	if err != nil {
		t.Fatalf("the step image: %v (`make step-image` builds it: make test does)", err)
	}
	ref := strings.TrimSpace(string(raw))
	// The tag is for people; the runtimes pull by digest.
	repo, digest, ok := strings.Cut(ref, "@")
	if !ok {
		t.Fatalf("%s: %q is not REPO[:TAG]@DIGEST", filepath.Join(cache, "step-image.ref"), ref)
	}
	if i := strings.LastIndex(repo, ":"); i > strings.LastIndex(repo, "/") {
		repo = repo[:i]
	}
	reg := testregistry.StartDistribution(t, testregistry.WithRootDirectory(filepath.Join(cache, "registry")))
	return reg.Repo(repo) + "@" + digest
}

// clusterRig is what every case on one runtime shares.
type clusterRig struct {
	rt    containerRuntime
	image string // the step image, pulled into rt
	out   *testregistry.Registry
	src   string // the source workspace
	node  string // the host's hostname
}

// build runs the mcbuild Task as a pod with this pod template, mutation and
// kubelet seccompDefault, pushing to repo.
func (c clusterRig) build(t *testing.T, repo string, tpl *podtpl.Template, mutate func(*corev1.Pod), seccompDefault bool) *taskRunOutcome {
	t.Helper()
	return runPod(t, podRun{
		TaskFile: buildTaskFile,
		Params: v1.Params{
			strParam("IMAGE", c.out.Repo(repo)+":v1"),
			strParam("TLSVERIFY", "false"),
		},
		Workspaces:     map[string]string{"source": c.src},
		PodTemplate:    tpl,
		Mutate:         mutate,
		SeccompDefault: seccompDefault,
		Runtime:        c.rt,
		StepImage:      c.image,
	})
}

// built checks a build that must succeed: every result written and read
// back through Tekton, a gzip and a zstd:chunked manifest in the index, and
// RUN seeing its own hostname, not the node's.
func (c clusterRig) built(t *testing.T, repo string, out *taskRunOutcome) {
	t.Helper()
	if out.StepErr != nil {
		t.Fatalf("%v\n%s", out.StepErr, out.Output)
	}
	checkMessage(t, out, true)
	_, manifests := readIndex(t, testregistry.OpenRepo(t, c.out.Repo(repo)), out.Results["IMAGE_DIGEST"])
	if len(manifests) != 2 {
		t.Errorf("index lists %d manifests, want gzip and zstd:chunked", len(manifests))
	}
	m := runHostnameRe.FindStringSubmatch(out.Output)
	if m == nil {
		t.Fatalf("RUN did not print its hostname:\n%s", out.Output)
	}
	if m[1] == c.node {
		t.Errorf("RUN saw the node's hostname %q: sethostname was refused", m[1])
	}
}

// refused checks a build that the seccomp profile must stop before mcbuild
// starts: util-linux's error (want), the script's explanation pointing to
// the README, no result.
func refused(t *testing.T, out *taskRunOutcome, want string) {
	t.Helper()
	if out.StepErr == nil {
		t.Fatalf("the build step succeeded:\n%s", out.Output)
	}
	_, step, _ := strings.Cut(out.Output, "== step-build\n")
	t.Logf("the step's output:\n%s", step)
	if out.TaskRun.IsSuccessful() {
		t.Error("the TaskRun succeeded")
	}
	for _, w := range []string{want, "mcbuild task: cannot create the user namespace the build runs in", "seccomp profile", clusterRequirementsURL} {
		if !strings.Contains(out.Output, w) {
			t.Errorf("want %q in the step's output:\n%s", w, out.Output)
		}
	}
	if strings.Contains(out.Output, "running mcbuild build") {
		t.Errorf("mcbuild started:\n%s", out.Output)
	}
	if len(out.Results) != 0 {
		t.Errorf("results written: %v", out.Results)
	}
}

// localhost is a TaskRun pod template asking for the shipped profile, as
// tasks/mcbuild/0.1/README.md shows.
func localhost(name string) *podtpl.Template {
	return &podtpl.Template{SecurityContext: &corev1.PodSecurityContext{
		SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeLocalhost, LocalhostProfile: &name},
	}}
}

var runtimeDefaultTemplate = &podtpl.Template{SecurityContext: &corev1.PodSecurityContext{
	SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
}}

// dropAll is an admission policy that drops every capability from every
// container (the securityContext's add stays).
func dropAll(p *corev1.Pod) {
	for _, cs := range [][]corev1.Container{p.Spec.InitContainers, p.Spec.Containers} {
		for i := range cs {
			if cs[i].SecurityContext == nil {
				cs[i].SecurityContext = &corev1.SecurityContext{}
			}
			if cs[i].SecurityContext.Capabilities == nil {
				cs[i].SecurityContext.Capabilities = &corev1.Capabilities{}
			}
			cs[i].SecurityContext.Capabilities.Drop = []corev1.Capability{"ALL"}
		}
	}
}

// TestStepOnContainerRuntimes runs the Tasks' steps as pods (runPod: Tekton's
// pod builder and entrypoint, the step image `make step-image` built) on
// real runtimes, under the seccomp profiles and capability sets clusters
// apply:
//
//   - containerd 1.6 (ctr; containerd's default capabilities): the shipped
//     Localhost profile builds and pushes, with every result; its
//     RuntimeDefault (here through the kubelet's seccompDefault) refuses
//     unshare with EPERM and the step says what to do; with a policy dropping
//     ALL the Task's add still builds; mcbuild-index and mcbuild-verify run
//     under RuntimeDefault with drop ALL (as root: ctr has no --user);
//   - CRI-O (podman 4.3 + runc, CRI-O's default capabilities and its
//     RuntimeDefault): the Localhost profile builds; Unconfined (OpenShift
//     SCCs such as Konflux's) builds; RuntimeDefault refuses unshare with
//     ENOSYS; drop ALL still builds; index and verify run under RuntimeDefault
//     with drop ALL as uid 65532 with runAsNonRoot (Pod Security
//     "restricted"); each syscall the profile adds is needed (see
//     testProfileAdditions);
//   - Docker 20.10: its default profile refuses unshare with EPERM; the
//     Localhost profile loads and builds.
func TestStepOnContainerRuntimes(t *testing.T) {
	requireSimulationTools(t)
	image := stepImage(t)
	out := testregistry.StartDistribution(t)
	node, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	rig := clusterRig{image: image, out: out, src: testfixture.Context(t, hostnameBuild, "amd64"), node: node}

	t.Run("containerd", func(t *testing.T) {
		rig := rig.on(t, startContainerd(t))
		ref := rig.localhostBuild(t, "containerd")
		t.Run("RuntimeDefault", func(t *testing.T) {
			refused(t, rig.build(t, "containerd/runtime-default", nil, nil, true), "unshare: unshare failed: Operation not permitted")
		})
		t.Run("Localhost/drop-ALL", func(t *testing.T) {
			rig.built(t, "containerd/drop-all", rig.build(t, "containerd/drop-all", localhost(localhostProfile), dropAll, false))
		})
		t.Run("index-and-verify/RuntimeDefault/drop-ALL", func(t *testing.T) {
			rig.readOnlyTasks(t, *ref, "containerd/localhost", &podtpl.Template{})
		})
	})

	t.Run("cri-o", func(t *testing.T) {
		rig := rig.on(t, startPodman(t))
		ref := rig.localhostBuild(t, "crio")
		t.Run("Unconfined", func(t *testing.T) {
			rig.built(t, "crio/unconfined", rig.build(t, "crio/unconfined", nil, nil, false))
		})
		t.Run("RuntimeDefault", func(t *testing.T) {
			refused(t, rig.build(t, "crio/runtime-default", runtimeDefaultTemplate, nil, false), "unshare: unshare failed: Function not implemented")
		})
		t.Run("Localhost/drop-ALL", func(t *testing.T) {
			rig.built(t, "crio/drop-all", rig.build(t, "crio/drop-all", localhost(localhostProfile), dropAll, false))
		})
		t.Run("index-and-verify/RuntimeDefault/drop-ALL/non-root", func(t *testing.T) {
			uid, yes := int64(65532), true
			rig.readOnlyTasks(t, *ref, "crio/localhost", &podtpl.Template{SecurityContext: &corev1.PodSecurityContext{
				RunAsUser: &uid, RunAsNonRoot: &yes,
			}})
		})
		t.Run("profile-additions", func(t *testing.T) { testProfileAdditions(t, rig) })
	})

	t.Run("docker", func(t *testing.T) {
		rig := rig.on(t, startDocker(t, strings.Split(image, "/")[0]))
		t.Run("RuntimeDefault", func(t *testing.T) {
			refused(t, rig.build(t, "docker/runtime-default", runtimeDefaultTemplate, nil, false), "unshare: unshare failed: Operation not permitted")
		})
		rig.localhostBuild(t, "docker")
	})
}

// on is the rig on runtime rt, the step image pulled into it.
func (c clusterRig) on(t *testing.T, rt containerRuntime) clusterRig {
	t.Helper()
	rt.Pull(t, c.image)
	c.rt = rt
	return c
}

// localhostBuild runs the subtest "Localhost": a build under the shipped
// profile with the runtime's default capabilities, pushed to
// <prefix>/localhost. The returned pointer holds its IMAGE_REF once it ran.
func (c clusterRig) localhostBuild(t *testing.T, prefix string) *string {
	ref := new(string)
	t.Run("Localhost", func(t *testing.T) {
		repo := prefix + "/localhost"
		res := c.build(t, repo, localhost(localhostProfile), nil, false)
		c.built(t, repo, res)
		*ref = res.Results["IMAGE_REF"]
	})
	return ref
}

// readOnlyTasks runs mcbuild-index over ref (an index in repo) and then
// mcbuild-verify over the merged index, each under RuntimeDefault (the
// template's seccompProfile) with the Tasks' own drop ALL and
// allowPrivilegeEscalation: false.
func (c clusterRig) readOnlyTasks(t *testing.T, ref, repo string, tpl *podtpl.Template) {
	t.Helper()
	if ref == "" {
		t.Fatal("needs the Localhost build's IMAGE_REF")
	}
	if tpl.SecurityContext == nil {
		tpl.SecurityContext = &corev1.PodSecurityContext{}
	}
	tpl.SecurityContext.SeccompProfile = &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}
	idx := runPod(t, podRun{
		TaskFile: indexTaskFile,
		Params: v1.Params{
			strParam("IMAGE", c.out.Repo(repo)+":merged"),
			arrParam("IMAGES", ref),
			strParam("TLSVERIFY", "false"),
		},
		PodTemplate: tpl,
		Runtime:     c.rt,
		StepImage:   c.image,
	})
	if idx.StepErr != nil {
		t.Fatalf("mcbuild-index: %v\n%s", idx.StepErr, idx.Output)
	}
	checkMessage(t, idx, true)
	ver := runPod(t, podRun{
		TaskFile: verifyTaskFile,
		Params: v1.Params{
			strParam("IMAGE_URL", idx.Results["IMAGE_URL"]),
			strParam("IMAGE_DIGEST", idx.Results["IMAGE_DIGEST"]),
			strParam("TLSVERIFY", "false"),
		},
		PodTemplate: tpl,
		Runtime:     c.rt,
		StepImage:   c.image,
	})
	if ver.StepErr != nil || !ver.TaskRun.IsSuccessful() {
		t.Fatalf("mcbuild-verify: %v\n%s", ver.StepErr, ver.Output)
	}
}

// testProfileAdditions runs the build with the shipped profile minus each
// syscall it adds to RuntimeDefault (hack/seccomp's additions): without
// unshare, mount or chroot the step stops at its user-namespace probe,
// without umount2 RUN fails, without sethostname RUN sees the node's
// hostname, and without pivot_root the build still succeeds (buildah's
// chroot isolation falls back from pivot_root to chroot(2), leaving the
// step's own mounts in RUN's mount namespace).
func testProfileAdditions(t *testing.T, c clusterRig) {
	raw, err := os.ReadFile(filepath.Join(repoRoot, seccompRoot, localhostProfile))
	if err != nil {
		t.Fatal(err)
	}
	var shipped struct {
		Syscalls []struct {
			Names  []string `json:"names"`
			Action string   `json:"action"`
			Args   []any    `json:"args"`
		} `json:"syscalls"`
	}
	if err := json.Unmarshal(raw, &shipped); err != nil {
		t.Fatal(err)
	}
	last := shipped.Syscalls[len(shipped.Syscalls)-1]
	if last.Action != "SCMP_ACT_ALLOW" || len(last.Args) != 0 {
		t.Fatalf("the profile's last rule %+v is not the unconditional allow of the additions", last)
	}
	additions := last.Names
	expect := map[string]func(t *testing.T, out *taskRunOutcome){
		"unshare": func(t *testing.T, out *taskRunOutcome) { refused(t, out, "unshare failed: Operation not permitted") },
		"mount":   func(t *testing.T, out *taskRunOutcome) { refused(t, out, "cannot change root filesystem propagation") },
		"chroot":  func(t *testing.T, out *taskRunOutcome) { refused(t, out, "cannot change root directory to '/'") },
		"umount2": func(t *testing.T, out *taskRunOutcome) {
			if out.StepErr == nil || !strings.Contains(out.Output, `building at STEP "RUN`) {
				t.Errorf("want RUN to fail:\n%s", out.Output)
			}
		},
		"sethostname": func(t *testing.T, out *taskRunOutcome) {
			if out.StepErr != nil {
				t.Fatalf("%v\n%s", out.StepErr, out.Output)
			}
			if m := runHostnameRe.FindStringSubmatch(out.Output); m == nil || m[1] != c.node {
				t.Errorf("want RUN to see the node's hostname %q:\n%s", c.node, out.Output)
			}
		},
		"pivot_root": func(t *testing.T, out *taskRunOutcome) {
			if out.StepErr != nil {
				t.Fatalf("%v\n%s", out.StepErr, out.Output)
			}
		},
	}
	if got := slices.Sorted(maps.Keys(expect)); !slices.Equal(got, slices.Sorted(slices.Values(additions))) {
		t.Fatalf("the profile adds %v; this test knows %v", additions, got)
	}
	root := t.TempDir()
	for _, name := range additions {
		t.Run("without-"+name, func(t *testing.T) {
			// The shipped file with the one name taken out of its last rule.
			var p map[string]any
			if err := json.Unmarshal(raw, &p); err != nil {
				t.Fatal(err)
			}
			rules := p["syscalls"].([]any)
			rules[len(rules)-1].(map[string]any)["names"] = slices.DeleteFunc(slices.Clone(additions), func(s string) bool { return s == name })
			b, err := json.Marshal(p)
			if err != nil {
				t.Fatal(err)
			}
			file := "without-" + name + ".json"
			if err := os.WriteFile(filepath.Join(root, file), b, 0o644); err != nil {
				t.Fatal(err)
			}
			out := runPod(t, podRun{
				TaskFile:    buildTaskFile,
				Params:      v1.Params{strParam("IMAGE", c.out.Repo("crio/without-"+name)+":v1"), strParam("TLSVERIFY", "false")},
				Workspaces:  map[string]string{"source": c.src},
				PodTemplate: localhost(file),
				SeccompRoot: root,
				Runtime:     c.rt,
				StepImage:   c.image,
			})
			expect[name](t, out)
		})
	}
}

// TestAppArmorProfileParses: the AppArmor profile shipped with the Task
// compiles with Debian's apparmor_parser (AppArmor 3.0; `make test` installs
// it). Only its syntax is checked: this machine has no AppArmor LSM to
// enforce it.
func TestAppArmorProfileParses(t *testing.T) {
	requireCommands(t, "apparmor_parser")
	profile := filepath.Join(repoRoot, "tasks", "mcbuild", "0.1", "apparmor", "mcbuild")
	out, err := exec.Command("apparmor_parser", "--skip-kernel-load", "--skip-cache", "--debug", profile).CombinedOutput()
	if err != nil {
		t.Fatalf("apparmor_parser %s: %v\n%s", profile, err, out)
	}
	// The profile is named as the Task's README tells pods to ask for it,
	// and allows what the runtimes' default profiles deny.
	for _, want := range []string{"Name:\t\tmcbuild\n", "\nmount (", "\numount (", "\npivotroot ("} {
		if !strings.Contains(string(out), want) {
			t.Errorf("apparmor_parser --debug output lacks %q:\n%s", want, out)
		}
	}
}

// TestReadmeProfilesReachBuilds: the pipeline README's PipelineRun that asks
// for the Localhost profile (taskRunSpecs) gives it to the TaskRuns of the
// pipeline task that runs the mcbuild Task, and to no other, through
// Tekton's own GetTaskRunSpec (what the reconciler calls for every TaskRun,
// each matrix TaskRun included).
func TestReadmeProfilesReachBuilds(t *testing.T) {
	readme := filepath.Join(filepath.Dir(pipelineFile), "README.md")
	var pr *v1.PipelineRun
	for _, m := range yamlBlockRe.FindAllStringSubmatch(string(readRepoFile(t, readme)), -1) {
		var run v1.PipelineRun
		if err := decodeStrict([]byte(m[1]), &run); err == nil && run.Kind == "PipelineRun" && len(run.Spec.TaskRunSpecs) > 0 {
			pr = &run
		}
	}
	if pr == nil {
		t.Fatalf("%s has no PipelineRun example with taskRunSpecs", readme)
	}
	p := loadPipeline(t, pipelineFile)
	builds := 0
	for _, task := range p.Spec.Tasks {
		profile := pr.GetTaskRunSpec(task.Name).PodTemplate
		isBuild := localTaskFile(task.TaskRef) == buildTaskFile
		hasLocalhost := profile != nil && profile.SecurityContext != nil && profile.SecurityContext.SeccompProfile != nil &&
			profile.SecurityContext.SeccompProfile.Type == corev1.SeccompProfileTypeLocalhost
		if isBuild {
			builds++
		}
		if isBuild != hasLocalhost {
			t.Errorf("pipeline task %s (build: %v) gets the Localhost profile: %v", task.Name, isBuild, hasLocalhost)
		}
	}
	if builds == 0 {
		t.Errorf("%s runs no %s", pipelineFile, buildTaskFile)
	}
}

// TestRefusalLinkResolves: the build step's refusal message links to a
// section its README has.
func TestRefusalLinkResolves(t *testing.T) {
	const prefix = "https://github.com/mcbuild/mcbuild/blob/main/"
	file, anchor, ok := strings.Cut(strings.TrimPrefix(clusterRequirementsURL, prefix), "#")
	if !ok || !strings.Contains(string(readRepoFile(t, buildTaskFile)), clusterRequirementsURL) {
		t.Fatalf("%s does not print %s", buildTaskFile, clusterRequirementsURL)
	}
	for _, line := range strings.Split(string(readRepoFile(t, file)), "\n") {
		if h, ok := strings.CutPrefix(line, "## "); ok && strings.ReplaceAll(strings.ToLower(h), " ", "-") == anchor {
			return
		}
	}
	t.Errorf("%s has no section #%s", file, anchor)
}
