package registry

import "go.podman.io/image/v5/types"

// SystemContext carries o's auth and TLS settings to containers/image (the
// pushes of the stream and copy publishers, buildah's pulls), with its
// blob-info cache in blobInfoCacheDir.
func SystemContext(o Options, blobInfoCacheDir string) *types.SystemContext {
	sys := &types.SystemContext{
		AuthFilePath:     o.ResolveAuthFile(),
		DockerCertPath:   o.CertDir,
		BlobInfoCacheDir: blobInfoCacheDir,
	}
	if !o.TLSVerify {
		sys.DockerInsecureSkipTLSVerify = types.OptionalBoolTrue
		sys.OCIInsecureSkipTLSVerify = true
	}
	return sys
}
