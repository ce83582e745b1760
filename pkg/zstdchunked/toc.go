package zstdchunked

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/vbatts/tar-split/archive/tar"

	"github.com/mcbuild/mcbuild/internal/oci"
)

// The TOC schema and footer below are copies of
// go.podman.io/storage/pkg/chunked/internal/minimal (v1.64.0), which is an
// internal package, and so are the annotation keys (spelled once, in
// internal/oci); the compatibility tests check them against storage's own
// reader and against its compressor's output byte for byte.

// TOC is the zstd:chunked table of contents.
type TOC struct {
	Version        int            `json:"version"`
	Entries        []FileMetadata `json:"entries"`
	TarSplitDigest digest.Digest  `json:"tarSplitDigest,omitempty"`
}

// FileMetadata is one TOC entry; field order and tags match upstream's so
// the JSON is identical.
type FileMetadata struct {
	Type       string            `json:"type"`
	Name       string            `json:"name"`
	Linkname   string            `json:"linkName,omitempty"`
	Mode       int64             `json:"mode,omitempty"`
	Size       int64             `json:"size,omitempty"`
	UID        int               `json:"uid,omitempty"`
	GID        int               `json:"gid,omitempty"`
	ModTime    *time.Time        `json:"modtime,omitempty"`
	AccessTime *time.Time        `json:"accesstime,omitempty"`
	ChangeTime *time.Time        `json:"changetime,omitempty"`
	Devmajor   int64             `json:"devMajor,omitempty"`
	Devminor   int64             `json:"devMinor,omitempty"`
	Xattrs     map[string]string `json:"xattrs,omitempty"`
	Digest     string            `json:"digest,omitempty"`
	Offset     int64             `json:"offset,omitempty"`
	EndOffset  int64             `json:"endOffset,omitempty"`

	ChunkSize   int64  `json:"chunkSize,omitempty"`
	ChunkOffset int64  `json:"chunkOffset,omitempty"`
	ChunkDigest string `json:"chunkDigest,omitempty"`
	ChunkType   string `json:"chunkType,omitempty"`
}

const (
	chunkTypeData  = ""
	chunkTypeZeros = "zeros"
	typeChunk      = "chunk"

	// ManifestChecksumKey is the annotation with the digest of the compressed TOC.
	ManifestChecksumKey = oci.AnnotationZstdChunkedChecksum
	// ManifestInfoKey is the annotation <offset>:<length>:<uncompressed length>:<type> of the TOC.
	ManifestInfoKey = oci.AnnotationZstdChunkedPosition
	// TarSplitInfoKey is the annotation <offset>:<length>:<uncompressed length> of the tar-split data.
	TarSplitInfoKey = oci.AnnotationZstdChunkedTarSplitPosition

	manifestTypeCRFS    = 1
	footerSize          = 64
	paxSchilyXattr      = "SCHILY.xattr."
	skippableFrameBytes = 8
)

var (
	skippableFrameMagic   = []byte{0x50, 0x2a, 0x4d, 0x18}
	zstdChunkedFrameMagic = []byte{0x47, 0x4e, 0x55, 0x6c, 0x49, 0x6e, 0x55, 0x78}
)

var tarTypes = map[byte]string{
	tar.TypeReg:     "reg",
	tar.TypeLink:    "hardlink",
	tar.TypeChar:    "char",
	tar.TypeBlock:   "block",
	tar.TypeDir:     "dir",
	tar.TypeFifo:    "fifo",
	tar.TypeSymlink: "symlink",
}

func timeIfNotZero(t *time.Time) *time.Time {
	if t == nil || t.IsZero() {
		return nil
	}
	return t
}

// ErrSparse is returned for a sparse tar entry (GNU type 'S', or PAX
// GNU.sparse.* records). A zstd:chunked stream holds each file's whole
// content, holes included, so with the tar's sparse headers it would not
// decompress to the input tar: the layer's diff ID would not match, and
// readers that are not zstd:chunked-aware would read a corrupt tar.
// Upstream's compressor writes such a stream without a word; we refuse.
var ErrSparse = errors.New("zstd:chunked cannot carry sparse tar entries (its stream would not decompress to the same tar); publish this layer as gzip or zstd instead")

func checkNotSparse(hdr *tar.Header) error {
	kind := ""
	if hdr.Typeflag == tar.TypeGNUSparse {
		kind = "GNU sparse entry"
	}
	for k := range hdr.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			kind = "PAX GNU.sparse records"
			break
		}
	}
	if kind == "" {
		return nil
	}
	return fmt.Errorf("%q is a sparse file (%s): %w", hdr.Name, kind, ErrSparse)
}

func newFileMetadata(hdr *tar.Header) (FileMetadata, error) {
	typ, ok := tarTypes[hdr.Typeflag]
	if !ok {
		return FileMetadata{}, fmt.Errorf("unknown tarball type: %v", hdr.Typeflag)
	}
	xattrs := make(map[string]string)
	for k, v := range hdr.PAXRecords {
		xattrKey, ok := strings.CutPrefix(k, paxSchilyXattr)
		if !ok {
			continue
		}
		xattrs[xattrKey] = base64.StdEncoding.EncodeToString([]byte(v))
	}
	return FileMetadata{
		Type:       typ,
		Name:       hdr.Name,
		Linkname:   hdr.Linkname,
		Mode:       hdr.Mode,
		Size:       hdr.Size,
		UID:        hdr.Uid,
		GID:        hdr.Gid,
		ModTime:    timeIfNotZero(&hdr.ModTime),
		AccessTime: timeIfNotZero(&hdr.AccessTime),
		ChangeTime: timeIfNotZero(&hdr.ChangeTime),
		Devmajor:   hdr.Devmajor,
		Devminor:   hdr.Devminor,
		Xattrs:     xattrs,
	}, nil
}

func appendSkippableFrame(dest io.Writer, data []byte) error {
	var hdr [8]byte
	copy(hdr[:], skippableFrameMagic)
	binary.LittleEndian.PutUint32(hdr[4:], uint32(len(data)))
	if _, err := dest.Write(hdr[:]); err != nil {
		return err
	}
	_, err := dest.Write(data)
	return err
}

func footerBlob(manifestOffset, manifestLen, manifestUncompressed, tarSplitOffset, tarSplitLen, tarSplitUncompressed uint64) []byte {
	b := make([]byte, footerSize)
	binary.LittleEndian.PutUint64(b[8*0:], manifestOffset)
	binary.LittleEndian.PutUint64(b[8*1:], manifestLen)
	binary.LittleEndian.PutUint64(b[8*2:], manifestUncompressed)
	binary.LittleEndian.PutUint64(b[8*3:], manifestTypeCRFS)
	binary.LittleEndian.PutUint64(b[8*4:], tarSplitOffset)
	binary.LittleEndian.PutUint64(b[8*5:], tarSplitLen)
	binary.LittleEndian.PutUint64(b[8*6:], tarSplitUncompressed)
	copy(b[8*7:], zstdChunkedFrameMagic)
	return b
}
