package tekton

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	corev1 "k8s.io/api/core/v1"
)

// TestManifestsValidate: every file in tasks/ and pipelines/ is a tekton.dev/v1
// Task or Pipeline that strict-decodes, defaults and validates.
func TestManifestsValidate(t *testing.T) {
	for _, rel := range manifestFiles(t) {
		t.Run(rel, func(t *testing.T) {
			_, kind := kindOf(t, readRepoFile(t, rel))
			switch kind {
			case "Task":
				loadTask(t, rel)
			case "Pipeline":
				loadPipeline(t, rel)
			default:
				t.Fatalf("kind %q: only Task and Pipeline belong in tasks/ and pipelines/", kind)
			}
		})
	}
}

var (
	resultPathRe = regexp.MustCompile(`\$\(results\.([^.)\s]+)\.path\)|\$\(results\[["']([^"']+)["']\]\.path\)`)
	taskResultRe = regexp.MustCompile(`\$\(tasks\.([^.)\s]+)\.results\.([A-Za-z0-9_-]+)`)
	paramRefRe   = regexp.MustCompile(`\$\(params\.([A-Za-z0-9_-]+)`)
)

// containerStrings returns every string of a step-like container where Tekton
// substitutes variables.
func containerStrings(script, workingDir string, command, args []string, env []corev1.EnvVar) []string {
	out := []string{script, workingDir}
	out = append(out, command...)
	out = append(out, args...)
	for _, e := range env {
		out = append(out, e.Value)
	}
	return out
}

// taskStrings returns every string of a Task's steps, step template and
// sidecars.
func taskStrings(spec *v1.TaskSpec) []string {
	var out []string
	for _, s := range spec.Steps {
		out = append(out, containerStrings(s.Script, s.WorkingDir, s.Command, s.Args, s.Env)...)
	}
	if st := spec.StepTemplate; st != nil {
		out = append(out, containerStrings("", st.WorkingDir, st.Command, st.Args, st.Env)...)
	}
	for _, s := range spec.Sidecars {
		out = append(out, containerStrings(s.Script, s.WorkingDir, s.Command, s.Args, s.Env)...)
	}
	return out
}

// TestResultPathsDeclared: every $(results.X.path) in a step (script, args,
// command, env, workingDir) names a declared result. Validate only checks the
// script.
func TestResultPathsDeclared(t *testing.T) {
	for _, rel := range manifestFiles(t) {
		if _, kind := kindOf(t, readRepoFile(t, rel)); kind != "Task" {
			continue
		}
		for _, p := range resultPathProblems(loadTask(t, rel)) {
			t.Errorf("%s: %s", rel, p)
		}
	}
}

func resultPathProblems(task *v1.Task) []string {
	var out []string
	declared := map[string]bool{}
	for _, r := range task.Spec.Results {
		declared[r.Name] = true
	}
	for _, s := range taskStrings(&task.Spec) {
		for _, m := range resultPathRe.FindAllStringSubmatch(s, -1) {
			if name := m[1] + m[2]; !declared[name] {
				out = append(out, m[0]+" refers to undeclared result "+name)
			}
		}
	}
	return out
}

// TestTaskParamsUsed: every declared param is used by a step (or a volume),
// so none is silently ignored.
func TestTaskParamsUsed(t *testing.T) {
	for _, rel := range manifestFiles(t) {
		if _, kind := kindOf(t, readRepoFile(t, rel)); kind != "Task" {
			continue
		}
		task := loadTask(t, rel)
		raw, err := json.Marshal(struct {
			Steps   []v1.Step
			Volumes []corev1.Volume
		}{task.Spec.Steps, task.Spec.Volumes})
		if err != nil {
			t.Fatal(err)
		}
		used := map[string]bool{}
		for _, m := range paramRefRe.FindAllStringSubmatch(string(raw), -1) {
			used[m[1]] = true
		}
		for _, p := range task.Spec.Params {
			if !used[p.Name] {
				t.Errorf("%s: param %s is declared but never used", rel, p.Name)
			}
		}
	}
}

