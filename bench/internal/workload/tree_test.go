package workload

import (
	"archive/tar"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// source makes a small tree to copy: top-level entries a (dir, 300 B),
// b.txt (100 B), c (dir, 50 B, with a symbolic link), d.bin (500 B).
func source(t *testing.T) string {
	t.Helper()
	src := t.TempDir()
	files := map[string]int{"a/one": 100, "a/sub/two": 200, "b.txt": 100, "c/three": 50, "d.bin": 500}
	for p, n := range files {
		path := filepath.Join(src, p)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(strings.Repeat("x", n)), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("three", filepath.Join(src, "c", "link")); err != nil {
		t.Fatal(err)
	}
	return src
}

func tarEntries(t *testing.T, path string) map[string]*tar.Header {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]*tar.Header{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out[h.Name] = h
	}
}

func TestTree(t *testing.T) {
	src := source(t)
	// A 420 B budget takes a (300) and b.txt (100); c (50) no longer
	// fits after them and d.bin (500) never does.
	spec := Spec{Name: "t", Layers: []Layer{
		{Dir: "all", Kind: Tree, Source: src, Dest: "/"},
		{Dir: "some", Kind: Tree, Source: src, Dest: "/opt/some", Budget: 420},
	}}
	a, err := Generate(filepath.Join(t.TempDir(), "a"), spec)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Ensure(t.TempDir(), spec, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range a.Tars {
		if a.TarSHA256[i] != b.TarSHA256[i] {
			t.Errorf("layer %d differs between two generations", i)
		}
	}
	if a.Fingerprint == "" || a.Fingerprint != b.Fingerprint {
		t.Errorf("fingerprints %q, %q", a.Fingerprint, b.Fingerprint)
	}
	cf, _ := os.ReadFile(a.Containerfile())
	if want := "FROM scratch\nCOPY all/ /\nCOPY some/ /opt/some/\n"; !strings.HasSuffix(string(cf), want) {
		t.Errorf("Containerfile:\n%s\nwant it to end with:\n%s", cf, want)
	}

	all := tarEntries(t, filepath.Join(a.Dir, a.Tars[0]))
	for _, name := range []string{"a/", "a/one", "a/sub/", "a/sub/two", "b.txt", "c/", "c/three", "c/link", "d.bin"} {
		h, ok := all[name]
		if !ok {
			t.Errorf("tar lacks %s (has %v)", name, keys(all))
			continue
		}
		if !h.ModTime.Equal(mtime) || h.Uid != 0 {
			t.Errorf("%s: mtime %v, uid %d", name, h.ModTime, h.Uid)
		}
	}
	if h := all["c/link"]; h == nil || h.Typeflag != tar.TypeSymlink || h.Linkname != "three" {
		t.Errorf("c/link: %+v", h)
	}
	if h := all["a/one"]; h == nil || h.Mode != 0o640 || h.Size != 100 {
		t.Errorf("a/one: %+v", h)
	}
	if len(all) != 9 {
		t.Errorf("tar has %d entries: %v", len(all), keys(all))
	}

	some := tarEntries(t, filepath.Join(a.Dir, a.Tars[1]))
	for _, name := range []string{"opt/", "opt/some/", "opt/some/a/sub/two", "opt/some/b.txt"} {
		if _, ok := some[name]; !ok {
			t.Errorf("budgeted tar lacks %s (has %v)", name, keys(some))
		}
	}
	for _, name := range []string{"opt/some/c/", "opt/some/d.bin"} {
		if _, ok := some[name]; ok {
			t.Errorf("budgeted tar has %s, over the budget", name)
		}
	}

	// The copies in the context: same bytes, fixed times, the link kept.
	if fi, err := os.Lstat(filepath.Join(a.Context, "all", "c", "link")); err != nil || fi.Mode()&os.ModeSymlink == 0 || !fi.ModTime().Equal(mtime) {
		t.Errorf("context link: %v %v", fi, err)
	}
	for _, p := range []string{"all", "all/a", "all/a/sub/two", "some/b.txt"} {
		if fi, err := os.Stat(filepath.Join(a.Context, p)); err != nil || !fi.ModTime().Equal(mtime) {
			t.Errorf("context %s: %v %v", p, fi, err)
		}
	}
	if _, err := os.Stat(filepath.Join(a.Context, "some", "d.bin")); !os.IsNotExist(err) {
		t.Errorf("context has d.bin, over the budget: %v", err)
	}

	// A change in the source regenerates the cached workload.
	if err := os.WriteFile(filepath.Join(src, "b.txt"), []byte("changed"), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := Ensure(filepath.Dir(b.Dir), spec, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Fingerprint == b.Fingerprint || c.TarSHA256[0] == b.TarSHA256[0] {
		t.Error("the source changed, the cached workload was kept")
	}
}

func TestTreeMinBytes(t *testing.T) {
	spec := Spec{Name: "t", MinBytes: 1 << 20, Layers: []Layer{{Dir: "all", Kind: Tree, Source: source(t), Dest: "/"}}}
	if _, err := Generate(filepath.Join(t.TempDir(), "a"), spec); err == nil || !strings.Contains(err.Error(), "want at least 1.0 MiB") {
		t.Errorf("a workload under MinBytes: %v", err)
	}
}

func TestBaseSpec(t *testing.T) {
	s := Base("/go", "/rootfs/amd64")
	if s.Name != BaseName || s.MinBytes != 150*MiB || len(s.Layers) != 4 {
		t.Fatalf("Base: %+v", s)
	}
	if l := s.Layers[0]; l.Source != "/rootfs/amd64" || l.Dest != "/" {
		t.Errorf("first layer %+v, want the busybox root filesystem at /", l)
	}
	if l := s.Layers[1]; l.Source != "/go/src" || l.Dest != "/usr/local/go/src" || l.Budget != 0 {
		t.Errorf("second layer %+v, want all of the Go source tree", l)
	}
}

func TestApp(t *testing.T) {
	dir := t.TempDir()
	cf, err := App(filepath.Join(dir, "a"), "reg/base:v1", 1)
	if err != nil {
		t.Fatal(err)
	}
	text, _ := os.ReadFile(cf)
	if !strings.Contains(string(text), "FROM reg/base:v1\nRUN ") || !strings.HasSuffix(string(text), "COPY payload/ /app/payload/\n") {
		t.Errorf("Containerfile:\n%s", text)
	}
	payload := func(sub string) []byte {
		b, err := os.ReadFile(filepath.Join(dir, sub, "payload", "payload.bin"))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	if _, err := App(filepath.Join(dir, "b"), "reg/base:v1", 1); err != nil {
		t.Fatal(err)
	}
	if _, err := App(filepath.Join(dir, "c"), "reg/base:v1", 2); err != nil {
		t.Fatal(err)
	}
	one, again, two := payload("a"), payload("b"), payload("c")
	if len(one) != AppPayloadBytes || string(one) != string(again) || string(one) == string(two) {
		t.Errorf("payloads: %d B, same seed equal %v, other seed equal %v", len(one), string(one) == string(again), string(one) == string(two))
	}
	if fi, err := os.Stat(filepath.Join(dir, "a", "payload", "payload.bin")); err != nil || !fi.ModTime().Equal(mtime) {
		t.Errorf("payload: %v %v", fi, err)
	}
}

func keys(m map[string]*tar.Header) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
