package choice

import (
	"errors"
	"testing"
)

func TestParse(t *testing.T) {
	type kind string
	valid := []kind{"stream", "copy"}
	for _, tc := range []struct {
		in   string
		want kind
		err  string
	}{
		{in: "stream", want: "stream"},
		{in: "copy", want: "copy"},
		{in: "skopeo", err: `publisher "skopeo": valid values are stream, copy`},
		{in: "", err: `publisher "": valid values are stream, copy`},
		{in: "Stream", err: `publisher "Stream": valid values are stream, copy`},
	} {
		got, err := Parse("publisher", tc.in, valid)
		if tc.err != "" {
			var inv *Invalid
			if err == nil || err.Error() != tc.err || !errors.As(err, &inv) || inv.Value != tc.in {
				t.Errorf("Parse(%q) = %q, %v; want error %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("Parse(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}