// TestPipelineTaskRefs: every pipeline task that runs a Task of this
// repository passes only params the Task declares, every required one, with
// the declared type; binds only declared workspaces and every required one;
// and every $(tasks.T.results.R) anywhere in the pipeline names a result T's
// Task declares.
func TestPipelineTaskRefs(t *testing.T) {
	for _, rel := range manifestFiles(t) {
		if _, kind := kindOf(t, readRepoFile(t, rel)); kind != "Pipeline" {
			continue
		}
		p := loadPipeline(t, rel)
		for _, pt := range append(slices.Clone(p.Spec.Tasks), p.Spec.Finally...) {
			if localTaskFile(pt.TaskRef) == "" {
				t.Logf("%s: task %s runs an external Task; its params and results are not checked here", rel, pt.Name)
			}
		}
		for _, prob := range pipelineProblems(t, p) {
			t.Errorf("%s: %s", rel, prob)
		}
	}
}

// pipelineProblems checks a pipeline against the Tasks of this repository it
// runs.
func pipelineProblems(t *testing.T, p *v1.Pipeline) []string {
	t.Helper()
	var out []string
	tasksByName := map[string]*v1.Task{}
	for _, pt := range append(slices.Clone(p.Spec.Tasks), p.Spec.Finally...) {
		file := localTaskFile(pt.TaskRef)
		if file == "" {
			continue
		}
		task := loadTask(t, file)
		tasksByName[pt.Name] = task
		out = append(out, pipelineTaskProblems(pt, task)...)
	}
	if len(tasksByName) == 0 {
		out = append(out, "no task refers to this repository's tasks/ (git resolver, url "+mcbuildRepoURL+")")
	}
	raw, err := json.Marshal(p.Spec)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range taskResultRe.FindAllStringSubmatch(string(raw), -1) {
		task, ok := tasksByName[m[1]]
		if !ok {
			continue
		}
		if !slices.ContainsFunc(task.Spec.Results, func(r v1.TaskResult) bool { return r.Name == m[2] }) {
			out = append(out, fmt.Sprintf("%s uses result %q, which Task %s does not declare", m[0], m[2], task.Name))
		}
	}
	return out
}

func pipelineTaskProblems(pt v1.PipelineTask, task *v1.Task) []string {
	var out []string
	specs := map[string]v1.ParamSpec{}
	for _, ps := range task.Spec.Params {
		specs[ps.Name] = ps
	}
	given := map[string]bool{}
	check := func(p v1.Param, matrix bool) {
		ps, ok := specs[p.Name]
		if !ok {
			out = append(out, fmt.Sprintf("task %s passes param %s, which Task %s does not declare", pt.Name, p.Name, task.Name))
			return
		}
		given[p.Name] = true
		want, got := ps.Type, p.Value.Type
		if matrix {
			// A matrix fans an array out into one string per TaskRun.
			if got != v1.ParamTypeArray || want != v1.ParamTypeString {
				out = append(out, fmt.Sprintf("task %s matrix param %s: %s over a %s param, want an array over a string param", pt.Name, p.Name, got, want))
			}
			return
		}
		if got != want {
			out = append(out, fmt.Sprintf("task %s passes param %s as %s, Task %s declares %s", pt.Name, p.Name, got, task.Name, want))
		}
	}
	for _, p := range pt.Params {
		check(p, false)
	}
	if pt.Matrix != nil {
		for _, p := range pt.Matrix.Params {
			check(p, true)
		}
	}
	for _, ps := range task.Spec.Params {
		if ps.Default == nil && !given[ps.Name] {
			out = append(out, fmt.Sprintf("task %s does not pass required param %s of Task %s", pt.Name, ps.Name, task.Name))
		}
	}
	bound := map[string]bool{}
	for _, w := range pt.Workspaces {
		bound[w.Name] = true
		if !slices.ContainsFunc(task.Spec.Workspaces, func(d v1.WorkspaceDeclaration) bool { return d.Name == w.Name }) {
			out = append(out, fmt.Sprintf("task %s binds workspace %s, which Task %s does not declare", pt.Name, w.Name, task.Name))
		}
	}
	for _, d := range task.Spec.Workspaces {
		if !d.Optional && !bound[d.Name] {
			out = append(out, fmt.Sprintf("task %s does not bind required workspace %s of Task %s", pt.Name, d.Name, task.Name))
		}
	}
	return out
}

