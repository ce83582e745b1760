package results

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// hexDigest returns a distinct, realistic sha256 digest.
func hexDigest(n int) string {
	return fmt.Sprintf("sha256:%064x", n+1)
}

// konfluxRepo is a realistic long Konflux-style repository name.
const konfluxRepo = "quay.io/redhat-user-workloads/my-tenant-namespace/my-application/my-component-name"

// set builds the results of a build of n platforms in formats formats.
func set(repo string, platforms, formats int) Set {
	idx := hexDigest(0)
	s := Set{
		ImageURL:    repo + ":v1.2.3",
		ImageDigest: idx,
		ImageRef:    repo + ":v1.2.3@" + idx,
		Images:      []string{repo + "@" + idx},
		SubjectsRef: repo + "@" + hexDigest(9999),
	}
	for i := 1; i <= platforms*formats; i++ {
		s.Images = append(s.Images, repo+"@"+hexDigest(i))
	}
	return s
}

// readResults returns every result file in dir (ignoring nothing: a stray
// temporary file would show up and fail the comparison).
func readResults(t *testing.T, dir string) map[string]string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		got[e.Name()] = string(b)
	}
	return got
}

func TestWrite(t *testing.T) {
	one := set("127.0.0.1:5000/ns/app", 1, 2)
	many := set(konfluxRepo, 20, 2)
	allOne := map[string]string{
		ImageURL:    "127.0.0.1:5000/ns/app:v1.2.3",
		ImageDigest: hexDigest(0),
		ImageRef:    "127.0.0.1:5000/ns/app:v1.2.3@" + hexDigest(0),
		Images: "127.0.0.1:5000/ns/app@" + hexDigest(0) + ",127.0.0.1:5000/ns/app@" + hexDigest(1) +
			",127.0.0.1:5000/ns/app@" + hexDigest(2),
		SubjectsRef: "127.0.0.1:5000/ns/app@" + hexDigest(9999),
	}
	// emptyImages is m with IMAGES written empty, as when the digests do
	// not fit: present (a Pipeline result naming it must resolve), counted
	// in the budget.
	emptyImages := func(m map[string]string) map[string]string {
		out := maps.Clone(m)
		out[Images] = ""
		return out
	}
	// withoutImages is m without IMAGES: what the results took when IMAGES
	// was left out, less than an empty IMAGES takes.
	withoutImages := func(m map[string]string) map[string]string {
		out := maps.Clone(m)
		delete(out, Images)
		return out
	}
	manyAll := map[string]string{
		ImageURL: many.ImageURL, ImageDigest: many.ImageDigest, ImageRef: many.ImageRef,
		SubjectsRef: many.SubjectsRef, Images: strings.Join(many.Images, ","),
	}
	exact := EncodedSize(allOne)
	floor := EncodedSize(emptyImages(allOne))
	if without := EncodedSize(withoutImages(allOne)); floor != without+len(`{"key":"IMAGES","value":"","type":1},`) {
		t.Fatalf("an empty IMAGES takes %d bytes over the other four, want the entry's length", floor-without)
	}

	tests := []struct {
		name      string
		set       Set
		budget    int
		want      map[string]string
		warnParts []string
		errParts  []string
	}{
		{name: "one platform, default budget", set: one, budget: DefaultBudget, want: allOne},
		{name: "budget 0 means default", set: one, budget: 0, want: allOne},
		{name: "budget exactly the size", set: one, budget: exact, want: allOne},
		{
			name: "budget one byte short empties IMAGES", set: one, budget: exact - 1, want: emptyImages(allOne),
			warnParts: []string{
				"IMAGES written empty", fmt.Sprintf("all results would take %d bytes of the %d-byte termination message budget", exact, exact-1),
				"SUBJECTS_REF=127.0.0.1:5000/ns/app@" + hexDigest(9999),
			},
		},
		{
			name: "budget exactly the size with an empty IMAGES", set: one, budget: floor, want: emptyImages(allOne),
			warnParts: []string{"IMAGES written empty", "SUBJECTS_REF="},
		},
		{
			name: "20 platforms x 2 formats, long repository", set: many, budget: DefaultBudget, want: emptyImages(manyAll),
			warnParts: []string{
				"IMAGES written empty", fmt.Sprintf("all results would take %d bytes of the 4096-byte", EncodedSize(manyAll)),
				"SUBJECTS_REF=" + many.SubjectsRef,
			},
		},
		{
			name: "20 platforms x 2 formats, large custom budget", set: many, budget: 12288, want: manyAll,
		},
		{
			name: "budget too small even for an empty IMAGES", set: one, budget: floor - 1,
			errParts: []string{"results do not fit", fmt.Sprintf("and an empty IMAGES alone take %d bytes", floor), "nothing written"},
		},
		{
			// The empty entry counts: what the other four take is not enough.
			name: "budget only what IMAGES left out would take", set: one, budget: EncodedSize(withoutImages(allOne)),
			errParts: []string{"results do not fit", fmt.Sprintf("and an empty IMAGES alone take %d bytes", floor), "nothing written"},
		},
		{
			name: "IMAGES does not fit and no subjects artifact", budget: DefaultBudget,
			set:      func() Set { s := many; s.SubjectsRef = ""; return s }(),
			errParts: []string{"IMAGES does not fit", "no SUBJECTS_REF", "nothing written"},
		},
		{name: "negative budget", set: one, budget: -1, errParts: []string{"results budget -1", "positive"}},
		{
			name: "empty digest", budget: DefaultBudget,
			set:      func() Set { s := one; s.ImageDigest = ""; return s }(),
			errParts: []string{"IMAGE_DIGEST is empty"},
		},
		{
			name: "comma inside an image", budget: DefaultBudget,
			set:      func() Set { s := one; s.Images = []string{"a@x,b@y"}; return s }(),
			errParts: []string{`IMAGES entry 1 "a@x,b@y"`, "without commas"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			warnings, err := Write(dir, tc.set, tc.budget)
			if len(tc.errParts) > 0 {
				if err == nil {
					t.Fatalf("Write succeeded, want error; warnings %q", warnings)
				}
				for _, p := range tc.errParts {
					if !strings.Contains(err.Error(), p) {
						t.Errorf("error %q does not mention %q", err, p)
					}
				}
				if got := readResults(t, dir); len(got) != 0 {
					t.Errorf("failed Write left files behind: %v", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("Write: %v", err)
			}
			got := readResults(t, dir)
			if !mapsEqual(got, tc.want) {
				t.Errorf("files written:\n%v\nwant:\n%v", got, tc.want)
			}
			for name, v := range got {
				if strings.HasSuffix(v, "\n") {
					t.Errorf("result %s ends in a newline", name)
				}
			}
			// The budget check must agree with what is on disk.
			budget := tc.budget
			if budget == 0 {
				budget = DefaultBudget
			}
			if size := EncodedSize(got); size > budget {
				t.Errorf("written results encode to %d bytes, over the %d budget", size, budget)
			}
			if len(tc.warnParts) == 0 {
				if len(warnings) != 0 {
					t.Errorf("unexpected warnings %q", warnings)
				}
				return
			}
			if len(warnings) != 1 {
				t.Fatalf("warnings = %q, want exactly one", warnings)
			}
			for _, p := range tc.warnParts {
				if !strings.Contains(warnings[0], p) {
					t.Errorf("warning %q does not mention %q", warnings[0], p)
				}
			}
		})
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func TestWriteReplacesStaleResults(t *testing.T) {
	dir := t.TempDir()
	if _, err := Write(dir, set("localhost/app", 1, 2), DefaultBudget); err != nil {
		t.Fatal(err)
	}
	if _, ok := readResults(t, dir)[Images]; !ok {
		t.Fatal("first run did not write IMAGES")
	}
	// A second run whose digests do not fit replaces the first run's IMAGES
	// with an empty one (no stale digests are read), and overwrites the
	// other results.
	many := set(konfluxRepo, 20, 2)
	if _, err := Write(dir, many, DefaultBudget); err != nil {
		t.Fatal(err)
	}
	got := readResults(t, dir)
	if v, ok := got[Images]; !ok || v != "" {
		t.Errorf("IMAGES = %q (written %v), want the first run's replaced by an empty one", v, ok)
	}
	if got[ImageURL] != many.ImageURL || got[SubjectsRef] != many.SubjectsRef {
		t.Errorf("results not replaced: %v", got)
	}
}

func TestWriteEmptyDirDisabled(t *testing.T) {
	wd := t.TempDir()
	t.Chdir(wd)
	warnings, err := Write("", set(konfluxRepo, 20, 2), DefaultBudget)
	if err != nil || warnings != nil {
		t.Fatalf("Write(\"\") = %q, %v; want nothing", warnings, err)
	}
	if got := readResults(t, wd); len(got) != 0 {
		t.Errorf("Write(\"\") wrote %v", got)
	}
}

func TestWriteFileMode(t *testing.T) {
	dir := t.TempDir()
	if _, err := Write(dir, set("localhost/app", 1, 1), DefaultBudget); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{ImageURL, ImageDigest, ImageRef, Images, SubjectsRef} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm()&0o044 != 0o044 {
			t.Errorf("%s has mode %v; other steps (other users) must be able to read it", name, fi.Mode())
		}
	}
}

func TestCheckWritable(t *testing.T) {
	base := t.TempDir()
	file := filepath.Join(base, "regular-file")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	withDir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(withDir, ImageRef), 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		dir      string
		errParts []string
	}{
		{name: "disabled", dir: ""},
		{name: "existing", dir: base},
		{name: "created", dir: filepath.Join(base, "a", "b")},
		{name: "under a regular file", dir: filepath.Join(file, "results"), errParts: []string{`results dir "` + filepath.Join(file, "results") + `"`, "cannot be created"}},
		{name: "is a regular file", dir: file, errParts: []string{`results dir "` + file + `"`}},
		{name: "a result's name is a directory", dir: withDir, errParts: []string{`results dir "` + withDir + `"`, "IMAGE_REF is a directory"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckWritable(tc.dir)
			if len(tc.errParts) == 0 {
				if err != nil {
					t.Fatalf("CheckWritable(%q): %v", tc.dir, err)
				}
				if tc.dir != "" {
					if got := readResults(t, tc.dir); len(got) != 0 && tc.dir != base {
						t.Errorf("check left files: %v", got)
					}
					if _, err := os.Stat(filepath.Join(tc.dir)); err != nil {
						t.Errorf("dir not created: %v", err)
					}
				}
				return
			}
			wantError(t, err, "CheckWritable("+tc.dir+")", tc.errParts)
			// Write reports the same problem.
			if _, err := Write(tc.dir, set("localhost/app", 1, 1), DefaultBudget); err == nil {
				t.Errorf("Write(%q) = nil, want error", tc.dir)
			}
		})
	}
}

func TestCheckWritableLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	if err := CheckWritable(dir); err != nil {
		t.Fatal(err)
	}
	if got := readResults(t, dir); len(got) != 0 {
		t.Errorf("CheckWritable left %v", got)
	}
}

func TestCheckWritableReadOnly(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root ignores directory permissions")
	}
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o555); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(dir, 0o755) })
	err := CheckWritable(dir)
	if err == nil || !strings.Contains(err.Error(), "is not writable") {
		t.Fatalf("CheckWritable(read-only) = %v, want a not-writable error", err)
	}
}

