// Package containerfile checks the step image's Containerfile at the
// repository root without building it (`make image` builds it): it parses
// with buildah's parser, every base is a build argument with a usable
// default, everything it copies from the context exists and survives
// .containerignore, the binary is built the way the Makefile builds it, and
// the containers configuration it ships parses with the libraries mcbuild uses.
package containerfile

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/distribution/reference"
	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
	"github.com/openshift/imagebuilder"
	"github.com/openshift/imagebuilder/dockerfile/parser"
	"go.podman.io/image/v5/pkg/sysregistriesv2"
	"go.podman.io/image/v5/signature"
	"go.podman.io/image/v5/types"
	storagetypes "go.podman.io/storage/types"
)

const modulePath = "github.com/mcbuild/mcbuild"

// repoRoot is the build context: the directory holding go.mod.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("repository root: %v", err)
	}
	return root
}

type instruction struct {
	cmd   string   // lower case: from, arg, copy, run, ...
	flags []string // --from=builder, --mount=..., ...
	args  []string
	line  int
	orig  string
}

func (in instruction) flag(name string) (string, bool) {
	for _, f := range in.flags {
		if v, ok := strings.CutPrefix(f, "--"+name+"="); ok {
			return v, true
		}
	}
	return "", false
}

type containerfile struct {
	root         *parser.Node
	instructions []instruction
	// headingArgs are the ARGs before the first FROM: name -> default
	// (declared without a default: present with ok=false in hasDefault).
	headingArgs map[string]string
	hasDefault  map[string]bool
}

func parse(t *testing.T, root string) containerfile {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root, "Containerfile"))
	if err != nil {
		t.Fatal(err)
	}
	res, err := parser.Parse(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("parsing Containerfile: %v", err)
	}
	if len(res.Warnings) > 0 {
		t.Errorf("parser warnings: %q", res.Warnings)
	}
	cf := containerfile{root: res.AST, headingArgs: map[string]string{}, hasDefault: map[string]bool{}}
	seenFrom := false
	for _, n := range res.AST.Children {
		in := instruction{cmd: strings.ToLower(n.Value), flags: n.Flags, line: n.StartLine, orig: n.Original}
		for a := n.Next; a != nil; a = a.Next {
			in.args = append(in.args, a.Value)
		}
		if in.cmd == "from" {
			seenFrom = true
		}
		if in.cmd == "arg" && !seenFrom {
			for _, a := range in.args {
				name, def, ok := strings.Cut(a, "=")
				cf.headingArgs[name], cf.hasDefault[name] = def, ok && def != ""
			}
		}
		cf.instructions = append(cf.instructions, in)
	}
	return cf
}

func (cf containerfile) stages() []instruction {
	var out []instruction
	for _, in := range cf.instructions {
		if in.cmd == "from" {
			out = append(out, in)
		}
	}
	return out
}

// contextCopies are the COPY and ADD instructions that read the build
// context (not another stage or image).
func (cf containerfile) contextCopies() []instruction {
	var out []instruction
	for _, in := range cf.instructions {
		if in.cmd != "copy" && in.cmd != "add" {
			continue
		}
		if _, ok := in.flag("from"); ok {
			continue
		}
		out = append(out, in)
	}
	return out
}

var argRef = regexp.MustCompile(`^\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))$`)

// The bases README.md documents; a renamed or dropped argument must fail here.
var wantStages = []struct {
	name, arg string
}{
	{"builder", "BUILDER_IMAGE"},
	{"", "RUNTIME_IMAGE"}, // the final stage: the step image
}

func TestStagesUseBuildArgBases(t *testing.T) {
	root := repoRoot(t)
	cf := parse(t, root)
	stages := cf.stages()
	if len(stages) != len(wantStages) {
		t.Fatalf("Containerfile has %d stages, want %d (%v)", len(stages), len(wantStages), wantStages)
	}
	for i, want := range wantStages {
		st := stages[i]
		t.Run(want.arg, func(t *testing.T) {
			if len(st.args) == 0 {
				t.Fatalf("line %d: FROM without an image", st.line)
			}
			name := ""
			if len(st.args) == 3 && strings.EqualFold(st.args[1], "as") {
				name = st.args[2]
			}
			if name != want.name {
				t.Errorf("line %d: stage %d is named %q, want %q", st.line, i, name, want.name)
			}
			m := argRef.FindStringSubmatch(st.args[0])
			if m == nil {
				t.Fatalf("line %d: FROM %s: the base must be a build argument such as ${%s}", st.line, st.args[0], want.arg)
			}
			arg := m[1] + m[2]
			if arg != want.arg {
				t.Errorf("line %d: FROM uses $%s, want $%s", st.line, arg, want.arg)
			}
			if _, declared := cf.headingArgs[arg]; !declared {
				t.Fatalf("line %d: %s is not declared by an ARG before the first FROM", st.line, arg)
			}
			if !cf.hasDefault[arg] {
				t.Fatalf("ARG %s has no default: a plain `mcbuild build` of this file would fail", arg)
			}
			def := cf.headingArgs[arg]
			if def == "scratch" {
				return
			}
			// Fully qualified, so that the default does not depend on
			// registries.conf, and pinned to a tag or digest.
			named, err := reference.ParseNamed(def)
			if err != nil {
				t.Fatalf("ARG %s=%s: not a fully qualified image reference: %v", arg, def, err)
			}
			if reference.IsNameOnly(named) {
				t.Errorf("ARG %s=%s: no tag or digest", arg, def)
			}
		})
	}
}

