package workload

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// BaseName is the name of the workload of issue 12 (Base).
const BaseName = "base"

// Base is issue 12's base image: real files of this machine, not random
// bytes, so that the compressors see what a base image holds. Four
// layers: a busybox root filesystem (the app's RUN needs a shell; rootfs
// is the directory hack/busybox-rootfs.sh fills for this architecture),
// the Go toolchain's source tree (goroot/src) at /usr/local/go/src, and
// parts of /usr/lib/<multiarch> and /usr/share, whole top-level entries
// in name order while they fit their budget. At least 150 MiB of layer
// tar.
func Base(goroot, rootfs string) Spec {
	lib := "/usr/lib/" + multiarch()
	return Spec{Name: BaseName, MinBytes: 150 * MiB, Layers: []Layer{
		{Dir: "rootfs", Kind: Tree, Source: rootfs, Dest: "/"},
		{Dir: "go-src", Kind: Tree, Source: filepath.Join(goroot, "src"), Dest: "/usr/local/go/src"},
		{Dir: "usr-lib", Kind: Tree, Source: lib, Dest: lib, Budget: 40 * MiB},
		{Dir: "usr-share", Kind: Tree, Source: "/usr/share", Dest: "/usr/share", Budget: 16 * MiB},
	}}
}

// multiarch is Debian's library directory name for this architecture.
func multiarch() string {
	switch runtime.GOARCH {
	case "arm64":
		return "aarch64-linux-gnu"
	default:
		return "x86_64-linux-gnu"
	}
}

// treeEntry is one file, directory or symbolic link a Tree layer copies.
type treeEntry struct {
	rel  string // slash-separated, relative to Source
	info fs.FileInfo
	link string // symbolic links: the target
}

// treeEntries lists what layer l copies, in the order it is copied
// (lexical, parents first): every top-level entry of l.Source in name
// order whose regular files fit what is left of l.Budget (all of them
// without a budget). Sockets, devices and pipes are left out.
func treeEntries(l Layer) ([]treeEntry, error) {
	tops, err := os.ReadDir(l.Source)
	if err != nil {
		return nil, err
	}
	var out []treeEntry
	var used int64
	for _, top := range tops {
		var es []treeEntry
		var size int64
		err := filepath.WalkDir(filepath.Join(l.Source, top.Name()), func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			info, err := d.Info()
			if err != nil {
				return err
			}
			e := treeEntry{info: info}
			if e.rel, err = filepath.Rel(l.Source, p); err != nil {
				return err
			}
			e.rel = filepath.ToSlash(e.rel)
			switch {
			case info.Mode().IsRegular():
				size += info.Size()
			case info.Mode()&fs.ModeSymlink != 0:
				if e.link, err = os.Readlink(p); err != nil {
					return err
				}
			case !info.IsDir():
				return nil
			}
			es = append(es, e)
			return nil
		})
		if err != nil {
			return nil, err
		}
		if l.Budget > 0 && used+size > l.Budget {
			continue
		}
		used += size
		out = append(out, es...)
	}
	return out, nil
}

// fingerprint identifies the files spec's Tree layers would copy.
func fingerprint(spec Spec) (string, error) {
	h := sha256.New()
	trees := false
	for _, l := range spec.Layers {
		if l.Kind != Tree {
			continue
		}
		trees = true
		es, err := treeEntries(l)
		if err != nil {
			return "", fmt.Errorf("layer %s: %w", l.Dir, err)
		}
		fmt.Fprintf(h, "layer %s\n", l.Dir)
		for _, e := range es {
			fmt.Fprintf(h, "%q %o %d %d %q\n", e.rel, e.info.Mode(), e.info.Size(), e.info.ModTime().UnixNano(), e.link)
		}
	}
	if !trees {
		return "", nil
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// writeTree copies layer l's entries into dir and writes them as a root
// filesystem tar (entries under l.Dest, with its parent directories) at
// tarPath; it returns the tar's size and sha256. Every copy and every tar
// entry gets the fixed mtime, owner root, and its source's permission
// bits; hard links become separate files.
func writeTree(dir, tarPath string, l Layer) (int64, string, error) {
	es, err := treeEntries(l)
	if err != nil {
		return 0, "", err
	}
	tw, err := createTar(tarPath)
	if err != nil {
		return 0, "", err
	}
	defer tw.file.Close()
	hdr := func(typ byte, name string, mode fs.FileMode) *tar.Header {
		return &tar.Header{Typeflag: typ, Name: name, Mode: int64(mode.Perm()), ModTime: mtime, Format: tar.FormatPAX}
	}
	prefix := strings.Trim(path.Clean(l.Dest), "/")
	if prefix != "" {
		parts := strings.Split(prefix, "/")
		for i := range parts {
			if err := tw.WriteHeader(hdr(tar.TypeDir, strings.Join(parts[:i+1], "/")+"/", 0o755)); err != nil {
				return 0, "", err
			}
		}
		prefix += "/"
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, "", err
	}
	type made struct {
		path string
		perm fs.FileMode
	}
	var dirs []made
	for _, e := range es {
		dst := filepath.Join(dir, filepath.FromSlash(e.rel))
		name := prefix + e.rel
		mode := e.info.Mode()
		switch {
		case mode.IsDir():
			if err := os.Mkdir(dst, mode.Perm()|0o700); err != nil {
				return 0, "", err
			}
			dirs = append(dirs, made{dst, mode.Perm()})
			err = tw.WriteHeader(hdr(tar.TypeDir, name+"/", mode))
		case mode&fs.ModeSymlink != 0:
			if err := os.Symlink(e.link, dst); err != nil {
				return 0, "", err
			}
			t := hdr(tar.TypeSymlink, name, 0o777)
			t.Linkname = e.link
			if err := tw.WriteHeader(t); err != nil {
				return 0, "", err
			}
			ts := unix.NsecToTimeval(mtime.UnixNano())
			err = unix.Lutimes(dst, []unix.Timeval{ts, ts})
		default:
			t := hdr(tar.TypeReg, name, mode)
			t.Size = e.info.Size()
			err = copyFile(filepath.Join(l.Source, filepath.FromSlash(e.rel)), dst, mode.Perm(), t, tw.Writer)
		}
		if err != nil {
			return 0, "", fmt.Errorf("%s: %w", e.rel, err)
		}
	}
	for i := len(dirs) - 1; i >= 0; i-- { // children before parents
		if err := os.Chmod(dirs[i].path, dirs[i].perm); err != nil {
			return 0, "", err
		}
		if err := os.Chtimes(dirs[i].path, mtime, mtime); err != nil {
			return 0, "", err
		}
	}
	if err := os.Chtimes(dir, mtime, mtime); err != nil {
		return 0, "", err
	}
	return tw.finish()
}

// copyFile copies src to dst and, as header t, into tw; the file must
// still have the size listed.
func copyFile(src, dst string, perm fs.FileMode, t *tar.Header, tw *tar.Writer) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	if err := tw.WriteHeader(t); err != nil {
		f.Close()
		return err
	}
	n, err := io.Copy(io.MultiWriter(f, tw), in)
	if err == nil && n != t.Size {
		err = fmt.Errorf("changed while copied: %d bytes, listed %d", n, t.Size)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(dst, perm)
	}
	if err != nil {
		return err
	}
	return os.Chtimes(dst, mtime, mtime)
}