func TestEncode(t *testing.T) {
	tests := []struct {
		name   string
		values map[string]string
		want   string
	}{
		{name: "empty", values: map[string]string{}, want: `[]`},
		{
			name:   "sorted by key",
			values: map[string]string{"IMAGE_URL": "r:t", "IMAGE_DIGEST": "sha256:ab", "IMAGES": "r@sha256:ab"},
			want:   `[{"key":"IMAGES","value":"r@sha256:ab","type":1},{"key":"IMAGE_DIGEST","value":"sha256:ab","type":1},{"key":"IMAGE_URL","value":"r:t","type":1}]`,
		},
		{
			// Tekton uses encoding/json, which escapes HTML characters;
			// sizes must count the escaped form.
			name:   "escaping like encoding/json",
			values: map[string]string{"A": "<&>\"\n"},
			want:   `[{"key":"A","value":"\u003c\u0026\u003e\"\n","type":1}]`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Encode(tc.values)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Errorf("Encode = %s\nwant     %s", got, tc.want)
			}
			if n := EncodedSize(tc.values); n != len(tc.want)+StartedAtReserve {
				t.Errorf("EncodedSize = %d, want %d", n, len(tc.want)+StartedAtReserve)
			}
		})
	}
}

// TestEncodedSizeCoversTektonMessage builds the message the way Tekton's
// entrypoint does (task results, then a StartedAt entry in its time format)
// and checks EncodedSize is never smaller.
func TestEncodedSizeCoversTektonMessage(t *testing.T) {
	const tektonTimeFormat = "2006-01-02T15:04:05.000Z07:00"
	type tektonResult struct {
		Key          string `json:"key"`
		Value        string `json:"value"`
		ResourceName string `json:"resourceName,omitempty"`
		ResultType   int    `json:"type,omitempty"`
	}
	s := set(konfluxRepo, 3, 2)
	values := map[string]string{
		ImageURL: s.ImageURL, ImageDigest: s.ImageDigest, ImageRef: s.ImageRef,
		SubjectsRef: s.SubjectsRef, Images: strings.Join(s.Images, ","),
	}
	zones := []*time.Location{time.UTC, time.FixedZone("IST", 5*3600+1800), time.FixedZone("HST", -10*3600)}
	for _, loc := range zones {
		t.Run(loc.String(), func(t *testing.T) {
			var msg []tektonResult
			// Tekton writes results in the Task's declaration order; the
			// size does not depend on it.
			keys := []string{ImageURL, Images, ImageDigest, SubjectsRef, ImageRef}
			for _, k := range keys {
				msg = append(msg, tektonResult{Key: k, Value: values[k], ResultType: 1})
			}
			started := time.Date(2026, 12, 31, 23, 59, 59, 999e6, loc).Format(tektonTimeFormat)
			msg = append(msg, tektonResult{Key: "StartedAt", Value: started, ResultType: 3})
			b, err := json.Marshal(msg)
			if err != nil {
				t.Fatal(err)
			}
			got := EncodedSize(values)
			if got < len(b) {
				t.Errorf("EncodedSize = %d, but Tekton's message is %d bytes: %s", got, len(b), b)
			}
			if got-len(b) > 5 {
				t.Errorf("EncodedSize = %d over-reserves against Tekton's %d bytes", got, len(b))
			}
		})
	}
}

