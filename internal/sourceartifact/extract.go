package sourceartifact

import (
	"archive/tar"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Limits bound what an archive may unpack to.
type Limits struct {
	// Bytes bounds the archive (compressed) and the contents of its
	// regular files (uncompressed), each.
	Bytes int64
	// Entries bounds the number of entries.
	Entries int
}

// DefaultLimits are generous for a source checkout.
var DefaultLimits = Limits{Bytes: 16 << 30, Entries: 1 << 20}

// Stats count what Extract created.
type Stats struct {
	Files, Dirs, Symlinks, Hardlinks int
	Bytes                            int64
}

// ErrUnsafe marks an archive refused because an entry would write outside
// the target directory or is not a plain file, directory or link.
var ErrUnsafe = errors.New("unsafe archive entry")

// prepare makes dest an empty directory: created if absent, else it must
// be an empty directory, not a symlink to one.
func prepare(dest string) error {
	fi, err := os.Lstat(dest)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return os.MkdirAll(dest, 0o755)
	case err != nil:
		return err
	case !fi.IsDir():
		return fmt.Errorf("destination %s exists and is not a directory", dest)
	}
	entries, err := os.ReadDir(dest)
	if err != nil {
		return err
	}
	if len(entries) > 0 {
		return fmt.Errorf("destination %s is not empty (it holds %s): the source is restored into an empty directory only", dest, entries[0].Name())
	}
	return nil
}

// Extract unpacks the gzip-compressed tar r into dest, which Restore (or
// the caller) made an empty directory. Entries are refused (ErrUnsafe), and
// dest emptied again, when one would:
//   - have an absolute name or a ".." component;
//   - be written through a symlink (any directory on its path is one);
//   - replace a directory with something else;
//   - be a symlink whose target is absolute or, followed through the
//     symlinks in dest once everything is unpacked, leaves dest;
//   - be a hard link to something not a regular file unpacked before it,
//     or named by an unsafe path;
//   - be anything but a file, directory, symlink or hard link (devices,
//     FIFOs);
//
// or when the archive holds more than lim.Entries entries or lim.Bytes
// bytes of file contents. Modes (permission, setuid, setgid and sticky
// bits) and modification times are restored, owners are not: files belong
// to the caller, as with tar run by a user without CAP_CHOWN.
func Extract(r io.Reader, dest string, lim Limits) (Stats, error) {
	x := &extractor{root: dest, lim: lim}
	if err := x.run(r); err != nil {
		x.clear()
		return Stats{}, err
	}
	return x.stats, nil
}

type extractor struct {
	root     string
	lim      Limits
	stats    Stats
	entries  int
	links    []string // symlinks created, relative to root
	dirs     []dirMeta
	implicit []string // directories created for an entry's path
}

// dirMeta is what a directory entry says, applied once everything is in.
type dirMeta struct {
	rel   string
	mode  os.FileMode
	mtime time.Time
}

func (x *extractor) run(r io.Reader) error {
	zr, err := gzip.NewReader(r)
	if err != nil {
		return fmt.Errorf("not a gzip-compressed archive: %w", err)
	}
	defer zr.Close()
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("reading the archive: %w", err)
		}
		if x.entries++; x.entries > x.lim.Entries {
			return fmt.Errorf("the archive holds more than %d entries", x.lim.Entries)
		}
		if err := x.entry(h, tr); err != nil {
			return err
		}
	}
	for _, l := range x.links {
		if err := x.checkSymlink(l); err != nil {
			return err
		}
	}
	return x.finishDirs()
}

// entry unpacks one archive entry.
func (x *extractor) entry(h *tar.Header, body io.Reader) error {
	if h.Typeflag == tar.TypeXGlobalHeader {
		return nil
	}
	rel, err := cleanName(h.Name)
	if err != nil {
		return unsafe(h.Name, err.Error())
	}
	if rel == "." {
		if h.Typeflag != tar.TypeDir {
			return unsafe(h.Name, "names the target directory itself")
		}
		x.dirs = append(x.dirs, dirMeta{".", h.FileInfo().Mode(), h.ModTime})
		return nil
	}
	if err := x.parents(rel, h.Name); err != nil {
		return err
	}
	switch h.Typeflag {
	case tar.TypeDir:
		return x.dir(rel, h)
	case tar.TypeReg, tar.TypeRegA, tar.TypeGNUSparse: //nolint:staticcheck // TypeRegA: old archives
		return x.file(rel, h, body)
	case tar.TypeSymlink:
		return x.symlink(rel, h)
	case tar.TypeLink:
		return x.hardlink(rel, h)
	}
	return unsafe(h.Name, fmt.Sprintf("type %q is not a file, directory or link", h.Typeflag))
}

