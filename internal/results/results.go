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
// grows with the number of platforms, and it is left out, with a warning,
// when it does not fit. The subjects artifact (SUBJECTS_REF) lists every
// digest in that case.
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
	// are written comma-joined as IMAGES when the budget allows.
	Images []string
	// SubjectsRef is repo@digest of the subjects artifact listing every
	// digest (SUBJECTS_REF).
	SubjectsRef string
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

// CheckWritable checks, before any build work, that results can be written to
// dir: it creates dir if missing, then creates and removes a file in it. An
// empty dir means results are disabled and is always fine.
func CheckWritable(dir string) error {
	if dir == "" {
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("results dir %q cannot be created: %w", dir, err)
	}
	f, err := os.CreateTemp(dir, ".mcbuild-write-check-*")
	if err != nil {
		return fmt.Errorf("results dir %q is not writable: %w", dir, err)
	}
	name := f.Name()
	cerr := f.Close()
	rerr := os.Remove(name)
	if err := errors.Join(cerr, rerr); err != nil {
		return fmt.Errorf("results dir %q: cleaning up write check: %w", dir, err)
	}
	return nil
}

// CheckBudget checks a results budget before any work: a positive number
// of bytes. The error starts with the value, for the caller to name it.
func CheckBudget(budget int) error {
	if budget <= 0 {
		return fmt.Errorf("%d: want a positive number of bytes (Tekton's default is %d)", budget, DefaultBudget)
	}
	return nil
}

// Planned is a Set checked against the budget: exactly the files Write will
// write. Planning before publishing the tag means a budget failure is found
// while nothing user-visible has changed yet.
type Planned struct {
	values       map[string]string
	removeImages bool
	// Warnings say what was left out and why.
	Warnings []string
}

// Plan decides which results of s are written: IMAGE_URL, IMAGE_DIGEST,
// IMAGE_REF and SUBJECTS_REF always, and IMAGES when all five together fit in
// budget bytes of termination message (EncodedSize). When IMAGES does not fit
// it is left out with a warning; when even the other four do not fit, or
// there is no SUBJECTS_REF to list the digests instead, Plan fails. A budget
// of 0 means DefaultBudget.
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
	}
	all := maps.Clone(values)
	all[Images] = strings.Join(s.Images, ",")
	size := EncodedSize(all)
	if size <= budget {
		return Planned{values: all}, nil
	}
	if without := EncodedSize(values); without > budget {
		return Planned{}, fmt.Errorf("results do not fit: %s, %s, %s and %s alone take %d bytes of the %d-byte termination message budget (%d with %s)",
			ImageURL, ImageDigest, ImageRef, SubjectsRef, without, budget, size, Images)
	}
	if s.SubjectsRef == "" {
		return Planned{}, fmt.Errorf("%s does not fit: all results would take %d bytes of the %d-byte termination message budget, and there is no %s listing the digests instead",
			Images, size, budget, SubjectsRef)
	}
	return Planned{values: values, removeImages: true, Warnings: []string{fmt.Sprintf(
		"%s left out: all results would take %d bytes of the %d-byte termination message budget; every digest is listed in the subjects artifact %s=%s",
		Images, size, budget, SubjectsRef, s.SubjectsRef)}}, nil
}

// Write writes the planned results into dir (nothing when dir is empty).
// Each file is written to a temporary file in dir and renamed, so a reader
// never sees a partial value; an IMAGES file left by an earlier run is
// removed when IMAGES was left out, so no stale digests are read.
func (p Planned) Write(dir string) error {
	if dir == "" {
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("results dir %q cannot be created: %w", dir, err)
	}
	if err := writeAll(dir, p.values); err != nil {
		return err
	}
	if p.removeImages {
		if err := os.Remove(filepath.Join(dir, Images)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("removing stale %s result: %w", Images, err)
		}
	}
	return nil
}

// Write plans s against budget and writes it into dir: Plan, then
// Planned.Write. An empty dir writes nothing (and checks nothing).
func Write(dir string, s Set, budget int) (warnings []string, err error) {
	if dir == "" {
		return nil, nil
	}
	p, err := Plan(s, budget)
	if err != nil {
		return nil, fmt.Errorf("%w; nothing written", err)
	}
	return p.Warnings, p.Write(dir)
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

// writeAll stages every value in a temporary file in dir, then renames them
// into place, so an I/O error leaves as few results as possible half done
// and none partially written.
func writeAll(dir string, values map[string]string) error {
	names := make([]string, 0, len(values))
	for k := range values {
		names = append(names, k)
	}
	slices.Sort(names)
	temps := make(map[string]string, len(names))
	defer func() {
		for _, t := range temps {
			os.Remove(t)
		}
	}()
	for _, name := range names {
		t, err := stage(dir, name, values[name])
		if err != nil {
			return err
		}
		temps[name] = t
	}
	for _, name := range names {
		if err := os.Rename(temps[name], filepath.Join(dir, name)); err != nil {
			return fmt.Errorf("writing result %s: %w", name, err)
		}
		delete(temps, name)
	}
	return nil
}

func stage(dir, name, value string) (string, error) {
	f, err := os.CreateTemp(dir, "."+name+".tmp-*")
	if err != nil {
		return "", fmt.Errorf("writing result %s in %q: %w", name, dir, err)
	}
	tmp := f.Name()
	_, werr := f.WriteString(value)
	// Readable by every step: later steps' entrypoints, possibly running as
	// another user, re-read all declared results from this directory.
	cherr := f.Chmod(0o644)
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(werr, cherr, serr, cerr); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("writing result %s in %q: %w", name, dir, err)
	}
	return tmp, nil
}
