// Command image builds the scheduler's container image without a container
// engine: the static binary and a few files (build/scheduler/rootfs) as one
// layer on an empty base, written as an OCI image layout in a tar file (an
// "oci-archive"), one per architecture, and with more than one architecture
// also one archive whose index names them all. containerd (kind load
// image-archive, ctr images import), Docker 25+, podman, skopeo and crane read
// them.
//
//	image -image registry/kube-scheduler:0.1.0 -rootfs build/scheduler/rootfs \
//	  -binary amd64=bin/kube-scheduler -binary arm64=bin/linux-arm64/kube-scheduler -out bin/image
//
// "image push ARCHIVE REF" pushes what an archive holds (the multi-architecture
// one as an image index) with the credentials of docker login.
package main

import (
	"archive/tar"
	"bytes"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// What a cluster runs: the binary as the entrypoint, as the nonroot user of
// rootfs/etc/passwd (distroless' 65532).
const (
	entrypoint = "/usr/local/bin/kube-scheduler"
	user       = "65532:65532"
)

type binaries map[string]string

func (b binaries) String() string { return fmt.Sprint(map[string]string(b)) }

func (b binaries) Set(s string) error {
	arch, path, ok := strings.Cut(s, "=")
	if !ok || arch == "" || path == "" {
		return fmt.Errorf("want ARCH=PATH, got %q", s)
	}
	b[arch] = path
	return nil
}

func main() {
	if len(os.Args) == 4 && os.Args[1] == "push" {
		if err := push(os.Args[2], os.Args[3], remote.WithAuthFromKeychain(authn.DefaultKeychain)); err != nil {
			fmt.Fprintln(os.Stderr, "image push:", err)
			os.Exit(1)
		}
		return
	}
	bins := binaries{}
	ref := flag.String("image", "", "the image's name and tag, recorded in the archives")
	rootfs := flag.String("rootfs", "", "a directory whose files go into the layer beside the binary")
	out := flag.String("out", "", "the directory the archives are written to")
	version := flag.String("version", "", "the image's version label")
	revision := flag.String("revision", "", "the source revision label")
	created := flag.String("created", "", "the image's creation time, RFC 3339 (default: the Unix epoch, for reproducible images)")
	flag.Var(bins, "binary", "ARCH=PATH of a static linux binary; repeat for each architecture")
	flag.Parse()
	if err := run(*ref, *rootfs, *out, *version, *revision, *created, bins); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

func run(ref, rootfs, out, version, revision, created string, bins binaries) error {
	if ref == "" || rootfs == "" || out == "" || len(bins) == 0 {
		return fmt.Errorf("-image, -rootfs, -out and at least one -binary are needed")
	}
	when := time.Unix(0, 0).UTC()
	if created != "" {
		var err error
		if when, err = time.Parse(time.RFC3339, created); err != nil {
			return fmt.Errorf("-created: %w", err)
		}
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	archs := make([]string, 0, len(bins))
	for arch := range bins {
		archs = append(archs, arch)
	}
	sort.Strings(archs)
	all := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, arch := range archs {
		img, err := build(arch, bins[arch], rootfs, ref, version, revision, when)
		if err != nil {
			return fmt.Errorf("%s: %w", arch, err)
		}
		platform := &v1.Platform{OS: "linux", Architecture: arch}
		file := filepath.Join(out, "kube-scheduler-linux-"+arch+".tar")
		if err := writeArchive(file, img, platform, ref); err != nil {
			return err
		}
		fmt.Println(file)
		all = mutate.AppendManifests(all, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: platform}})
	}
	if len(archs) > 1 {
		file := filepath.Join(out, "kube-scheduler.tar")
		if err := writeArchive(file, all, nil, ref); err != nil {
			return err
		}
		fmt.Println(file, "(", strings.Join(archs, ", "), ")")
	}
	return nil
}

// build makes the image of one architecture.
func build(arch, binary, rootfs, ref, version, revision string, created time.Time) (v1.Image, error) {
	layerTar, err := layerOf(binary, rootfs, created)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, err
	}
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err = mutate.Append(img, mutate.Addendum{Layer: layer, History: v1.History{
		Created: v1.Time{Time: created}, CreatedBy: "hack/tools/image: " + entrypoint + " and " + rootfs,
	}})
	if err != nil {
		return nil, err
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture, cfg.Created = "linux", arch, v1.Time{Time: created}
	cfg.Config = v1.Config{
		Entrypoint: []string{entrypoint},
		User:       user,
		WorkingDir: "/",
		Labels: map[string]string{
			"org.opencontainers.image.title":    "workload-coscheduling kube-scheduler",
			"org.opencontainers.image.ref.name": ref,
			"org.opencontainers.image.version":  version,
			"org.opencontainers.image.revision": revision,
		},
	}
	return mutate.ConfigFile(img, cfg)
}

// layerOf is the image's only layer: rootfs's files, owned by root and
// readable by all, /tmp writable by all, and the binary. Every time is
// created, so the same inputs make the same layer.
func layerOf(binary, rootfs string, created time.Time) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := map[string]bool{}
	addDir := func(name string, mode int64) error {
		if dirs[name] {
			return nil
		}
		dirs[name] = true
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: mode, ModTime: created, Format: tar.FormatPAX})
	}
	addFile := func(name string, mode int64, data []byte) error {
		parts := strings.Split(name, "/")
		for i := 1; i < len(parts); i++ {
			if err := addDir(strings.Join(parts[:i], "/"), 0o755); err != nil {
				return err
			}
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(data)), ModTime: created, Format: tar.FormatPAX}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	if err := addDir("tmp", 0o1777); err != nil {
		return nil, err
	}
	var files []string
	err := filepath.WalkDir(rootfs, func(path string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			files = append(files, path)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	sort.Strings(files)
	for _, path := range files {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		rel, _ := filepath.Rel(rootfs, path)
		if err := addFile(filepath.ToSlash(rel), 0o644, data); err != nil {
			return nil, err
		}
	}
	data, err := os.ReadFile(binary)
	if err != nil {
		return nil, err
	}
	if err := addFile(strings.TrimPrefix(entrypoint, "/"), 0o755, data); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// writeArchive writes an image (of platform) or an index of images as an
// OCI image layout in a tar file. The layout's index names the image ref
// (org.opencontainers.image.ref.name holds the tag, as the OCI layout spec
// has it; io.containerd.image.name the full name, which containerd and
// Docker import it as).
func writeArchive(file string, content mutate.Appendable, platform *v1.Platform, ref string) error {
	dir, err := os.MkdirTemp("", "oci-layout")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	path, err := layout.Write(dir, empty.Index)
	if err != nil {
		return err
	}
	tag := ref[strings.LastIndex(ref, ":")+1:]
	options := []layout.Option{layout.WithAnnotations(map[string]string{
		"org.opencontainers.image.ref.name": tag,
		"io.containerd.image.name":          ref,
	})}
	if platform != nil {
		options = append(options, layout.WithPlatform(*platform))
	}
	switch c := content.(type) {
	case v1.Image:
		err = path.AppendImage(c, options...)
	case v1.ImageIndex:
		err = path.AppendIndex(c, options...)
	}
	if err != nil {
		return err
	}
	return tarDir(dir, file)
}

// push sends the image or index an archive holds to ref: the layout's one
// entry, not the layout's index around it (a client resolving ref by
// platform looks one index deep).
func push(archive, ref string, options ...remote.Option) error {
	dir, err := os.MkdirTemp("", "oci-layout")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := untarFile(archive, dir); err != nil {
		return err
	}
	tag, err := name.ParseReference(ref)
	if err != nil {
		return err
	}
	outer, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return err
	}
	manifest, err := outer.IndexManifest()
	if err != nil {
		return err
	}
	if len(manifest.Manifests) != 1 {
		return fmt.Errorf("%s holds %d entries, want the one image-archive writes", archive, len(manifest.Manifests))
	}
	desc := manifest.Manifests[0]
	if desc.MediaType.IsIndex() {
		idx, err := outer.ImageIndex(desc.Digest)
		if err != nil {
			return err
		}
		return remote.WriteIndex(tag, idx, options...)
	}
	img, err := outer.Image(desc.Digest)
	if err != nil {
		return err
	}
	return remote.Write(tag, img, options...)
}

// untarFile unpacks an archive of regular files and directories into dir.
func untarFile(file, dir string) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		target := filepath.Join(dir, filepath.FromSlash(hdr.Name))
		if !strings.HasPrefix(target, filepath.Clean(dir)+string(filepath.Separator)) {
			return fmt.Errorf("%s: %s escapes the archive", file, hdr.Name)
		}
		switch hdr.Typeflag {
		case tar.TypeDir:
			err = os.MkdirAll(target, 0o755)
		case tar.TypeReg:
			if err = os.MkdirAll(filepath.Dir(target), 0o755); err == nil {
				var data []byte
				if data, err = io.ReadAll(tr); err == nil {
					err = os.WriteFile(target, data, 0o644)
				}
			}
		default:
			err = fmt.Errorf("%s: %s is neither a file nor a directory", file, hdr.Name)
		}
		if err != nil {
			return err
		}
	}
}

// tarDir writes the files under dir into a tar file, in a fixed order.
func tarDir(dir, file string) error {
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(f)
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || path == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		info, err := d.Info()
		if err != nil {
			return err
		}
		hdr, err := tar.FileInfoHeader(info, "")
		if err != nil {
			return err
		}
		hdr.Name, hdr.ModTime, hdr.Uname, hdr.Gname, hdr.Uid, hdr.Gid = filepath.ToSlash(rel), time.Unix(0, 0), "", "", 0, 0
		if d.IsDir() {
			hdr.Name += "/"
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		src, err := os.Open(path)
		if err != nil {
			return err
		}
		defer src.Close()
		_, err = io.Copy(tw, src)
		return err
	})
	if err == nil {
		err = tw.Close()
	}
	if closeErr := f.Close(); err == nil {
		err = closeErr
	}
	return err
}
