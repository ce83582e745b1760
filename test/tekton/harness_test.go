package tekton

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tektoncd/pipeline/pkg/apis/pipeline"
	podtpl "github.com/tektoncd/pipeline/pkg/apis/pipeline/pod"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/entrypoint"
	"github.com/tektoncd/pipeline/pkg/pod"
	"github.com/tektoncd/pipeline/pkg/reconciler/taskrun"
	"github.com/tektoncd/pipeline/pkg/reconciler/taskrun/resources"
	"github.com/tektoncd/pipeline/pkg/result"
	"github.com/tektoncd/pipeline/pkg/termination"
	"github.com/tektoncd/pipeline/pkg/workspace"
	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// taskRunSim is one TaskRun to simulate.
type taskRunSim struct {
	// TaskFile is the Task, relative to the repository root.
	TaskFile string
	// Params are what a pipeline (or a user) passes.
	Params v1.Params
	// Workspaces binds workspaces to host directories; unlisted optional
	// workspaces are unbound.
	Workspaces map[string]string
	// Volumes replaces the empty directory a step volume mount gets (e.g. to
	// provide a ConfigMap's files), by volume name.
	Volumes map[string]string
	// BinDir, when set, is put first on PATH instead of a directory holding
	// the real mcbuild binary (for tests with a stand-in mcbuild).
	BinDir string
	// DropCaps removes capabilities from what the step's securityContext
	// grants (to show a grant is needed).
	DropCaps []string
	// Env adds environment variables, as a container image's ENV would.
	Env []string
	// Shell, when set, runs the script with this interpreter instead of its
	// #! line (to check the script with the shells an image may have as sh).
	Shell []string
}

// taskRunOutcome is what the simulated TaskRun produced.
type taskRunOutcome struct {
	// TaskRun carries the status Tekton's pkg/pod built from the pod.
	TaskRun *v1.TaskRun
	// Message is the step's termination message, as the kubelet hands it on.
	Message string
	// Results are the TaskRun's results by name.
	Results map[string]string
	// Output is the step's stdout and stderr.
	Output string
	// StepErr is the step's failure (nil when it exited 0).
	StepErr error
	// Argv is the command the step ran (script path and arguments).
	Argv []string
	// Env is the step's environment.
	Env []string
	// Root is the directory standing in for the pod's filesystem: results in
	// tekton/results, volume mounts in volumes/<name>.
	Root string
}

// criODefaultCaps is the capability set CRI-O (OpenShift, Konflux) gives a
// container: the step's capabilities.add/drop apply to it. containerd's
// default set is larger; the smaller one is the stricter test.
var criODefaultCaps = []string{"CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "SETGID", "SETUID", "SETPCAP", "NET_BIND_SERVICE", "KILL"}

// mcbuildBinDir returns a directory holding "mcbuild": a link to
// $MCBUILD_BIN (default ../../bin/mcbuild).
var mcbuildBinDir = sync.OnceValues(func() (string, error) {
	bin := os.Getenv("MCBUILD_BIN")
	if bin == "" {
		bin = filepath.Join(repoRoot, "bin", "mcbuild")
	}
	bin, err := filepath.Abs(bin)
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(bin); err != nil {
		return "", fmt.Errorf("mcbuild binary: %w (run `make build`, or set MCBUILD_BIN)", err)
	}
	dir, err := os.MkdirTemp("", "mcbuild-tekton-bin-")
	if err != nil {
		return "", err
	}
	tempDirs = append(tempDirs, dir)
	return dir, os.Symlink(bin, filepath.Join(dir, "mcbuild"))
})

// tempDirs are removed by TestMain when the tests end.
var tempDirs []string

// requireSimulationTools fails (never skips) when the machine lacks what the
// simulation runs the step under.
func requireSimulationTools(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("the step simulation runs as root, like the Task's step (runAsUser: 0)")
	}
	for _, tool := range []string{"unshare", "setpriv", "mount", "newuidmap", "newgidmap"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found: the simulation needs util-linux and uidmap (`make test` installs them)", tool)
		}
	}
	for _, f := range []string{"/etc/subuid", "/etc/subgid"} {
		if _, err := os.Stat(f); err != nil {
			t.Fatalf("%s must exist (a bind-mount target for the step's own copy): %v", f, err)
		}
	}
}

