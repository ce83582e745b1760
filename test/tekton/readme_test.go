package tekton

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

var yamlBlockRe = regexp.MustCompile("(?s)```yaml\n(.*?)```")

// TestReadmeExamples: every README next to a Task or Pipeline has a TaskRun or
// PipelineRun example, and each example strict-decodes, validates, refers to a
// file of this repository, passes only params that file declares and every
// required one, and binds only declared workspaces and every required one.
func TestReadmeExamples(t *testing.T) {
	for _, rel := range manifestFiles(t) {
		readme := filepath.Join(filepath.Dir(rel), "README.md")
		raw, err := os.ReadFile(filepath.Join(repoRoot, readme))
		if err != nil {
			t.Errorf("%s has no README.md: %v", rel, err)
			continue
		}
		examples := 0
		for _, m := range yamlBlockRe.FindAllStringSubmatch(string(raw), -1) {
			block := []byte(m[1])
			var doc any
			if err := yaml.Unmarshal(block, &doc); err != nil {
				t.Errorf("%s: YAML block does not parse: %v", readme, err)
				continue
			}
			if _, ok := doc.(map[string]any); !ok {
				continue // a fragment, e.g. one pipeline task
			}
			_, kind := kindOf(t, block)
			if kind == "" {
				continue // a fragment, e.g. a securityContext
			}
			ctx := tektonContext(t)
			switch kind {
			case "TaskRun":
				var tr v1.TaskRun
				if err := decodeStrict(block, &tr); err != nil {
					t.Errorf("%s: TaskRun example: %v", readme, err)
					continue
				}
				apiServerName(&tr.ObjectMeta)
				tr.SetDefaults(ctx)
				if err := validated(t, readme, tr.Validate(ctx)); err != nil {
					t.Error(err)
				}
				file := localRef(tr.Spec.TaskRef.Resolver, tr.Spec.TaskRef.Params)
				if file != rel {
					t.Errorf("%s: the example runs %q, want %s", readme, file, rel)
					continue
				}
				task := loadTask(t, file)
				checkRunParams(t, readme, tr.Spec.Params, task.Spec.Params)
				checkRunWorkspaces(t, readme, tr.Spec.Workspaces, task.Spec.Workspaces)
			case "PipelineRun":
				var pr v1.PipelineRun
				if err := decodeStrict(block, &pr); err != nil {
					t.Errorf("%s: PipelineRun example: %v", readme, err)
					continue
				}
				apiServerName(&pr.ObjectMeta)
				pr.SetDefaults(ctx)
				if err := validated(t, readme, pr.Validate(ctx)); err != nil {
					t.Error(err)
				}
				file := localRef(pr.Spec.PipelineRef.Resolver, pr.Spec.PipelineRef.Params)
				if file != rel {
					t.Errorf("%s: the example runs %q, want %s", readme, file, rel)
					continue
				}
				p := loadPipeline(t, file)
				checkRunParams(t, readme, pr.Spec.Params, p.Spec.Params)
				checkRunWorkspaces(t, readme, pr.Spec.Workspaces, p.Spec.Workspaces)
			default:
				t.Errorf("%s: example of kind %q; want TaskRun or PipelineRun", readme, kind)
				continue
			}
			examples++
		}
		if examples == 0 {
			t.Errorf("%s: no TaskRun or PipelineRun example", readme)
		}
	}
}

// apiServerName gives a generateName'd object the name the API server would
// before admission (and Tekton's validating webhook) sees it.
func apiServerName(m *metav1.ObjectMeta) {
	if m.Name == "" && m.GenerateName != "" {
		m.Name = m.GenerateName + "x7k2q"
	}
}

// localRef is the file of this repository a git-resolver reference names.
func localRef(resolver v1.ResolverName, params v1.Params) string {
	return localTaskFile(&v1.TaskRef{ResolverRef: v1.ResolverRef{Resolver: resolver, Params: params}})
}

func checkRunParams(t *testing.T, where string, given v1.Params, specs v1.ParamSpecs) {
	t.Helper()
	declared := map[string]v1.ParamSpec{}
	for _, s := range specs {
		declared[s.Name] = s
	}
	passed := map[string]bool{}
	for _, p := range given {
		s, ok := declared[p.Name]
		if !ok {
			t.Errorf("%s: example passes undeclared param %s", where, p.Name)
			continue
		}
		if s.Type != p.Value.Type {
			t.Errorf("%s: example passes %s as %s, declared %s", where, p.Name, p.Value.Type, s.Type)
		}
		passed[p.Name] = true
	}
	for _, s := range specs {
		if s.Default == nil && !passed[s.Name] {
			t.Errorf("%s: example lacks required param %s", where, s.Name)
		}
	}
}

// workspaceDecl is what Task and Pipeline workspace declarations share.
type workspaceDecl interface {
	v1.WorkspaceDeclaration | v1.PipelineWorkspaceDeclaration
}

func checkRunWorkspaces[D workspaceDecl](t *testing.T, where string, bound []v1.WorkspaceBinding, decls []D) {
	t.Helper()
	declared := map[string]bool{}
	for _, d := range decls {
		name, optional := declInfo(d)
		declared[name] = true
		found := false
		for _, b := range bound {
			found = found || b.Name == name
		}
		if !optional && !found {
			t.Errorf("%s: example does not bind required workspace %s", where, name)
		}
	}
	for _, b := range bound {
		if !declared[b.Name] {
			t.Errorf("%s: example binds undeclared workspace %s", where, b.Name)
		}
	}
}

func declInfo[D workspaceDecl](d D) (string, bool) {
	switch d := any(d).(type) {
	case v1.WorkspaceDeclaration:
		return d.Name, d.Optional
	case v1.PipelineWorkspaceDeclaration:
		return d.Name, d.Optional
	}
	panic("unreachable")
}
