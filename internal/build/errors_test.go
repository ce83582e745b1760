package build

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/openshift/imagebuilder"
)

// copierDump is what buildah's copier child process printed for a full
// disk (abridged: the real one is 3 KiB of options and pointers).
const copierDump = `storing "/merge/big": error during bulk transfer for copier.request{Request:"PUT", Root:"/", preservedRoot:"/root/vfs/dir/46", Globs:[]string{}, GetOptions:copier.GetOptions{UIDMap:[]idtools.IDMap(nil), Chmod:"a}{\"b", ChownDirs:(*idtools.IDPair)(0x1392ea6b8060), Rename:map[string]string(nil)}, Timestamp:<nil>}: copier: put: error creating "/big": write /big: no space left on device`

// TestReadable: buildah's dumps of a step (%+v, the environment with build
// arguments included) and of a copier request (%#v) become the
// instruction as written and the request's kind; the error still matches
// what it wrapped.
func TestReadable(t *testing.T) {
	enospc := errors.New("write /tmp/layer: no space left on device")
	step := imagebuilder.Step{Env: []string{"PATH=/bin", "TOKEN=hunter2"}, Command: "copy", Args: []string{"big", "/big"},
		Message: "COPY big /big", Original: "COPY --chown=1:1 {big} /big"}
	tests := []struct {
		name   string
		err    error
		want   string
		absent []string
	}{
		{"step", fmt.Errorf("committing container for step %+v: %w", step, fmt.Errorf("copying layers: %w", enospc)),
			`committing container for step "COPY --chown=1:1 {big} /big": copying layers: write /tmp/layer: no space left on device`,
			[]string{"Env:", "hunter2", "Command:"}},
		{"squash step, wrapped", fmt.Errorf("building at STEP: %w", fmt.Errorf("committing final squash step %+v: %w", step, enospc)),
			`building at STEP: committing final squash step "COPY --chown=1:1 {big} /big": write /tmp/layer`, []string{"hunter2"}},
		{"copier request", fmt.Errorf("building at STEP \"COPY big /big\": %w", errors.Join(errors.New(copierDump), context.Canceled)),
			`storing "/merge/big": error during bulk transfer for a copier PUT request: copier: put: error creating "/big": write /big: no space left on device`,
			[]string{"copier.request{", "0x1392ea6b8060", "GetOptions"}},
		{"untouched", fmt.Errorf("building: %w", enospc), "building: write /tmp/layer: no space left on device", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := readable(tc.err)
			if !strings.Contains(got.Error(), tc.want) {
				t.Errorf("readable:\n%s\nwant it to contain\n%s", got, tc.want)
			}
			for _, a := range tc.absent {
				if strings.Contains(got.Error(), a) {
					t.Errorf("readable still holds %q:\n%s", a, got)
				}
			}
			if !errors.Is(got, tc.err) {
				t.Error("the readable error no longer matches the original")
			}
		})
	}
	if err := readable(context.Canceled); err != context.Canceled {
		t.Errorf("readable(context.Canceled) = %v, want it unchanged", err)
	}
}
