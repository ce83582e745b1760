package registry

import (
	"context"
	"fmt"

	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/pkg/docker/config"
	"go.podman.io/image/v5/types"
	"oras.land/oras-go/v2/registry/remote/auth"
)

// credentials looks credentials up the way buildah, podman and skopeo do
// (containers/image's pkg/docker/config: the most specific auths entry for
// host/namespace/repo wins, credential helpers, identity tokens), so the oras
// client here and the containers/image pushes agree on who we are.
type credentials struct {
	path string // the auth file; "" means containers/image's defaults
	sys  *types.SystemContext
}

func newCredentials(path string) credentials {
	return credentials{path: path, sys: &types.SystemContext{AuthFilePath: path}}
}

// lookup returns the credential for host and repository path ("" for
// registry-wide access such as Ping). Errors never quote the file's content.
func (c credentials) lookup(host, path string) (auth.Credential, error) {
	var ac types.DockerAuthConfig
	var err error
	if path == "" {
		ac, err = config.GetCredentials(c.sys, host)
	} else {
		var named reference.Named
		named, err = reference.ParseNamed(host + "/" + path)
		if err != nil {
			return auth.EmptyCredential, fmt.Errorf("repository %s/%s: %w", host, path, err)
		}
		ac, err = config.GetCredentialsForRef(c.sys, named)
	}
	if err != nil {
		return auth.EmptyCredential, fmt.Errorf("reading credentials for %s from %s: %w", host, c.where(), err)
	}
	return auth.Credential{Username: ac.Username, Password: ac.Password, RefreshToken: ac.IdentityToken}, nil
}

// credentialFunc is the oras credential function for one repository path.
func (c credentials) credentialFunc(path string) auth.CredentialFunc {
	return func(_ context.Context, hostport string) (auth.Credential, error) {
		return c.lookup(hostport, path)
	}
}

// has reports whether a credential is configured for host and path.
func (c credentials) has(host, path string) bool {
	cred, err := c.lookup(host, path)
	return err == nil && cred != auth.EmptyCredential
}

func (c credentials) where() string { return whereCredentials(c.path) }
