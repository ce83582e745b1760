// Command nodeimage puts images on the cluster test's registry: the binaries
// the node runs (Tekton's, Chains', the pause process) packed as one-layer
// images laid out as ko lays them out (/ko-app/NAME), a directory tree as an
// image (the shell image), and copies of images from another registry (the
// step image). It prints REPO@DIGEST of what it pushed.
//
//	nodeimage bin  REGISTRY/REPO BINARY [ARGS...]   entrypoint /ko-app/<name of BINARY> ARGS
//	nodeimage dir  REGISTRY/REPO DIR                DIR as the root filesystem
//	nodeimage copy SRC DST                          an image or index, every child
package main

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

func main() {
	if len(os.Args) < 4 {
		fmt.Fprintln(os.Stderr, "usage: nodeimage bin REPO BINARY [ARGS...] | dir REPO DIR | copy SRC DST")
		os.Exit(2)
	}
	var (
		ref string
		err error
	)
	switch os.Args[1] {
	case "bin":
		ref, err = pushBinary(os.Args[2], os.Args[3], os.Args[4:])
	case "dir":
		ref, err = pushDir(os.Args[2], os.Args[3])
	case "copy":
		ref, err = copyImage(os.Args[2], os.Args[3])
	default:
		err = fmt.Errorf("unknown mode %q: want bin, dir or copy", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "nodeimage:", err)
		os.Exit(1)
	}
	fmt.Println(ref)
}

// baseFiles are what the binaries expect of a distroless base: users, a
// writable /tmp, CA certificates (the host's, when it has them).
func baseFiles(tw *tar.Writer) error {
	for _, d := range []struct {
		name string
		mode int64
		id   int
	}{{"etc/", 0o755, 0}, {"etc/ssl/", 0o755, 0}, {"etc/ssl/certs/", 0o755, 0}, {"home/nonroot/", 0o755, 65532},
		{"ko-app/", 0o755, 0}, {"tmp/", 0o1777, 0}, {"var/run/ko/", 0o755, 0}} {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d.name, Mode: d.mode, Uid: d.id, Gid: d.id}); err != nil {
			return err
		}
	}
	if err := writeFile(tw, "etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n")); err != nil {
		return err
	}
	if err := writeFile(tw, "etc/group", 0o644, []byte("root:x:0:\nnonroot:x:65532:\n")); err != nil {
		return err
	}
	if ca, err := os.ReadFile("/etc/ssl/certs/ca-certificates.crt"); err == nil {
		return writeFile(tw, "etc/ssl/certs/ca-certificates.crt", 0o644, ca)
	}
	return nil
}

func writeFile(tw *tar.Writer, name string, mode int64, body []byte) error {
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(body))}); err != nil {
		return err
	}
	_, err := tw.Write(body)
	return err
}

func pushBinary(repo, binary string, args []string) (string, error) {
	body, err := os.ReadFile(binary)
	if err != nil {
		return "", err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := baseFiles(tw); err != nil {
		return "", err
	}
	entry := path.Join("/ko-app", filepath.Base(binary))
	if err := writeFile(tw, entry[1:], 0o755, body); err != nil {
		return "", err
	}
	if err := tw.Close(); err != nil {
		return "", err
	}
	return push(repo, buf.Bytes(), v1.Config{
		Entrypoint: []string{entry},
		Cmd:        args,
		Env:        []string{"PATH=/ko-app:/usr/bin:/bin", "KO_DATA_PATH=/var/run/ko", "HOME=/home/nonroot"},
	})
}

func pushDir(repo, dir string) (string, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		link := ""
		if info.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		}
		hdr, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		hdr.Name = filepath.ToSlash(rel)
		if d.IsDir() {
			hdr.Name += "/"
		}
		hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = 0, 0, "", ""
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if info.Mode().IsRegular() {
			body, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			_, err = tw.Write(body)
			return err
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	if err := tw.Close(); err != nil {
		return "", err
	}
	return push(repo, buf.Bytes(), v1.Config{Env: []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}, Cmd: []string{"sh"}})
}

func push(repo string, layerTar []byte, cfg v1.Config) (string, error) {
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(layerTar)), nil })
	if err != nil {
		return "", err
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return "", err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return "", err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Config = "linux", "amd64", cfg
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return "", err
	}
	tag, err := name.NewTag(repo+":latest", name.Insecure)
	if err != nil {
		return "", err
	}
	if err := remote.Write(tag, img); err != nil {
		return "", err
	}
	d, err := img.Digest()
	if err != nil {
		return "", err
	}
	return tag.Context().Digest(d.String()).String(), nil
}

func copyImage(src, dst string) (string, error) {
	from, err := name.ParseReference(src, name.Insecure)
	if err != nil {
		return "", err
	}
	to, err := name.ParseReference(dst, name.Insecure)
	if err != nil {
		return "", err
	}
	desc, err := remote.Get(from)
	if err != nil {
		return "", err
	}
	if desc.MediaType.IsIndex() {
		idx, err := desc.ImageIndex()
		if err != nil {
			return "", err
		}
		if err := remote.WriteIndex(to, idx); err != nil {
			return "", err
		}
	} else {
		img, err := desc.Image()
		if err != nil {
			return "", err
		}
		if err := remote.Write(to, img); err != nil {
			return "", err
		}
	}
	return to.Context().Digest(desc.Digest.String()).String(), nil
}
