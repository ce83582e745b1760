package sourceartifact

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mcbuild/mcbuild/internal/testfixture"
)

type entry = testfixture.TarEntry

var (
	file     = testfixture.TarFile
	dir      = testfixture.TarDir
	symlink  = testfixture.TarSymlink
	hardlink = testfixture.TarHardlink
	archive  = testfixture.TarGz
	gz       = testfixture.Gzip
	mtime    = testfixture.TarTime
)

// extractFresh extracts into a new empty directory inside a parent of its
// own, and checks nothing appeared in the parent but that directory.
func extractFresh(t testing.TB, data []byte, lim Limits) (string, Stats, error) {
	t.Helper()
	parent := t.TempDir()
	dest := filepath.Join(parent, "source")
	if err := prepare(dest); err != nil {
		t.Fatal(err)
	}
	st, err := Extract(bytes.NewReader(data), dest, lim)
	if names := testfixture.DirNames(t, parent); len(names) != 1 || names[0] != "source" {
		t.Fatalf("the parent directory holds %q: something was written outside the target", names)
	}
	return dest, st, err
}

// TestExtract: a source tree comes back with its files, modes, times,
// directories, links inside the tree and hard links.
func TestExtract(t *testing.T) {
	x := entry{Name: "bin/run", Body: "#!/bin/sh\n", Type: tar.TypeReg, Mode: 0o755}
	ro := entry{Name: "ro", Type: tar.TypeDir, Mode: 0o555}
	data := archive(t, dir("./"), file("./Containerfile", "FROM scratch\n"), dir("./src/"), file("./src/main.go", "package main\n"),
		x, symlink("./lib", "src"), symlink("./src/up", "../Containerfile"), hardlink("./src/copy.go", "src/main.go"),
		file("deep/er/file", "implicit parents"), ro, file("ro/inside", "written before the mode"))
	dest, st, err := extractFresh(t, data, DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	want := Stats{Files: 5, Dirs: 2, Symlinks: 2, Hardlinks: 1, Bytes: int64(len("FROM scratch\n") + len("package main\n") + len("#!/bin/sh\n") + len("implicit parents") + len("written before the mode"))}
	if st != want {
		t.Errorf("stats %+v, want %+v", st, want)
	}
	for name, body := range map[string]string{"Containerfile": "FROM scratch\n", "lib/main.go": "package main\n", "src/up": "FROM scratch\n", "src/copy.go": "package main\n", "deep/er/file": "implicit parents"} {
		if b, err := os.ReadFile(filepath.Join(dest, name)); err != nil || string(b) != body {
			t.Errorf("%s: %q, %v; want %q", name, b, err, body)
		}
	}
	for name, mode := range map[string]os.FileMode{"bin/run": 0o755, "Containerfile": 0o644, "ro": 0o555 | os.ModeDir, "deep": 0o755 | os.ModeDir} {
		fi, err := os.Lstat(filepath.Join(dest, name))
		if err != nil || fi.Mode() != mode {
			t.Errorf("%s: mode %v (%v), want %v", name, fi.Mode(), err, mode)
		}
		if name != "deep" && !fi.ModTime().Equal(mtime) {
			t.Errorf("%s: mtime %v, want %v", name, fi.ModTime(), mtime)
		}
	}
}

// TestExtractRefusesEscapes: the malicious archives docs/reliability.md
// lists. Each is refused with ErrUnsafe naming the entry, nothing lands
// outside the target, and the target is left empty.
func TestExtractRefusesEscapes(t *testing.T) {
	for _, tc := range []struct {
		name    string
		entries []entry
		want    string
	}{
		{"dot-dot name", []entry{file("ok", "x"), file("../evil", "x")}, `"../evil": a ".." component`},
		{"dot-dot inside a name", []entry{file("a/../../evil", "x")}, `".." component`},
		{"absolute name", []entry{file("/tmp/evil", "x")}, "absolute"},
		{"symlink to an absolute path", []entry{symlink("etc", "/etc")}, `absolute path "/etc"`},
		{"symlink out of the tree", []entry{dir("a"), symlink("a/l", "../../outside")}, "outside the target directory"},
		{"write through a symlink", []entry{dir("sub"), symlink("l", "sub"), file("l/f", "x")}, "written through the symlink l"},
		{"symlink chain out of the tree", []entry{symlink("a", "."), symlink("b", "a/..")}, "through other symlinks"},
		{"symlink replacing a directory", []entry{dir("d"), file("d/f", "x"), symlink("d", "/")}, "absolute path"},
		{"inside symlink replacing a directory", []entry{dir("d"), dir("e"), symlink("d", "e")}, "would replace a directory"},
		{"hard link out of the tree", []entry{hardlink("passwd", "../../etc/passwd")}, "a hard link"},
		{"absolute hard link", []entry{hardlink("passwd", "/etc/passwd")}, "a hard link"},
		{"hard link to a symlink", []entry{dir("a"), symlink("a/l", "../x"), hardlink("l2", "a/l")}, "not a file unpacked before it"},
		{"hard link through a symlink", []entry{dir("sub"), file("sub/f", "x"), symlink("l", "sub"), hardlink("h", "l/f")}, "through the symlink l"},
		{"device", []entry{{Name: "null", Type: tar.TypeChar, Mode: 0o666}}, "not a file, directory or link"},
		{"fifo", []entry{{Name: "fifo", Type: tar.TypeFifo, Mode: 0o666}}, "not a file, directory or link"},
		{"symlink loop", []entry{symlink("l1", "l2"), symlink("l2", "l1")}, "a loop"},
		{"file named like the target", []entry{file(".", "x")}, "names the target directory itself"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dest, _, err := extractFresh(t, archive(t, tc.entries...), DefaultLimits)
			if !errors.Is(err, ErrUnsafe) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("%v, want ErrUnsafe mentioning %q", err, tc.want)
			}
			if names := testfixture.DirNames(t, dest); len(names) != 0 {
				t.Errorf("the target holds %q after the refusal", names)
			}
		})
	}
}

