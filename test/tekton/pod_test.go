package tekton

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tektoncd/pipeline/pkg/apis/pipeline"
	podtpl "github.com/tektoncd/pipeline/pkg/apis/pipeline/pod"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/pod"
	"github.com/tektoncd/pipeline/pkg/reconciler/taskrun/resources"
	"github.com/tektoncd/pipeline/pkg/workspace"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
)

// A TaskRun run as a pod: Tekton's own pod builder (pkg/pod.Builder, what
// the TaskRun reconciler calls) turns the Task into a Pod, and each of its
// containers, init containers first, runs to completion on a real container
// runtime with what the kubelet would hand that runtime: image, command,
// args, env, working directory, volume mounts (emptyDirs, the downward API
// file, the termination-message file as bind mounts of host directories),
// user, capabilities (the runtime's defaults, then the securityContext's
// drop and add), no_new_privs (allowPrivilegeEscalation: false) and seccomp
// profile (container level over pod level; none means Unconfined, or
// RuntimeDefault under the kubelet's seccompDefault). The step container
// runs Tekton's real entrypoint binary (built from tektoncd/pipeline
// v1.15.1), which runs the Task's script and writes the termination message
// the TaskRun status is made from.
//
// What differs from a cluster: containers run one after another (a pod
// starts its step containers together; they wait on each other's files, so
// the order is the same), in the host's network namespace (to reach the
// loopback registries), without cgroup limits, and Tekton's own images
// (entrypoint, shell, workingdirinit) are the step image with Tekton's
// binaries mounted at /ko-app.

// podRun is one TaskRun to run as a pod.
type podRun struct {
	TaskFile   string
	Params     v1.Params
	Workspaces map[string]string // workspace name -> host directory
	// PodTemplate is the TaskRun's spec.podTemplate.
	PodTemplate *podtpl.Template
	// Mutate edits the pod after Tekton built it, as an admission policy
	// would (e.g. capabilities.drop: [ALL] on every container).
	Mutate func(*corev1.Pod)
	// SeccompDefault is the kubelet's seccompDefault: RuntimeDefault for
	// containers that ask for no profile (Unconfined otherwise).
	SeccompDefault bool
	Runtime        containerRuntime
	// SeccompRoot stands in for the kubelet's /var/lib/kubelet/seccomp,
	// where Localhost profiles are looked up (default: seccompRoot).
	SeccompRoot string
	// StepImage is the runtime's reference of the step image; it runs for
	// the Task's image and for Tekton's images.
	StepImage string
}

// seccompRoot, relative to the repository, is the default kubelet seccomp
// root: localhostProfile "mcbuild.json" is the profile shipped with the Task.
var seccompRoot = filepath.Join("tasks", "mcbuild", "0.1", "seccomp")

// taskImage is the image the Tasks' steps name (the step image): the
// placeholder digest until a release pins the real one (release_test.go).
const taskImage = placeholderImage

// tektonImages are the images Tekton's controller is configured with; each
// runs as the step image with the binary it stands for under /ko-app.
var tektonImages = pipeline.Images{
	EntrypointImage:        "tekton.test/entrypoint",
	SidecarLogResultsImage: "tekton.test/sidecarlogresults",
	NopImage:               "tekton.test/nop",
	ShellImage:             "tekton.test/shell",
	ShellImageWin:          "tekton.test/shell-win",
	WorkingDirInitImage:    "tekton.test/workingdirinit",
}

// tektonBinaries builds Tekton's entrypoint and workingdirinit from this
// module's tektoncd/pipeline, static as Tekton's images ship them, once;
// it returns their directory.
var tektonBinaries = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "mcbuild-tekton-ko-app-")
	if err != nil {
		return "", err
	}
	tempDirs = append(tempDirs, dir)
	cmd := exec.Command("go", "build", "-o", dir+"/",
		"github.com/tektoncd/pipeline/cmd/entrypoint", "github.com/tektoncd/pipeline/cmd/workingdirinit")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building Tekton's entrypoint and workingdirinit: %v\n%s", err, out)
	}
	return dir, nil
})

