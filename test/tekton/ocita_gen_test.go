package tekton

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// The trusted-artifacts variant of the build Task (Konflux's -oci-ta
// convention) is generated from the build Task, so the two never drift:
// `make tasks` (go test -run TestOciTATaskGenerated -update-tasks) writes
// it, and the test fails when the checked-in file is not what the build
// Task gives.
const ociTATaskFile = "tasks/mcbuild-oci-ta/0.1/mcbuild-oci-ta.yaml"

var updateTasks = flag.Bool("update-tasks", false, "rewrite the generated Tasks (tasks/mcbuild-oci-ta) from tasks/mcbuild")

// TestOciTATaskGenerated: the checked-in oci-ta Task is what generateOciTA
// makes of the build Task.
func TestOciTATaskGenerated(t *testing.T) {
	got, err := generateOciTA(readRepoFile(t, buildTaskFile))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(repoRoot, ociTATaskFile)
	if *updateTasks {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if want := readRepoFile(t, ociTATaskFile); !bytes.Equal(got, want) {
		t.Fatalf("%s is not what %s gives: run `make tasks` and commit the result", ociTATaskFile, buildTaskFile)
	}
}

// workdir is where the oci-ta Task restores the source: an emptyDir that
// both steps mount.
const workdir = "/var/workdir"

// useSourceStep restores SOURCE_ARTIFACT into workdir/source with the
// step image's own mcbuild (no image of its own, unlike Konflux's
// build-trusted-artifacts step). It needs no capability.
const useSourceStep = `name: use-source
image: IMAGE
workingDir: /var/workdir
computeResources:
  requests:
    cpu: 100m
    memory: 256Mi
  limits:
    memory: 1Gi
securityContext:
  # Root without any capability: it only writes files it owns into the emptyDir.
  runAsUser: 0
  capabilities:
    drop:
    - ALL
volumeMounts:
- name: workdir
  mountPath: /var/workdir
- name: trusted-ca
  mountPath: /mnt/trusted-ca
  readOnly: true
env:
- name: PARAM_SOURCE_ARTIFACT
  value: $(params.SOURCE_ARTIFACT)
- name: PARAM_TLSVERIFY
  value: $(params.TLSVERIFY)
- name: WORKSPACE_DOCKERCONFIG_BOUND
  value: $(workspaces.dockerconfig.bound)
- name: WORKSPACE_DOCKERCONFIG_PATH
  value: $(workspaces.dockerconfig.path)
script: |
  #!/bin/sh
  # mcbuild source fetch: the artifact's blob is checked against its digest before it is
  # unpacked, and no entry may land outside /var/workdir/source (README.md).
  set -eu

  fail() {
    echo "mcbuild task: $*" >&2
    exit 2
  }

  case $PARAM_SOURCE_ARTIFACT in
    oci:?*@sha256:?*) ;;
    *) fail "SOURCE_ARTIFACT must be oci:REGISTRY/REPO@sha256:HEX, the reference build-trusted-artifacts' create writes, got '$PARAM_SOURCE_ARTIFACT'" ;;
  esac
  set -- source fetch --tls-verify="$PARAM_TLSVERIFY"
  if [ "$WORKSPACE_DOCKERCONFIG_BOUND" = true ]; then
    if [ -f "$WORKSPACE_DOCKERCONFIG_PATH/.dockerconfigjson" ]; then
      set -- "$@" --authfile "$WORKSPACE_DOCKERCONFIG_PATH/.dockerconfigjson"
    elif [ -f "$WORKSPACE_DOCKERCONFIG_PATH/config.json" ]; then
      set -- "$@" --authfile "$WORKSPACE_DOCKERCONFIG_PATH/config.json"
    else
      fail "workspace dockerconfig holds neither .dockerconfigjson nor config.json"
    fi
  fi
  if [ -f /mnt/trusted-ca/ca-bundle.crt ]; then
    set -- "$@" --cert-dir /mnt/trusted-ca
  fi
  exec mcbuild "$@" "$PARAM_SOURCE_ARTIFACT" /var/workdir/source
`

const sourceArtifactParam = `name: SOURCE_ARTIFACT
type: string
description: >-
  The source to build: oci:REGISTRY/REPO@sha256:HEX, a trusted artifact made by
  konflux-ci/build-trusted-artifacts' create (e.g. git-clone-oci-ta's SOURCE_ARTIFACT result).
`

// generateOciTA makes the oci-ta Task of the build Task base: named
// mcbuild-oci-ta, SOURCE_ARTIFACT instead of the source workspace, an
// emptyDir "workdir" the use-source step restores the source into and the
// build step works in. Everything else is the build Task's.
func generateOciTA(base []byte) ([]byte, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(base, &doc); err != nil {
		return nil, err
	}
	root := doc.Content[0]
	meta, spec := mapValue(root, "metadata"), mapValue(root, "spec")
	if meta == nil || spec == nil {
		return nil, fmt.Errorf("no metadata or spec")
	}
	setScalar(meta, "name", "mcbuild-oci-ta")
	setScalar(mapValue(meta, "annotations"), "tekton.dev/displayName", "mcbuild (trusted artifacts)")
	setScalar(spec, "description", "The mcbuild Task with its source from SOURCE_ARTIFACT, an OCI artifact made by\n"+
		"konflux-ci/build-trusted-artifacts' create (Konflux's -oci-ta convention), instead of a\n"+
		"source workspace; everything else is the mcbuild Task's.\n"+mapValue(spec, "description").Value)
	steps := mapValue(spec, "steps")
	if steps == nil || len(steps.Content) != 1 {
		return nil, fmt.Errorf("want the build Task's one step")
	}
	build := steps.Content[0]
	useSource, err := node(strings.Replace(useSourceStep, "IMAGE", mapValue(build, "image").Value, 1))
	if err != nil {
		return nil, err
	}
	setScalar(build, "workingDir", workdir+"/source")
	mounts := mapValue(build, "volumeMounts")
	workdirMount, err := node("name: workdir\nmountPath: " + workdir + "\n")
	if err != nil {
		return nil, err
	}
	mounts.Content = append(mounts.Content, workdirMount)
	steps.Content = append([]*yaml.Node{useSource}, steps.Content...)
	if err := ociTAParamsAndVolumes(spec); err != nil {
		return nil, err
	}
	doc.HeadComment = "Generated from " + buildTaskFile + " by `make tasks`\n(test/tekton/ocita_gen_test.go): edit that file, not this one."
	var out bytes.Buffer
	enc := yaml.NewEncoder(&out)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return nil, err
	}
	return out.Bytes(), enc.Close()
}