func unsafe(name, why string) error {
	return fmt.Errorf("%w %q: %s", ErrUnsafe, name, why)
}

// cleanName is an entry's path relative to the root: "./a/b/" is "a/b".
func cleanName(name string) (string, error) {
	if name == "" || strings.HasPrefix(name, "/") {
		return "", errors.New("an absolute or empty name")
	}
	if slices.Contains(strings.Split(name, "/"), "..") {
		return "", errors.New(`a ".." component`)
	}
	return path.Clean(name), nil
}

// parents makes sure every directory on rel's path is a real directory in
// the root (creating missing ones), so nothing is written through a symlink.
func (x *extractor) parents(rel, name string) error {
	parts := strings.Split(rel, "/")
	for i := 1; i < len(parts); i++ {
		dir := strings.Join(parts[:i], "/")
		fi, err := os.Lstat(filepath.Join(x.root, dir))
		switch {
		case errors.Is(err, os.ErrNotExist):
			if err := os.Mkdir(filepath.Join(x.root, dir), 0o700); err != nil {
				return err
			}
			x.implicit = append(x.implicit, dir)
		case err != nil:
			return err
		case fi.Mode()&os.ModeSymlink != 0:
			return unsafe(name, "would be written through the symlink "+dir)
		case !fi.IsDir():
			return unsafe(name, dir+" is not a directory")
		}
	}
	return nil
}

// replace removes what is at rel unless it is a directory, which only a
// directory entry may meet again.
func (x *extractor) replace(rel, name string) error {
	p := filepath.Join(x.root, rel)
	fi, err := os.Lstat(p)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		return err
	case fi.IsDir():
		return unsafe(name, "would replace a directory")
	}
	return os.Remove(p)
}

func (x *extractor) dir(rel string, h *tar.Header) error {
	p := filepath.Join(x.root, rel)
	fi, err := os.Lstat(p)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if err := os.Mkdir(p, 0o700); err != nil {
			return err
		}
		x.stats.Dirs++
	case err != nil:
		return err
	case !fi.IsDir():
		return unsafe(h.Name, "a directory where a file or link was unpacked")
	}
	x.dirs = append(x.dirs, dirMeta{rel, h.FileInfo().Mode(), h.ModTime})
	return nil
}

func (x *extractor) file(rel string, h *tar.Header, body io.Reader) error {
	if err := x.replace(rel, h.Name); err != nil {
		return err
	}
	if h.Size > x.lim.Bytes-x.stats.Bytes {
		return fmt.Errorf("the archive's files hold more than %d bytes", x.lim.Bytes)
	}
	p := filepath.Join(x.root, rel)
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	n, err := io.Copy(f, body)
	if err == nil {
		err = f.Chmod(h.FileInfo().Mode() & (os.ModePerm | os.ModeSetuid | os.ModeSetgid | os.ModeSticky))
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("unpacking %q: %w", h.Name, err)
	}
	x.stats.Files++
	x.stats.Bytes += n
	return setTime(p, h.ModTime)
}

func (x *extractor) symlink(rel string, h *tar.Header) error {
	if filepath.IsAbs(h.Linkname) {
		return unsafe(h.Name, fmt.Sprintf("a symlink to the absolute path %q", h.Linkname))
	}
	if !within(path.Dir(rel), h.Linkname) {
		return unsafe(h.Name, fmt.Sprintf("a symlink to %q, outside the target directory", h.Linkname))
	}
	if err := x.replace(rel, h.Name); err != nil {
		return err
	}
	if err := os.Symlink(h.Linkname, filepath.Join(x.root, rel)); err != nil {
		return err
	}
	x.links = append(x.links, rel)
	x.stats.Symlinks++
	return setTime(filepath.Join(x.root, rel), h.ModTime)
}

