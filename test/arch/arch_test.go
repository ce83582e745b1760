// Package arch checks that the code keeps the architecture README.md
// describes: every Go package of the module is in the Architecture table,
// and imports no mcbuild package the table does not allow it.
package arch

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/mcbuild/mcbuild/"

// allowed reads README.md's Architecture table: package -> the mcbuild
// packages it may import.
func allowed(t *testing.T, readme string) map[string][]string {
	t.Helper()
	f, err := os.Open(readme)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	code := regexp.MustCompile("`([a-z/]+)`")
	out := map[string][]string{}
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "## ") {
			in = line == "## Architecture"
			continue
		}
		// | `pkg`[, `pkg`...] | its job | `import`, ... |
		cells := strings.Split(strings.Trim(line, "|"), " | ")
		if !in || len(cells) != 3 || !strings.HasPrefix(strings.TrimSpace(cells[0]), "`") {
			continue
		}
		var imports []string
		for _, c := range code.FindAllStringSubmatch(cells[2], -1) {
			imports = append(imports, c[1])
		}
		for _, c := range code.FindAllStringSubmatch(cells[0], -1) {
			out[c[1]] = imports
		}
	}
	if len(out) == 0 {
		t.Fatal("README.md has no Architecture table")
	}
	return out
}

type pkg struct {
	ImportPath string
	Imports    []string
}

func TestImportsMatchREADME(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	rules := allowed(t, filepath.Join(root, "README.md"))
	cmd := exec.Command("go", "list", "-tags", "containers_image_openpgp exclude_graphdriver_btrfs", "-json", "./...")
	cmd.Dir = root
	raw, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	for dec.More() {
		var p pkg
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		name := strings.TrimPrefix(p.ImportPath, module)
		if strings.HasPrefix(name, "test/") || strings.HasPrefix(name, "bench/") {
			continue // tests and the benchmark may use anything
		}
		may, ok := rules[name]
		if !ok {
			t.Errorf("%s is not in README.md's Architecture table", name)
			continue
		}
		for _, imp := range p.Imports {
			if dep, ours := strings.CutPrefix(imp, module); ours && !slices.Contains(may, dep) {
				t.Errorf("%s imports %s, which README.md's Architecture table does not allow it", name, dep)
			}
		}
	}
}