// ociTAParamsAndVolumes adds SOURCE_ARTIFACT (after IMAGE) and the workdir
// volume and drops the source workspace; descriptions that say "the source
// workspace" say "the source" instead.
func ociTAParamsAndVolumes(spec *yaml.Node) error {
	params := mapValue(spec, "params")
	p, err := node(sourceArtifactParam)
	if err != nil {
		return err
	}
	params.Content = append(params.Content[:1], append([]*yaml.Node{p}, params.Content[1:]...)...)
	for _, p := range params.Content {
		if d := mapValue(p, "description"); d != nil {
			d.Value = strings.ReplaceAll(d.Value, "the source workspace", "the source")
		}
	}
	ws := mapValue(spec, "workspaces")
	for i, w := range ws.Content {
		if mapValue(w, "name").Value == "source" {
			ws.Content = append(ws.Content[:i], ws.Content[i+1:]...)
			break
		}
	}
	v, err := node("name: workdir\nemptyDir: {}\n")
	if err != nil {
		return err
	}
	vols := mapValue(spec, "volumes")
	vols.Content = append(vols.Content, v)
	return nil
}

// node parses a YAML mapping.
func node(s string) (*yaml.Node, error) {
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(s), &n); err != nil {
		return nil, err
	}
	return n.Content[0], nil
}

// mapValue is the value of key in the mapping m, or nil.
func mapValue(m *yaml.Node, key string) *yaml.Node {
	if m == nil || m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

// setScalar sets key's scalar value in the mapping m.
func setScalar(m *yaml.Node, key, value string) {
	if v := mapValue(m, key); v != nil {
		v.Value = value
	}
}