// TestCheckersCatchMistakes: the checks above report what they are for, on
// mutated copies of the real files.
func TestCheckersCatchMistakes(t *testing.T) {
	pipelineCase := func(name string, mutate func(p *v1.Pipeline), want string) {
		t.Run(name, func(t *testing.T) {
			p := loadPipeline(t, pipelineFile)
			mutate(p)
			probs := pipelineProblems(t, p)
			if !slices.ContainsFunc(probs, func(s string) bool { return strings.Contains(s, want) }) {
				t.Errorf("problems %q, want one containing %q", probs, want)
			}
		})
	}
	task := func(p *v1.Pipeline, name string) *v1.PipelineTask {
		for i := range p.Spec.Tasks {
			if p.Spec.Tasks[i].Name == name {
				return &p.Spec.Tasks[i]
			}
		}
		t.Fatalf("no pipeline task %s", name)
		return nil
	}
	pipelineCase("undeclared param", func(p *v1.Pipeline) {
		pt := task(p, "build-images")
		pt.Params = append(pt.Params, strParam("PLATFORMS", "linux/amd64"))
	}, "passes param PLATFORMS")
	pipelineCase("missing required param", func(p *v1.Pipeline) {
		pt := task(p, "build-image-index")
		pt.Params = slices.DeleteFunc(pt.Params, func(x v1.Param) bool { return x.Name == "IMAGES" })
	}, "required param IMAGES")
	pipelineCase("array as string", func(p *v1.Pipeline) {
		pt := task(p, "build-images")
		for i := range pt.Params {
			if pt.Params[i].Name == "BUILD_ARGS" {
				pt.Params[i] = strParam("BUILD_ARGS", "A=1")
			}
		}
	}, "BUILD_ARGS as string")
	pipelineCase("undeclared result", func(p *v1.Pipeline) {
		p.Spec.Results[0].Value = *v1.NewStructuredValues("$(tasks.build-image-index.results.IMAGE_TAG)")
	}, `result "IMAGE_TAG"`)
	pipelineCase("undeclared workspace", func(p *v1.Pipeline) {
		pt := task(p, "build-image-index")
		pt.Workspaces = append(pt.Workspaces, v1.WorkspacePipelineTaskBinding{Name: "source", Workspace: "workspace"})
	}, "binds workspace source")
	t.Run("undeclared result path", func(t *testing.T) {
		tk := loadTask(t, indexTaskFile)
		tk.Spec.Steps[0].Env = append(tk.Spec.Steps[0].Env, corev1.EnvVar{Name: "X", Value: "$(results.IMAGE_TAG.path)"})
		if probs := resultPathProblems(tk); len(probs) != 1 || !strings.Contains(probs[0], "IMAGE_TAG") {
			t.Errorf("problems %q, want the undeclared IMAGE_TAG", probs)
		}
	})
}

// TestStepSecurity: the build step asks for root and SETFCAP, SETUID and
// SETGID only (the capabilities its user namespace needs, added so that a
// policy dropping ALL keeps them); the index and verify steps drop every
// capability.
func TestStepSecurity(t *testing.T) {
	for _, tc := range []struct {
		file string
		add  []string
		drop []string
		root bool
	}{
		{buildTaskFile, []string{"SETFCAP", "SETUID", "SETGID"}, nil, true},
		{indexTaskFile, nil, []string{"ALL"}, false},
		{verifyTaskFile, nil, []string{"ALL"}, false},
	} {
		task := loadTask(t, tc.file)
		for _, s := range task.Spec.Steps {
			sc := s.SecurityContext
			if sc == nil {
				t.Errorf("%s step %s: no securityContext", tc.file, s.Name)
				continue
			}
			if sc.Privileged != nil && *sc.Privileged {
				t.Errorf("%s step %s: privileged", tc.file, s.Name)
			}
			var add, drop []string
			if sc.Capabilities != nil {
				for _, c := range sc.Capabilities.Add {
					add = append(add, string(c))
				}
				for _, c := range sc.Capabilities.Drop {
					drop = append(drop, string(c))
				}
			}
			if !slices.Equal(add, tc.add) || !slices.Equal(drop, tc.drop) {
				t.Errorf("%s step %s: capabilities add %v drop %v, want add %v drop %v", tc.file, s.Name, add, drop, tc.add, tc.drop)
			}
			isRoot := sc.RunAsUser != nil && *sc.RunAsUser == 0
			if isRoot != tc.root {
				t.Errorf("%s step %s: runAsUser %v, want root=%v", tc.file, s.Name, sc.RunAsUser, tc.root)
			}
			if !strings.HasPrefix(s.Script, "#!/bin/sh\n") {
				t.Errorf("%s step %s: script must start with #!/bin/sh (POSIX sh is all the image promises)", tc.file, s.Name)
			}
		}
	}
}