// runPod runs r's TaskRun as a pod and returns what came out: the TaskRun
// with its status, the step's termination message and results, every
// container's output (each after a "== name" line) and the first failure.
func runPod(t *testing.T, r podRun) *taskRunOutcome {
	t.Helper()
	ctx := tektonContext(t)
	task, tr, ts, wsVolumes := prepareTaskRun(t, ctx, r.TaskFile, r.Params, r.Workspaces, r.PodTemplate)

	// The rest of the reconciler's createPod.
	ts, err := workspace.Apply(ctx, *ts, tr.Spec.Workspaces, wsVolumes)
	if err != nil {
		t.Fatal(err)
	}
	ts = resources.ApplyCredentialsPath(ts, pipeline.CredsDir)
	builder := pod.Builder{Images: tektonImages, KubeClient: serviceAccountsOnly{}}
	p, err := builder.Build(ctx, tr, *ts)
	if err != nil {
		t.Fatalf("Tekton's pod builder: %v", err)
	}
	if r.Mutate != nil {
		r.Mutate(p)
	}

	root := t.TempDir()
	hostDirs := podVolumes(t, root, p, r.Workspaces, wsVolumes)
	bin, err := tektonBinaries()
	if err != nil {
		t.Fatal(err)
	}

	out := &taskRunOutcome{Root: root}
	var statuses []corev1.ContainerStatus
	failed := false
	var output strings.Builder
	all := append(slices.Clone(p.Spec.InitContainers), p.Spec.Containers...)
	for i, c := range all {
		init := i < len(p.Spec.InitContainers)
		spec := r.containerSpec(t, p, c, hostDirs, bin)
		termFile := ""
		if !init && c.TerminationMessagePath != "" {
			termFile = filepath.Join(root, "termination-"+c.Name)
			// World-writable, as the kubelet makes it: the container's user may
			// not be root.
			if err := os.WriteFile(termFile, nil, 0o666); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(termFile, 0o666); err != nil {
				t.Fatal(err)
			}
			spec.Mounts = append(spec.Mounts, bindMount{Src: termFile, Dst: c.TerminationMessagePath})
		}
		// As runtimes do (containerd's CRI sortMounts), parents before children:
		// the /workspace emptyDir must not hide the workspace under it.
		slices.SortStableFunc(spec.Mounts, func(a, b bindMount) int {
			return strings.Count(filepath.Clean(a.Dst), "/") - strings.Count(filepath.Clean(b.Dst), "/")
		})
		start := time.Now()
		code, text := r.runContainer(t, p, c, spec)
		t.Logf("%s on %s: container %s exit %d (%v)", task.Name, r.Runtime.Name(), c.Name, code, time.Since(start).Round(time.Millisecond))
		fmt.Fprintf(&output, "== %s\n%s", c.Name, text)
		if init {
			if code != 0 {
				t.Fatalf("init container %s failed (%d):\n%s", c.Name, code, output.String())
			}
			continue
		}
		msg := ""
		if termFile != "" {
			b, err := os.ReadFile(termFile)
			if err != nil {
				t.Fatal(err)
			}
			msg = string(b)
		}
		statuses = append(statuses, terminatedStatus(c.Name, int32(code), msg))
		out.Message, out.Argv, out.Env = msg, spec.Argv, spec.Env
		if code != 0 {
			out.StepErr = fmt.Errorf("container %s exited %d", c.Name, code)
			failed = true
			break // the next steps' entrypoints would skip them
		}
	}
	out.Output = output.String()
	finishTaskRun(t, ctx, task, tr, p, statuses, failed, out)
	return out
}