// TestStagesResolve evaluates the FROM lines the way buildah does
// (imagebuilder): with no build arguments each base is its default, and a
// --build-arg replaces it.
func TestStagesResolve(t *testing.T) {
	root := repoRoot(t)
	defaults := parse(t, root).headingArgs
	overrides := map[string]string{}
	for _, s := range wantStages {
		overrides[s.arg] = "127.0.0.1:5000/override/" + strings.ToLower(s.arg) + ":test"
	}
	for _, tc := range []struct {
		name string
		args map[string]string
		want func(arg string) string
	}{
		{"defaults", nil, func(arg string) string { return defaults[arg] }},
		{"build-args", overrides, func(arg string) string { return overrides[arg] }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			node, err := imagebuilder.ParseFile(filepath.Join(root, "Containerfile"))
			if err != nil {
				t.Fatal(err)
			}
			stages, err := imagebuilder.NewStages(node, imagebuilder.NewBuilder(tc.args))
			if err != nil {
				t.Fatalf("NewStages: %v", err)
			}
			if len(stages) != len(wantStages) {
				t.Fatalf("%d stages, want %d", len(stages), len(wantStages))
			}
			for i, st := range stages {
				got, err := st.Builder.From(st.Node)
				if err != nil {
					t.Fatalf("stage %d: %v", i, err)
				}
				if want := tc.want(wantStages[i].arg); got != want {
					t.Errorf("stage %d (%s) FROM resolves to %q, want %q", i, wantStages[i].arg, got, want)
				}
			}
		})
	}
}

// ignoreMatcher reads .containerignore (buildah prefers it to .dockerignore).
func ignoreMatcher(t *testing.T, root string) *patternmatcher.PatternMatcher {
	t.Helper()
	var patterns []string
	for _, name := range []string{".containerignore", ".dockerignore"} {
		f, err := os.Open(filepath.Join(root, name))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		patterns, err = ignorefile.ReadAll(f)
		f.Close()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		break
	}
	pm, err := patternmatcher.New(patterns)
	if err != nil {
		t.Fatalf("ignore patterns %q: %v", patterns, err)
	}
	return pm
}

func excluded(t *testing.T, pm *patternmatcher.PatternMatcher, rel string) bool {
	t.Helper()
	ex, err := pm.MatchesOrParentMatches(filepath.ToSlash(rel))
	if err != nil {
		t.Fatalf("matching %s: %v", rel, err)
	}
	return ex
}

// copySources lists the context paths a COPY/ADD reads (every argument but
// the destination), cleaned and relative to the context.
func copySources(t *testing.T, in instruction) []string {
	t.Helper()
	if len(in.args) < 2 {
		t.Fatalf("line %d: %s needs a source and a destination: %s", in.line, in.cmd, in.orig)
	}
	var out []string
	for _, s := range in.args[:len(in.args)-1] {
		if strings.Contains(s, "$") {
			t.Errorf("line %d: source %q uses a variable; this test cannot check it", in.line, s)
			continue
		}
		out = append(out, path.Clean(strings.TrimPrefix(s, "/")))
	}
	return out
}

