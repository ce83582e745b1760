package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/opencontainers/go-digest"
	"go.podman.io/image/v5/copy"
	"go.podman.io/image/v5/docker"
	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/pkg/compression"
	"go.podman.io/image/v5/signature"
	istorage "go.podman.io/image/v5/storage"
	"go.podman.io/image/v5/types"
	"go.podman.io/storage"

	"github.com/mcbuild/mcbuild/internal/formats"
	"github.com/mcbuild/mcbuild/internal/publish"
)

// naiveResult is what `mcbench naive` prints on stdout.
type naiveResult struct {
	ImageID string        `json:"image_id"`
	Copies  []naiveCopied `json:"copies"`
}

type naiveCopied struct {
	Format  string  `json:"format"`
	Ref     string  `json:"ref"`
	Digest  string  `json:"digest"`
	Seconds float64 `json:"seconds"`
}

// naiveCmd is arm c, what a library user would write first: two copy.Image
// calls one after the other, gzip then zstd:chunked, each with
// ForceCompressionFormat and otherwise containers/image's defaults (so
// zstd:chunked runs at the compressor's default level, 10). Only the
// blob-info cache is private, as for every other arm.
func naiveCmd(args []string) error {
	fs := flag.NewFlagSet("naive", flag.ExitOnError)
	driver := fs.String("storage-driver", "vfs", "containers/storage driver of the source store")
	root := fs.String("root", "", "source store root (mcbuild --root of the setup build)")
	runRoot := fs.String("runroot", "", "source store run root")
	dest := fs.String("dest", "", "destination repository REGISTRY/REPO (tags gzip and zstd-chunked are pushed)")
	cache := fs.String("blob-info-cache", "", "private blob-info cache directory")
	_ = fs.Parse(args)
	if *root == "" || *runRoot == "" || *dest == "" || *cache == "" {
		return fmt.Errorf("naive: -root, -runroot, -dest and -blob-info-cache are required")
	}
	ctx := context.Background()
	store, err := storage.GetStore(storage.StoreOptions{GraphRoot: *root, RunRoot: *runRoot, GraphDriverName: *driver})
	if err != nil {
		return err
	}
	defer func() { _, _ = store.Shutdown(false) }()
	id, err := newestImage(store)
	if err != nil {
		return err
	}
	src, err := istorage.Transport.NewStoreReference(store, nil, id)
	if err != nil {
		return err
	}
	policy, err := signature.NewPolicyContext(&signature.Policy{Default: []signature.PolicyRequirement{signature.NewPRInsecureAcceptAnything()}})
	if err != nil {
		return err
	}
	defer func() { _ = policy.Destroy() }()

	res := naiveResult{ImageID: id}
	for _, f := range []struct {
		format formats.Format
		tag    string
	}{{formats.Gzip, "gzip"}, {formats.ZstdChunked, "zstd-chunked"}} {
		algo, err := compression.AlgorithmByName(string(f.format))
		if err != nil {
			return err
		}
		named, err := reference.ParseNormalizedNamed(*dest + ":" + f.tag)
		if err != nil {
			return err
		}
		destRef, err := docker.NewReference(reference.TagNameOnly(named))
		if err != nil {
			return err
		}
		sys := &types.SystemContext{
			DockerInsecureSkipTLSVerify: types.OptionalBoolTrue,
			BlobInfoCacheDir:            *cache,
			CompressionFormat:           &algo,
		}
		start := time.Now()
		m, err := copy.Image(ctx, policy, destRef, src, &copy.Options{DestinationCtx: sys, ForceCompressionFormat: true})
		if err != nil {
			return fmt.Errorf("copy.Image %s: %w", f.format, err)
		}
		took := time.Since(start).Seconds()
		if err := publish.CheckLayers(m, f.format); err != nil {
			return err
		}
		res.Copies = append(res.Copies, naiveCopied{Format: string(f.format), Ref: named.String(), Digest: digest.FromBytes(m).String(), Seconds: took})
		fmt.Fprintf(os.Stderr, "copied %s as %s@%s in %.2fs\n", f.format, named, digest.FromBytes(m), took)
	}
	return json.NewEncoder(os.Stdout).Encode(res)
}

// newestImage is the image the setup build made: the most recently created
// one with the most layers (buildah's --layers leaves one image per step).
func newestImage(store storage.Store) (string, error) {
	imgs, err := store.Images()
	if err != nil {
		return "", err
	}
	best, bestDepth := -1, -1
	for i, img := range imgs {
		depth := 0
		for l := img.TopLayer; l != ""; depth++ {
			layer, err := store.Layer(l)
			if err != nil {
				return "", err
			}
			l = layer.Parent
		}
		if depth > bestDepth || (depth == bestDepth && img.Created.After(imgs[best].Created)) {
			best, bestDepth = i, depth
		}
	}
	if best < 0 {
		return "", fmt.Errorf("no image in the store")
	}
	return imgs[best].ID, nil
}
