package main

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"flag"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

var (
	archives    = flag.String("dir", "../../../bin/image", "where make image-archive wrote the archives")
	wantVersion = flag.String("kube-version", "", "the Kubernetes version the binary must report (make passes KUBE_VERSION)")
	wantArchs   = flag.String("archs", "amd64", "the architectures that must have an archive, comma-separated")
)

// elfMachines are the architectures the image is built for.
var elfMachines = map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}

// TestArchives opens the archives as a cluster's runtime would and checks
// what it will run: the entrypoint, a non-root user, a static binary of the
// image's architecture stamped with the Kubernetes version, a writable /tmp;
// and, when more than one architecture was built, the multi-architecture
// archive naming each.
func TestArchives(t *testing.T) {
	if *wantVersion == "" {
		t.Fatal("-kube-version is needed: run make image-test")
	}
	for _, arch := range strings.Split(*wantArchs, ",") {
		t.Run(arch, func(t *testing.T) {
			images := openArchive(t, filepath.Join(*archives, "kube-scheduler-linux-"+arch+".tar"))
			if len(images) != 1 {
				t.Fatalf("%d images in the archive, want 1", len(images))
			}
			checkImage(t, images[arch], arch)
		})
	}
	t.Run("pushed to a registry by image push, pulled by platform", func(t *testing.T) {
		archs := strings.Split(*wantArchs, ",")
		file := filepath.Join(*archives, "kube-scheduler.tar")
		if len(archs) == 1 {
			file = filepath.Join(*archives, "kube-scheduler-linux-"+archs[0]+".tar")
		}
		server := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
		defer server.Close()
		ref, err := name.ParseReference(strings.TrimPrefix(server.URL, "http://") + "/batch/kube-scheduler:test")
		if err != nil {
			t.Fatal(err)
		}
		if err := push(file, ref.String()); err != nil {
			t.Fatal(err)
		}
		for _, arch := range archs {
			img, err := remote.Image(ref, remote.WithPlatform(v1.Platform{OS: "linux", Architecture: arch}))
			if err != nil {
				t.Fatalf("pull linux/%s: %v", arch, err)
			}
			checkImage(t, img, arch)
		}
	})
	if strings.Contains(*wantArchs, ",") {
		t.Run("multi-architecture", func(t *testing.T) {
			images := openArchive(t, filepath.Join(*archives, "kube-scheduler.tar"))
			for _, arch := range strings.Split(*wantArchs, ",") {
				checkImage(t, images[arch], arch)
			}
		})
	}
}

// openArchive unpacks an OCI layout archive and returns its images by
// architecture, as its index's platforms name them.
func openArchive(t *testing.T, file string) map[string]v1.Image {
	t.Helper()
	dir := t.TempDir()
	untar(t, file, dir)
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	images := map[string]v1.Image{}
	var walk func(idx v1.ImageIndex)
	walk = func(idx v1.ImageIndex) {
		manifest, err := idx.IndexManifest()
		if err != nil {
			t.Fatal(err)
		}
		for _, desc := range manifest.Manifests {
			if desc.MediaType.IsIndex() {
				child, err := idx.ImageIndex(desc.Digest)
				if err != nil {
					t.Fatal(err)
				}
				walk(child)
				continue
			}
			if desc.Platform == nil {
				t.Fatalf("manifest %s has no platform in its index", desc.Digest)
			}
			img, err := idx.Image(desc.Digest)
			if err != nil {
				t.Fatal(err)
			}
			images[desc.Platform.Architecture] = img
		}
	}
	walk(idx)
	return images
}

func checkImage(t *testing.T, img v1.Image, arch string) {
	t.Helper()
	if img == nil {
		t.Fatalf("no %s image", arch)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.OS != "linux" || cfg.Architecture != arch {
		t.Errorf("platform %s/%s, want linux/%s", cfg.OS, cfg.Architecture, arch)
	}
	if got := cfg.Config.Entrypoint; len(got) != 1 || got[0] != entrypoint {
		t.Errorf("entrypoint %q, want [%s]", got, entrypoint)
	}
	if uid, _, _ := strings.Cut(cfg.Config.User, ":"); uid == "" || uid == "0" || uid == "root" {
		t.Errorf("user %q: the image runs as root", cfg.Config.User)
	}
	files := layerFiles(t, img)
	binary, ok := files[strings.TrimPrefix(entrypoint, "/")]
	if !ok {
		t.Fatalf("no %s in the image", entrypoint)
	}
	if binary.mode&0o111 == 0 {
		t.Errorf("%s is not executable (mode %o)", entrypoint, binary.mode)
	}
	if tmp, ok := files["tmp"]; !ok || tmp.mode&0o1777 != 0o1777 {
		t.Errorf("/tmp missing or not writable by all: %+v", tmp)
	}
	if passwd := string(files["etc/passwd"].data); !strings.Contains(passwd, ":65532:65532:") {
		t.Errorf("/etc/passwd names no user 65532: %q", passwd)
	}
	exe, err := elf.NewFile(bytes.NewReader(binary.data))
	if err != nil {
		t.Fatalf("%s is not an ELF binary: %v", entrypoint, err)
	}
	if exe.Machine != elfMachines[arch] {
		t.Errorf("%s is built for %v, want %v", entrypoint, exe.Machine, elfMachines[arch])
	}
	for _, prog := range exe.Progs {
		if prog.Type == elf.PT_INTERP {
			t.Errorf("%s is dynamically linked: the empty base has no libc", entrypoint)
		}
	}
	stamp := "v" + *wantVersion
	if !bytes.Contains(binary.data, []byte(stamp)) {
		t.Errorf("%s carries no version stamp %s", entrypoint, stamp)
	}
	if arch == runtime.GOARCH && runtime.GOOS == "linux" {
		// The binary of this machine's architecture runs here: what
		// --version prints is what kubernetes_build_info reports.
		file := filepath.Join(t.TempDir(), "kube-scheduler")
		if err := os.WriteFile(file, binary.data, 0o755); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(file, "--version").CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "Kubernetes "+stamp {
			t.Errorf("%s --version: %q (%v), want \"Kubernetes %s\"", entrypoint, out, err, stamp)
		}
	}
}

type layerFile struct {
	mode int64
	data []byte
}

// layerFiles reads the image's filesystem, layer by layer.
func layerFiles(t *testing.T, img v1.Image) map[string]layerFile {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]layerFile{}
	for _, layer := range layers {
		rc, err := layer.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(rc)
		for {
			hdr, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			data, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			if hdr.Uid != 0 || hdr.Gid != 0 {
				t.Errorf("%s is owned by %d:%d, want root: the scheduler must not be able to change it", hdr.Name, hdr.Uid, hdr.Gid)
			}
			files[strings.TrimSuffix(hdr.Name, "/")] = layerFile{mode: hdr.Mode, data: data}
		}
		rc.Close()
	}
	return files
}

func untar(t *testing.T, file, dir string) {
	t.Helper()
	if err := untarFile(file, dir); err != nil {
		t.Fatalf("%v: run make image-archive (or make image for every architecture)", err)
	}
}
