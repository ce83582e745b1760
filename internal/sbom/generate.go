package sbom

import (
	"context"
	"encoding/json"
	"fmt"
	"os"

	"github.com/anchore/syft/syft"
	"github.com/anchore/syft/syft/artifact"
	"github.com/anchore/syft/syft/cataloging"
	"github.com/anchore/syft/syft/cataloging/pkgcataloging"
	syftsbom "github.com/anchore/syft/syft/sbom"
	"github.com/anchore/syft/syft/source"
	"github.com/anchore/syft/syft/source/directorysource"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/storage"

	// The RPM cataloger reads rpmdb.sqlite through database/sql and needs
	// a driver named "sqlite"; without it CreateSBOM fails with
	// `sql: unknown driver "sqlite"`.
	_ "modernc.org/sqlite"

	"github.com/mcbuild/mcbuild/internal/oci"
	"github.com/mcbuild/mcbuild/internal/stage"
)

// Image is the stored image an SBOM describes.
type Image struct {
	ID       string // containers/storage image ID
	Name     string // the repository it is published to, e.g. "quay.io/ns/app"
	Platform ocispec.Platform
}

// Catalog lists the packages of img's root filesystem with syft: the image
// is mounted read-only from store (its top layer with every layer below,
// as a container would see it; nothing is pulled or unpacked) and scanned
// as a directory with the catalogers syft runs for container images (its
// "image" tag: dpkg, rpm, apk, Go binaries' build info, Python, npm, Java,
// and the rest), described as the image (its ID, platform and layers).
// Under a context from Prepare, the license scanner is shared.
func Catalog(ctx context.Context, store storage.Store, img Image, version string) (*syftsbom.SBOM, error) {
	loaded, err := stage.Load(store, img.ID)
	if err != nil {
		return nil, err
	}
	root, release, err := mount(store, img.ID, len(loaded.Layers))
	if err != nil {
		return nil, err
	}
	defer release()
	dir, err := directorysource.New(directorysource.Config{
		Path: root, Base: root,
		Alias: source.Alias{Name: img.Name, Version: "sha256:" + img.ID},
	})
	if err != nil {
		return nil, fmt.Errorf("scanning image %s: %w", img.ID, err)
	}
	defer dir.Close()
	src := imageSource{Source: dir, desc: describe(img, loaded)}
	cfg := syft.DefaultCreateSBOMConfig().WithTool("mcbuild", version)
	cfg.CatalogerSelection = cfg.CatalogerSelection.WithDefaults(pkgcataloging.ImageTag)
	s, err := syft.CreateSBOM(ctx, src, cfg)
	if err != nil {
		return nil, fmt.Errorf("cataloging image %s (%s) with syft: %w", img.ID, oci.PlatformString(img.Platform), err)
	}
	return s, nil
}

// Prepare returns ctx with what every Catalog under it shares: syft's
// license scanner, whose construction costs about 1.5 CPU-seconds (it
// would otherwise be built once per platform).
func Prepare(ctx context.Context) (context.Context, error) {
	ctx, err := syft.SetContextLicenseScanner(ctx, cataloging.DefaultLicenseConfig())
	if err != nil {
		return nil, fmt.Errorf("preparing syft's license scanner: %w", err)
	}
	return ctx, nil
}

// mount mounts image id read-only and returns its root and how to unmount
// it. An image without layers is an empty directory.
func mount(store storage.Store, id string, layers int) (string, func(), error) {
	if layers == 0 {
		dir, err := os.MkdirTemp("", "mcbuild-sbom-empty-")
		if err != nil {
			return "", nil, err
		}
		return dir, func() { os.Remove(dir) }, nil
	}
	root, err := store.MountImage(id, nil, "")
	if err != nil {
		return "", nil, fmt.Errorf("mounting image %s read-only to scan it for the SBOM: %w", id, err)
	}
	return root, func() { _, _ = store.UnmountImage(id, false) }, nil
}

// describe is the image as syft's image sources describe one, so the SBOM
// says it describes a container image: its ID (the config digest), its
// platform, labels and layers by diff ID. No manifest digest: the SBOM is
// shared by every compression variant, each a manifest of its own.
func describe(img Image, loaded *stage.Image) source.Description {
	var cfg ocispec.Image
	_ = json.Unmarshal(loaded.Config, &cfg) // stage.Load checked it against its digest
	md := source.ImageMetadata{
		UserInput:    img.Name,
		ID:           "sha256:" + img.ID,
		MediaType:    loaded.Manifest.MediaType,
		RawConfig:    loaded.Config,
		Architecture: img.Platform.Architecture,
		Variant:      img.Platform.Variant,
		OS:           img.Platform.OS,
		Labels:       cfg.Config.Labels,
	}
	for _, l := range loaded.Layers {
		md.Layers = append(md.Layers, source.LayerMetadata{MediaType: oci.MediaTypeImageLayer, Digest: l.DiffID.String(), Size: l.Size})
		md.Size += max(l.Size, 0)
	}
	return source.Description{ID: "sha256:" + img.ID, Name: img.Name, Version: "sha256:" + img.ID, Metadata: md}
}

// imageSource is a directory source (the mounted root filesystem)
// described as the image it is.
type imageSource struct {
	source.Source
	desc source.Description
}

func (s imageSource) ID() artifact.ID              { return artifact.ID(s.desc.ID) }
func (s imageSource) Describe() source.Description { return s.desc }
