package sbom

import (
	"bytes"
	"context"
	"debug/buildinfo"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	cyclonedx "github.com/CycloneDX/cyclonedx-go"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	spdxjson "github.com/spdx/tools-golang/json"
	"github.com/spdx/tools-golang/spdx"
	"github.com/spdx/tools-golang/spdxlib"
	"go.podman.io/storage"

	"github.com/mcbuild/mcbuild/internal/build"
	"github.com/mcbuild/mcbuild/internal/choice"
	"github.com/mcbuild/mcbuild/internal/oci"
	"github.com/mcbuild/mcbuild/internal/testfixture"
)

func TestMain(m *testing.M) {
	if build.InitReexec() {
		return
	}
	os.Exit(m.Run())
}

// fixture is an image built into a private store FROM a base image built
// there first (as real images are built FROM a base): the base holds the
// first stanzas of this machine's dpkg status file (a real one), its
// os-release, and a Go binary built here, whose build info lists modules;
// the image adds a file of its own on top.
type fixture struct {
	store   storage.Store
	img     Image
	dpkg    map[string]string // package -> version, as the status file says
	modules map[string]string // module path -> version, as the binary's build info says
	goVer   string            // the binary's Go version, e.g. "go1.26.8"
}

const dpkgStanzas = 25

// baseName names the base image in the fixture's store, where the app's
// FROM finds it (nothing is pulled).
const baseName = "localhost/sbom-base:latest"

var (
	packageLine = regexp.MustCompile(`(?m)^Package: (.+)$`)
	versionLine = regexp.MustCompile(`(?m)^Version: (.+)$`)
)

func newFixture(t *testing.T) fixture {
	t.Helper()
	status, err := os.ReadFile("/var/lib/dpkg/status")
	if err != nil {
		t.Fatalf("this test needs a Debian host's dpkg status file: %v", err)
	}
	stanzas := strings.Split(strings.TrimSpace(string(status)), "\n\n")[:dpkgStanzas]
	fx := fixture{dpkg: map[string]string{}, modules: map[string]string{}}
	for _, s := range stanzas {
		name, version := packageLine.FindStringSubmatch(s), versionLine.FindStringSubmatch(s)
		if name == nil || version == nil {
			t.Fatalf("stanza without Package or Version:\n%s", s)
		}
		fx.dpkg[name[1]] = version[1]
	}
	osRelease, err := os.ReadFile("/etc/os-release")
	if err != nil {
		t.Fatal(err)
	}
	dir := testfixture.Context(t, map[string]string{
		"Containerfile":              "FROM scratch\nCOPY rootfs/ /\n",
		"App.Containerfile":          "FROM " + baseName + "\nCOPY app.txt /app.txt\n",
		"app.txt":                    "the app's own layer\n",
		"rootfs/var/lib/dpkg/status": strings.Join(stanzas, "\n\n") + "\n",
		"rootfs/etc/os-release":      string(osRelease),
	})
	bin := filepath.Join(dir, "rootfs/usr/local/bin/gobin")
	cmd := exec.Command("go", "build", "-o", bin, "./testdata/gobin")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOPROXY=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the Go binary: %v\n%s", err, out)
	}
	info, err := buildinfo.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	fx.goVer = info.GoVersion
	for _, d := range info.Deps {
		fx.modules[d.Path] = d.Version
	}
	if fx.modules["golang.org/x/sync"] == "" {
		t.Fatalf("the Go binary's build info lists no golang.org/x/sync: %v", info.Deps)
	}
	tmp := t.TempDir()
	epoch := time.Unix(1700000000, 0).UTC()
	fx.store, err = build.OpenStore(build.StoreOptions{Driver: "vfs", Root: filepath.Join(tmp, "root"), RunRoot: filepath.Join(tmp, "run")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = fx.store.Shutdown(true) })
	platform := ocispec.Platform{OS: "linux", Architecture: "amd64"}
	var log bytes.Buffer
	buildFile := func(containerfile string) string {
		built, err := build.Build(context.Background(), fx.store, build.Options{
			ContextDir: dir, Containerfile: filepath.Join(dir, containerfile),
			SourceDateEpoch: &epoch, TmpDir: filepath.Join(tmp, "tmp"), Log: &log,
		}, platform)
		if err != nil {
			t.Fatalf("%v\n%s", err, log.String())
		}
		return built.ID
	}
	base := buildFile("Containerfile")
	if err := fx.store.AddNames(base, []string{baseName}); err != nil {
		t.Fatal(err)
	}
	app := buildFile("App.Containerfile")
	if n := layerCount(t, fx.store, app); n < 2 {
		t.Fatalf("the app image has %d layers, want its base's and its own", n)
	}
	fx.img = Image{ID: app, Name: "registry.example/ns/app", Platform: platform}
	return fx
}

