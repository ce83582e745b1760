package oci

import "testing"

// TestMediaTypeClasses: every media type mcbuild names falls in exactly the
// class it belongs to.
func TestMediaTypeClasses(t *testing.T) {
	type class struct{ index, manifest, config, gzip, zstd bool }
	for mt, want := range map[string]class{
		MediaTypeImageIndex:                     {index: true},
		MediaTypeDockerManifestList:             {index: true},
		MediaTypeImageManifest:                  {manifest: true},
		MediaTypeDockerManifest:                 {manifest: true},
		MediaTypeImageConfig:                    {config: true},
		MediaTypeDockerConfig:                   {config: true},
		MediaTypeImageLayerGzip:                 {gzip: true},
		MediaTypeImageLayerNondistributableGzip: {gzip: true},
		MediaTypeDockerLayerGzip:                {gzip: true},
		MediaTypeDockerForeignLayerGzip:         {gzip: true},
		MediaTypeImageLayerZstd:                 {zstd: true},
		MediaTypeImageLayerNondistributableZstd: {zstd: true},
		MediaTypeImageLayer:                     {},
		MediaTypeEmptyJSON:                      {},
		"":                                      {},
		MediaTypeImageIndex + " ":               {},
	} {
		got := class{IsIndex(mt), IsManifest(mt), IsImageConfig(mt), IsGzipLayer(mt), IsZstdLayer(mt)}
		if got != want {
			t.Errorf("%q: got %+v, want %+v", mt, got, want)
		}
	}
}
