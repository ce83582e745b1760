package release_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/registry/remote"

	"github.com/mcbuild/mcbuild/internal/formats"
	"github.com/mcbuild/mcbuild/internal/imageref"
	"github.com/mcbuild/mcbuild/internal/index"
	"github.com/mcbuild/mcbuild/internal/registry"
	"github.com/mcbuild/mcbuild/internal/release"
	"github.com/mcbuild/mcbuild/internal/testimage"
	"github.com/mcbuild/mcbuild/internal/testregistry"
	"github.com/mcbuild/mcbuild/pkg/subjects"
)

// openRepo opens repo through a registry session made from o.
func openRepo(t *testing.T, repo string, o registry.Options) *remote.Repository {
	t.Helper()
	s, err := registry.NewSession(o)
	if err != nil {
		t.Fatal(err)
	}
	r, err := s.Repository(context.Background(), repo)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func setup(t *testing.T, name string) (*remote.Repository, imageref.Ref, []index.Entry) {
	t.Helper()
	reg := testregistry.StartOlareg(t)
	dest, err := imageref.ParseTagged(reg.Repo(name) + ":v1")
	if err != nil {
		t.Fatal(err)
	}
	repo := openRepo(t, dest.Repository, registry.Options{TLSVerify: false})
	b := testimage.New(t, repo)
	// Published zstd first, arm64 first: the index must still be gzip-first.
	var entries []index.Entry
	for _, v := range []struct {
		platform string
		format   formats.Format
	}{{"linux/arm64", formats.ZstdChunked}, {"linux/arm64", formats.Gzip}, {"linux/amd64", formats.ZstdChunked}, {"linux/amd64", formats.Gzip}} {
		entries = append(entries, index.Entry{Descriptor: b.Image(v.platform, v.format), Format: v.format})
	}
	return repo, dest, entries
}

func TestFinish(t *testing.T) {
	ctx := context.Background()
	repo, dest, entries := setup(t, "release/ok")
	dir := t.TempDir()
	var log bytes.Buffer
	out, err := release.Finish(ctx, repo, dest, entries, release.Options{ResultsDir: dir, Log: &log})
	if err != nil {
		t.Fatal(err)
	}
	tagged, err := repo.Resolve(ctx, "v1")
	if err != nil || tagged.Digest != out.Index.Digest {
		t.Fatalf("tag v1 -> %v (%v), want the index %s", tagged.Digest, err, out.Index.Digest)
	}
	wantOrder := []digest.Digest{entries[1].Descriptor.Digest, entries[0].Descriptor.Digest, entries[3].Descriptor.Digest, entries[2].Descriptor.Digest}
	for i, e := range out.Entries {
		if e.Descriptor.Digest != wantOrder[i] {
			t.Errorf("entry %d is %s, want %s (gzip first per platform, platforms in order of appearance)", i, e.Descriptor.Digest, wantOrder[i])
		}
	}
	for _, e := range out.Entries {
		want, err := index.ImageSize(ctx, repo, e.Descriptor)
		if err != nil || out.Sizes[e.Descriptor.Digest] != want {
			t.Errorf("size of %s = %d, want %d (%v): manifest, config and layers", e.Descriptor.Digest, out.Sizes[e.Descriptor.Digest], want, err)
		}
	}
	found, err := subjects.Find(ctx, repo, out.Index)
	if err != nil || found.Digest != out.Subjects.Digest {
		t.Errorf("subjects artifact found from the index: %v (%v), want %s", found.Digest, err, out.Subjects.Digest)
	}
	if mm, err := subjects.Verify(ctx, repo, dest.Repository, out.Subjects); err != nil || len(mm) != 0 {
		t.Errorf("verify: %v %v", mm, err)
	}
	images, err := os.ReadFile(filepath.Join(dir, "IMAGES"))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(images), ",") + 1; n != 5 {
		t.Errorf("IMAGES lists %d references, want 5 (index + 4 manifests)", n)
	}
	for _, step := range []string{"pushed index", "pushed subjects artifact", "tagged"} {
		if !strings.Contains(log.String(), step) {
			t.Errorf("log lacks %q:\n%s", step, log.String())
		}
	}
	if i, j, k := strings.Index(log.String(), "pushed index"), strings.Index(log.String(), "pushed subjects"), strings.Index(log.String(), "tagged"); !(i < j && j < k) {
		t.Errorf("publishing order is not index, subjects, tag:\n%s", log.String())
	}
}