// podVolumes makes a host directory for each of p's volumes, as the kubelet
// would: emptyDirs world-writable and empty, a missing optional ConfigMap
// empty, the downward API files written; workspaces bound to the given
// host directories.
func podVolumes(t *testing.T, root string, p *corev1.Pod, workspaces map[string]string, wsVolumes map[string]corev1.Volume) map[string]string {
	t.Helper()
	byVolume := map[string]string{}
	for ws, v := range wsVolumes {
		byVolume[v.Name] = workspaces[ws]
	}
	dirs := map[string]string{}
	annotation := regexp.MustCompile(`^metadata\.annotations\['(.+)'\]$`)
	for _, v := range p.Spec.Volumes {
		if host, ok := byVolume[v.Name]; ok {
			dirs[v.Name] = host
			continue
		}
		dir := filepath.Join(root, "volumes", v.Name)
		if err := os.MkdirAll(dir, 0o777); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(dir, 0o777); err != nil {
			t.Fatal(err)
		}
		switch {
		case v.EmptyDir != nil:
		case v.ConfigMap != nil && v.ConfigMap.Optional != nil && *v.ConfigMap.Optional,
			v.Secret != nil && v.Secret.Optional != nil && *v.Secret.Optional:
			// Not in this namespace (ADDITIONAL_SECRET's default names
			// none): the kubelet mounts an empty volume.
		case v.DownwardAPI != nil:
			for _, item := range v.DownwardAPI.Items {
				var m []string
				if item.FieldRef != nil {
					m = annotation.FindStringSubmatch(item.FieldRef.FieldPath)
				}
				if m == nil {
					t.Fatalf("volume %s: downward API item %s is not simulated", v.Name, item.Path)
				}
				value := p.Annotations[m[1]]
				if m[1] == "tekton.dev/ready" && value == "" {
					value = "READY" // what Tekton's controller sets once the sidecars run (none here)
				}
				if err := os.WriteFile(filepath.Join(dir, item.Path), []byte(value), 0o644); err != nil {
					t.Fatal(err)
				}
			}
		default:
			t.Fatalf("volume %s (%+v) is not simulated", v.Name, v.VolumeSource)
		}
		dirs[v.Name] = dir
	}
	return dirs
}

