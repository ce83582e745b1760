// Package results writes mcbuild's Tekton results.
//
// Tekton reads a result from the file <results dir>/<NAME> (without a
// trailing newline) and carries all results of a step in the step's
// termination message: the JSON array [{"key":NAME,"value":...,"type":1},...]
// of github.com/tektoncd/pipeline/pkg/termination, at most 4096 bytes. The
// entrypoint adds a {"key":"StartedAt",...,"type":3} entry to the same
// message, so the budget check here reserves room for it. A message over the
// limit fails the step after the build has been pushed, so Write checks the
// size first: IMAGES (one repo@digest per manifest) is the only result that
// grows with the number of platforms, and it is written empty, with a
// warning, when it does not fit. The subjects artifact (SUBJECTS_REF) lists
// every digest in that case. Empty, not absent: a Pipeline result that names
// a Task result the TaskRun did not write fails the whole PipelineRun
// (Tekton's ApplyTaskResultsToPipelineResults), and Chains skips an empty
// IMAGES.
package results

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Result names, as declared by the mcbuild Task.
const (
	ImageURL    = "IMAGE_URL"
	ImageDigest = "IMAGE_DIGEST"
	ImageRef    = "IMAGE_REF"
	Images      = "IMAGES"
	SubjectsRef = "SUBJECTS_REF"
	SBOMBlobURL = "SBOM_BLOB_URL"
)

// DefaultBudget is Tekton's limit on one step's termination message
// (termination.MaxContainerTerminationMessageLength).
const DefaultBudget = 4096

// StartedAtReserve is the room EncodedSize reserves for the entry Tekton's
// entrypoint appends to every termination message:
// `,{"key":"StartedAt","value":"2006-01-02T15:04:05.000+07:00","type":3}` (its
// time format is RFC 3339 with milliseconds; a UTC "Z" is 5 bytes shorter
// than the numeric offset counted here).
const StartedAtReserve = 69

// Set is what one mcbuild run reports.
type Set struct {
	// ImageURL is the pushed index as repo:tag (IMAGE_URL).
	ImageURL string
	// ImageDigest is the index digest (IMAGE_DIGEST).
	ImageDigest string
	// ImageRef is repo:tag@digest of the index (IMAGE_REF).
	ImageRef string
	// Images are repo@digest of the index first, then of every manifest; they
	// are written comma-joined as IMAGES when the budget allows (else IMAGES
	// is empty).
	Images []string
	// SubjectsRef is repo@digest of the subjects artifact listing every
	// digest (SUBJECTS_REF).
	SubjectsRef string
	// SBOMBlobURL is repo@digest of the index SBOM's blob (SBOM_BLOB_URL,
	// Konflux's name); "" when no SBOM was made, and then not written.
	SBOMBlobURL string
}

// runResult mirrors Tekton's result.RunResult as it is marshaled into a
// termination message (resourceName is never set there).
type runResult struct {
	Key   string `json:"key"`
	Value string `json:"value"`
	Type  int    `json:"type,omitempty"`
}

// taskRunResultType is result.TaskRunResultType.
const taskRunResultType = 1

// Encode returns values encoded the way Tekton's entrypoint writes task
// results into a termination message, keys in sorted order. It does not
// include the StartedAt entry; see EncodedSize.
func Encode(values map[string]string) ([]byte, error) {
	keys := make([]string, 0, len(values))
	for k := range values {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	entries := make([]runResult, 0, len(keys))
	for _, k := range keys {
		entries = append(entries, runResult{Key: k, Value: values[k], Type: taskRunResultType})
	}
	return json.Marshal(entries)
}

// EncodedSize returns the size in bytes of the termination message Tekton
// would write for these results: len(Encode(values)) plus StartedAtReserve.
// Compare it with DefaultBudget.
func EncodedSize(values map[string]string) int {
	b, err := Encode(values)
	if err != nil {
		// json.Marshal cannot fail on strings; never report "fits".
		return int(^uint(0) >> 1)
	}
	return len(b) + StartedAtReserve
}

// names are every result file Write may write or remove.
var names = []string{ImageURL, ImageDigest, ImageRef, Images, SubjectsRef, SBOMBlobURL}

// CheckWritable checks, before any build work, that results can be written to
// dir: it creates dir if missing, then creates and removes a file in it, and
// checks that no result's name in it is taken by a directory (a rename onto
// it would fail after the tag moved). An empty dir means results are
// disabled and is always fine.
func CheckWritable(dir string) error {
	if dir == "" {
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("results dir %q cannot be created: %w", dir, err)
	}
	if err := probe(dir); err != nil {
		return fmt.Errorf("results dir %q %w", dir, err)
	}
	for _, name := range names {
		if isDir(filepath.Join(dir, name)) {
			return fmt.Errorf("results dir %q: %s is a directory; a result is written as a file of that name", dir, name)
		}
	}
	return nil
}

// CheckFile checks, before any build work, that a file can be written at
// path (mcbuild's --summary-json): its directory exists and is writable
// (nothing is created), and path is not a directory. Errors start with the
// path, for the caller to name the flag.
func CheckFile(path string) error {
	dir := filepath.Dir(path)
	st, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%s: directory %s does not exist (it is not created)", path, dir)
	case err != nil:
		return fmt.Errorf("%s: %w", path, err)
	case !st.IsDir():
		return fmt.Errorf("%s: %s is not a directory", path, dir)
	case isDir(path):
		return fmt.Errorf("%s is a directory; name a file", path)
	}
	if err := probe(dir); err != nil {
		return fmt.Errorf("%s: directory %q %w", path, dir, err)
	}
	return nil
}

