package reuse

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/storage"
	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry/remote"

	"github.com/mcbuild/mcbuild/internal/formats"
	"github.com/mcbuild/mcbuild/internal/oci"
	"github.com/mcbuild/mcbuild/internal/registry"
	"github.com/mcbuild/mcbuild/internal/stage"
)

// maxManifestsPerRef bounds the manifests of one platform read from one
// reference (an index may list many variants; mcbuild's has two).
const maxManifestsPerRef = 8

// Options say where Find looks and where blobs land.
type Options struct {
	Session  *registry.Session
	Dest     *remote.Repository // the destination repository
	DestName string             // its "host/path"
	DestTag  string             // the tag the release will move: its index is the previous release
	// ReuseFrom are more references ("host/path[:tag][@digest]") whose
	// layers the image may share, e.g. a cache repository.
	ReuseFrom []string
	Log       io.Writer // warnings
}

// Find collects the candidates for the layers of stored image id, built for
// platform. Sources that cannot be read are warnings (the previous release
// missing is normal and silent); Find fails only when ctx ends or the
// stored image cannot be read.
func Find(ctx context.Context, store storage.Store, id string, platform ocispec.Platform, o Options) (*Source, error) {
	img, err := stage.Load(store, id)
	if err != nil {
		return nil, err
	}
	s := &Source{
		sess: o.Session, dest: o.Dest, destName: o.DestName, log: o.Log,
		cands: map[digest.Digest]map[formats.Format][]Candidate{}, base: map[formats.Format]digest.Digest{},
		repos: map[string]*remote.Repository{}, slots: map[string]*slot{},
	}
	for _, d := range img.DiffIDs() {
		s.cands[d] = map[formats.Format][]Candidate{}
	}
	if err := s.findPulled(store, id, img); err != nil {
		s.warnf("reuse: reading the images the build pulled: %v", err)
	}
	if name := img.Manifest.Annotations[ocispec.AnnotationBaseImageName]; name != "" {
		byFormat, err := s.fromReference(ctx, name, platform, FromBase)
		if err != nil && ctx.Err() == nil {
			s.warnf("reuse: the base image %s: %v; its layers are reused only as pulled", name, err)
		}
		s.base = byFormat
	}
	if _, err := s.fromReference(ctx, o.DestName+":"+o.DestTag, platform, FromPrevious); err != nil && !errors.Is(err, errdef.ErrNotFound) && ctx.Err() == nil {
		s.warnf("reuse: the previous release %s:%s: %v", o.DestName, o.DestTag, err)
	}
	for _, ref := range o.ReuseFrom {
		if _, err := s.fromReference(ctx, ref, platform, FromFlag); err != nil && ctx.Err() == nil {
			s.warnf("reuse: %s: %v", ref, err)
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.order()
	return s, nil
}

// findPulled adds the layers of the named images in store that this image
// is built on: trusted where storage recorded, while pulling, both the
// blob's digest and the diff ID it decompressed to.
func (s *Source) findPulled(store storage.Store, id string, img *stage.Image) error {
	chain := map[string]bool{}
	for _, l := range img.Layers {
		chain[l.ID] = true
	}
	images, err := store.Images()
	if err != nil {
		return err
	}
	for _, base := range images {
		if base.ID == id || len(base.Names) == 0 || !chain[base.TopLayer] {
			continue
		}
		repo, ok := repository(base.Names[0])
		if !ok {
			continue
		}
		man, diffIDs, layers, err := stored(store, base)
		if err != nil {
			return err
		}
		for i, l := range man.Layers {
			trusted := layers[i].CompressedDigest == l.Digest && layers[i].UncompressedDigest == diffIDs[i]
			s.add(diffIDs[i], Candidate{Repo: repo, Desc: l, Trusted: trusted, From: FromPulled})
		}
	}
	return nil
}

// stored reads a pulled image's manifest as pulled (OCI or Docker schema
// 2), its config's diff IDs and its storage layers, bottom first.
func stored(store storage.Store, img storage.Image) (ocispec.Manifest, []digest.Digest, []*storage.Layer, error) {
	var man ocispec.Manifest
	var cfg ocispec.Image
	raw, err := store.ImageBigData(img.ID, storage.ImageDigestBigDataKey)
	if err == nil {
		err = json.Unmarshal(raw, &man)
	}
	if err == nil {
		raw, err = store.ImageBigData(img.ID, man.Config.Digest.String())
	}
	if err == nil {
		err = json.Unmarshal(raw, &cfg)
	}
	if err != nil {
		return man, nil, nil, fmt.Errorf("image %s (%s): %w", img.ID, img.Names[0], err)
	}
	layers, err := stage.LayerChain(store, img.TopLayer)
	if err != nil {
		return man, nil, nil, err
	}
	if len(layers) != len(man.Layers) || len(layers) != len(cfg.RootFS.DiffIDs) {
		return man, nil, nil, fmt.Errorf("image %s (%s): %d layers in storage, %d in its manifest, %d diff IDs", img.ID, img.Names[0], len(layers), len(man.Layers), len(cfg.RootFS.DiffIDs))
	}
	return man, cfg.RootFS.DiffIDs, layers, nil
}

// repository is the "host/path" of a storage image name.
func repository(name string) (string, bool) {
	named, err := reference.ParseNormalizedNamed(name)
	if err != nil {
		return "", false
	}
	return reference.TrimNamed(named).String(), true
}

// fromReference adds the layers of the manifests for platform that ref
// names (itself, or the entries of its index), untrusted, and returns
// the first manifest of each format.
func (s *Source) fromReference(ctx context.Context, ref string, platform ocispec.Platform, from string) (map[formats.Format]digest.Digest, error) {
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return nil, err
	}
	repoName := reference.TrimNamed(named).String()
	repo, err := s.repo(ctx, repoName)
	if err != nil {
		return nil, err
	}
	root, err := repo.Resolve(ctx, referenceOf(named))
	if err != nil {
		return nil, err
	}
	manifests := []ocispec.Descriptor{root}
	if oci.IsIndex(root.MediaType) {
		raw, err := oci.FetchBounded(ctx, repo, root, oci.MaxDocumentBytes, "index")
		if err != nil {
			return nil, err
		}
		var idx ocispec.Index
		if err := json.Unmarshal(raw, &idx); err != nil {
			return nil, fmt.Errorf("index %s: %w", root.Digest, err)
		}
		manifests = manifests[:0]
		for _, m := range idx.Manifests {
			if m.Platform != nil && oci.SamePlatform(*m.Platform, platform) && oci.IsManifest(m.MediaType) && len(manifests) < maxManifestsPerRef {
				manifests = append(manifests, m)
			}
		}
	}
	byFormat := map[formats.Format]digest.Digest{}
	for _, m := range manifests {
		f, err := s.fromManifest(ctx, repo, repoName, m, platform, from)
		if err != nil {
			return byFormat, err
		}
		if _, seen := byFormat[f]; f != "" && !seen {
			byFormat[f] = m.Digest
		}
	}
	return byFormat, nil
}

// referenceOf is the tag or digest part of named ("latest" when none).
func referenceOf(named reference.Named) string {
	if d, ok := named.(reference.Digested); ok {
		return d.Digest().String()
	}
	if t, ok := named.(reference.Tagged); ok {
		return t.Tag()
	}
	return "latest"
}

// fromManifest adds the layers of manifest m, paired with its config's diff
// IDs, and returns its format ("" when its layers are not all of one
// format mcbuild publishes, or it is for another platform).
func (s *Source) fromManifest(ctx context.Context, repo *remote.Repository, repoName string, m ocispec.Descriptor, platform ocispec.Platform, from string) (formats.Format, error) {
	raw, err := oci.FetchBounded(ctx, repo, m, oci.MaxDocumentBytes, "manifest")
	if err != nil {
		return "", err
	}
	var man ocispec.Manifest
	if err := json.Unmarshal(raw, &man); err != nil {
		return "", fmt.Errorf("manifest %s: %w", m.Digest, err)
	}
	rawCfg, err := oci.FetchBounded(ctx, repo, man.Config, oci.MaxDocumentBytes, "config")
	if err != nil {
		return "", err
	}
	var cfg ocispec.Image
	if err := json.Unmarshal(rawCfg, &cfg); err != nil {
		return "", fmt.Errorf("config %s: %w", man.Config.Digest, err)
	}
	if !oci.SamePlatform(cfg.Platform, platform) || len(cfg.RootFS.DiffIDs) != len(man.Layers) {
		return "", nil
	}
	var format formats.Format
	for i, l := range man.Layers {
		f, ok := formats.OfLayer(l)
		if !ok || (format != "" && f != format) {
			return "", nil
		}
		format = f
		s.add(cfg.RootFS.DiffIDs[i], Candidate{Repo: repoName, Desc: l, From: from})
	}
	return format, nil
}

// add records c for diffID when the image has that layer and c's blob is
// not a candidate for it already (a trusted find wins).
func (s *Source) add(diffID digest.Digest, c Candidate) {
	byFormat, wanted := s.cands[diffID]
	f, ok := formats.OfLayer(c.Desc)
	if !wanted || !ok || c.Desc.Size <= 0 || c.Desc.Digest.Validate() != nil {
		return
	}
	for i, have := range byFormat[f] {
		if have.Desc.Digest == c.Desc.Digest {
			if c.Trusted && !have.Trusted {
				byFormat[f][i] = c
			}
			return
		}
	}
	byFormat[f] = append(byFormat[f], c)
}

// order puts trusted candidates first, then already at the destination,
// keeping the order found otherwise.
func (s *Source) order() {
	rank := func(c Candidate) int {
		switch {
		case c.Trusted:
			return 0
		case c.Repo == s.destName:
			return 1
		}
		return 2
	}
	for _, byFormat := range s.cands {
		for _, cs := range byFormat {
			slices.SortStableFunc(cs, func(a, b Candidate) int { return rank(a) - rank(b) })
		}
	}
}