// layerCount is how many layers image id stacks, its base's included.
func layerCount(t *testing.T, store storage.Store, id string) int {
	t.Helper()
	img, err := store.Image(id)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for l := img.TopLayer; l != ""; n++ {
		layer, err := store.Layer(l)
		if err != nil {
			t.Fatal(err)
		}
		l = layer.Parent
	}
	return n
}

// TestCatalog builds one image and checks what its SBOMs say, in both
// formats, each parsed and validated by its format's own library: every
// dpkg package and Go module with its version; identical bytes for two
// catalogings under a pinned stamp; a fresh identity without one.
func TestCatalog(t *testing.T) {
	fx := newFixture(t)
	ctx, err := Prepare(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	pinned := Stamp{Created: time.Unix(1700000000, 0), Pinned: true}
	seed := "sha256:" + fx.img.ID
	encode := func(t *testing.T, f Format, st Stamp) Document {
		t.Helper()
		s, err := Catalog(ctx, fx.store, fx.img, "test")
		if err != nil {
			t.Fatal(err)
		}
		doc, err := Encode(s, f, st, seed)
		if err != nil {
			t.Fatal(err)
		}
		if doc.Format != f {
			t.Errorf("document format %s, want %s", doc.Format, f)
		}
		return doc
	}
	// want are the packages every SBOM must list: name -> version.
	want := map[string]string{"stdlib": fx.goVer}
	for k, v := range fx.dpkg {
		want[k] = v
	}
	for k, v := range fx.modules {
		want[k] = v
	}
	checkListed := func(t *testing.T, got map[string][]string) {
		t.Helper()
		for name, version := range want {
			if !slices.Contains(got[name], version) {
				t.Errorf("package %s %s not listed (listed with versions %q)", name, version, got[name])
			}
		}
	}

	t.Run("spdx", func(t *testing.T) {
		doc := encode(t, SPDXJSON, pinned)
		parsed := parseSPDX(t, doc.Data)
		got := map[string][]string{}
		var root *spdx.Package
		for _, p := range parsed.Packages {
			got[p.PackageName] = append(got[p.PackageName], p.PackageVersion)
			if p.PrimaryPackagePurpose == "CONTAINER" {
				root = p
			}
		}
		checkListed(t, got)
		if root == nil || root.PackageName != fx.img.Name || root.PackageVersion != seed {
			t.Errorf("root package %+v: want the container image %s version %s", root, fx.img.Name, seed)
		}
		if c := parsed.CreationInfo.Created; c != "2023-11-14T22:13:20Z" {
			t.Errorf("created %s, want the pinned 2023-11-14T22:13:20Z", c)
		}
		if !strings.HasSuffix(parsed.DocumentNamespace, uuidFrom("spdx", seed)) {
			t.Errorf("namespace %s: want it to end in the UUID derived from %s", parsed.DocumentNamespace, seed)
		}
		if again := encode(t, SPDXJSON, pinned); !bytes.Equal(again.Data, doc.Data) {
			t.Errorf("two pinned SPDX SBOMs of one image differ (%d and %d bytes)", len(doc.Data), len(again.Data))
		}
		free := parseSPDX(t, encode(t, SPDXJSON, Stamp{}).Data)
		if free.DocumentNamespace == parsed.DocumentNamespace {
			t.Errorf("without a pinned stamp the namespace %s is the pinned one", free.DocumentNamespace)
		}
	})

	t.Run("cyclonedx", func(t *testing.T) {
		doc := encode(t, CycloneDXJSON, pinned)
		bom := parseCycloneDX(t, doc.Data)
		got := map[string][]string{}
		for _, c := range *bom.Components {
			got[c.Name] = append(got[c.Name], c.Version)
		}
		checkListed(t, got)
		if bom.SerialNumber != "urn:uuid:"+uuidFrom("cyclonedx", seed) || bom.Metadata.Timestamp != "2023-11-14T22:13:20Z" {
			t.Errorf("serial %s, timestamp %s: want both derived from the pinned stamp", bom.SerialNumber, bom.Metadata.Timestamp)
		}
		if again := encode(t, CycloneDXJSON, pinned); !bytes.Equal(again.Data, doc.Data) {
			t.Errorf("two pinned CycloneDX SBOMs of one image differ (%d and %d bytes)", len(doc.Data), len(again.Data))
		}
	})
}

// parseSPDX reads an SPDX 2.3 JSON document with spdx/tools-golang and
// validates it: its version, data license, namespace, creation time, and
// every relationship's elements (spdxlib.ValidateDocument).
func parseSPDX(t *testing.T, data []byte) *spdx.Document {
	t.Helper()
	doc, err := spdxjson.Read(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("tools-golang cannot read the SPDX SBOM: %v", err)
	}
	if err := spdxlib.ValidateDocument(doc); err != nil {
		t.Errorf("invalid SPDX document: %v", err)
	}
	described, err := spdxlib.GetDescribedPackageIDs(doc)
	if err != nil || len(described) != 1 {
		t.Errorf("the document describes %v (%v), want one package", described, err)
	}
	if doc.SPDXVersion != "SPDX-2.3" || doc.DataLicense != "CC0-1.0" || !strings.HasPrefix(doc.DocumentNamespace, "https://") {
		t.Errorf("version %s, data license %s, namespace %s: want SPDX-2.3, CC0-1.0, an https URI", doc.SPDXVersion, doc.DataLicense, doc.DocumentNamespace)
	}
	if _, err := time.Parse(time.RFC3339, doc.CreationInfo.Created); err != nil {
		t.Errorf("created %q: %v", doc.CreationInfo.Created, err)
	}
	for _, p := range doc.Packages {
		if p.PackageName == "" || p.PackageSPDXIdentifier == "" || p.PackageDownloadLocation == "" {
			t.Errorf("package %+v lacks a name, SPDX ID or download location", p)
		}
	}
	return doc
}

// parseCycloneDX reads a CycloneDX JSON document with cyclonedx-go and
// checks its header: format, spec version 1.7, a URN serial number.
func parseCycloneDX(t *testing.T, data []byte) *cyclonedx.BOM {
	t.Helper()
	var bom cyclonedx.BOM
	if err := cyclonedx.NewBOMDecoder(bytes.NewReader(data), cyclonedx.BOMFileFormatJSON).Decode(&bom); err != nil {
		t.Fatalf("cyclonedx-go cannot read the CycloneDX SBOM: %v", err)
	}
	if bom.BOMFormat != cyclonedx.BOMFormat || bom.SpecVersion != cyclonedx.SpecVersion1_7 ||
		!regexp.MustCompile(`^urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`).MatchString(bom.SerialNumber) {
		t.Errorf("format %s, spec %s, serial %s: want CycloneDX 1.7 with a URN UUID", bom.BOMFormat, bom.SpecVersion, bom.SerialNumber)
	}
	if bom.Components == nil || bom.Metadata == nil || bom.Metadata.Component == nil {
		t.Fatalf("BOM without components or metadata component")
	}
	return &bom
}

// TestIndex: the index SBOM lists every manifest with its digest, platform
// and compression, related to the index, in both formats; pinned, it
// depends on the index alone.
func TestIndex(t *testing.T) {
	idx := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageIndex, Digest: digest.FromString("index"), Size: 100}
	var manifests []Manifest
	for _, p := range []string{"linux/amd64", "linux/arm64/v8"} {
		for _, c := range []string{"gzip", "zstd:chunked"} {
			pl, err := oci.ParsePlatform(p)
			if err != nil {
				t.Fatal(err)
			}
			manifests = append(manifests, Manifest{Descriptor: ocispec.Descriptor{
				MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString(p + c), Size: 500, Platform: &pl,
			}, Compression: c})
		}
	}
	pinned := Stamp{Created: time.Unix(1700000000, 0), Pinned: true}
	const repo = "registry.example/ns/app"
	for _, f := range Formats {
		t.Run(string(f), func(t *testing.T) {
			doc, err := Index(f, repo, idx, manifests, pinned, "test")
			if err != nil {
				t.Fatal(err)
			}
			again, err := Index(f, repo, idx, manifests, pinned, "test")
			if err != nil || !bytes.Equal(doc.Data, again.Data) {
				t.Errorf("two pinned index SBOMs differ (%v)", err)
			}
			free, err := Index(f, repo, idx, manifests, Stamp{}, "test")
			if err != nil || bytes.Equal(doc.Data, free.Data) {
				t.Errorf("an unpinned index SBOM is the pinned one (%v)", err)
			}
			switch f {
			case SPDXJSON:
				parsed := parseSPDX(t, doc.Data)
				ids := map[string]string{} // SPDX ID -> version (digest)
				for _, p := range parsed.Packages {
					ids[string(p.PackageSPDXIdentifier)] = p.PackageVersion
				}
				variants := 0
				for _, r := range parsed.Relationships {
					if r.Relationship == "VARIANT_OF" && r.RefB.ElementRefID == "image-index" {
						variants++
					}
				}
				if ids["image-index"] != idx.Digest.String() || variants != len(manifests) || len(parsed.Packages) != len(manifests)+1 {
					t.Errorf("packages %v, %d VARIANT_OF the index: want the index and %d manifests", ids, variants, len(manifests))
				}
				for _, m := range manifests {
					if ids[string(elementID(m))] != m.Descriptor.Digest.String() {
						t.Errorf("manifest %s (%s) not listed", m.Descriptor.Digest, m.Compression)
					}
				}
			case CycloneDXJSON:
				bom := parseCycloneDX(t, doc.Data)
				if bom.Metadata.Component.Version != idx.Digest.String() || len(*bom.Components) != len(manifests) {
					t.Errorf("index component %+v, %d components: want the index and %d manifests", bom.Metadata.Component, len(*bom.Components), len(manifests))
				}
				for i, c := range *bom.Components {
					m := manifests[i]
					if c.Version != m.Descriptor.Digest.String() || !strings.Contains(c.PackageURL, "arch="+m.Descriptor.Platform.Architecture) {
						t.Errorf("component %d: %s %s, want %s for %s", i, c.Version, c.PackageURL, m.Descriptor.Digest, oci.PlatformString(*m.Descriptor.Platform))
					}
				}
				deps := (*bom.Dependencies)[0]
				if deps.Ref != bom.Metadata.Component.BOMRef || len(*deps.Dependencies) != len(manifests) {
					t.Errorf("dependencies %+v: want the index depending on every manifest", deps)
				}
			}
		})
	}
}

