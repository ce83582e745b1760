package results

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// entries lists dir's entries.
func entries(t *testing.T, dir string) []string {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, de := range des {
		out = append(out, de.Name())
	}
	return out
}

// wantError fails the test unless err mentions every one of parts.
func wantError(t *testing.T, err error, call string, parts []string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s = nil, want an error", call)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("error %q does not mention %q", err, p)
		}
	}
}

// TestStagedCommitPoint: staged results and files are complete temporary
// files until Commit, which only renames them; Discard leaves nothing.
func TestStagedCommitPoint(t *testing.T) {
	dir := t.TempDir()
	summary := filepath.Join(dir, "summary.json")
	p, err := Plan(set("localhost/app", 1, 2), DefaultBudget)
	if err != nil {
		t.Fatal(err)
	}
	var st Staged
	if err := p.Stage(&st, dir); err != nil {
		t.Fatal(err)
	}
	if err := st.File(summary, "summary", []byte("{}\n")); err != nil {
		t.Fatal(err)
	}
	staged := entries(t, dir)
	if len(staged) != 6 {
		t.Fatalf("staged %q, want 6 temporary files", staged)
	}
	for _, name := range staged {
		if !strings.HasPrefix(name, ".") || !strings.Contains(name, ".tmp-") {
			t.Errorf("%s is in place before Commit", name)
		}
	}
	if err := st.Commit(); err != nil {
		t.Fatal(err)
	}
	st.Discard() // after Commit: nothing to do
	want := []string{Images, ImageDigest, ImageRef, ImageURL, SubjectsRef, "summary.json"}
	if got := entries(t, dir); !slices.Equal(got, want) {
		t.Errorf("after Commit: %q, want %q", got, want)
	}

	var again Staged
	fresh := t.TempDir()
	if err := p.Stage(&again, fresh); err != nil {
		t.Fatal(err)
	}
	again.Discard()
	if got := entries(t, fresh); len(got) != 0 {
		t.Errorf("Discard left %q", got)
	}
}

// TestStageRefusesDirectories: a directory where a result or the summary
// goes fails the staging (before any commit point), and nothing is left;
// IMAGES too when it is written empty.
func TestStageRefusesDirectories(t *testing.T) {
	fits, empty := set("localhost/app", 1, 2), set(konfluxRepo, 20, 2)
	for _, tc := range []struct {
		test, name  string
		set         Set
		emptyImages bool
	}{
		{ImageDigest, ImageDigest, fits, false},
		{Images, Images, fits, false},
		{"summary.json", "summary.json", fits, false},
		{Images + " written empty", Images, empty, true},
	} {
		name := tc.name
		t.Run(tc.test, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.Mkdir(filepath.Join(dir, name), 0o755); err != nil {
				t.Fatal(err)
			}
			p, err := Plan(tc.set, DefaultBudget)
			if err != nil {
				t.Fatal(err)
			}
			if v, ok := p.values[Images]; !ok || (v == "") != tc.emptyImages {
				t.Fatalf("planned IMAGES %q (%v), want it empty: %v", v, ok, tc.emptyImages)
			}
			var st Staged
			defer st.Discard()
			err = p.Stage(&st, dir)
			if err == nil {
				err = st.File(filepath.Join(dir, "summary.json"), "summary", []byte("{}"))
			}
			if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, name)+" is a directory") {
				t.Fatalf("staging = %v, want %s refused as a directory", err, name)
			}
			st.Discard()
			if got := entries(t, dir); !slices.Equal(got, []string{name}) {
				t.Errorf("left %q", got)
			}
		})
	}
}

// TestStageFullFilesystem: on a full filesystem the staging fails with
// ENOSPC and leaves no temporary file.
func TestStageFullFilesystem(t *testing.T) {
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Skipf("mounting a tmpfs needs root: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", mnt).Run() })
	if err := os.WriteFile(filepath.Join(mnt, "filler"), make([]byte, 1<<20), 0o644); err == nil {
		t.Fatal("filled a 64k tmpfs with 1 MiB")
	}
	if err := CheckWritable(mnt); err != nil {
		t.Fatalf("CheckWritable on a full filesystem: %v (creating an empty file still works)", err)
	}
	p, err := Plan(set("localhost/app", 1, 2), DefaultBudget)
	if err != nil {
		t.Fatal(err)
	}
	var st Staged
	err = p.Stage(&st, mnt)
	st.Discard()
	if err == nil || !strings.Contains(err.Error(), "no space left on device") {
		t.Fatalf("staging on a full filesystem = %v, want ENOSPC", err)
	}
	if got := entries(t, mnt); !slices.Equal(got, []string{"filler"}) {
		t.Errorf("left %q", got)
	}
}

func TestCheckFile(t *testing.T) {
	base := t.TempDir()
	file := filepath.Join(base, "regular-file")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, path string
		errParts   []string
	}{
		{"new file", filepath.Join(base, "s.json"), nil},
		{"existing file", file, nil},
		{"missing directory", filepath.Join(base, "no", "dir", "s.json"), []string{filepath.Join(base, "no", "dir"), "does not exist"}},
		{"a directory", base, []string{base, "is a directory"}},
		{"under a regular file", filepath.Join(file, "s.json"), []string{file, "is not a directory"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckFile(tc.path)
			if len(tc.errParts) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			wantError(t, err, "CheckFile("+tc.path+")", tc.errParts)
		})
	}
	if _, err := os.Stat(filepath.Join(base, "no")); err == nil {
		t.Error("CheckFile created the missing directory")
	}
}

// TestCheckBudgetFor: the budget IMAGE_URL, IMAGE_DIGEST, IMAGE_REF,
// SUBJECTS_REF and an empty IMAGES need is known from the destination:
// exactly that much plans (IMAGES written empty), a byte less is refused up
// front as Plan would refuse it after the push.
func TestCheckBudgetFor(t *testing.T) {
	s := set(konfluxRepo, 2, 2)
	need := EncodedSize(map[string]string{ImageURL: s.ImageURL, ImageDigest: s.ImageDigest, ImageRef: s.ImageRef, SubjectsRef: s.SubjectsRef, Images: ""})
	if err := CheckBudgetFor(need, s.ImageURL, konfluxRepo, false); err != nil {
		t.Errorf("CheckBudgetFor(%d): %v", need, err)
	}
	if p, err := Plan(s, need); err != nil {
		t.Errorf("Plan(%d): %v", need, err)
	} else if v, ok := p.values[Images]; !ok || v != "" || len(p.Warnings) != 1 {
		t.Errorf("Plan(%d): IMAGES %q (%v), warnings %q; want it written empty with a warning", need, v, ok, p.Warnings)
	}
	err := CheckBudgetFor(need-1, s.ImageURL, konfluxRepo, false)
	if err == nil || !strings.Contains(err.Error(), "want at least "+strconv.Itoa(need)) {
		t.Errorf("CheckBudgetFor(%d) = %v, want at least %d", need-1, err, need)
	}
	if _, err := Plan(s, need-1); err == nil {
		t.Errorf("Plan(%d) = nil; CheckBudgetFor and Plan disagree", need-1)
	}
	if err := CheckBudgetFor(0, s.ImageURL, konfluxRepo, false); err == nil {
		t.Error("CheckBudgetFor(0) = nil")
	}
}
