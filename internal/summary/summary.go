// Package summary prints mcbuild's human-readable report of what was pushed.
package summary

import (
	"cmp"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
)

// Row is one pushed manifest.
type Row struct {
	Platform    string `json:"platform"`       // os/arch[/variant]
	Compression string `json:"compression"`    // gzip, zstd, zstd:chunked
	Digest      string `json:"digest"`         // full manifest digest
	Size        int64  `json:"size"`           // bytes a client downloads; negative when unknown
	SBOM        string `json:"sbom,omitempty"` // digest of its SBOM referrer, if one was attached
}

// Table writes rows as an aligned table with the header
// PLATFORM  COMPRESSION  DIGEST  SIZE, and a column SBOM when a row has
// one. Digests are printed in full (they are meant to be copied); sizes use
// HumanSize. Rows are printed in the order given.
func Table(w io.Writer, rows []Row) error {
	withSBOM := false
	for _, r := range rows {
		withSBOM = withSBOM || r.SBOM != ""
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	header := "PLATFORM\tCOMPRESSION\tDIGEST\tSIZE"
	if withSBOM {
		header += "\tSBOM"
	}
	fmt.Fprintln(tw, header)
	for _, r := range rows {
		line := fmt.Sprintf("%s\t%s\t%s\t%s", r.Platform, r.Compression, r.Digest, HumanSize(r.Size))
		if withSBOM {
			line += "\t" + cmp.Or(r.SBOM, "-")
		}
		fmt.Fprintln(tw, line)
	}
	return tw.Flush()
}

// HumanSize formats a byte count with binary units: exact bytes under 1 KiB
// ("512 B"), otherwise one decimal and KiB, MiB, GiB, TiB, PiB or EiB
// ("12.3 MiB"). A negative size (unknown) is "-".
func HumanSize(n int64) string {
	if n < 0 {
		return "-"
	}
	if n < 1024 {
		return strconv.FormatInt(n, 10) + " B"
	}
	units := []string{"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}
	v := float64(n) / 1024
	i := 0
	// Move up a unit when rounding to one decimal would print 1024.0.
	for v >= 1023.95 && i < len(units)-1 {
		v /= 1024
		i++
	}
	return strconv.FormatFloat(v, 'f', 1, 64) + " " + units[i]
}