// TestFinishFailureLeavesTagAndResults: a failure at any step before the tag
// moves leaves the previous tag and writes no result.
func TestFinishFailureLeavesTagAndResults(t *testing.T) {
	ctx := context.Background()
	missing := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString("never pushed"), Size: 123,
		Platform: &ocispec.Platform{OS: "linux", Architecture: "s390x"}}
	tests := []struct {
		name   string
		mutate func([]index.Entry) []index.Entry
		opts   release.Options
		want   string
	}{
		{name: "manifest missing from the registry", mutate: func(es []index.Entry) []index.Entry {
			return append(es, index.Entry{Descriptor: missing, Format: formats.Gzip})
		}, want: missing.Digest.String()},
		{name: "duplicate platform and format", mutate: func(es []index.Entry) []index.Entry {
			dup := es[1]
			dup.Descriptor.Digest = digest.FromString("other")
			return append(es, dup)
		}, want: "linux/arm64"},
		{name: "results over budget", mutate: func(es []index.Entry) []index.Entry { return es },
			opts: release.Options{ResultsBudget: 100}, want: "100-byte"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			repo, dest, entries := setup(t, "release/fail")
			old := testimage.New(t, repo).Image("linux/amd64", formats.Gzip)
			if err := repo.Tag(ctx, old, dest.Tag); err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			tc.opts.ResultsDir = dir
			_, err := release.Finish(ctx, repo, dest, tc.mutate(entries), tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Finish error %v, want one mentioning %q", err, tc.want)
			}
			if got, err := repo.Resolve(ctx, dest.Tag); err != nil || got.Digest != old.Digest {
				t.Errorf("tag moved to %v (%v), want it left at %s", got.Digest, err, old.Digest)
			}
			if files, _ := os.ReadDir(dir); len(files) != 0 {
				t.Errorf("results written on failure: %v", files)
			}
		})
	}
}

// TestFinishStagesBeforeTag: the results and opts.Files are complete
// temporary files before the tag moves and in place after it; a failure
// while staging them leaves the tag where it was and no file at all.
func TestFinishStagesBeforeTag(t *testing.T) {
	ctx := context.Background()
	repo, dest, entries := setup(t, "release/staged")
	old := testimage.New(t, repo).Image("linux/amd64", formats.Gzip)
	if err := repo.Tag(ctx, old, dest.Tag); err != nil {
		t.Fatal(err)
	}
	tagAt := func() digest.Digest {
		got, err := repo.Resolve(ctx, dest.Tag)
		if err != nil {
			t.Fatal(err)
		}
		return got.Digest
	}
	resultsDir, filesDir := t.TempDir(), t.TempDir()
	summary := filepath.Join(filesDir, "summary.json")
	fail := func(what string) func(release.Outcome) ([]release.File, error) {
		return func(out release.Outcome) ([]release.File, error) {
			if what == "error" {
				return nil, errors.New("no summary today")
			}
			if err := os.Mkdir(summary, 0o755); err != nil { // appears mid-run
				t.Fatal(err)
			}
			return []release.File{{Path: summary, What: "summary", Data: []byte("{}")}}, nil
		}
	}
	for _, tc := range []struct{ name, want string }{{"error", "no summary today"}, {"directory", summary + " is a directory"}} {
		_, err := release.Finish(ctx, repo, dest, entries, release.Options{ResultsDir: resultsDir, Files: fail(tc.name)})
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "the tag was not moved") {
			t.Errorf("%s: Finish = %v, want %q and the tag not moved", tc.name, err, tc.want)
		}
		if got := tagAt(); got != old.Digest {
			t.Errorf("%s: tag moved to %s", tc.name, got)
		}
		os.Remove(summary)
		for _, d := range []string{resultsDir, filesDir} {
			if files, _ := os.ReadDir(d); len(files) != 0 {
				t.Errorf("%s: files left in %s: %v", tc.name, d, files)
			}
		}
	}

	var sawIndex digest.Digest
	out, err := release.Finish(ctx, repo, dest, entries, release.Options{ResultsDir: resultsDir, Files: func(out release.Outcome) ([]release.File, error) {
		sawIndex = out.Index.Digest
		if got := tagAt(); got != old.Digest {
			t.Errorf("the tag moved (to %s) before the files were staged", got)
		}
		for _, f := range []string{"IMAGE_DIGEST", "IMAGES"} {
			if _, err := os.Stat(filepath.Join(resultsDir, f)); err == nil {
				t.Errorf("result %s in place before the tag moved", f)
			}
		}
		return []release.File{{Path: summary, What: "summary", Data: []byte(out.Results.ImageRef)}}, nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	if got := tagAt(); got != out.Index.Digest || sawIndex != out.Index.Digest {
		t.Errorf("tag at %s, the hook saw %s, want both %s", got, sawIndex, out.Index.Digest)
	}
	if b, err := os.ReadFile(summary); err != nil || string(b) != out.Results.ImageRef {
		t.Errorf("summary file %q (%v), want %q", b, err, out.Results.ImageRef)
	}
	if files, _ := os.ReadDir(resultsDir); len(files) != 5 {
		t.Errorf("results dir holds %v, want the 5 results and nothing else", files)
	}
}
