package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/registry/remote"

	"github.com/mcbuild/mcbuild/internal/oci"
	"github.com/mcbuild/mcbuild/internal/testregistry"
)

// TestSBOMDiscovery: a two-platform build attaches one SBOM per platform
// to both of its manifests (one shared blob) and an index SBOM to the
// index, found through the referrers API on olareg and through the
// referrers tag (sha256-<hex>) on distribution; SBOM_BLOB_URL names the
// index SBOM's blob; inspect shows every SBOM; subjects verify
// --require-sbom passes here and fails on a build made with --sbom=false.
func TestSBOMDiscovery(t *testing.T) {
	for _, tc := range []struct {
		name      string
		referrers bool // the registry has the referrers API
		start     func(testing.TB) *testregistry.Registry
		format    string
		mediaType string
	}{
		{"olareg referrers API", true, testregistry.StartOlareg, "spdx-json", oci.MediaTypeSPDXJSON},
		{"distribution referrers tag", false, func(t testing.TB) *testregistry.Registry { return testregistry.StartDistribution(t) }, "cyclonedx-json", oci.MediaTypeCycloneDXJSON},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := tc.start(t)
			repoName := reg.Repo("e2e/sbom")
			dir := contextFiles(t, copyContainerfile)
			resultsDir := t.TempDir()
			args := append([]string{"build", "--tls-verify=false", "--image", repoName + ":v1", "--context", dir,
				"--platform", "linux/amd64,linux/arm64", "--results-dir", resultsDir, "--sbom-format", tc.format}, storageFlags(t)...)
			r := mustRun(t, []string{"SOURCE_DATE_EPOCH=1700000000"}, args...)
			repo := testregistry.OpenRepo(t, repoName)
			idx, entries := checkIndex(t, repo, "v1", []string{"linux/amd64", "linux/arm64"}, gzipFirst)
			res := readResults(t, resultsDir)

			referrersOf := func(subject digest.Digest) []ocispec.Descriptor {
				if tc.referrers {
					return referrersAPI(t, reg, "e2e/sbom", subject)
				}
				return referrersTag(t, repo, subject)
			}
			// layerOf reads the one SBOM referrer of subject and returns its blob.
			layerOf := func(subject digest.Digest, what string) ocispec.Descriptor {
				t.Helper()
				var sboms []ocispec.Descriptor
				for _, d := range referrersOf(subject) {
					if d.ArtifactType == tc.mediaType {
						sboms = append(sboms, d)
					}
				}
				if len(sboms) != 1 {
					t.Fatalf("%s %s: %d SBOM referrers of type %s, want 1", what, subject, len(sboms), tc.mediaType)
				}
				var m ocispec.Manifest
				fetchJSON(t, repo, sboms[0], &m)
				if m.Subject == nil || m.Subject.Digest != subject || m.ArtifactType != tc.mediaType || len(m.Layers) != 1 || m.Layers[0].MediaType != tc.mediaType {
					t.Fatalf("%s SBOM referrer %+v: want subject %s, artifactType and one layer of %s", what, m, subject, tc.mediaType)
				}
				return m.Layers[0]
			}
			indexBlob := layerOf(idx.Digest, "the index")
			if want := repoName + "@" + indexBlob.Digest.String(); res["SBOM_BLOB_URL"] != want {
				t.Errorf("SBOM_BLOB_URL %q, want %q", res["SBOM_BLOB_URL"], want)
			}
			index := readBlob(t, repo, indexBlob)
			byPlatform := map[string]digest.Digest{}
			for _, e := range entries {
				if !strings.Contains(index, e.desc.Digest.String()) {
					t.Errorf("the index SBOM does not list %s (%s %s)", e.desc.Digest, platformString(e.desc.Platform), e.format)
				}
				blob := layerOf(e.desc.Digest, platformString(e.desc.Platform)+" "+string(e.format))
				if prev, ok := byPlatform[platformString(e.desc.Platform)]; ok && prev != blob.Digest {
					t.Errorf("%s: the variants have different SBOM blobs %s and %s, want one shared", platformString(e.desc.Platform), prev, blob.Digest)
				}
				byPlatform[platformString(e.desc.Platform)] = blob.Digest
			}
			if byPlatform["linux/amd64"] == byPlatform["linux/arm64"] {
				t.Errorf("both platforms have the SBOM blob %s: each platform's image is its own", byPlatform["linux/amd64"])
			}

			insp := mustRun(t, nil, "inspect", "--tls-verify=false", repoName+":v1")
			if lines := strings.Count(insp.stdout, "sha256:"); !strings.Contains(insp.stdout, "SBOM") || lines != 2*(len(entries)+1) {
				t.Errorf("inspect shows %d digests, want every manifest's and the index's with an SBOM each:\n%s", lines, insp.stdout)
			}
			v := mustRun(t, nil, "subjects", "verify", "--tls-verify=false", "--require-sbom", repoName+":v1")
			if !strings.Contains(v.stdout, "every one of 5") {
				t.Errorf("verify --require-sbom:\n%s", v.stdout)
			}
			if !strings.Contains(r.stdout, "SBOM_BLOB_URL") {
				t.Errorf("the summary has no SBOM_BLOB_URL line:\n%s", r.stdout)
			}

			// Without SBOMs, --require-sbom fails and names what lacks one.
			noResults := t.TempDir()
			args = append([]string{"build", "--tls-verify=false", "--image", repoName + ":bare", "--context", dir,
				"--platform", "linux/amd64", "--sbom=false", "--results-dir", noResults}, storageFlags(t)...)
			mustRun(t, nil, args...)
			if _, ok := readResults(t, noResults)["SBOM_BLOB_URL"]; ok {
				t.Error("SBOM_BLOB_URL written by a run with --sbom=false")
			}
			bare := run(t, nil, "subjects", "verify", "--tls-verify=false", "--require-sbom", repoName+":bare")
			if bare.code == 0 || strings.Count(bare.stderr, "missing SBOM:") != 3 {
				t.Errorf("verify --require-sbom of an image without SBOMs: exit %d, want 3 missing\n%s", bare.code, bare.stderr)
			}
		})
	}
}