// TestParseFormat: the two formats, Konflux's SBOM_TYPE names, the
// default, and a refusal naming every valid value.
func TestParseFormat(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Format
		mt   string
	}{
		{"", SPDXJSON, oci.MediaTypeSPDXJSON},
		{"spdx-json", SPDXJSON, oci.MediaTypeSPDXJSON},
		{"spdx", SPDXJSON, oci.MediaTypeSPDXJSON},
		{"cyclonedx-json", CycloneDXJSON, oci.MediaTypeCycloneDXJSON},
		{"cyclonedx", CycloneDXJSON, oci.MediaTypeCycloneDXJSON},
	} {
		got, err := ParseFormat(tc.in)
		if err != nil || got != tc.want || got.MediaType() != tc.mt {
			t.Errorf("ParseFormat(%q) = %s (%s), %v; want %s (%s)", tc.in, got, got.MediaType(), err, tc.want, tc.mt)
		}
	}
	_, err := ParseFormat("spdx-tag-value")
	var inv *choice.Invalid
	if !errors.As(err, &inv) || !strings.Contains(err.Error(), "spdx-json, cyclonedx-json") {
		t.Errorf("ParseFormat(spdx-tag-value) = %v, want a refusal naming spdx-json and cyclonedx-json", err)
	}
}
