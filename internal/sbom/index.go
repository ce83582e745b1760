package sbom

import (
	"crypto/rand"
	"fmt"
	"strings"

	cyclonedx "github.com/CycloneDX/cyclonedx-go"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	packageurl "github.com/package-url/packageurl-go"
	"github.com/spdx/tools-golang/spdx"
	"github.com/spdx/tools-golang/spdx/v2/common"

	"github.com/mcbuild/mcbuild/internal/oci"
)

// Manifest is one image manifest an index lists, as the index SBOM
// records it.
type Manifest struct {
	Descriptor  ocispec.Descriptor // Platform set
	Compression string             // gzip, zstd, zstd:chunked
}

// Index is the index SBOM of the index idx pushed to repo (a repository
// name without tag or digest): the index as the package the document
// describes, and every manifest, each platform's compression variants
// alike, as a package with its digest, platform and compression, related
// to the index (SPDX: VARIANT_OF the index, as Konflux's index SBOMs say;
// CycloneDX: a component the index depends on). The tool is recorded as
// mcbuild version.
func Index(f Format, repo string, idx ocispec.Descriptor, manifests []Manifest, st Stamp, version string) (Document, error) {
	seed := idx.Digest.String()
	if !st.Pinned {
		seed = rand.Text()
	}
	switch f {
	case SPDXJSON:
		return encodeSPDX(indexSPDX(repo, idx, manifests, st, seed, version))
	case CycloneDXJSON:
		return encodeCycloneDX(indexCycloneDX(repo, idx, manifests, st, seed, version))
	}
	_, err := ParseFormat(string(f))
	return Document{}, err
}

// purl is the OCI package URL of a manifest or index in repo.
func purl(repo string, d digest.Digest, p *ocispec.Platform) string {
	name := repo[strings.LastIndex(repo, "/")+1:]
	var q packageurl.Qualifiers
	if p != nil {
		q = append(q, packageurl.Qualifier{Key: "arch", Value: p.Architecture})
		q = append(q, packageurl.Qualifier{Key: "os", Value: p.OS})
	}
	q = append(q, packageurl.Qualifier{Key: "repository_url", Value: repo})
	if p != nil && p.Variant != "" {
		q = append(q, packageurl.Qualifier{Key: "variant", Value: p.Variant})
	}
	return packageurl.NewPackageURL("oci", "", name, d.String(), q, "").ToString()
}

// elementID is an SPDX element ID (letters, digits, '.', '-') for a
// manifest: its platform, compression and digest.
func elementID(m Manifest) common.ElementID {
	s := "image-" + oci.PlatformString(*m.Descriptor.Platform) + "-" + m.Compression + "-" + m.Descriptor.Digest.Encoded()[:12]
	return common.ElementID(strings.NewReplacer("/", "-", ":", "-", "_", "-").Replace(s))
}

func indexSPDX(repo string, idx ocispec.Descriptor, manifests []Manifest, st Stamp, seed, version string) *spdx.Document {
	name := repo + "@" + idx.Digest.String()
	pkg := func(id common.ElementID, d ocispec.Descriptor, comment string) *spdx.Package {
		return &spdx.Package{
			PackageName: repo, PackageSPDXIdentifier: id, PackageVersion: d.Digest.String(),
			PackageDownloadLocation: "NOASSERTION", FilesAnalyzed: false,
			PackageChecksums: []common.Checksum{{Algorithm: common.SHA256, Value: d.Digest.Encoded()}},
			PackageExternalReferences: []*spdx.PackageExternalReference{{
				Category: common.CategoryPackageManager, RefType: common.TypePackageManagerPURL, Locator: purl(repo, d.Digest, d.Platform),
			}},
			PackageLicenseConcluded: "NOASSERTION", PackageLicenseDeclared: "NOASSERTION", PackageCopyrightText: "NOASSERTION",
			PrimaryPackagePurpose: "CONTAINER", PackageComment: comment,
		}
	}
	doc := &spdx.Document{
		SPDXVersion: spdx.Version, DataLicense: spdx.DataLicense, SPDXIdentifier: "DOCUMENT",
		DocumentName: name, DocumentNamespace: namespace(repo, uuidFrom("spdx-index", seed)),
		CreationInfo: &spdx.CreationInfo{Creators: []common.Creator{{CreatorType: "Tool", Creator: "mcbuild-" + version}}},
	}
	stampSPDX(doc, Stamp{Created: st.Created}, seed) // the namespace is made above
	const indexID = common.ElementID("image-index")
	doc.Packages = append(doc.Packages, pkg(indexID, idx, "the OCI image index"))
	doc.Relationships = append(doc.Relationships, &spdx.Relationship{
		RefA: common.MakeDocElementID("", "DOCUMENT"), RefB: common.MakeDocElementID("", string(indexID)), Relationship: common.TypeRelationshipDescribe,
	})
	for _, m := range manifests {
		id := elementID(m)
		doc.Packages = append(doc.Packages, pkg(id, m.Descriptor, fmt.Sprintf("%s image manifest, %s layers", oci.PlatformString(*m.Descriptor.Platform), m.Compression)))
		doc.Relationships = append(doc.Relationships, &spdx.Relationship{
			RefA: common.MakeDocElementID("", string(id)), RefB: common.MakeDocElementID("", string(indexID)), Relationship: common.TypeRelationshipVariantOf,
		})
	}
	return doc
}

func indexCycloneDX(repo string, idx ocispec.Descriptor, manifests []Manifest, st Stamp, seed, version string) *cyclonedx.BOM {
	component := func(d ocispec.Descriptor, props []cyclonedx.Property) cyclonedx.Component {
		p := purl(repo, d.Digest, d.Platform)
		return cyclonedx.Component{
			BOMRef: p, Type: cyclonedx.ComponentTypeContainer, Name: repo, Version: d.Digest.String(), PackageURL: p,
			Hashes:     &[]cyclonedx.Hash{{Algorithm: cyclonedx.HashAlgoSHA256, Value: d.Digest.Encoded()}},
			Properties: &props,
		}
	}
	bom := cyclonedx.NewBOM()
	root := component(idx, []cyclonedx.Property{{Name: "mcbuild:mediaType", Value: idx.MediaType}})
	bom.Metadata = &cyclonedx.Metadata{
		Tools:     &cyclonedx.ToolsChoice{Components: &[]cyclonedx.Component{{Type: cyclonedx.ComponentTypeApplication, Name: "mcbuild", Version: version}}},
		Component: &root,
	}
	stampCycloneDX(bom, st, seed)
	if bom.SerialNumber == "" {
		bom.SerialNumber = "urn:uuid:" + uuidFrom("cyclonedx-index", seed)
	}
	var components []cyclonedx.Component
	var refs []string
	for _, m := range manifests {
		c := component(m.Descriptor, []cyclonedx.Property{
			{Name: "mcbuild:platform", Value: oci.PlatformString(*m.Descriptor.Platform)},
			{Name: "mcbuild:compression", Value: m.Compression},
			{Name: "mcbuild:mediaType", Value: m.Descriptor.MediaType},
		})
		components = append(components, c)
		refs = append(refs, c.BOMRef)
	}
	bom.Components = &components
	bom.Dependencies = &[]cyclonedx.Dependency{{Ref: root.BOMRef, Dependencies: &refs}}
	return bom
}