// referrersAPI asks the registry's referrers API for subject's referrers.
func referrersAPI(t *testing.T, reg *testregistry.Registry, name string, subject digest.Digest) []ocispec.Descriptor {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("%s/v2/%s/referrers/%s", reg.URL, name, subject))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("referrers of %s: HTTP %d", subject, resp.StatusCode)
	}
	var idx ocispec.Index
	if err := json.NewDecoder(resp.Body).Decode(&idx); err != nil {
		t.Fatal(err)
	}
	return idx.Manifests
}

// referrersTag reads the OCI referrers tag schema's index, sha256-<hex>.
func referrersTag(t *testing.T, repo *remote.Repository, subject digest.Digest) []ocispec.Descriptor {
	t.Helper()
	tag := subject.Algorithm().String() + "-" + subject.Encoded()
	desc, err := repo.Resolve(context.Background(), tag)
	if err != nil {
		t.Fatalf("referrers tag %s: %v", tag, err)
	}
	var idx ocispec.Index
	fetchJSON(t, repo, desc, &idx)
	return idx.Manifests
}

func readBlob(t *testing.T, repo *remote.Repository, desc ocispec.Descriptor) string {
	t.Helper()
	rc, err := repo.Fetch(context.Background(), desc)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(content.NewVerifyReader(rc, desc))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestSBOMDeterminism: with --source-date-epoch, two builds from separate
// stores give byte-identical SBOMs: the same blob per platform and the
// same index SBOM (SBOM_BLOB_URL).
func TestSBOMDeterminism(t *testing.T) {
	reg := testregistry.StartDistribution(t)
	dir := contextFiles(t, copyContainerfile)
	var got []string
	for _, tag := range []string{"a", "b"} {
		resultsDir := t.TempDir()
		args := append([]string{"build", "--tls-verify=false", "--image", reg.Repo("e2e/sbomrepro") + ":" + tag, "--context", dir,
			"--platform", "linux/amd64", "--results-dir", resultsDir, "--source-date-epoch", "1700000000"}, storageFlags(t)...)
		mustRun(t, nil, args...)
		res := readResults(t, resultsDir)
		repo := testregistry.OpenRepo(t, reg.Repo("e2e/sbomrepro"))
		_, entries := checkIndex(t, repo, tag, []string{"linux/amd64"}, gzipFirst)
		var blobs []string
		for _, e := range entries {
			for _, d := range referrersTag(t, repo, e.desc.Digest) {
				if d.ArtifactType == oci.MediaTypeSPDXJSON {
					var m ocispec.Manifest
					fetchJSON(t, repo, d, &m)
					blobs = append(blobs, m.Layers[0].Digest.String())
				}
			}
		}
		if len(blobs) != len(entries) || res["SBOM_BLOB_URL"] == "" {
			t.Fatalf("%s: SBOM blobs %v for %d manifests, SBOM_BLOB_URL %q", tag, blobs, len(entries), res["SBOM_BLOB_URL"])
		}
		got = append(got, res["SBOM_BLOB_URL"]+" "+strings.Join(blobs, " "))
	}
	if got[0] != got[1] {
		t.Errorf("two builds with the same --source-date-epoch give different SBOMs:\n%s\n%s", got[0], got[1])
	}
}