func TestStartedAtReserve(t *testing.T) {
	worst := `,{"key":"StartedAt","value":"2006-01-02T15:04:05.000+07:00","type":3}`
	if StartedAtReserve != len(worst) {
		t.Errorf("StartedAtReserve = %d, want %d (len of %s)", StartedAtReserve, len(worst), worst)
	}
}

// TestWriteNeverOverBudget sweeps platform counts: whatever is written always
// fits, IMAGES is always written, and it is empty exactly when the digests
// would not fit.
func TestWriteNeverOverBudget(t *testing.T) {
	emptied := false
	for n := 1; n <= 40; n++ {
		dir := t.TempDir()
		s := set(konfluxRepo, n, 2)
		warnings, err := Write(dir, s, DefaultBudget)
		if err != nil {
			t.Fatalf("%d platforms: %v", n, err)
		}
		got := readResults(t, dir)
		if size := EncodedSize(got); size > DefaultBudget {
			t.Fatalf("%d platforms: written results take %d bytes", n, size)
		}
		images, ok := got[Images]
		if !ok {
			t.Fatalf("%d platforms: IMAGES not written", n)
		}
		hasDigests := images != ""
		if hasDigests == (len(warnings) > 0) {
			t.Fatalf("%d platforms: IMAGES %d bytes but warnings %q", n, len(images), warnings)
		}
		if hasDigests && images != strings.Join(s.Images, ",") {
			t.Fatalf("%d platforms: IMAGES = %q, want every digest", n, images)
		}
		if !hasDigests {
			emptied = true
		} else if emptied {
			t.Fatalf("%d platforms: IMAGES has digests after being empty for fewer platforms", n)
		}
		keys := make([]string, 0, len(got))
		for k := range got {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		if !slices.Contains(keys, SubjectsRef) {
			t.Fatalf("%d platforms: SUBJECTS_REF missing, have %v", n, keys)
		}
	}
	if !emptied {
		t.Error("40 platforms never emptied IMAGES; the sweep does not reach the budget")
	}
}