func (x *extractor) hardlink(rel string, h *tar.Header) error {
	target, err := cleanName(h.Linkname)
	if err != nil || target == "." {
		return unsafe(h.Name, fmt.Sprintf("a hard link to %q", h.Linkname))
	}
	if err := x.parents(target, h.Name); err != nil {
		return err
	}
	fi, err := os.Lstat(filepath.Join(x.root, target))
	if err != nil || !fi.Mode().IsRegular() {
		return unsafe(h.Name, fmt.Sprintf("a hard link to %q, which is not a file unpacked before it", h.Linkname))
	}
	if err := x.replace(rel, h.Name); err != nil {
		return err
	}
	if err := os.Link(filepath.Join(x.root, target), filepath.Join(x.root, rel)); err != nil {
		return err
	}
	x.stats.Hardlinks++
	return nil
}

// within reports whether target, a relative symlink target in the
// directory dir (relative to the root), stays in the root read as a path.
func within(dir, target string) bool {
	depth := 0
	for _, c := range strings.Split(path.Join(dir, "x"), "/") {
		if c != "." && c != "" {
			depth++
		}
	}
	depth-- // the "x"
	for _, c := range strings.Split(target, "/") {
		switch c {
		case "", ".":
		case "..":
			if depth--; depth < 0 {
				return false
			}
		default:
			depth++
		}
	}
	return true
}

// maxHops bounds the symlinks followed resolving one (Linux's own limit).
const maxHops = 40

// checkSymlink follows the symlink rel as the kernel would, through every
// symlink on the way, and refuses it when that leaves the root.
func (x *extractor) checkSymlink(rel string) error {
	stack := strings.Split(path.Dir(rel), "/")
	if stack[0] == "." {
		stack = nil
	}
	target, err := os.Readlink(filepath.Join(x.root, rel))
	if err != nil {
		return err
	}
	pending := strings.Split(target, "/")
	for hops := 0; len(pending) > 0; {
		c := pending[0]
		pending = pending[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(stack) == 0 {
				return unsafe(rel, fmt.Sprintf("a symlink to %q, which leads outside the target directory through other symlinks", target))
			}
			stack = stack[:len(stack)-1]
			continue
		}
		stack = append(stack, c)
		next, err := os.Readlink(filepath.Join(x.root, strings.Join(stack, "/")))
		if err != nil {
			continue // not a symlink (or missing: read as a path from here)
		}
		if hops++; hops > maxHops || filepath.IsAbs(next) {
			return unsafe(rel, fmt.Sprintf("a symlink to %q, which leads to an absolute path or a loop", target))
		}
		stack = stack[:len(stack)-1]
		pending = append(strings.Split(next, "/"), pending...)
	}
	return nil
}

// finishDirs gives the implicit directories mode 0755 and every directory
// entry its mode and time, deepest first, now that nothing more is written
// into them.
func (x *extractor) finishDirs() error {
	for _, d := range x.implicit {
		if err := os.Chmod(filepath.Join(x.root, d), 0o755); err != nil {
			return err
		}
	}
	slices.SortStableFunc(x.dirs, func(a, b dirMeta) int { return strings.Count(b.rel, "/") - strings.Count(a.rel, "/") })
	for _, d := range x.dirs {
		p := filepath.Join(x.root, d.rel)
		if err := os.Chmod(p, d.mode&(os.ModePerm|os.ModeSetuid|os.ModeSetgid|os.ModeSticky)); err != nil {
			return err
		}
		if err := setTime(p, d.mtime); err != nil {
			return err
		}
	}
	return nil
}

// setTime sets p's modification (and access) time without following a
// symlink.
func setTime(p string, t time.Time) error {
	ts := []unix.Timespec{unix.NsecToTimespec(t.UnixNano()), unix.NsecToTimespec(t.UnixNano())}
	return unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW)
}

// clear removes everything unpacked: the root was empty before.
func (x *extractor) clear() {
	entries, _ := os.ReadDir(x.root)
	for _, e := range entries {
		p := filepath.Join(x.root, e.Name())
		_ = filepath.WalkDir(p, func(q string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				_ = os.Chmod(q, 0o700) // unreadable directories from the archive
			}
			return nil
		})
		_ = os.RemoveAll(p)
	}
}
