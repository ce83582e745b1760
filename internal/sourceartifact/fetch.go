// Package sourceartifact restores a Konflux trusted artifact holding a source
// tree, in the format konflux-ci/build-trusted-artifacts defines: its
// `create` step archives a directory as a gzip-compressed tar (`tar --create
// --use-compress-program='gzip -n' --directory=DIR .`), pushes the archive
// with `oras push REPO:TAG FILE` and names it `oci:REPO@sha256:HEX`, HEX
// being the SHA-256 of the archive, that is the digest of the blob; its
// `use` step fetches that blob (`oras blob fetch`) and untars it into a
// directory. Here the blob is fetched through the run's registry session,
// staged in an unlinked file and checked against the digest before a byte
// of it is unpacked, and unpacked so that no entry can write outside the
// target directory (Extract).
package sourceartifact

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/registry/remote"

	"github.com/mcbuild/mcbuild/internal/imageref"
	"github.com/mcbuild/mcbuild/internal/registry"
)

// Scheme is the prefix of a trusted artifact reference stored in an OCI
// registry (build-trusted-artifacts' only other one, file:, is a local
// path in the producing task and not supported).
const Scheme = "oci:"

// Ref is a parsed trusted artifact reference.
type Ref struct {
	// Image is REGISTRY/REPO[:TAG]@sha256:HEX; the tag, if any, is ignored
	// (build-trusted-artifacts' use does the same).
	Image imageref.Ref
}

// ParseRef parses oci:REGISTRY/REPO[:TAG]@sha256:HEX. The error starts with
// the value, for the caller to name its flag or param.
func ParseRef(s string) (Ref, error) {
	rest, ok := strings.CutPrefix(s, Scheme)
	if !ok {
		return Ref{}, fmt.Errorf("%q: want %sREGISTRY/REPO@sha256:HEX, the reference build-trusted-artifacts' create writes", s, Scheme)
	}
	img, err := imageref.Parse(rest)
	if err != nil {
		return Ref{}, fmt.Errorf("%q: %w", s, err)
	}
	if img.Digest == "" || img.Digest.Algorithm() != digest.SHA256 {
		return Ref{}, fmt.Errorf("%q: want a sha256 digest: the artifact is found and checked by it", s)
	}
	return Ref{Image: img}, nil
}

func (r Ref) String() string { return Scheme + r.Image.Repository + "@" + r.Image.Digest.String() }

// Download fetches r's blob from repo into an unlinked temporary file in
// dir, checking its size (at most maxBytes) and digest, and returns it
// positioned at its start. A transient failure starts the download again
// (the session's retry policy, o). Nothing of a blob that does not match
// its digest is returned.
func Download(ctx context.Context, repo *remote.Repository, r Ref, dir string, maxBytes int64, o registry.Options) (*os.File, error) {
	f, err := os.CreateTemp(dir, ".mcbuild-source-*")
	if err != nil {
		return nil, err
	}
	_ = os.Remove(f.Name()) // unlinked: gone when closed, whatever happens
	err = registry.Do(ctx, o, nil, func(ctx context.Context) error {
		return download(registry.SendOnce(ctx), repo, r.Image.Digest, f, maxBytes)
	})
	if err != nil {
		f.Close()
		return nil, o.Explain("fetching "+r.String(), err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// download writes the blob d into f (truncated first) and checks it.
func download(ctx context.Context, repo *remote.Repository, d digest.Digest, f *os.File, maxBytes int64) error {
	if err := f.Truncate(0); err != nil {
		return &registry.LocalError{Err: err}
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return &registry.LocalError{Err: err}
	}
	desc, err := repo.Blobs().Resolve(ctx, d.String())
	if err != nil {
		return err
	}
	if desc.Size > maxBytes {
		return &registry.LocalError{Err: fmt.Errorf("the blob is %d bytes, over the limit of %d", desc.Size, maxBytes)}
	}
	rc, err := repo.Blobs().Fetch(ctx, ocispec.Descriptor{MediaType: desc.MediaType, Digest: d, Size: desc.Size})
	if err != nil {
		return err
	}
	defer rc.Close()
	h := d.Algorithm().Hash()
	n, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(rc, desc.Size+1))
	if err != nil {
		return err // a read failure is the registry's; retried
	}
	switch {
	case n < desc.Size: // cut short: retried
		return fmt.Errorf("the registry sent %d of %d bytes: %w", n, desc.Size, io.ErrUnexpectedEOF)
	case n > desc.Size:
		return &registry.LocalError{Err: fmt.Errorf("the registry sent more than the %d bytes it announced", desc.Size)}
	}
	if got := digest.NewDigest(d.Algorithm(), h); got != d {
		return &registry.LocalError{Err: fmt.Errorf("the blob's digest is %s: it is not the artifact it names", got)}
	}
	return nil
}

// Restore downloads r into a temporary file beside dest and extracts it
// into dest (see Extract).
func Restore(ctx context.Context, repo *remote.Repository, r Ref, dest string, lim Limits, o registry.Options) (Stats, error) {
	dest, err := filepath.Abs(dest)
	if err != nil {
		return Stats{}, err
	}
	if err := prepare(dest); err != nil {
		return Stats{}, err
	}
	f, err := Download(ctx, repo, r, filepath.Dir(dest), lim.Bytes, o)
	if err != nil {
		return Stats{}, err
	}
	defer f.Close()
	st, err := Extract(f, dest, lim)
	if err != nil {
		return st, fmt.Errorf("%s: %w", r, err)
	}
	return st, nil
}