// simulate runs a TaskRun of sim.TaskFile the way Tekton would, as far as one
// machine allows:
//
//  1. the Task is loaded and validated; the params are checked against it
//     with the reconciler's taskrun.ValidateResolvedTask;
//  2. params, context, results and workspaces are substituted into the spec
//     with the reconciler's own functions, in its order;
//  3. the container paths the step sees (/tekton/results, workspace and
//     volume mount paths) are mapped to temporary directories, the only edit
//     the simulation makes to the step;
//  4. the script is written as Tekton's pod/script.go would and run by
//     Tekton's entrypoint (pkg/entrypoint) with the declared results, which
//     writes the termination message (pkg/termination);
//  5. the step process gets the capability bounding set of a container with
//     the step's securityContext (CRI-O defaults, plus add, minus drop), a
//     private mount namespace and its own /etc/subuid and /etc/subgid;
//  6. the TaskRun status is made from a pod carrying that termination
//     message by Tekton's pod.MakeTaskRunStatus.
func simulate(t *testing.T, sim taskRunSim) *taskRunOutcome {
	t.Helper()
	requireSimulationTools(t)
	ctx := tektonContext(t)
	task, tr, ts, _ := prepareTaskRun(t, ctx, sim.TaskFile, sim.Params, sim.Workspaces, nil)
	root := t.TempDir()
	mkdir := func(parts ...string) string {
		p := filepath.Join(append([]string{root}, parts...)...)
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}

	// Container paths -> host directories.
	resultsDir := mkdir("tekton", "results")
	paths := map[string]string{pipeline.DefaultResultPath: resultsDir}
	for _, d := range ts.Workspaces {
		if host, ok := sim.Workspaces[d.Name]; ok {
			paths[d.GetMountPath()] = host
		}
	}
	resultNames := make([]string, 0, len(ts.Results))
	for _, r := range ts.Results {
		resultNames = append(resultNames, r.Name)
	}

	out := &taskRunOutcome{Root: root}
	var messages []corev1.ContainerStatus
	failed := false
	for i := range ts.Steps {
		step := &ts.Steps[i]
		for _, vm := range step.VolumeMounts {
			host := sim.Volumes[vm.Name]
			if host == "" {
				host = mkdir("volumes", vm.Name)
			}
			paths[vm.MountPath] = host
		}
		rewrite := pathRewriter(paths)
		step.Script = rewrite(step.Script)
		step.WorkingDir = rewrite(step.WorkingDir)
		for j := range step.Args {
			step.Args[j] = rewrite(step.Args[j])
		}
		for j := range step.Command {
			step.Command[j] = rewrite(step.Command[j])
		}
		env := []string{"HOME=" + mkdir("home")}
		binDir := sim.BinDir
		if binDir == "" {
			var err error
			if binDir, err = mcbuildBinDir(); err != nil {
				t.Fatal(err)
			}
		}
		env = append(env, "PATH="+binDir+":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
		env = append(env, sim.Env...)
		for _, e := range step.Env {
			if e.ValueFrom != nil {
				t.Fatalf("step %s env %s: valueFrom is not simulated", step.Name, e.Name)
			}
			env = append(env, e.Name+"="+rewrite(e.Value))
		}
		for _, s := range append(append([]string{step.Script, step.WorkingDir}, step.Args...), env...) {
			for _, prefix := range []string{"$(params.", "$(results.", "$(workspaces.", "$(context.", "$(tasks.", "$(steps."} {
				if strings.Contains(s, prefix) {
					t.Fatalf("step %s: %q left unsubstituted in %q", step.Name, prefix, s)
				}
			}
		}

		var argv []string
		if step.Script != "" {
			script := step.Script
			if !strings.HasPrefix(strings.TrimSpace(script), "#!") {
				script = "#!/bin/sh\nset -e\n" + script // pod/script.go's preamble
			}
			p := filepath.Join(mkdir("tekton", "scripts"), fmt.Sprintf("script-%d", i))
			if err := os.WriteFile(p, []byte(script), 0o755); err != nil {
				t.Fatal(err)
			}
			argv = append(append(slices.Clone(sim.Shell), p), step.Args...)
		} else {
			argv = append(slices.Clone(step.Command), step.Args...)
		}
		dir := step.WorkingDir
		if dir == "" {
			dir = mkdir("workdir")
		}

		bounding, nnp := capabilities(t, step.SecurityContext, sim.DropCaps)
		etc := mkdir("etc", step.Name)
		for _, f := range []string{"subuid", "subgid"} {
			if err := os.WriteFile(filepath.Join(etc, f), nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		wrapper := []string{"unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c",
			`mount --bind "$1" /etc/subuid && mount --bind "$2" /etc/subgid && caps=$3 && nnp=$4 && shift 4 &&
exec setpriv --bounding-set "$caps" --inh-caps -all $nnp -- "$@"`,
			"sh", filepath.Join(etc, "subuid"), filepath.Join(etc, "subgid"), bounding, nnp}
		runner := &stepRunner{env: env, dir: dir, resultsDir: resultsDir, results: resultNames}
		termPath := filepath.Join(mkdir("tekton", "termination"), step.Name)
		e := entrypoint.Entrypointer{
			Command:                append(wrapper, argv...),
			TerminationPath:        termPath,
			Waiter:                 blockingWaiter{},
			Runner:                 runner,
			PostWriter:             filePostWriter{},
			Results:                resultNames,
			ResultsDirectory:       resultsDir,
			ResultExtractionMethod: entrypoint.ResultExtractionMethodTerminationMessage,
			StepMetadataDir:        mkdir("tekton", "steps", pod.GetContainerName(step.Name)),
			ArtifactsDirectory:     mkdir("tekton", "artifacts"),
		}
		start := time.Now()
		stepErr := e.Go()
		t.Logf("%s step %s: %s (%v)", task.Name, step.Name, exitText(stepErr), time.Since(start).Round(time.Millisecond))
		if runner.oversize != nil {
			t.Errorf("%s step %s: %v", task.Name, step.Name, runner.oversize)
		}
		msg, err := os.ReadFile(termPath)
		if err != nil {
			t.Fatalf("termination message: %v", err)
		}
		if len(msg) > termination.MaxContainerTerminationMessageLength {
			t.Errorf("termination message of step %s is %d bytes, over %d", step.Name, len(msg), termination.MaxContainerTerminationMessageLength)
		}
		code := int32(0)
		var exit *exec.ExitError
		switch {
		case errors.As(stepErr, &exit):
			code = int32(exit.ExitCode())
		case stepErr != nil:
			code = 1
		}
		messages = append(messages, terminatedStatus(pod.GetContainerName(step.Name), code, string(msg)))
		out.Message = string(msg)
		out.Output += runner.output.String()
		out.Argv, out.Env = argv, env
		if stepErr != nil {
			out.StepErr = fmt.Errorf("step %s: %w", step.Name, stepErr)
			failed = true
			break
		}
	}

	// The pod as the kubelet reports it, turned into a TaskRun status by Tekton.
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: tr.Name + "-pod", Namespace: tr.Namespace}}
	for _, s := range messages {
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: s.Name})
	}
	finishTaskRun(t, ctx, task, tr, p, messages, failed, out)
	return out
}

