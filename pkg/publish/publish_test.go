package publish_test

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/buildah"
	"go.podman.io/image/v5/types"
	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/errcode"

	"github.com/mcbuild/mcbuild/internal/imagecheck"
	"github.com/mcbuild/mcbuild/internal/testfixture"
	"github.com/mcbuild/mcbuild/internal/testregistry"
	"github.com/mcbuild/mcbuild/pkg/build"
	"github.com/mcbuild/mcbuild/pkg/formats"
	"github.com/mcbuild/mcbuild/pkg/publish"
)

func TestMain(m *testing.M) {
	if buildah.InitReexec() {
		return
	}
	os.Exit(m.Run())
}

const containerfile = `FROM scratch
COPY rootfs/amd64/ /
RUN echo built > /built.txt && mkdir -p /data && seq_out=$(printf 'line %s\n' 1 2 3 4 5) && echo "$seq_out" > /data/lines
COPY payload.txt /payload.txt
`

// TestPublishVariants builds once and publishes every format, then reads each
// variant back: layer media types, diffIDs, TOC, and one config for all.
func TestPublishVariants(t *testing.T) {
	ctx := context.Background()
	reg := testregistry.StartDistribution(t)
	dir := testfixture.Context(t, map[string]string{"Containerfile": containerfile, "payload.txt": "payload\n"}, "amd64")
	tmp := t.TempDir()
	store, err := build.OpenStore(build.StoreOptions{Driver: "vfs", Root: filepath.Join(tmp, "root"), RunRoot: filepath.Join(tmp, "run")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = store.Shutdown(true) })
	platform := ocispec.Platform{OS: "linux", Architecture: "amd64"}
	img, err := build.Build(ctx, store, build.Options{
		ContextDir: dir, Containerfile: filepath.Join(dir, "Containerfile"), TmpDir: filepath.Join(tmp, "tmp"),
	}, platform)
	if err != nil {
		t.Fatal(err)
	}
	sys := &types.SystemContext{DockerInsecureSkipTLSVerify: types.OptionalBoolTrue}
	repoName := reg.Repo("publish/variants")
	all := []formats.Format{formats.Gzip, formats.ZstdChunked, formats.Zstd}
	entries, err := publish.Publish(ctx, store, publish.Image{ID: img.ID, Platform: platform}, repoName, all,
		publish.Options{SystemContext: sys, BlobInfoCacheDir: filepath.Join(tmp, "cache")})
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != len(all) {
		t.Fatalf("got %d entries, want %d", len(entries), len(all))
	}
	repo, err := remote.NewRepository(repoName)
	if err != nil {
		t.Fatal(err)
	}
	repo.PlainHTTP = true
	configs := map[string]bool{}
	for i, e := range entries {
		if e.Format != all[i] {
			t.Errorf("entry %d format %s, want %s", i, e.Format, all[i])
		}
		if e.Descriptor.Platform == nil || e.Descriptor.Platform.Architecture != "amd64" {
			t.Errorf("entry %d platform %v, want linux/amd64", i, e.Descriptor.Platform)
		}
		v, err := imagecheck.Check(ctx, repo, e.Descriptor, e.Format)
		if err != nil {
			t.Fatalf("%s variant: %v", e.Format, err)
		}
		if len(v.Manifest.Layers) != 3 {
			t.Errorf("%s variant has %d layers, want 3 (COPY, RUN, COPY)", e.Format, len(v.Manifest.Layers))
		}
		configs[v.ConfigDigest.String()] = true
	}
	if len(configs) != 1 {
		t.Errorf("variants of one platform have %d different configs, want 1: %v", len(configs), configs)
	}
	// Published by digest only: no tag may exist.
	var tags []string
	err = repo.Tags(ctx, "", func(ts []string) error { tags = append(tags, ts...); return nil })
	var errResp *errcode.ErrorResponse
	if err != nil && !(errors.As(err, &errResp) && errResp.StatusCode == http.StatusNotFound) {
		t.Fatalf("listing tags: %v", err) // distribution answers 404 for a repository without tags
	}
	if len(tags) != 0 {
		t.Errorf("publish left tags behind: %v", tags)
	}
}

func TestCheckLayers(t *testing.T) {
	gz := `{"schemaVersion":2,"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip"}]}`
	zs := `{"schemaVersion":2,"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+zstd"}]}`
	ch := `{"schemaVersion":2,"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+zstd","annotations":{"io.github.containers.zstd-chunked.manifest-checksum":"sha256:00"}}]}`
	tests := []struct {
		manifest string
		format   formats.Format
		ok       bool
	}{
		{gz, formats.Gzip, true},
		{zs, formats.Gzip, false},
		{zs, formats.Zstd, true},
		{gz, formats.Zstd, false},
		{ch, formats.ZstdChunked, true},
		{zs, formats.ZstdChunked, false},
		{`{`, formats.Gzip, false},
	}
	for i, tc := range tests {
		err := publish.CheckLayers([]byte(tc.manifest), tc.format)
		if (err == nil) != tc.ok {
			t.Errorf("case %d (%s): err = %v, want ok=%v", i, tc.format, err, tc.ok)
		}
	}
}
