package summary

import (
	"bytes"
	"errors"
	"math"
	"testing"
)

func TestHumanSize(t *testing.T) {
	tests := []struct {
		in   int64
		want string
	}{
		{-1, "-"},
		{0, "0 B"},
		{1, "1 B"},
		{1023, "1023 B"},
		{1024, "1.0 KiB"},
		{1536, "1.5 KiB"},
		{12_897_485, "12.3 MiB"},
		{1024*1024 - 1, "1.0 MiB"},
		{1024*1024 - 51, "1.0 MiB"}, // 1023.95 KiB would print as 1024.0 KiB
		{1024*1024 - 52, "1023.9 KiB"},
		{3 * 1024 * 1024 * 1024, "3.0 GiB"},
		{5 << 40, "5.0 TiB"},
		{math.MaxInt64, "8.0 EiB"},
	}
	for _, tc := range tests {
		if got := HumanSize(tc.in); got != tc.want {
			t.Errorf("HumanSize(%d) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestTable(t *testing.T) {
	const (
		d1 = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
		d2 = "sha256:2222222222222222222222222222222222222222222222222222222222222222"
		d3 = "sha256:3333333333333333333333333333333333333333333333333333333333333333"
	)
	tests := []struct {
		name string
		rows []Row
		want string
	}{
		{
			name: "header only",
			want: "PLATFORM  COMPRESSION  DIGEST  SIZE\n",
		},
		{
			name: "three rows",
			rows: []Row{
				{Platform: "linux/amd64", Compression: "gzip", Digest: d1, Size: 12_897_485},
				{Platform: "linux/amd64", Compression: "zstd:chunked", Digest: d2, Size: 900},
				{Platform: "linux/arm/v7", Compression: "gzip", Digest: d3, Size: -1},
			},
			want: "" +
				"PLATFORM      COMPRESSION   DIGEST                                                                   SIZE\n" +
				"linux/amd64   gzip          " + d1 + "  12.3 MiB\n" +
				"linux/amd64   zstd:chunked  " + d2 + "  900 B\n" +
				"linux/arm/v7  gzip          " + d3 + "  -\n",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := Table(&b, tc.rows); err != nil {
				t.Fatal(err)
			}
			if b.String() != tc.want {
				t.Errorf("Table output:\n%s\nwant:\n%s", b.String(), tc.want)
			}
		})
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestTableWriteError(t *testing.T) {
	err := Table(failWriter{}, []Row{{Platform: "linux/amd64", Compression: "gzip", Digest: "sha256:x", Size: 1}})
	if err == nil || err.Error() != "disk full" {
		t.Fatalf("Table to a failing writer = %v, want the write error", err)
	}
}
