package index

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/errdef"

	"github.com/mcbuild/mcbuild/internal/formats"
	"github.com/mcbuild/mcbuild/internal/oci"
)

// untrustedStore serves bytes by digest and checks nothing, as a hostile
// registry would; Collect must verify what it reads.
type untrustedStore map[digest.Digest][]byte

func (s untrustedStore) Fetch(_ context.Context, d ocispec.Descriptor) (io.ReadCloser, error) {
	b, ok := s[d.Digest]
	if !ok {
		return nil, errdef.ErrNotFound
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}

// Templates for the fuzzer's documents: "<C>"/<CS> are the child's digest
// and size, "<G>"/<GS> the config's, filled in from the fuzzed bytes.
const (
	fuzzRootIndex = `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[` +
		`{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"<C>","size":<CS>,"platform":{"os":"linux","architecture":"arm","variant":"v7"},"annotations":{"io.github.containers.compression.zstd":"true"}}]}`
	// The same child twice, once without a platform (taken from its config).
	fuzzRootTwice = `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[` +
		`{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"<C>","size":<CS>,"platform":{"os":"linux","architecture":"amd64","os.features":["a"]}},` +
		`{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"<C>","size":<CS>}]}`
	fuzzChild = `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",` +
		`"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"<G>","size":<GS>},` +
		`"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+zstd","digest":"sha256:` +
		"2222222222222222222222222222222222222222222222222222222222222222" +
		`","size":10,"annotations":{"io.github.containers.zstd-chunked.manifest-checksum":"x"}}]}`
	fuzzConfig = `{"os":"linux","architecture":"amd64","os.features":["a"],"rootfs":{"type":"layers","diff_ids":[]}}`
)

var fuzzRootTypes = []string{
	ocispec.MediaTypeImageIndex, ocispec.MediaTypeImageManifest,
	oci.MediaTypeDockerManifestList, oci.MediaTypeDockerManifest, "application/octet-stream",
}

// FuzzCollect: Collect over an arbitrary root (index or manifest), child
// manifest and config never panics, and what it accepts is sane: every
// entry is an image manifest that was actually served, with a platform and
// a known format; collecting again gives the same entries; and Assemble
// either accepts them or refuses with an error, without panicking.
func FuzzCollect(f *testing.F) {
	f.Add([]byte(fuzzRootIndex), []byte(fuzzChild), []byte(fuzzConfig), uint8(0))
	f.Add([]byte(fuzzRootTwice), []byte(fuzzChild), []byte(fuzzConfig), uint8(0))
	f.Add([]byte(fuzzChild), []byte(fuzzChild), []byte(fuzzConfig), uint8(1))
	f.Add([]byte(fuzzRootIndex), []byte(fuzzRootIndex), []byte(fuzzConfig), uint8(0))
	f.Add([]byte(`{"manifests":[{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"<C>","size":<CS>}]}`), []byte(`{"manifests":[]}`), []byte(`{}`), uint8(2))
	f.Add([]byte(fuzzChild), []byte{}, []byte(`{"os":"unknown","architecture":"unknown"}`), uint8(3))
	f.Add([]byte(fuzzChild), []byte{}, []byte(fuzzConfig), uint8(1))
	f.Fuzz(func(t *testing.T, root, child, config []byte, rootType uint8) {
		gd := digest.FromBytes(config)
		for _, doc := range []*[]byte{&child, &root} {
			*doc = bytes.ReplaceAll(*doc, []byte("<G>"), []byte(gd.String()))
			*doc = bytes.ReplaceAll(*doc, []byte("<GS>"), []byte(strconv.Itoa(len(config))))
		}
		cd := digest.FromBytes(child)
		root = bytes.ReplaceAll(root, []byte("<C>"), []byte(cd.String()))
		root = bytes.ReplaceAll(root, []byte("<CS>"), []byte(strconv.Itoa(len(child))))
		rootDesc := ocispec.Descriptor{
			MediaType: fuzzRootTypes[int(rootType)%len(fuzzRootTypes)],
			Digest:    digest.FromBytes(root),
			Size:      int64(len(root)),
		}
		store := untrustedStore{gd: config, cd: child, rootDesc.Digest: root}
		ctx := context.Background()
		entries, warnings, err := Collect(ctx, store, []ocispec.Descriptor{rootDesc})
		if testing.Verbose() {
			t.Logf("%d entries, %d warnings, err %v", len(entries), len(warnings), err)
		}
		if err != nil {
			if len(entries) != 0 {
				t.Fatalf("error %v with %d entries", err, len(entries))
			}
			return
		}
		if len(entries) == 0 {
			t.Fatal("no error and no entries")
		}
		for i, e := range entries {
			d := e.Descriptor
			served, ok := store[d.Digest]
			switch {
			case !ok || digest.FromBytes(served) != d.Digest || int64(len(served)) != d.Size:
				t.Fatalf("entry %d (%s, size %d) is not a document that was served", i, d.Digest, d.Size)
			case !oci.IsManifest(d.MediaType):
				t.Fatalf("entry %d has media type %q", i, d.MediaType)
			case d.Platform == nil:
				t.Fatalf("entry %d has no platform", i)
			case !isKnownFormat(e.Format):
				t.Fatalf("entry %d has format %q", i, e.Format)
			case d.Annotations[oci.AnnotationZstd] == "true" && !e.Format.IsZstd():
				t.Fatalf("entry %d: zstd annotation on %s", i, e.Format)
			case d.Annotations[ocispec.AnnotationRefName] != "" && d.Digest == rootDesc.Digest:
				t.Fatalf("entry %d kept the root's ref.name annotation", i)
			}
		}
		again, warnings2, err := Collect(ctx, store, []ocispec.Descriptor{rootDesc})
		if err != nil || !reflect.DeepEqual(entries, again) || !reflect.DeepEqual(warnings, warnings2) {
			t.Fatalf("Collect is not deterministic: %v\n%v\n%v", err, entries, again)
		}
		if _, err := Assemble(entries); err != nil && len(entries) == 1 {
			t.Fatalf("Assemble refused a single entry: %v", err)
		}
	})
}

func isKnownFormat(f formats.Format) bool {
	for _, k := range formats.Known {
		if f == k {
			return true
		}
	}
	return false
}

// TestUntrustedStoreVerified pins down that the fuzzer's store really does
// serve wrong bytes, so FuzzCollect exercises Collect's own checks.
func TestUntrustedStoreVerified(t *testing.T) {
	child := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%064d","size":2},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%064d","size":1}]}`,
		ocispec.MediaTypeImageManifest, 1, 2))
	d := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(child), Size: int64(len(child)),
		Platform: &ocispec.Platform{OS: "linux", Architecture: "amd64"}}
	store := untrustedStore{d.Digest: append([]byte(" "), child[1:]...)}
	root := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageIndex}
	idx := []byte(fmt.Sprintf(`{"schemaVersion":2,"manifests":[{"mediaType":%q,"digest":%q,"size":%d,"platform":{"os":"linux","architecture":"amd64"}}]}`,
		d.MediaType, d.Digest, d.Size))
	root.Digest, root.Size = digest.FromBytes(idx), int64(len(idx))
	store[root.Digest] = idx
	if _, _, err := Collect(context.Background(), store, []ocispec.Descriptor{root}); err == nil {
		t.Fatal("Collect accepted a manifest whose bytes do not match its digest")
	}
}