// probe creates and removes a file in dir. Its errors read after the
// directory's name: `results dir "x" is not writable: …`.
func probe(dir string) error {
	f, err := os.CreateTemp(dir, ".mcbuild-write-check-*")
	if err != nil {
		return fmt.Errorf("is not writable: %w", err)
	}
	name := f.Name()
	cerr := f.Close()
	rerr := os.Remove(name)
	if err := errors.Join(cerr, rerr); err != nil {
		return fmt.Errorf("is writable, but its write check file could not be removed: %w", err)
	}
	return nil
}

func isDir(path string) bool {
	st, err := os.Lstat(path)
	return err == nil && st.IsDir()
}

// CheckBudget checks a results budget before any work: a positive number
// of bytes. The error starts with the value, for the caller to name it.
func CheckBudget(budget int) error {
	if budget <= 0 {
		return fmt.Errorf("%d: want a positive number of bytes (Tekton's default is %d)", budget, DefaultBudget)
	}
	return nil
}

// digestLen is the length of a sha256 digest string, "sha256:" and 64 hex
// digits: every digest mcbuild pushes.
const digestLen = len("sha256:") + 64

// CheckBudgetFor checks, before any work, that budget is positive and
// holds the results always written for an index tagged imageURL (repo:tag)
// in repository: IMAGE_URL, IMAGE_DIGEST, IMAGE_REF, SUBJECTS_REF and an
// empty IMAGES, and SBOM_BLOB_URL when withSBOM, whose sizes are known from
// the destination
// alone (digests have a fixed length). The error starts with the value,
// for the caller to name it.
func CheckBudgetFor(budget int, imageURL, repository string, withSBOM bool) error {
	if err := CheckBudget(budget); err != nil {
		return err
	}
	d := "sha256:" + strings.Repeat("0", digestLen-len("sha256:"))
	values := map[string]string{
		ImageURL: imageURL, ImageDigest: d, ImageRef: imageURL + "@" + d, SubjectsRef: repository + "@" + d, Images: "",
	}
	if withSBOM {
		values[SBOMBlobURL] = repository + "@" + d
	}
	if need := EncodedSize(values); budget < need {
		return fmt.Errorf("%d: %s alone take %d bytes of the termination message for %s; want at least %d (Tekton's default is %d)",
			budget, alwaysNames(withSBOM), need, imageURL, need, DefaultBudget)
	}
	return nil
}

// alwaysNames lists the results always written: "IMAGE_URL, IMAGE_DIGEST,
// IMAGE_REF, SUBJECTS_REF (and SBOM_BLOB_URL) and an empty IMAGES".
func alwaysNames(withSBOM bool) string {
	if withSBOM {
		return fmt.Sprintf("%s, %s, %s, %s, %s and an empty %s", ImageURL, ImageDigest, ImageRef, SubjectsRef, SBOMBlobURL, Images)
	}
	return fmt.Sprintf("%s, %s, %s, %s and an empty %s", ImageURL, ImageDigest, ImageRef, SubjectsRef, Images)
}

// Planned is a Set checked against the budget: exactly the files Write will
// write. Planning before publishing the tag means a budget failure is found
// while nothing user-visible has changed yet.
type Planned struct {
	values map[string]string
	// remove are results an earlier run may have left that this one does
	// not write (SBOM_BLOB_URL without an SBOM).
	remove []string
	// Warnings say why IMAGES is written empty, when it is.
	Warnings []string
}

