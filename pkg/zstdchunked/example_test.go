package zstdchunked_test

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"fmt"
	"log"
	"sort"
	"strconv"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"

	"github.com/mcbuild/mcbuild/pkg/zstdchunked"
)

// Compress a small layer tar, decompress it with a plain zstd reader, and
// read its table of contents through the annotations NewWriter returns.
func ExampleNewWriter() {
	// A layer tar: a directory and two files.
	var layer bytes.Buffer
	tw := tar.NewWriter(&layer)
	for _, f := range []struct{ name, body string }{
		{"etc/", ""},
		{"etc/hostname", "example\n"},
		{"etc/motd", strings.Repeat("welcome to the example layer\n", 100)},
	} {
		hdr := &tar.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.body)), Typeflag: tar.TypeReg}
		if strings.HasSuffix(f.name, "/") {
			hdr.Mode, hdr.Typeflag = 0o755, tar.TypeDir
		}
		if err := tw.WriteHeader(hdr); err != nil {
			log.Fatal(err)
		}
		if _, err := tw.Write([]byte(f.body)); err != nil {
			log.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		log.Fatal(err)
	}

	// Compress it at level 3; Close fills annotations.
	var blob bytes.Buffer
	annotations := map[string]string{}
	w, err := zstdchunked.NewWriter(&blob, annotations, 3)
	if err != nil {
		log.Fatal(err)
	}
	if _, err := w.Write(layer.Bytes()); err != nil {
		log.Fatal(err)
	}
	if err := w.Close(); err != nil {
		log.Fatal(err)
	}

	// Any zstd reader gets the tar back: the TOC, tar-split and footer are
	// in skippable frames.
	dec, err := zstd.NewReader(nil)
	if err != nil {
		log.Fatal(err)
	}
	defer dec.Close()
	tarBack, err := dec.DecodeAll(blob.Bytes(), nil)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("decompresses to the input tar:", bytes.Equal(tarBack, layer.Bytes()))

	keys := make([]string, 0, len(annotations))
	for k := range annotations {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Println("annotation", k)
	}

	// ManifestInfoKey is <offset>:<length>:<uncompressed length>:<type> of
	// the zstd-compressed TOC; ManifestChecksumKey is its digest.
	pos := strings.Split(annotations[zstdchunked.ManifestInfoKey], ":")
	off, _ := strconv.Atoi(pos[0])
	n, _ := strconv.Atoi(pos[1])
	compressedTOC := blob.Bytes()[off : off+n]
	fmt.Println("TOC checksum matches:", digest.FromBytes(compressedTOC).String() == annotations[zstdchunked.ManifestChecksumKey])
	raw, err := dec.DecodeAll(compressedTOC, nil)
	if err != nil {
		log.Fatal(err)
	}
	var toc zstdchunked.TOC
	if err := json.Unmarshal(raw, &toc); err != nil {
		log.Fatal(err)
	}
	fmt.Println("TOC version", toc.Version)
	for _, e := range toc.Entries {
		fmt.Printf("%-4s %-12s size %4d, payload digest set: %v\n", e.Type, e.Name, e.Size, e.Digest != "")
	}
	// Output:
	// decompresses to the input tar: true
	// annotation io.github.containers.zstd-chunked.manifest-checksum
	// annotation io.github.containers.zstd-chunked.manifest-position
	// annotation io.github.containers.zstd-chunked.tarsplit-position
	// TOC checksum matches: true
	// TOC version 1
	// dir  etc/         size    0, payload digest set: false
	// reg  etc/hostname size    8, payload digest set: true
	// reg  etc/motd     size 2900, payload digest set: true
}