func TestContextCopiesExist(t *testing.T) {
	root := repoRoot(t)
	cf := parse(t, root)
	pm := ignoreMatcher(t, root)
	copies := cf.contextCopies()
	if len(copies) == 0 {
		t.Fatal("no COPY from the build context: nothing for this test to check")
	}
	for _, in := range copies {
		for _, src := range copySources(t, in) {
			t.Run(src, func(t *testing.T) {
				if src == "." || strings.HasPrefix(src, "..") {
					t.Fatalf("line %d: copy the paths the image needs, not %q", in.line, src)
				}
				full := filepath.Join(root, filepath.FromSlash(src))
				fi, err := os.Stat(full)
				if err != nil {
					t.Fatalf("line %d: %s: %v", in.line, in.orig, err)
				}
				if excluded(t, pm, src) {
					t.Fatalf("line %d: %s is excluded by .containerignore", in.line, src)
				}
				if !fi.IsDir() {
					if strings.HasSuffix(src, ".sh") {
						// The builder runs it with its /bin/sh; check the syntax now.
						if out, err := exec.Command("sh", "-n", full).CombinedOutput(); err != nil {
							t.Errorf("sh -n %s: %v\n%s", src, err, out)
						}
					}
					return
				}
				kept := 0
				err = filepath.WalkDir(full, func(p string, d fs.DirEntry, err error) error {
					if err != nil || d.IsDir() {
						return err
					}
					rel, _ := filepath.Rel(root, p)
					if !excluded(t, pm, rel) {
						kept++
					}
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
				if kept == 0 {
					t.Errorf("line %d: every file under %s is excluded by .containerignore", in.line, src)
				}
			})
		}
	}
}

// goBuildRun is the builder stage's RUN that compiles mcbuild.
func goBuildRun(t *testing.T, cf containerfile) string {
	t.Helper()
	var found []string
	for _, in := range cf.instructions {
		if in.cmd == "run" && strings.Contains(strings.Join(in.args, " "), "go build") {
			found = append(found, strings.Join(in.args, " "))
		}
	}
	if len(found) != 1 {
		t.Fatalf("want exactly one RUN with `go build`, found %d", len(found))
	}
	return found[0]
}

var tagsFlag = regexp.MustCompile(`-tags[ =]"([^"]*)"`)

func buildTags(t *testing.T, run string) []string {
	t.Helper()
	m := tagsFlag.FindStringSubmatch(run)
	if m == nil {
		t.Fatalf("no -tags \"...\" in the go build: %s", run)
	}
	return strings.Fields(m[1])
}

// makefileTags reads `TAGS := ...` from the Makefile: the tags every build of
// mcbuild needs.
func makefileTags(t *testing.T, root string) []string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^TAGS\s*:?=\s*(.+)$`).FindSubmatch(data)
	if m == nil {
		t.Fatal("no TAGS := line in the Makefile")
	}
	return strings.Fields(string(m[1]))
}

func TestBuildMatchesMakefile(t *testing.T) {
	root := repoRoot(t)
	run := goBuildRun(t, parse(t, root))
	tags := buildTags(t, run)
	for _, tag := range makefileTags(t, root) {
		if !slices.Contains(tags, tag) {
			t.Errorf("the Makefile's build tag %q is missing from the Containerfile's go build (-tags %q)", tag, tags)
		}
	}
	// A static binary is what lets the runtime base be busybox (no glibc).
	for _, tc := range []struct{ what, want string }{
		{"cgo on (chroot isolation needs storage's cgo constructor)", "CGO_ENABLED=1"},
		{"static link", "-extldflags -static"},
		{"external linker", "-linkmode external"},
		{"pure-Go resolver (no NSS dlopen in a static binary)", "netgo"},
		{"pure-Go user lookup (no NSS dlopen in a static binary)", "osusergo"},
		{"the main package", "./cmd/mcbuild"},
	} {
		if !strings.Contains(run, tc.want) {
			t.Errorf("%s: %q not in the go build RUN", tc.what, tc.want)
		}
	}
	if strings.Contains(run, "CGO_ENABLED=0") {
		t.Error("CGO_ENABLED=0 in the go build: chroot isolation fails without cgo")
	}
}

// TestBinarySourcesInContext lists the module's packages mcbuild is compiled
// from (go list, with the Containerfile's tags) and checks that the
// Containerfile copies each one to the same place and .containerignore keeps
// every file the compiler reads.
func TestBinarySourcesInContext(t *testing.T) {
	root := repoRoot(t)
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command on PATH")
	}
	cf := parse(t, root)
	pm := ignoreMatcher(t, root)
	copied := map[string]bool{}
	for _, in := range cf.contextCopies() {
		dest := in.args[len(in.args)-1]
		for _, src := range copySources(t, in) {
			// Sources keep their layout: `COPY cmd/ cmd/` or `COPY go.mod go.sum ./`.
			if d := path.Clean(dest); d == src || d == "." {
				copied[src] = true
			}
		}
	}
	for _, f := range []string{"go.mod", "go.sum"} {
		if !copied[f] {
			t.Errorf("%s is not copied into the builder's working directory", f)
		}
	}

	cmd := exec.Command(goBin, "list", "-deps", "-json", "-tags", strings.Join(buildTags(t, goBuildRun(t, cf)), ","), "./cmd/mcbuild")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=1", "GOFLAGS=-mod=readonly")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	type pkg struct {
		ImportPath, Dir                                       string
		GoFiles, CgoFiles, CFiles, HFiles, SFiles, EmbedFiles []string
		Module                                                *struct{ Path string }
	}
	dec := json.NewDecoder(bytes.NewReader(out))
	own := 0
	for {
		var p pkg
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		if p.Module == nil || p.Module.Path != modulePath {
			continue
		}
		own++
		rel, err := filepath.Rel(root, p.Dir)
		if err != nil {
			t.Fatal(err)
		}
		rel = filepath.ToSlash(rel)
		covered := false
		for src := range copied {
			if rel == src || strings.HasPrefix(rel, src+"/") {
				covered = true
			}
		}
		if !covered {
			t.Errorf("package %s (%s) is compiled into mcbuild but no COPY brings it into the builder", p.ImportPath, rel)
			continue
		}
		files := slices.Concat(p.GoFiles, p.CgoFiles, p.CFiles, p.HFiles, p.SFiles, p.EmbedFiles)
		for _, f := range files {
			if excluded(t, pm, path.Join(rel, f)) {
				t.Errorf("%s is compiled into mcbuild but .containerignore excludes it", path.Join(rel, f))
			}
		}
	}
	if own < 2 {
		t.Fatalf("go list found %d packages of %s; expected cmd/mcbuild and the pkg/ tree", own, modulePath)
	}
}

// containersFile finds where the step image's /etc/containers/NAME comes
// from: a context COPY into /etc/containers/.
func containersFile(t *testing.T, root string, cf containerfile, name string) string {
	t.Helper()
	for _, in := range cf.contextCopies() {
		dest := in.args[len(in.args)-1]
		for _, src := range copySources(t, in) {
			var candidate string
			switch {
			case path.Clean(dest) == "/etc/containers" && strings.HasSuffix(dest, "/"):
				candidate = path.Join(src, name) // a directory's contents, or a file keeping its name
				if path.Base(src) == name {
					candidate = src
				}
			case path.Clean(dest) == path.Join("/etc/containers", name):
				candidate = src
			default:
				continue
			}
			full := filepath.Join(root, filepath.FromSlash(candidate))
			if fi, err := os.Stat(full); err == nil && !fi.IsDir() {
				return full
			}
		}
	}
	t.Fatalf("no COPY puts %s into /etc/containers/", name)
	return ""
}

func TestContainersConfiguration(t *testing.T) {
	root := repoRoot(t)
	cf := parse(t, root)
	for _, tc := range []struct {
		name  string
		check func(t *testing.T, file string)
	}{
		{"policy.json", func(t *testing.T, file string) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			policy, err := signature.NewPolicyFromBytes(data)
			if err != nil {
				t.Fatalf("signature policy: %v", err)
			}
			// What containers-common ships; README "Step image" says why.
			if len(policy.Default) != 1 || policy.Default[0] == nil {
				t.Fatalf("default requirements: %v", policy.Default)
			}
			if b, _ := json.Marshal(policy.Default[0]); !strings.Contains(string(b), `"insecureAcceptAnything"`) {
				t.Errorf("default requirement %s, want insecureAcceptAnything", b)
			}
		}},
		{"registries.conf", func(t *testing.T, file string) {
			sys := &types.SystemContext{SystemRegistriesConfPath: file, SystemRegistriesConfDirPath: t.TempDir()}
			search, err := sysregistriesv2.UnqualifiedSearchRegistries(sys)
			if err != nil {
				t.Fatalf("registries.conf: %v", err)
			}
			if !slices.Equal(search, []string{"docker.io"}) {
				t.Errorf("unqualified-search-registries = %q, want [docker.io] (one registry: no ambiguity)", search)
			}
			mode, err := sysregistriesv2.GetShortNameMode(sys)
			if err != nil {
				t.Fatal(err)
			}
			if mode != types.ShortNameModeEnforcing {
				t.Errorf("short-name-mode = %v, want enforcing", mode)
			}
		}},
		{"storage.conf", func(t *testing.T, file string) {
			t.Setenv("CONTAINERS_STORAGE_CONF", file)
			t.Setenv("STORAGE_DRIVER", "")
			opts, err := storagetypes.LoadStoreOptions(storagetypes.LoadOptions{})
			if err != nil {
				t.Fatalf("storage.conf: %v", err)
			}
			if opts.GraphDriverName != "vfs" {
				t.Errorf("driver = %q, want vfs", opts.GraphDriverName)
			}
			if os.Geteuid() == 0 { // a rootless load substitutes per-user paths
				if opts.GraphRoot != "/var/lib/containers/storage" || opts.RunRoot != "/run/containers/storage" {
					t.Errorf("graphroot %q, runroot %q; want /var/lib/containers/storage and /run/containers/storage (the volumes README \"Step image\" names)", opts.GraphRoot, opts.RunRoot)
				}
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.check(t, containersFile(t, root, cf, tc.name))
		})
	}
}