// TestExtractLimits: too many entries, too many bytes and a file that is
// not gzip are refused, leaving the target empty.
func TestExtractLimits(t *testing.T) {
	big := file("big", strings.Repeat("x", 2048))
	for _, tc := range []struct {
		name string
		data []byte
		lim  Limits
		want string
	}{
		{"entries", archive(t, file("a", "1"), file("b", "2"), file("c", "3")), Limits{Bytes: 1 << 20, Entries: 2}, "more than 2 entries"},
		{"bytes", archive(t, file("a", "1"), big), Limits{Bytes: 1024, Entries: 10}, "more than 1024 bytes"},
		{"not gzip", []byte("plain text"), DefaultLimits, "not a gzip-compressed archive"},
		{"not tar", gz(t, []byte(strings.Repeat("not a tar header ", 64))), DefaultLimits, "reading the archive"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dest, _, err := extractFresh(t, tc.data, tc.lim)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("%v, want an error mentioning %q", err, tc.want)
			}
			if names := testfixture.DirNames(t, dest); len(names) != 0 {
				t.Errorf("the target holds %q", names)
			}
		})
	}
}

// TestPrepare: the target is created if missing, and must otherwise be an
// empty directory (not a symlink to one).
func TestPrepare(t *testing.T) {
	parent := t.TempDir()
	if err := prepare(filepath.Join(parent, "new", "source")); err != nil {
		t.Errorf("missing target: %v", err)
	}
	full := filepath.Join(parent, "full")
	if err := os.MkdirAll(filepath.Join(full, "stale"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := prepare(full); err == nil || !strings.Contains(err.Error(), "not empty (it holds stale)") {
		t.Errorf("non-empty target: %v", err)
	}
	link := filepath.Join(parent, "link")
	if err := os.Symlink(filepath.Join(parent, "new"), link); err != nil {
		t.Fatal(err)
	}
	if err := prepare(link); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("symlink target: %v", err)
	}
}

// FuzzExtract: whatever tar the input is, nothing is written outside the
// target, and what an accepted archive leaves has no symlink leading out.
func FuzzExtract(f *testing.F) {
	for _, es := range [][]entry{
		{file("a", "x"), dir("d"), symlink("d/l", "../a"), hardlink("h", "a")},
		{symlink("a", "."), symlink("b", "a/..")},
		{dir("sub"), symlink("l", "sub"), file("l/f", "x")},
		{file("../evil", "x")},
	} {
		var raw bytes.Buffer
		zr, _ := gzip.NewReader(bytes.NewReader(archive(f, es...)))
		_, _ = raw.ReadFrom(zr)
		f.Add(raw.Bytes())
	}
	f.Fuzz(func(t *testing.T, tarBytes []byte) {
		dest, _, err := extractFresh(t, gz(t, tarBytes), Limits{Bytes: 1 << 20, Entries: 64})
		if err != nil {
			if names := testfixture.DirNames(t, dest); len(names) != 0 {
				t.Fatalf("refused (%v) but the target holds %q", err, names)
			}
			return
		}
		root, _ := filepath.EvalSymlinks(dest)
		_ = filepath.WalkDir(dest, func(p string, d os.DirEntry, err error) error {
			if err != nil || d.Type()&os.ModeSymlink == 0 {
				return nil
			}
			if r, err := filepath.EvalSymlinks(p); err == nil && r != root && !strings.HasPrefix(r, root+"/") {
				t.Fatalf("symlink %s leads to %s, outside %s", p, r, root)
			}
			return nil
		})
	})
}
