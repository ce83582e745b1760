package summary

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"
)

// Phases are the wall-clock seconds each phase of a run took. Builds and
// pushes of several platforms add up; the formats of one platform are pushed
// concurrently, so PublishByFormat shares can add up to more than Publish.
type Phases struct {
	Build float64 `json:"build_seconds"`
	// CompressDuringBuild is the part of the layer compression done while
	// the build ran (stage.Early), on cores the build left idle: it
	// overlaps Build and is not in Publish.
	CompressDuringBuild float64            `json:"compress_during_build_seconds,omitempty"`
	Publish             float64            `json:"publish_seconds"`
	PublishByFormat     map[string]float64 `json:"publish_format_seconds,omitempty"`
	// SBOM is the time spent generating the platforms' SBOMs (summed over
	// platforms); it runs alongside the publish (and the next platform's
	// build), so it overlaps them. SBOMWait is the part of it the run
	// waited for once every platform was published.
	SBOM     float64 `json:"sbom_seconds,omitempty"`
	SBOMWait float64 `json:"sbom_wait_seconds,omitempty"`
	Collect  float64 `json:"collect_seconds,omitempty"` // mcbuild index: reading the inputs
	Index    float64 `json:"index_seconds"`
	Subjects float64 `json:"subjects_seconds"`
	// SBOMAttach is the release's SBOM step: making the index SBOM and
	// attaching every SBOM (before the tag moves).
	SBOMAttach float64 `json:"sbom_attach_seconds,omitempty"`
	Verify     float64 `json:"verify_seconds"` // the last look before the tag moves
	Total      float64 `json:"total_seconds"`
}

// AddPublishFormat records the wall time of one format's push.
func (p *Phases) AddPublishFormat(format string, d time.Duration) {
	if p.PublishByFormat == nil {
		p.PublishByFormat = map[string]float64{}
	}
	p.PublishByFormat[format] += d.Seconds()
}

// Report is everything one run published, for people (Print) and for tools
// (JSON, --summary-json).
type Report struct {
	ImageRef    string `json:"image_ref"`
	IndexDigest string `json:"index_digest"`
	IndexSize   int64  `json:"index_size"`
	SubjectsRef string `json:"subjects_ref"`
	// SBOMBlobURL is repo@digest of the index SBOM's blob; IndexSBOM the
	// index SBOM referrer's digest ("" without SBOMs).
	SBOMBlobURL string `json:"sbom_blob_url,omitempty"`
	IndexSBOM   string `json:"index_sbom,omitempty"`
	Manifests   []Row  `json:"manifests"`
	// Variants say how each manifest's layers were made (mcbuild build).
	Variants []Variant `json:"variants,omitempty"`
	Phases   Phases    `json:"phases"`
	Warnings []string  `json:"warnings,omitempty"`
}

// Variant says how one pushed manifest's layers were made.
type Variant struct {
	Platform    string `json:"platform"`
	Compression string `json:"compression"`
	Layers      int    `json:"layers"`
	// Reused counts the layers whose existing blob was reused, by where it
	// was found (pulled, base, previous-release, reuse-from).
	Reused     map[string]int `json:"layers_reused,omitempty"`
	Compressed int            `json:"layers_compressed"`
	// BytesCompressed is the uncompressed size of the layers compressed,
	// BytesUploaded the layer bytes sent; -1 when not known.
	BytesCompressed int64 `json:"bytes_compressed"`
	BytesUploaded   int64 `json:"bytes_uploaded"`
}

// String is the variant on one line, e.g. "linux/amd64 gzip: 3 layers,
// 2 reused (pulled 2), 1 compressed (12.0 MiB), 3.4 MiB uploaded".
func (v Variant) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s: %d layers", v.Platform, v.Compression, v.Layers)
	reused := 0
	var from []string
	for k, n := range v.Reused {
		reused += n
		from = append(from, fmt.Sprintf("%s %d", k, n))
	}
	sort.Strings(from)
	if reused > 0 {
		fmt.Fprintf(&b, ", %d reused (%s)", reused, strings.Join(from, ", "))
	}
	fmt.Fprintf(&b, ", %d compressed", v.Compressed)
	if v.BytesCompressed >= 0 {
		fmt.Fprintf(&b, " (%s)", HumanSize(v.BytesCompressed))
	}
	if v.BytesUploaded >= 0 {
		fmt.Fprintf(&b, ", %s uploaded", HumanSize(v.BytesUploaded))
	}
	return b.String()
}

// Print writes the table of the index and its manifests, the two references
// a pipeline passes on, and the time per phase.
func (r Report) Print(w io.Writer) error {
	rows := append([]Row{{Platform: "(index)", Compression: "-", Digest: r.IndexDigest, Size: r.IndexSize, SBOM: r.IndexSBOM}}, r.Manifests...)
	if err := Table(w, rows); err != nil {
		return err
	}
	if len(r.Variants) > 0 {
		fmt.Fprintln(w)
		for _, v := range r.Variants {
			fmt.Fprintln(w, v.String())
		}
	}
	fmt.Fprintf(w, "\nIMAGE_REF     %s\nSUBJECTS_REF  %s\n", r.ImageRef, r.SubjectsRef)
	if r.SBOMBlobURL != "" {
		fmt.Fprintf(w, "SBOM_BLOB_URL %s\n", r.SBOMBlobURL)
	}
	_, err := fmt.Fprintf(w, "time: %s\n", r.Phases.String())
	return err
}

// String renders the phases that ran, e.g. "build 3.6s, publish 0.3s
// (gzip 0.1s, zstd:chunked 0.3s), index 0.0s, subjects 0.0s, verify 0.0s,
// total 4.0s".
func (p Phases) String() string {
	var parts []string
	add := func(name string, secs float64, always bool) {
		if always || secs > 0 {
			parts = append(parts, fmt.Sprintf("%s %.1fs", name, secs))
		}
	}
	add("collect", p.Collect, false)
	add("build", p.Build, false)
	if p.CompressDuringBuild > 0 {
		parts[len(parts)-1] += fmt.Sprintf(" (compressing layers %.1fs of it)", p.CompressDuringBuild)
	}
	if p.Publish > 0 {
		s := fmt.Sprintf("publish %.1fs", p.Publish)
		if len(p.PublishByFormat) > 0 {
			names := make([]string, 0, len(p.PublishByFormat))
			for n := range p.PublishByFormat {
				names = append(names, n)
			}
			sort.Strings(names)
			shares := make([]string, len(names))
			for i, n := range names {
				shares[i] = fmt.Sprintf("%s %.1fs", n, p.PublishByFormat[n])
			}
			s += " (" + strings.Join(shares, ", ") + ")"
		}
		parts = append(parts, s)
	}
	if p.SBOM > 0 {
		parts = append(parts, fmt.Sprintf("sbom %.1fs (alongside the publish; waited %.1fs)", p.SBOM, p.SBOMWait))
	}
	add("index", p.Index, true)
	add("subjects", p.Subjects, true)
	add("sbom attach", p.SBOMAttach, false)
	add("verify", p.Verify, true)
	add("total", p.Total, true)
	return strings.Join(parts, ", ")
}

// JSON is r as --summary-json writes it: indented, with a final newline.
func (r Report) JSON() ([]byte, error) {
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(data, '\n'), nil
}