// prepareTaskRun loads and validates taskFile, makes a TaskRun of it with
// these params, workspaces (bound as emptyDir, by name) and pod template,
// checks the params with the reconciler's taskrun.ValidateResolvedTask and
// substitutes params, context, results and workspaces into the spec with the
// reconciler's own functions, in its order. wsVolumes are the workspaces'
// volumes (workspace.CreateVolumes, by workspace name) the spec refers to.
func prepareTaskRun(t *testing.T, ctx context.Context, taskFile string, params v1.Params, workspaces map[string]string, podTemplate *podtpl.Template) (task *v1.Task, tr *v1.TaskRun, ts *v1.TaskSpec, wsVolumes map[string]corev1.Volume) {
	t.Helper()
	task = loadTask(t, taskFile)
	tr = &v1.TaskRun{
		TypeMeta:   metav1.TypeMeta{APIVersion: "tekton.dev/v1", Kind: "TaskRun"},
		ObjectMeta: metav1.ObjectMeta{Name: task.Name + "-run", Namespace: "default", UID: "0a1b2c3d"},
		Spec: v1.TaskRunSpec{
			TaskRef:     &v1.TaskRef{Name: task.Name},
			Params:      params,
			PodTemplate: podTemplate,
		},
	}
	wsNames := make([]string, 0, len(workspaces))
	for name := range workspaces {
		wsNames = append(wsNames, name)
	}
	sort.Strings(wsNames)
	for _, name := range wsNames {
		tr.Spec.Workspaces = append(tr.Spec.Workspaces, v1.WorkspaceBinding{Name: name, EmptyDir: &corev1.EmptyDirVolumeSource{}})
	}
	rtr := &resources.ResolvedTask{TaskName: task.Name, Kind: v1.NamespacedTaskKind, TaskSpec: &task.Spec}
	if err := taskrun.ValidateResolvedTask(ctx, tr.Spec.Params, nil, rtr); err != nil {
		t.Fatalf("%s: params refused: %v", taskFile, err)
	}
	if err := validated(t, "TaskRun", tr.Validate(ctx)); err != nil {
		t.Fatal(err)
	}

	// The reconciler's applyParamsContextsResultsAndWorkspaces, step by step.
	wsVolumes = workspace.CreateVolumes(tr.Spec.Workspaces)
	ts = task.Spec.DeepCopy()
	ts = resources.ApplyParameters(ts, tr, ts.Params...)
	ts = resources.ApplyContexts(ts, task.Name, tr)
	ts = resources.ApplyResults(ts)
	ts = resources.ApplyArtifacts(ts)
	ts = resources.ApplyStepExitCodePath(ts)
	ts = resources.ApplyWorkspaces(ctx, ts, ts.Workspaces, tr.Spec.Workspaces, wsVolumes)
	for _, name := range wsNames {
		if !slices.ContainsFunc(ts.Workspaces, func(d v1.WorkspaceDeclaration) bool { return d.Name == name }) {
			t.Fatalf("%s declares no workspace %s", taskFile, name)
		}
	}
	return task, tr, ts, wsVolumes
}

