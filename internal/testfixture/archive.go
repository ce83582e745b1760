package testfixture

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"os"
	"testing"
	"time"
)

// TarEntry is one member of an archive TarGz writes; Link is a symlink's
// or hard link's target.
type TarEntry struct {
	Name, Body, Link string
	Type             byte
	Mode             int64
}

// TarFile, TarDir, TarSymlink and TarHardlink are the usual members.
func TarFile(name, body string) TarEntry {
	return TarEntry{Name: name, Body: body, Type: tar.TypeReg, Mode: 0o644}
}
func TarDir(name string) TarEntry { return TarEntry{Name: name, Type: tar.TypeDir, Mode: 0o755} }
func TarSymlink(name, to string) TarEntry {
	return TarEntry{Name: name, Link: to, Type: tar.TypeSymlink, Mode: 0o777}
}
func TarHardlink(name, to string) TarEntry {
	return TarEntry{Name: name, Link: to, Type: tar.TypeLink, Mode: 0o644}
}

// TarTime is the modification time of every member TarGz writes.
var TarTime = time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)

// TarGz is entries as a gzip-compressed tar, the format of a Konflux
// trusted artifact; names are written as given (also "../x" or "/x").
func TarGz(t testing.TB, entries ...TarEntry) []byte {
	t.Helper()
	var raw bytes.Buffer
	tw := tar.NewWriter(&raw)
	for _, e := range entries {
		h := &tar.Header{Name: e.Name, Linkname: e.Link, Typeflag: e.Type, Mode: e.Mode, ModTime: TarTime, Format: tar.FormatPAX}
		if e.Type == tar.TypeReg {
			h.Size = int64(len(e.Body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.Body[:h.Size])); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return Gzip(t, raw.Bytes())
}

// Gzip compresses b.
func Gzip(t testing.TB, b []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	zw := gzip.NewWriter(&out)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// DirNames lists the names in dir, sorted; none when dir does not exist.
func DirNames(t testing.TB, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}
