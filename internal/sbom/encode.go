package sbom

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"time"

	cyclonedx "github.com/CycloneDX/cyclonedx-go"
	"github.com/anchore/syft/syft/format/common/cyclonedxhelpers"
	"github.com/anchore/syft/syft/format/common/spdxhelpers"
	syftsbom "github.com/anchore/syft/syft/sbom"
	"github.com/spdx/tools-golang/spdx"
)

// cycloneDXVersion is the CycloneDX spec version written (syft's default).
const cycloneDXVersion = cyclonedx.SpecVersion1_7

// Encode writes s in format f with syft's models (spdxhelpers,
// cyclonedxhelpers), stamped with st: the creation time, and, when pinned,
// the SPDX document namespace's UUID or the CycloneDX serial number derived
// from seed (e.g. the image ID and its diff IDs) instead of a random one.
func Encode(s *syftsbom.SBOM, f Format, st Stamp, seed string) (Document, error) {
	switch f {
	case SPDXJSON:
		doc := spdxhelpers.ToFormatModel(*s)
		if doc == nil {
			return Document{}, fmt.Errorf("converting the SBOM to SPDX")
		}
		stampSPDX(doc, st, seed)
		return encodeSPDX(doc)
	case CycloneDXJSON:
		bom := cyclonedxhelpers.ToFormatModel(*s)
		stampCycloneDX(bom, st, seed)
		return encodeCycloneDX(bom)
	}
	_, err := ParseFormat(string(f))
	return Document{}, err
}

// uuidSuffix matches the random UUID that ends syft's SPDX namespaces.
var uuidSuffix = regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

func stampSPDX(doc *spdx.Document, st Stamp, seed string) {
	if doc.CreationInfo == nil {
		doc.CreationInfo = &spdx.CreationInfo{}
	}
	doc.CreationInfo.Created = st.created().Format(time.RFC3339)
	if st.Pinned {
		id := uuidFrom("spdx", seed)
		if uuidSuffix.MatchString(doc.DocumentNamespace) {
			doc.DocumentNamespace = uuidSuffix.ReplaceAllString(doc.DocumentNamespace, id)
		} else {
			doc.DocumentNamespace = namespace(doc.DocumentName, id)
		}
	}
}

func stampCycloneDX(bom *cyclonedx.BOM, st Stamp, seed string) {
	if bom.Metadata == nil {
		bom.Metadata = &cyclonedx.Metadata{}
	}
	bom.Metadata.Timestamp = st.created().Format(time.RFC3339)
	if st.Pinned {
		bom.SerialNumber = "urn:uuid:" + uuidFrom("cyclonedx", seed)
	}
}

// namespace is an SPDX document namespace for a document of mcbuild's own
// (the index SBOM): unique per id, not meant to be fetched.
func namespace(name, id string) string {
	return "https://mcbuild.dev/spdx/" + cleanName(name) + "-" + id
}

var notPathSafe = regexp.MustCompile(`[^A-Za-z0-9._/-]+`)

func cleanName(name string) string { return notPathSafe.ReplaceAllString(name, "-") }

func encodeSPDX(doc *spdx.Document) (Document, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(doc); err != nil {
		return Document{}, fmt.Errorf("encoding the SPDX SBOM: %w", err)
	}
	return Document{Format: SPDXJSON, Data: b.Bytes()}, nil
}

func encodeCycloneDX(bom *cyclonedx.BOM) (Document, error) {
	var b bytes.Buffer
	enc := cyclonedx.NewBOMEncoder(&b, cyclonedx.BOMFileFormatJSON)
	enc.SetEscapeHTML(false)
	if err := enc.EncodeVersion(bom, cycloneDXVersion); err != nil {
		return Document{}, fmt.Errorf("encoding the CycloneDX SBOM: %w", err)
	}
	return Document{Format: CycloneDXJSON, Data: b.Bytes()}, nil
}