// finishTaskRun turns pod p, whose step containers ended with these
// statuses (failed: one did not succeed), into tr's status with Tekton's
// pod.MakeTaskRunStatus, and fills out's TaskRun and Results.
func finishTaskRun(t *testing.T, ctx context.Context, task *v1.Task, tr *v1.TaskRun, p *corev1.Pod, statuses []corev1.ContainerStatus, failed bool, out *taskRunOutcome) {
	t.Helper()
	p.Status = corev1.PodStatus{Phase: map[bool]corev1.PodPhase{true: corev1.PodFailed, false: corev1.PodSucceeded}[failed], ContainerStatuses: statuses}
	tr.Status.TaskSpec = &task.Spec
	status, err := pod.MakeTaskRunStatus(ctx, zap.NewNop().Sugar(), *tr, p, nil, &task.Spec)
	if err != nil {
		t.Fatalf("MakeTaskRunStatus: %v", err)
	}
	tr.Status = status
	out.TaskRun = tr
	out.Results = map[string]string{}
	for _, r := range status.Results {
		out.Results[r.Name] = r.Value.StringVal
	}
	if !failed && !tr.IsSuccessful() {
		t.Errorf("%s: step succeeded but the TaskRun is not successful: %+v", task.Name, status.Conditions)
	}
}

// terminatedStatus is a step container's status as the kubelet reports it
// once the container exited with code, its termination message msg.
func terminatedStatus(name string, code int32, msg string) corev1.ContainerStatus {
	return corev1.ContainerStatus{
		Name:  name,
		State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: code, Message: msg, Reason: map[bool]string{true: "Completed", false: "Error"}[code == 0]}},
	}
}

func exitText(err error) string {
	if err == nil {
		return "exit 0"
	}
	return err.Error()
}

