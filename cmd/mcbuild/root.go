package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"runtime/pprof"
	"time"

	"github.com/spf13/cobra"

	"github.com/mcbuild/mcbuild/internal/registry"
)

// globalFlags are the registry settings every subcommand shares.
type globalFlags struct {
	tlsVerify      bool
	authFile       string
	certDir        string
	retry          int
	retryDelay     time.Duration
	requestTimeout time.Duration
	timeout        time.Duration
	cpuProfile     string
}

// session validates the registry flags and makes the run's one registry
// session from them.
func (g *globalFlags) session() (*registry.Session, error) {
	return registry.NewSession(g.registryOptions())
}

// registryOptions are the registry flags as registry.Options.
func (g *globalFlags) registryOptions() registry.Options {
	o := registry.Options{AuthFile: g.authFile, TLSVerify: g.tlsVerify, CertDir: g.certDir, UserAgent: "mcbuild",
		Retry: g.retry, RetryDelay: g.retryDelay, RequestTimeout: g.requestTimeout}
	if g.requestTimeout == 0 {
		o.RequestTimeout = -1 // --request-timeout 0: no bound
	}
	return o
}

// withTimeout checks the timeout flags and gives the command a deadline when
// --timeout is set.
func (g *globalFlags) withTimeout(cmd *cobra.Command) error {
	if g.timeout < 0 {
		return fmt.Errorf("--timeout %s: want a positive duration, or 0 for none", g.timeout)
	}
	if g.requestTimeout < 0 {
		return fmt.Errorf("--request-timeout %s: want a positive duration, or 0 for none (default %s)", g.requestTimeout, registry.DefaultRequestTimeout)
	}
	if g.timeout > 0 {
		// Released when the command ends, as the profile is.
		ctx, cancel := context.WithTimeoutCause(cmd.Context(), g.timeout, fmt.Errorf("--timeout %s reached", g.timeout))
		cobra.OnFinalize(cancel)
		cmd.SetContext(ctx)
	}
	return nil
}

// explainErrors wraps every subcommand's RunE so that an error caused by
// --timeout names it, and one the registry package reports in its own
// terms names the flags that fix it (withFlagHints).
func explainErrors(cmd *cobra.Command) {
	for _, c := range cmd.Commands() {
		explainErrors(c)
	}
	run := cmd.RunE
	if run == nil {
		return
	}
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		err := run(cmd, args)
		if err != nil && errors.Is(err, context.DeadlineExceeded) {
			if cause := context.Cause(cmd.Context()); cause != nil && !errors.Is(cause, context.DeadlineExceeded) {
				err = fmt.Errorf("%w: %w", cause, err)
			}
		}
		return withFlagHints(err)
	}
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
	g.register(root)
	root.PersistentPreRunE = func(cmd *cobra.Command, _ []string) error {
		if err := g.withTimeout(cmd); err != nil {
			return err
		}
		return g.startProfile()
	}
	root.AddCommand(newBuildCommand(g), newIndexCommand(g), newSubjectsCommand(g), newInspectCommand(g), newSourceCommand(g))
	explainErrors(root)
	return root
}

// register adds the global flags to root. The registry flags take their
// defaults from registry.DefaultOptions, so what a user gets without flags
// is what that package documents (and tests).
func (g *globalFlags) register(root *cobra.Command) {
	pf, d := root.PersistentFlags(), registry.DefaultOptions()
	pf.BoolVar(&g.tlsVerify, "tls-verify", d.TLSVerify, "require HTTPS and verify certificates when talking to registries")
	pf.StringVar(&g.authFile, "authfile", "", "registry credentials file (default: $REGISTRY_AUTH_FILE, then the usual containers/docker auth files)")
	pf.StringVar(&g.certDir, "cert-dir", "", "directory of *.crt CA certificates (and *.cert/*.key client pairs) for registries")
	pf.IntVar(&g.retry, "retry", d.Retry, "times to retry a registry operation that failed transiently (408, 429, 5xx, reset or timed-out connections); never 401, 403 or other 4xx")
	pf.DurationVar(&g.retryDelay, "retry-delay", d.RetryDelay, fmt.Sprintf("first wait before a retry; doubles each time, up to %s; a registry's Retry-After is honored up to %s", registry.MaxRetryDelay, registry.MaxRetryAfter))
	pf.DurationVar(&g.requestTimeout, "request-timeout", d.RequestTimeout, "abandon (and retry) a registry request that makes no progress for this long: no answer, no bytes moving; 0 for no bound")
	pf.DurationVar(&g.timeout, "timeout", 0, "give up the whole command after this long (0: no limit)")
	pf.StringVar(&g.cpuProfile, "cpu-profile", "", "write a Go CPU profile of the whole command to this file (as buildah's flag)")
	_ = pf.MarkHidden("cpu-profile")
}

// startProfile starts --cpu-profile; it stops when the command ends,
// failed or not (cobra's finalizers).
func (g *globalFlags) startProfile() error {
	if g.cpuProfile == "" {
		return nil
	}
	f, err := os.Create(g.cpuProfile)
	if err != nil {
		return fmt.Errorf("--cpu-profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return fmt.Errorf("--cpu-profile: %w", err)
	}
	cobra.OnFinalize(func() {
		pprof.StopCPUProfile()
		f.Close()
	})
	return nil
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
