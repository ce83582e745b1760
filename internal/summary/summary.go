// Package summary prints mcbuild's human-readable report of what was pushed.
package summary

import (
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
)

// Row is one pushed manifest.
type Row struct {
	Platform    string `json:"platform"`    // os/arch[/variant]
	Compression string `json:"compression"` // gzip, zstd, zstd:chunked
	Digest      string `json:"digest"`      // full manifest digest
	Size        int64  `json:"size"`        // bytes a client downloads; negative when unknown
}

// Table writes rows as an aligned table with the header
// PLATFORM  COMPRESSION  DIGEST  SIZE. Digests are printed in full (they are
// meant to be copied); sizes use HumanSize. Rows are printed in the order
// given.
func Table(w io.Writer, rows []Row) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PLATFORM\tCOMPRESSION\tDIGEST\tSIZE")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.Platform, r.Compression, r.Digest, HumanSize(r.Size))
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
