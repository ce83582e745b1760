// Package sbom makes the SBOMs mcbuild publishes: one per platform,
// generated with syft (as a library) from the built image's root
// filesystem, mounted read-only from containers/storage (no pull), and one
// for the index, listing every manifest; each encoded as SPDX 2.3 JSON or
// CycloneDX JSON, reproducibly when the build's timestamps are pinned.
// Package release attaches them (pkg/referrer).
package sbom

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"time"

	"github.com/mcbuild/mcbuild/internal/choice"
	"github.com/mcbuild/mcbuild/internal/oci"
	"github.com/mcbuild/mcbuild/pkg/referrer"
)

// Format is an SBOM format (--sbom-format).
type Format string

// The formats, default first.
const (
	SPDXJSON      Format = "spdx-json"      // SPDX 2.3 JSON
	CycloneDXJSON Format = "cyclonedx-json" // CycloneDX JSON (syft's default version, 1.7)
)

// Formats lists the formats, default first.
var Formats = []Format{SPDXJSON, CycloneDXJSON}

// konfluxNames are the values of Konflux's SBOM_TYPE, accepted as well.
var konfluxNames = map[string]Format{"spdx": SPDXJSON, "cyclonedx": CycloneDXJSON}

// ParseFormat checks a format name: spdx-json or cyclonedx-json (or
// Konflux's SBOM_TYPE names spdx and cyclonedx); "" is the default.
func ParseFormat(s string) (Format, error) {
	if s == "" {
		return SPDXJSON, nil
	}
	if f, ok := konfluxNames[s]; ok {
		return f, nil
	}
	return choice.Parse("SBOM format", s, Formats)
}

// MediaType is the format's media type: the referrer's artifactType and
// the media type of its layer.
func (f Format) MediaType() string {
	if f == CycloneDXJSON {
		return oci.MediaTypeCycloneDXJSON
	}
	return oci.MediaTypeSPDXJSON
}

// FallbackTagSuffix ends the tag of an SBOM pushed in the OCI 1.0 fallback
// form, "sha256-<subject hex>.sbom" (cosign's tag for an attached SBOM).
const FallbackTagSuffix = ".sbom"

// Document is an encoded SBOM.
type Document struct {
	Format Format
	Data   []byte
}

// Artifact is d as a referrer artifact (what names it in errors).
func (d Document) Artifact(what string) referrer.Artifact {
	return referrer.Artifact{Type: d.Format.MediaType(), Data: d.Data, FallbackSuffix: FallbackTagSuffix, What: what}
}

// Stamp is what makes a document unique: its creation time and, derived
// from it, the SPDX document namespace or CycloneDX serial number.
type Stamp struct {
	// Created is the creation time; zero means now.
	Created time.Time
	// Pinned derives the namespace or serial number from the inputs (the
	// Seed the caller gives) instead of a random UUID: set with
	// --source-date-epoch, so identical builds give identical SBOMs.
	Pinned bool
}

// created is the creation time to record, in UTC, to the second.
func (s Stamp) created() time.Time {
	if s.Created.IsZero() {
		return time.Now().UTC().Truncate(time.Second)
	}
	return s.Created.UTC().Truncate(time.Second)
}

// uuidFrom is a version-5-shaped UUID (RFC 9562 layout) made from the
// SHA-256 of parts: stable for the same inputs.
func uuidFrom(parts ...string) string {
	h := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	b := h[:16]
	b[6] = (b[6] & 0x0f) | 0x50
	b[8] = (b[8] & 0x3f) | 0x80
	x := hex.EncodeToString(b)
	return x[0:8] + "-" + x[8:12] + "-" + x[12:16] + "-" + x[16:20] + "-" + x[20:32]
}