// containerSpec is what the kubelet hands the runtime for container c of p.
func (r podRun) containerSpec(t *testing.T, p *corev1.Pod, c corev1.Container, hostDirs map[string]string, bin string) containerSpec {
	t.Helper()
	spec := containerSpec{
		Name:       c.Name,
		Image:      r.StepImage,
		Argv:       append(slices.Clone(c.Command), c.Args...),
		WorkingDir: c.WorkingDir,
	}
	switch c.Image {
	case taskImage:
	case tektonImages.EntrypointImage:
		spec.Mounts = append(spec.Mounts, bindMount{Src: filepath.Join(bin, "entrypoint"), Dst: "/ko-app/entrypoint", ReadOnly: true})
	case tektonImages.WorkingDirInitImage:
		spec.Mounts = append(spec.Mounts, bindMount{Src: filepath.Join(bin, "workingdirinit"), Dst: "/ko-app/workingdirinit", ReadOnly: true})
	case tektonImages.ShellImage:
	default:
		t.Fatalf("container %s: image %s is not simulated", c.Name, c.Image)
	}
	if len(spec.Argv) == 0 {
		t.Fatalf("container %s has no command (the image's entrypoint is not simulated)", c.Name)
	}
	for _, e := range c.Env {
		if e.ValueFrom != nil {
			t.Fatalf("container %s env %s: valueFrom is not simulated", c.Name, e.Name)
		}
		spec.Env = append(spec.Env, e.Name+"="+e.Value)
	}
	for _, vm := range c.VolumeMounts {
		host, ok := hostDirs[vm.Name]
		if !ok || vm.SubPath != "" {
			t.Fatalf("container %s: volume mount %s (%s) is not simulated", c.Name, vm.Name, vm.MountPath)
		}
		spec.Mounts = append(spec.Mounts, bindMount{Src: host, Dst: vm.MountPath, ReadOnly: vm.ReadOnly})
	}

	// Security: the container's securityContext over the pod's.
	psc := p.Spec.SecurityContext
	if psc == nil {
		psc = &corev1.PodSecurityContext{}
	}
	sc := c.SecurityContext
	if sc == nil {
		sc = &corev1.SecurityContext{}
	}
	if sc.Privileged != nil && *sc.Privileged {
		t.Fatalf("container %s: privileged is not simulated", c.Name)
	}
	spec.User = psc.RunAsUser
	if sc.RunAsUser != nil {
		spec.User = sc.RunAsUser
	}
	spec.NoNewPrivs = sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation
	spec.Caps = slices.Clone(r.Runtime.DefaultCaps())
	if caps := sc.Capabilities; caps != nil {
		for _, d := range caps.Drop {
			if d == "ALL" {
				spec.Caps = nil
			}
			spec.Caps = slices.DeleteFunc(spec.Caps, func(c string) bool { return c == string(d) })
		}
		for _, a := range caps.Add {
			if name := strings.TrimPrefix(string(a), "CAP_"); !slices.Contains(spec.Caps, name) {
				spec.Caps = append(spec.Caps, name)
			}
		}
	}
	profile := psc.SeccompProfile
	if sc.SeccompProfile != nil {
		profile = sc.SeccompProfile
	}
	switch {
	case profile == nil && r.SeccompDefault:
		spec.Seccomp.Type = corev1.SeccompProfileTypeRuntimeDefault
	case profile == nil:
		spec.Seccomp.Type = corev1.SeccompProfileTypeUnconfined
	case profile.Type == corev1.SeccompProfileTypeLocalhost:
		if profile.LocalhostProfile == nil {
			t.Fatalf("container %s: Localhost seccomp profile without localhostProfile", c.Name)
		}
		dir := r.SeccompRoot
		if dir == "" {
			dir = filepath.Join(repoRoot, seccompRoot)
		}
		spec.Seccomp = seccompChoice{Type: profile.Type, File: filepath.Join(dir, *profile.LocalhostProfile)}
		if _, err := os.Stat(spec.Seccomp.File); err != nil {
			t.Fatalf("container %s: %v (the kubelet refuses to start it)", c.Name, err)
		}
	default:
		spec.Seccomp.Type = profile.Type
	}
	return spec
}

// runContainer applies the kubelet's own check before the runtime's: a
// container with runAsNonRoot whose user is root does not start.
func (r podRun) runContainer(t *testing.T, p *corev1.Pod, c corev1.Container, spec containerSpec) (int, string) {
	t.Helper()
	nonRoot := p.Spec.SecurityContext != nil && p.Spec.SecurityContext.RunAsNonRoot != nil && *p.Spec.SecurityContext.RunAsNonRoot
	if c.SecurityContext != nil && c.SecurityContext.RunAsNonRoot != nil {
		nonRoot = *c.SecurityContext.RunAsNonRoot
	}
	if nonRoot && (spec.User == nil || *spec.User == 0) {
		// The step image has no USER: it runs as root.
		return -1, "CreateContainerConfigError: container has runAsNonRoot and image will run as root\n"
	}
	return r.Runtime.Run(t, spec)
}

// serviceAccountsOnly is the one Kubernetes API call Tekton's pod builder
// makes here: reading the TaskRun's service account (no secrets attached).
// Any other call panics on the nil embedded interfaces.
type serviceAccountsOnly struct{ kubernetes.Interface }

func (serviceAccountsOnly) CoreV1() typedcorev1.CoreV1Interface { return saCore{} }

type saCore struct{ typedcorev1.CoreV1Interface }

func (saCore) ServiceAccounts(ns string) typedcorev1.ServiceAccountInterface { return saGetter{ns: ns} }

type saGetter struct {
	typedcorev1.ServiceAccountInterface
	ns string
}

func (g saGetter) Get(_ context.Context, name string, _ metav1.GetOptions) (*corev1.ServiceAccount, error) {
	return &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: g.ns}}, nil
}
