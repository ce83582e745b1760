package summary

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestPhasesString(t *testing.T) {
	tests := []struct {
		p    Phases
		want string
	}{
		{Phases{Build: 3.61, Publish: 0.3, Index: 0.01, Subjects: 0.02, Verify: 0.04, Total: 4},
			"build 3.6s, publish 0.3s, index 0.0s, subjects 0.0s, verify 0.0s, total 4.0s"},
		{Phases{Collect: 0.5, Index: 0.1, Subjects: 0.1, Verify: 0.2, Total: 0.8},
			"collect 0.5s, index 0.1s, subjects 0.1s, verify 0.2s, total 0.8s"},
		{Phases{Build: 1, Publish: 2, PublishByFormat: map[string]float64{"zstd:chunked": 1.9, "gzip": 0.4}, Total: 3},
			"build 1.0s, publish 2.0s (gzip 0.4s, zstd:chunked 1.9s), index 0.0s, subjects 0.0s, verify 0.0s, total 3.0s"},
		{Phases{Build: 6.5, CompressDuringBuild: 2.04, Publish: 0.6, Total: 7.2},
			"build 6.5s (compressing layers 2.0s of it), publish 0.6s, index 0.0s, subjects 0.0s, verify 0.0s, total 7.2s"},
	}
	for _, tc := range tests {
		if got := tc.p.String(); got != tc.want {
			t.Errorf("String() = %q, want %q", got, tc.want)
		}
	}
}

func TestReportJSON(t *testing.T) {
	var p Phases
	p.AddPublishFormat("gzip", 1500*time.Millisecond)
	p.AddPublishFormat("gzip", 500*time.Millisecond)
	p.Build = 2.5
	r := Report{ImageRef: "r.example/a:v1@sha256:1", IndexDigest: "sha256:1", SubjectsRef: "r.example/a@sha256:2",
		Manifests: []Row{{Platform: "linux/amd64", Compression: "gzip", Digest: "sha256:3", Size: 42}}, Phases: p}
	raw, err := r.JSON()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasSuffix(raw, []byte("}\n")) {
		t.Errorf("JSON does not end with a newline: %q", raw)
	}
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	phases := doc["phases"].(map[string]any)
	if phases["build_seconds"] != 2.5 || phases["publish_format_seconds"].(map[string]any)["gzip"] != 2.0 {
		t.Errorf("phases = %v", phases)
	}
	if m := doc["manifests"].([]any)[0].(map[string]any); m["digest"] != "sha256:3" || m["size"] != 42.0 {
		t.Errorf("manifests = %v", doc["manifests"])
	}
	var out bytes.Buffer
	if err := r.Print(&out); err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"(index)", "linux/amd64", "SUBJECTS_REF  r.example/a@sha256:2", "build 2.5s"} {
		if !strings.Contains(out.String(), w) {
			t.Errorf("Print output lacks %q:\n%s", w, out.String())
		}
	}
}

func TestVariantString(t *testing.T) {
	for _, tc := range []struct {
		v    Variant
		want string
	}{
		{Variant{Platform: "linux/amd64", Compression: "gzip", Layers: 3, Reused: map[string]int{"pulled": 1, "base": 1}, Compressed: 1, BytesCompressed: 4 << 20, BytesUploaded: 1536},
			"linux/amd64 gzip: 3 layers, 2 reused (base 1, pulled 1), 1 compressed (4.0 MiB), 1.5 KiB uploaded"},
		{Variant{Platform: "linux/arm64", Compression: "zstd:chunked", Layers: 2, Compressed: 2, BytesCompressed: 100, BytesUploaded: 0},
			"linux/arm64 zstd:chunked: 2 layers, 2 compressed (100 B), 0 B uploaded"},
		{Variant{Platform: "linux/amd64", Compression: "gzip", Layers: 2, Compressed: 2, BytesCompressed: -1, BytesUploaded: -1},
			"linux/amd64 gzip: 2 layers, 2 compressed"},
	} {
		if got := tc.v.String(); got != tc.want {
			t.Errorf("String() = %q, want %q", got, tc.want)
		}
	}
	var buf bytes.Buffer
	r := Report{Variants: []Variant{{Platform: "linux/amd64", Compression: "gzip", Layers: 1, Reused: map[string]int{"previous-release": 1}}}}
	if err := r.Print(&buf); err != nil || !strings.Contains(buf.String(), "linux/amd64 gzip: 1 layers, 1 reused (previous-release 1)") {
		t.Errorf("Print = %q (%v): want the variant line", buf.String(), err)
	}
	raw, _ := json.Marshal(r)
	if !strings.Contains(string(raw), `"variants":[{"platform":"linux/amd64","compression":"gzip","layers":1,"layers_reused":{"previous-release":1}`) {
		t.Errorf("JSON %s", raw)
	}
}
