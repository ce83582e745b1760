package reuse

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/registry/remote"

	"github.com/mcbuild/mcbuild/internal/stage"
)

// land puts c's blob in the destination repository and, unless c is
// trusted, proves that it holds layer l. In order: it is there already
// (HEAD), a cross-repository mount within the same registry, or a stream
// from its source registry, unchanged, checked on the way. It returns the
// bytes it uploaded.
func (s *Source) land(ctx context.Context, l stage.Layer, c Candidate) (int64, error) {
	desc := ocispec.Descriptor{MediaType: c.Desc.MediaType, Digest: c.Desc.Digest, Size: c.Desc.Size}
	there, err := s.dest.Exists(ctx, desc)
	if err != nil {
		return 0, fmt.Errorf("checking the destination: %w", err)
	}
	if there {
		return 0, s.readBack(ctx, l, c)
	}
	src, err := s.repo(ctx, c.Repo)
	if err != nil {
		return 0, err
	}
	streamed := false
	open := func() (io.ReadCloser, error) {
		streamed = true
		return s.open(ctx, src, l, c)
	}
	if host, path, ok := sameRegistry(c.Repo, s.destName); ok && host != "" {
		err := s.dest.Mount(ctx, desc, path, open)
		switch {
		case err == nil && streamed: // the registry asked for the bytes instead
			return c.Desc.Size, nil
		case err == nil:
			return 0, s.readBack(ctx, l, c)
		case streamed || ctx.Err() != nil: // the stream itself failed: no second try
			return 0, err
		}
		// The mount was refused: stream it instead.
	}
	rc, err := open()
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	if err := s.dest.Push(ctx, desc, rc); err != nil {
		return 0, err
	}
	return c.Desc.Size, nil
}

// readBack proves an untrusted blob that reached the destination without
// being read (there already, or mounted) by reading it back.
func (s *Source) readBack(ctx context.Context, l stage.Layer, c Candidate) error {
	if c.Trusted {
		return nil
	}
	rc, err := s.open(ctx, s.dest, l, c)
	if err != nil {
		return err
	}
	defer rc.Close()
	if _, err := io.Copy(io.Discard, rc); err != nil {
		return fmt.Errorf("reading it back from the destination: %w", err)
	}
	return nil
}

// open fetches c's blob from repo, checked as it is read (see verifier).
func (s *Source) open(ctx context.Context, repo *remote.Repository, l stage.Layer, c Candidate) (io.ReadCloser, error) {
	rc, err := repo.Fetch(ctx, ocispec.Descriptor{MediaType: c.Desc.MediaType, Digest: c.Desc.Digest, Size: c.Desc.Size})
	if err != nil {
		return nil, err
	}
	return newVerifier(rc, l, c)
}

// sameRegistry reports whether repository name a is in the same registry
// as b, and a's path there; host is "" when a is b itself.
func sameRegistry(a, b string) (host, path string, ok bool) {
	ha, pa, _ := strings.Cut(a, "/")
	hb, _, _ := strings.Cut(b, "/")
	if ha != hb {
		return "", "", false
	}
	if a == b {
		return "", pa, true
	}
	return ha, pa, true
}

// errMismatch marks a blob that does not hold what it should.
var errMismatch = errors.New("content mismatch")
