// Package reuse finds layer blobs that exist already, in any format mcbuild
// publishes, and lands them at the destination without decompressing and
// compressing them again: a stage.Source asked before compression.
//
// Where it looks, in order: the blobs the build pulled for FROM (storage
// verified them against their diff IDs while pulling), the other manifests
// of the same platform in the FROM image's index (a base published with
// gzip and zstd:chunked entries yields both), the destination tag's
// current index (the previous release), and --reuse-from references.
//
// Trust: a blob is used without reading it only when storage verified,
// during this build's pull, that it decompresses to the layer's diff ID.
// Every other blob is read while it is used (streamed to the destination,
// or read back from it after a HEAD or a cross-repository mount),
// decompressed and hashed; on a mismatch it is not used, a warning names
// it, and the layer is compressed as without reuse. A manifest's word alone
// is never taken.
package reuse

import (
	"context"
	"fmt"
	"io"
	"sync"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/errgroup"
	"oras.land/oras-go/v2/registry/remote"

	"github.com/mcbuild/mcbuild/internal/formats"
	"github.com/mcbuild/mcbuild/internal/registry"
	"github.com/mcbuild/mcbuild/internal/stage"
)

// Where a candidate was found; also the stage.Origin of what it lands.
const (
	FromPulled   = "pulled"           // a blob the build pulled for FROM
	FromBase     = "base"             // another variant in the FROM image's index
	FromPrevious = "previous-release" // the destination tag's current index
	FromFlag     = "reuse-from"       // a --reuse-from reference
)

// OriginPrefix starts the stage.Origin of every blob this package lands:
// OriginPrefix + where it was found.
const OriginPrefix = "reused-"

// Candidate is one existing blob that may hold a layer in one format.
type Candidate struct {
	Repo string             // "host/path" of the repository that lists it
	Desc ocispec.Descriptor // as its manifest lists it (zstd:chunked annotations kept)
	// Trusted: storage verified during this build's pull that the blob
	// decompresses to the layer's diff ID.
	Trusted bool
	From    string // FromPulled, FromBase, FromPrevious or FromFlag
}

// Source lands existing blobs at the destination (see the package doc).
type Source struct {
	sess     *registry.Session
	dest     *remote.Repository
	destName string
	log      io.Writer
	cands    map[digest.Digest]map[formats.Format][]Candidate // by diff ID
	// base is the FROM image's manifest of each format for this platform:
	// each variant's org.opencontainers.image.base.digest.
	base map[formats.Format]digest.Digest

	mu    sync.Mutex
	repos map[string]*remote.Repository
	slots map[string]*slot // by diff ID and format
}

// maxLanding bounds the blobs landed (and checked) at once: a check
// decompresses on one core.
const maxLanding = 2

// slot is the landing of one layer in one format, started once.
type slot struct {
	once sync.Once
	done chan struct{}
	blob *stage.Blob // nil: none could be landed
}

// Prefetch starts landing every layer of layers in every format of fs it has
// a candidate for, at most maxLanding at a time, in layer order, so the
// checks of later layers run while earlier ones upload. Stage then waits for
// what Prefetch started. The landings end with ctx.
func (s *Source) Prefetch(ctx context.Context, layers []stage.Layer, fs []formats.Format) {
	if s == nil {
		return
	}
	sem := make(chan struct{}, maxLanding)
	go func() {
		for _, l := range layers {
			for _, f := range fs {
				if len(s.cands[l.DiffID][f]) == 0 {
					continue
				}
				select {
				case sem <- struct{}{}:
				case <-ctx.Done():
					return
				}
				go func() {
					defer func() { <-sem }()
					s.landSlot(ctx, l, f)
				}()
			}
		}
	}()
}

// landSlot lands l in format f once, whoever asks first, and returns what
// that landing gave once it is done.
func (s *Source) landSlot(ctx context.Context, l stage.Layer, f formats.Format) *stage.Blob {
	s.mu.Lock()
	key := l.DiffID.String() + " " + string(f)
	sl, ok := s.slots[key]
	if !ok {
		sl = &slot{done: make(chan struct{})}
		s.slots[key] = sl
	}
	s.mu.Unlock()
	sl.once.Do(func() {
		sl.blob = s.landAny(ctx, l, f, s.cands[l.DiffID][f])
		close(sl.done)
	})
	select {
	case <-sl.done:
		return sl.blob
	case <-ctx.Done():
		return nil
	}
}

// Stage lands layer l in every format of fs it has a candidate for (or
// takes what Prefetch landed); a nil entry is a format to compress.
// Formats are landed concurrently.
func (s *Source) Stage(ctx context.Context, l stage.Layer, fs []formats.Format, _ stage.Settings) ([]*stage.Blob, error) {
	if s == nil {
		return nil, nil
	}
	out := make([]*stage.Blob, len(fs))
	g, gctx := errgroup.WithContext(ctx)
	for i, f := range fs {
		if len(s.cands[l.DiffID][f]) == 0 {
			continue
		}
		g.Go(func() error {
			out[i] = s.landSlot(gctx, l, f)
			return gctx.Err()
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// landAny tries the candidates in order; nil when none could be landed
// (each failure is a warning).
func (s *Source) landAny(ctx context.Context, l stage.Layer, f formats.Format, cands []Candidate) *stage.Blob {
	for _, c := range cands {
		uploaded, err := s.land(ctx, l, c)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			s.warnf("reusing layer %s (diff ID %s) as %s from %s@%s (%s): %v; trying the next source or compressing it", l.ID, l.DiffID, f, c.Repo, c.Desc.Digest, c.From, err)
			continue
		}
		desc := c.Desc
		desc.MediaType = f.LayerMediaType() // a Docker gzip layer in an OCI manifest
		desc.URLs, desc.Platform, desc.ArtifactType, desc.Data = nil, nil, "", nil
		return &stage.Blob{Desc: desc, Origin: stage.Origin(OriginPrefix + c.From), Present: true, Uploaded: uploaded}
	}
	return nil
}

// ManifestAnnotations are what the variant of format f must say instead of
// the stored manifest: its base manifest is the FROM image's manifest of
// the same compression, where the base has one.
func (s *Source) ManifestAnnotations(f formats.Format) map[string]string {
	if s == nil {
		return nil
	}
	if d, ok := s.base[f]; ok {
		return map[string]string{ocispec.AnnotationBaseImageDigest: d.String()}
	}
	return nil
}

// Candidates counts the candidates per diff ID and format (tests, logs).
func (s *Source) Candidates() int {
	n := 0
	for _, byFormat := range s.cands {
		for _, cs := range byFormat {
			n += len(cs)
		}
	}
	return n
}

func (s *Source) warnf(format string, a ...any) {
	if s.log != nil {
		s.mu.Lock()
		defer s.mu.Unlock()
		fmt.Fprintf(s.log, "Warning: "+format+"\n", a...)
	}
}

// repo returns a client for repository name ("host/path"), one per name.
func (s *Source) repo(ctx context.Context, name string) (*remote.Repository, error) {
	if name == s.destName {
		return s.dest, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if r, ok := s.repos[name]; ok {
		return r, nil
	}
	r, err := s.sess.Repository(ctx, name)
	if err != nil {
		return nil, err
	}
	s.repos[name] = r
	return r, nil
}
