package stage

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/manifest"
	"go.podman.io/storage"
	"go.podman.io/storage/pkg/chunked/toc"
)

// Image is a stored image as staging reads it: its OCI manifest and config
// as stored, and its layers bottom first.
type Image struct {
	Manifest ocispec.Manifest
	Config   []byte
	Layers   []Layer
}

// DiffIDs lists the layers' diff IDs, bottom first.
func (img *Image) DiffIDs() []digest.Digest {
	out := make([]digest.Digest, len(img.Layers))
	for i, l := range img.Layers {
		out[i] = l.DiffID
	}
	return out
}

// Layer is one layer of a stored image.
type Layer struct {
	ID string // storage layer ID; "" for a commit tar (Early) not yet in storage
	// DiffID is what the layer's uncompressed tar must hash to (the
	// config's rootfs.diff_ids entry).
	DiffID digest.Digest
	Size   int64 // uncompressed size, -1 if storage does not know it
	// Annotations are the stored manifest's annotations of this layer,
	// without those describing a (previous) chunked compression.
	Annotations map[string]string
}

// String names the layer in messages: by its storage ID, or by its diff ID
// if it came from a commit tar (Early) and has none yet.
func (l Layer) String() string {
	if l.ID != "" {
		return l.ID
	}
	return "with diff ID " + l.DiffID.String()
}

// Load reads image id's manifest, config and layer chain from store
// and checks that they agree with each other.
func Load(store storage.Store, id string) (*Image, error) {
	img, err := store.Image(id)
	if err != nil {
		return nil, fmt.Errorf("image %s in storage: %w", id, err)
	}
	mb, err := store.ImageBigData(img.ID, storage.ImageDigestBigDataKey)
	if err != nil {
		return nil, fmt.Errorf("image %s in storage: reading its manifest: %w", img.ID, err)
	}
	if mt := manifest.GuessMIMEType(mb); mt != ocispec.MediaTypeImageManifest {
		return nil, fmt.Errorf("image %s in storage has a %s manifest; staging reads OCI images only (the copy publisher converts)", img.ID, mt)
	}
	var src Image
	if err := json.Unmarshal(mb, &src.Manifest); err != nil {
		return nil, fmt.Errorf("image %s in storage: parsing its manifest: %w", img.ID, err)
	}
	cd := src.Manifest.Config.Digest
	if err := cd.Validate(); err != nil {
		return nil, fmt.Errorf("image %s in storage: config digest %q: %w", img.ID, cd, err)
	}
	if src.Config, err = store.ImageBigData(img.ID, cd.String()); err != nil {
		return nil, fmt.Errorf("image %s in storage: reading its config %s: %w", img.ID, cd, err)
	}
	if got := cd.Algorithm().FromBytes(src.Config); got != cd || int64(len(src.Config)) != src.Manifest.Config.Size {
		return nil, fmt.Errorf("image %s in storage: its config is %s (%d bytes), the manifest says %s (%d bytes)", img.ID, got, len(src.Config), cd, src.Manifest.Config.Size)
	}
	var cfg ocispec.Image
	if err := json.Unmarshal(src.Config, &cfg); err != nil {
		return nil, fmt.Errorf("image %s in storage: parsing its config: %w", img.ID, err)
	}

	chain, err := LayerChain(store, img.TopLayer)
	if err != nil {
		return nil, fmt.Errorf("image %s in storage: %w", img.ID, err)
	}
	diffIDs := cfg.RootFS.DiffIDs
	if len(chain) != len(src.Manifest.Layers) || len(chain) != len(diffIDs) {
		return nil, fmt.Errorf("image %s in storage: %d layers in storage, %d in its manifest, %d diff IDs in its config", img.ID, len(chain), len(src.Manifest.Layers), len(diffIDs))
	}
	for i, l := range chain {
		if l.UncompressedDigest != "" && l.UncompressedDigest != diffIDs[i] {
			return nil, fmt.Errorf("image %s in storage: layer %d (%s) has content %s, its config says %s", img.ID, i, l.ID, l.UncompressedDigest, diffIDs[i])
		}
		size := l.UncompressedSize
		if size <= 0 {
			size = -1
		}
		ann := maps.Clone(src.Manifest.Layers[i].Annotations)
		maps.DeleteFunc(ann, func(k, _ string) bool {
			_, chunked := toc.ChunkedAnnotations[k]
			return chunked
		})
		src.Layers = append(src.Layers, Layer{ID: l.ID, DiffID: diffIDs[i], Size: size, Annotations: ann})
	}
	return &src, nil
}

// LayerChain is the storage layers from the bottom up to top.
func LayerChain(store storage.Store, top string) ([]*storage.Layer, error) {
	var chain []*storage.Layer // top first
	for lid := top; lid != ""; {
		l, err := store.Layer(lid)
		if err != nil {
			return nil, fmt.Errorf("reading layer %s: %w", lid, err)
		}
		chain = append(chain, l)
		lid = l.Parent
	}
	slices.Reverse(chain)
	return chain, nil
}