// pathRewriter replaces container paths by host paths, longest first.
func pathRewriter(paths map[string]string) func(string) string {
	keys := make([]string, 0, len(paths))
	for k := range paths {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return len(keys[i]) > len(keys[j]) })
	var pairs []string
	for _, k := range keys {
		pairs = append(pairs, k, paths[k])
	}
	r := strings.NewReplacer(pairs...)
	return r.Replace
}

// capabilities returns setpriv's --bounding-set for a container with this
// securityContext (CRI-O defaults, then drop, then add) and the
// no-new-privileges flag.
func capabilities(t testing.TB, sc *corev1.SecurityContext, extraDrop []string) (string, string) {
	t.Helper()
	caps := slices.Clone(criODefaultCaps)
	nnp := ""
	if sc != nil {
		if sc.Privileged != nil && *sc.Privileged {
			t.Fatal("privileged steps are not simulated")
		}
		if sc.RunAsUser != nil && *sc.RunAsUser != 0 {
			t.Fatalf("runAsUser %d is not simulated", *sc.RunAsUser)
		}
		if sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation {
			nnp = "--no-new-privs"
		}
		if c := sc.Capabilities; c != nil {
			for _, d := range c.Drop {
				if d == "ALL" {
					caps = nil
				}
				caps = slices.DeleteFunc(caps, func(s string) bool { return s == string(d) })
			}
			for _, a := range c.Add {
				caps = append(caps, string(a))
			}
		}
	}
	caps = slices.DeleteFunc(caps, func(s string) bool { return slices.Contains(extraDrop, s) })
	spec := "-all"
	for _, c := range caps {
		spec += ",+" + strings.ToLower(c)
	}
	return spec, nnp
}

// stepRunner runs the step's command (the entrypoint's Runner).
type stepRunner struct {
	env        []string
	dir        string
	resultsDir string
	results    []string
	output     bytes.Buffer
	oversize   error
}

func (r *stepRunner) Run(ctx context.Context, args ...string) error {
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Env = r.env
	cmd.Dir = r.dir
	cmd.Stdout = &r.output
	cmd.Stderr = &r.output
	err := cmd.Run()
	r.checkSize()
	return err
}

// checkSize encodes the results the entrypoint is about to read, with its
// StartedAt entry, as pkg/termination does. When that is over the limit the
// entrypoint would end the process (log.Fatalf) writing it; the result files
// are removed instead and the test is failed.
func (r *stepRunner) checkSize() {
	entries := []result.RunResult{{Key: "StartedAt", Value: time.Now().Format("2006-01-02T15:04:05.000Z07:00"), ResultType: result.InternalTektonResultType}}
	for _, name := range r.results {
		b, err := os.ReadFile(filepath.Join(r.resultsDir, name))
		if err != nil {
			continue
		}
		entries = append(entries, result.RunResult{Key: name, Value: string(b), ResultType: result.TaskRunResultType})
	}
	b, err := json.Marshal(entries)
	if err != nil || len(b) <= termination.MaxContainerTerminationMessageLength {
		return
	}
	r.oversize = fmt.Errorf("results with StartedAt take %d bytes, over Tekton's %d", len(b), termination.MaxContainerTerminationMessageLength)
	for _, name := range r.results {
		_ = os.Remove(filepath.Join(r.resultsDir, name))
	}
}

// blockingWaiter waits for nothing to appear: the entrypoint's cancellation
// watch blocks until the step ends.
type blockingWaiter struct{}

func (blockingWaiter) Wait(ctx context.Context, _ string, _, _ bool) error {
	<-ctx.Done()
	return entrypoint.ErrContextCanceled
}

// filePostWriter writes the entrypoint's post and exit-code files.
type filePostWriter struct{}

func (filePostWriter) Write(file, content string) {
	_ = os.MkdirAll(filepath.Dir(file), 0o755)
	_ = os.WriteFile(file, []byte(content), 0o644)
}

// strParam and arrParam build TaskRun params.
func strParam(name, value string) v1.Param {
	return v1.Param{Name: name, Value: *v1.NewStructuredValues(value)}
}

func arrParam(name string, values ...string) v1.Param {
	return v1.Param{Name: name, Value: v1.ParamValue{Type: v1.ParamTypeArray, ArrayVal: values}}
}
