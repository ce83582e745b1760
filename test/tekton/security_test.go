package tekton

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mcbuild/mcbuild/internal/testfixture"
	"github.com/mcbuild/mcbuild/internal/testregistry"
)

// TestMcbuildNeedsUserNamespace is why the build step runs mcbuild in a user
// namespace: with the pod's capabilities (CRI-O's defaults plus the step's
// SETFCAP, no CAP_SYS_ADMIN) and no user namespace, a build with RUN fails on
// a mount. (TestMatrixPipeline shows the same build passing through the step.)
func TestMcbuildNeedsUserNamespace(t *testing.T) {
	requireSimulationTools(t)
	binDir, err := mcbuildBinDir()
	if err != nil {
		t.Fatal(err)
	}
	reg := testregistry.StartOlareg(t)
	src := testfixture.Context(t, runBuild, "amd64")
	task := loadTask(t, buildTaskFile)
	bounding, _ := capabilities(t, task.Spec.Steps[0].SecurityContext, nil)
	dir := t.TempDir()
	cmd := exec.Command("unshare", "--mount", "--propagation", "private", "--",
		"setpriv", "--bounding-set", bounding, "--inh-caps", "-all", "--",
		filepath.Join(binDir, "mcbuild"), "build", "--tls-verify=false", "--image", reg.Repo("tekton/no-userns")+":v1",
		"--context", src, "--platform", "linux/amd64", "--storage-driver", "vfs",
		"--root", filepath.Join(dir, "root"), "--runroot", filepath.Join(dir, "run"))
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=" + dir}
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("mcbuild built with RUN without CAP_SYS_ADMIN and without a user namespace; the step's unshare may be unnecessary:\n%s", out)
	}
	if !strings.Contains(string(out), "operation not permitted") {
		t.Errorf("want a mount refused with EPERM, got:\n%s", out)
	}
}
