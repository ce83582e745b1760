package formats

import (
	"reflect"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in       string
		want     []Format
		warns    int
		errparts []string
		join     string // what Join gives back, when not the input itself
	}{
		{in: "gzip,zstd:chunked", want: []Format{Gzip, ZstdChunked}},
		{in: " GZIP , zstd ", want: []Format{Gzip, Zstd}},
		{in: "zstd:chunked,gzip", want: []Format{ZstdChunked, Gzip}},
		{in: "gzip", want: []Format{Gzip}},
		{in: "zstd:chunked", want: []Format{ZstdChunked}, warns: 1},
		{in: "zstd:chunky", errparts: []string{`"zstd:chunky"`, "gzip, zstd, zstd:chunked"}},
		{in: "gzip,gzip", errparts: []string{`"gzip" is listed twice`}},
		{in: "", want: []Format{Gzip, ZstdChunked}, join: Default},
		{in: "  ", want: []Format{Gzip, ZstdChunked}, join: Default},
		{in: "dual", want: []Format{Gzip, ZstdChunked}, join: Default},
		{in: " DUAL ", want: []Format{Gzip, ZstdChunked}, join: Default},
		{in: "dual,zstd", errparts: []string{`"dual"`, "cannot be combined"}},
		{in: "gzip,dual", errparts: []string{`"dual"`, "cannot be combined"}},
		{in: "zstd-chunked", errparts: []string{`"zstd-chunked"`, "Konflux's zstd-chunked is zstd:chunked"}},
		{in: "gzip,,zstd", errparts: []string{"empty entry"}},
		{in: "zstd,zstd:chunked", errparts: []string{"cannot both"}},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, warns, err := Parse(tc.in)
			if len(tc.errparts) > 0 {
				if err == nil {
					t.Fatalf("Parse(%q) = %v, want error", tc.in, got)
				}
				for _, p := range tc.errparts {
					if !strings.Contains(err.Error(), p) {
						t.Errorf("error %q does not mention %q", err, p)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse(%q): %v", tc.in, err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Parse(%q) = %v, want %v", tc.in, got, tc.want)
			}
			if len(warns) != tc.warns {
				t.Errorf("Parse(%q) warnings = %q, want %d", tc.in, warns, tc.warns)
			}
			want := tc.join
			if want == "" {
				want = strings.ToLower(strings.ReplaceAll(tc.in, " ", ""))
			}
			if Join(got) != want {
				t.Errorf("Join(%v) = %q, want %q", got, Join(got), want)
			}
		})
	}
}

func TestRankPutsGzipFirst(t *testing.T) {
	if !(Gzip.Rank() < Zstd.Rank() && Gzip.Rank() < ZstdChunked.Rank()) {
		t.Fatal("gzip must rank before every zstd format")
	}
	if Gzip.IsZstd() || !Zstd.IsZstd() || !ZstdChunked.IsZstd() {
		t.Fatal("IsZstd is wrong")
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"gzip,zstd:chunked", "zstd", "", "dual", "gzip,gzip", "zstd:chunky"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, _, err := Parse(s)
		if err != nil {
			return
		}
		again, _, err := Parse(Join(got))
		if err != nil || !reflect.DeepEqual(got, again) {
			t.Fatalf("Parse(Join(Parse(%q))) = %v, %v; want %v", s, again, err, got)
		}
	})
}

func TestLayerMediaType(t *testing.T) {
	for _, tc := range []struct {
		f    Format
		want string
	}{
		{Gzip, "application/vnd.oci.image.layer.v1.tar+gzip"},
		{Zstd, "application/vnd.oci.image.layer.v1.tar+zstd"},
		{ZstdChunked, "application/vnd.oci.image.layer.v1.tar+zstd"},
	} {
		if got := tc.f.LayerMediaType(); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.f, got, tc.want)
		}
	}
}
