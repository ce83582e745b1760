package results

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Staged is files written beside their targets, complete and synced, that
// Commit renames into place. Staging does everything that can fail for a
// foreseeable reason (a full disk, a directory where a file goes); Commit
// only renames within a directory and removes stale files. So a caller
// stages before its commit point (mcbuild's: moving the tag) and commits
// after it. The zero value is empty and ready to use.
type Staged struct {
	files  []stagedFile
	remove []stagedFile // tmp unused: stale targets removed on Commit
}

type stagedFile struct{ what, tmp, target string }

// File stages data for path: written to a temporary file in path's
// directory, mode 0644 (later steps, possibly another user, read results),
// synced. what names the file in errors ("result IMAGES", "summary"). A
// directory at path is refused: nothing could be renamed onto it.
func (s *Staged) File(path, what string, data []byte) error {
	if isDir(path) {
		return fmt.Errorf("writing %s: %s is a directory", what, path)
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("writing %s in %q: %w", what, filepath.Dir(path), err)
	}
	tmp := f.Name()
	_, werr := f.Write(data)
	cherr := f.Chmod(0o644)
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(werr, cherr, serr, cerr); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("writing %s in %q: %w", what, filepath.Dir(path), err)
	}
	s.files = append(s.files, stagedFile{what: what, tmp: tmp, target: path})
	return nil
}

// Remove stages the removal of a stale file at path (none there is fine);
// a directory at path is refused now, so that Commit cannot fail on it.
func (s *Staged) Remove(path, what string) error {
	if isDir(path) {
		return fmt.Errorf("removing %s: %s is a directory", what, path)
	}
	s.remove = append(s.remove, stagedFile{what: what, target: path})
	return nil
}

// Commit renames every staged file into place, then removes the stale
// ones. If a rename fails (nothing foreseeable makes it: staging checked
// the targets), the files already renamed are removed again and the rest
// discarded, so none of the staged files is left half in place.
func (s *Staged) Commit() error {
	for i, f := range s.files {
		if err := os.Rename(f.tmp, f.target); err != nil {
			for _, done := range s.files[:i] {
				os.Remove(done.target)
			}
			s.files = s.files[i:]
			s.Discard()
			return fmt.Errorf("writing %s: %w", f.what, err)
		}
	}
	s.files = nil
	for _, r := range s.remove {
		if err := os.Remove(r.target); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("removing %s: %w", r.what, err)
		}
	}
	s.remove = nil
	return nil
}

// Discard removes the temporary files not committed; after Commit it does
// nothing, so it can be deferred.
func (s *Staged) Discard() {
	for _, f := range s.files {
		os.Remove(f.tmp)
	}
	s.files, s.remove = nil, nil
}
