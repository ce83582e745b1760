package index

import (
	"context"
	"reflect"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content"

	"github.com/mcbuild/mcbuild/internal/oci"
	"github.com/mcbuild/mcbuild/internal/registry"
	"github.com/mcbuild/mcbuild/internal/testregistry"
)

// TestMergeOnRegistries pushes a buildkit-like index and a single-platform
// image to real registries, merges them through internal/registry's repository,
// pushes the result and reads it back.
func TestMergeOnRegistries(t *testing.T) {
	tests := []struct {
		name  string
		start func(testing.TB) *testregistry.Registry
	}{
		{name: "distribution", start: func(t testing.TB) *testregistry.Registry { return testregistry.StartDistribution(t) }},
		{name: "olareg", start: testregistry.StartOlareg},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			reg := tc.start(t)
			repoName := reg.Repo("mcbuild/merge")
			sess, err := registry.NewSession(registry.Options{TLSVerify: false})
			if err != nil {
				t.Fatal(err)
			}
			repo, err := sess.Repository(ctx, repoName)
			if err != nil {
				t.Fatal(err)
			}
			b := newBuilder(t, repo)

			amdGz := on(b.gzipImage("linux/amd64"), "linux/amd64")
			amdZc := annotate(on(b.chunkedImage("linux/amd64"), "linux/amd64"), oci.AnnotationZstd, "true")
			att := annotate(on(b.gzipImage(""), "unknown/unknown"), oci.AnnotationDockerReferenceType, attestation)
			b.Tag(b.Index(amdZc, att, amdGz), "amd64")
			armZc := b.chunkedImage("linux/arm64/v8")
			b.Tag(armZc, "arm64-zstd")
			armGz := b.gzipImage("linux/arm64")
			armIdx := b.Index(on(armGz, "linux/arm64"))

			// Merge: a tag, a full reference, and a digest.
			entries, warns, err := Merge(ctx, repo, "amd64", repoName+":arm64-zstd", armIdx.Digest.String())
			if err != nil {
				t.Fatal(err)
			}
			idx, err := Assemble(entries)
			if err != nil {
				t.Fatal(err)
			}
			if len(warns) != 1 || !strings.Contains(warns[0], att.Digest.String()) {
				t.Errorf("warnings %q, want one naming the attestation %s", warns, att.Digest)
			}
			var got []digest.Digest
			for _, d := range idx.Manifests {
				got = append(got, d.Digest)
			}
			want := []digest.Digest{amdGz.Digest, amdZc.Digest, armGz.Digest, armZc.Digest}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("index order:\n got %v\nwant %v", got, want)
			}
			if v := idx.Manifests[3].Platform.Variant; v != "v8" {
				t.Errorf("arm64 zstd platform variant %q, want v8 from its config", v)
			}

			// Push the merged index and read it back by tag.
			data, desc, err := Marshal(idx)
			if err != nil {
				t.Fatal(err)
			}
			if err := repo.Push(ctx, desc, strings.NewReader(string(data))); err != nil {
				t.Fatalf("push index: %v", err)
			}
			if err := repo.Tag(ctx, desc, "merged"); err != nil {
				t.Fatal(err)
			}
			resolved, err := oras.Resolve(ctx, repo, "merged", oras.DefaultResolveOptions)
			if err != nil {
				t.Fatal(err)
			}
			if resolved.Digest != desc.Digest || resolved.Size != desc.Size {
				t.Fatalf("registry resolves merged to %s/%d, pushed %s/%d", resolved.Digest, resolved.Size, desc.Digest, desc.Size)
			}
			back, err := content.FetchAll(ctx, repo, resolved)
			if err != nil {
				t.Fatal(err)
			}
			if string(back) != string(data) {
				t.Fatalf("registry returned other bytes for the index")
			}

			// Collecting the merged index again gives the same entries.
			entries, warns, err = Collect(ctx, repo, []ocispec.Descriptor{resolved})
			if err != nil {
				t.Fatal(err)
			}
			again, err := Assemble(entries)
			if err != nil {
				t.Fatal(err)
			}
			if len(warns) != 0 || !reflect.DeepEqual(again, idx) {
				t.Errorf("re-collecting the merged index: warnings %q, index differs: %v", warns, !reflect.DeepEqual(again, idx))
			}
		})
	}
}