// Plan decides what the results of s are: IMAGE_URL, IMAGE_DIGEST,
// IMAGE_REF, SUBJECTS_REF and IMAGES always (and SBOM_BLOB_URL when set),
// IMAGES with every digest when all together fit in budget bytes of
// termination message (EncodedSize). When the digests do not fit, IMAGES is
// written empty with a warning; when even that does not fit, or there is no
// SUBJECTS_REF to list the digests instead, Plan fails. A budget of 0 means
// DefaultBudget.
func Plan(s Set, budget int) (Planned, error) {
	if budget == 0 {
		budget = DefaultBudget
	}
	if err := CheckBudget(budget); err != nil {
		return Planned{}, fmt.Errorf("results budget %w", err)
	}
	if err := s.validate(); err != nil {
		return Planned{}, err
	}
	values := map[string]string{
		ImageURL:    s.ImageURL,
		ImageDigest: s.ImageDigest,
		ImageRef:    s.ImageRef,
		SubjectsRef: s.SubjectsRef,
		Images:      "",
	}
	var remove []string
	if s.SBOMBlobURL != "" {
		values[SBOMBlobURL] = s.SBOMBlobURL
	} else {
		remove = append(remove, SBOMBlobURL)
	}
	all := maps.Clone(values)
	all[Images] = strings.Join(s.Images, ",")
	size := EncodedSize(all)
	if size <= budget {
		return Planned{values: all, remove: remove}, nil
	}
	if without := EncodedSize(values); without > budget {
		return Planned{}, fmt.Errorf("results do not fit: %s alone take %d bytes of the %d-byte termination message budget (%d with every digest in %s)",
			alwaysNames(s.SBOMBlobURL != ""), without, budget, size, Images)
	}
	if s.SubjectsRef == "" {
		return Planned{}, fmt.Errorf("%s does not fit: all results would take %d bytes of the %d-byte termination message budget, and there is no %s listing the digests instead",
			Images, size, budget, SubjectsRef)
	}
	return Planned{values: values, remove: remove, Warnings: []string{fmt.Sprintf(
		"%s written empty: all results would take %d bytes of the %d-byte termination message budget; every digest is listed in the subjects artifact %s=%s",
		Images, size, budget, SubjectsRef, s.SubjectsRef)}}, nil
}

// Stage stages the planned results for dir in st (nothing when dir is
// empty): each value in a temporary file in dir, complete and synced, for
// st.Commit to rename into place, so a reader never sees a partial value
// (an earlier run's IMAGES is replaced, empty if need be); an SBOM_BLOB_URL
// file left by an earlier run is removed on Commit when this run does not
// write it, so no stale digest is read.
func (p Planned) Stage(st *Staged, dir string) error {
	if dir == "" {
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("results dir %q cannot be created: %w", dir, err)
	}
	keys := slices.Sorted(maps.Keys(p.values))
	for _, name := range keys {
		if err := st.File(filepath.Join(dir, name), "result "+name, []byte(p.values[name])); err != nil {
			return err
		}
	}
	for _, name := range p.remove {
		if err := st.Remove(filepath.Join(dir, name), "stale result "+name); err != nil {
			return err
		}
	}
	return nil
}

// Write plans s against budget and writes it into dir: Plan, then
// Planned.Stage and Staged.Commit. An empty dir writes nothing (and checks
// nothing).
func Write(dir string, s Set, budget int) (warnings []string, err error) {
	if dir == "" {
		return nil, nil
	}
	p, err := Plan(s, budget)
	if err != nil {
		return nil, fmt.Errorf("%w; nothing written", err)
	}
	var st Staged
	defer st.Discard()
	if err := p.Stage(&st, dir); err != nil {
		return nil, err
	}
	return p.Warnings, st.Commit()
}

func (s Set) validate() error {
	for _, f := range []struct{ name, value string }{
		{ImageURL, s.ImageURL}, {ImageDigest, s.ImageDigest}, {ImageRef, s.ImageRef},
	} {
		if f.value == "" {
			return fmt.Errorf("result %s is empty: every run must report the pushed index", f.name)
		}
	}
	for i, img := range s.Images {
		if img == "" || strings.ContainsAny(img, ", \t\r\n") {
			return fmt.Errorf("%s entry %d %q: want repo@digest without commas or white space (the list is comma-separated)", Images, i+1, img)
		}
	}
	return nil
}
