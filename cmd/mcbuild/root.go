package main

import (
	"runtime/debug"

	"github.com/spf13/cobra"

	"github.com/mcbuild/mcbuild/pkg/registry"
)

// globalFlags are the registry settings every subcommand shares.
type globalFlags struct {
	tlsVerify bool
	authFile  string
	certDir   string
}

func (g *globalFlags) registryOptions() registry.Options {
	return registry.Options{AuthFile: g.authFile, TLSVerify: g.tlsVerify, CertDir: g.certDir, UserAgent: "mcbuild"}
}

func newRootCommand() *cobra.Command {
	g := &globalFlags{}
	root := &cobra.Command{
		Use:   "mcbuild",
		Short: "Build once per platform; publish gzip and zstd:chunked manifests, a gzip-first index and a subjects artifact",
		Long: `mcbuild builds a Containerfile once per platform with buildah (as a library),
pushes one manifest per compression format by digest, assembles an OCI image
index where each platform's gzip entry comes first, and pushes a "subjects"
artifact listing every digest, whose reference it writes as a Tekton result.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version(),
	}
	pf := root.PersistentFlags()
	pf.BoolVar(&g.tlsVerify, "tls-verify", true, "require HTTPS and verify certificates when talking to registries")
	pf.StringVar(&g.authFile, "authfile", "", "registry credentials file (default: $REGISTRY_AUTH_FILE, then the usual containers/docker auth files)")
	pf.StringVar(&g.certDir, "cert-dir", "", "directory of *.crt CA certificates (and *.cert/*.key client pairs) for registries")
	root.AddCommand(newBuildCommand(g), newIndexCommand(g), newSubjectsCommand(g), newInspectCommand(g))
	return root
}

// version is set with -ldflags "-X main.buildVersion=..." by release builds;
// otherwise the module version Go recorded, or "dev".
var buildVersion = ""

func version() string {
	if buildVersion != "" {
		return buildVersion
	}
	if info, ok := debug.ReadBuildInfo(); ok && info.Main.Version != "" && info.Main.Version != "(devel)" {
		return info.Main.Version
	}
	return "dev"
}
