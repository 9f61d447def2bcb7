package ociimage

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
)

// nonrootID is the uid and gid of nonroot, the images' user.
const nonrootID = 65532

// Passwd and Group are the images' /etc/passwd and /etc/group: root, and nonroot whose home is
// /home/nonroot. Nobody can log in: there is no shell to log in to.
const (
	Passwd = "root:x:0:0:root:/root:/sbin/nologin\n" +
		"nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"
	Group = "root:x:0:\n" +
		"nonroot:x:65532:\n"
)

// Where the base layer's CA certificates and time zones come from on the build machine, and where
// they go in the image. The CA bundle is Mozilla's set as Debian's ca-certificates ships it, not
// /etc/ssl/certs, which may hold the build machine's own CAs.
const (
	CACertificatesDir  = "/usr/share/ca-certificates/mozilla"
	CACertificatesPath = "etc/ssl/certs/ca-certificates.crt"
	ZoneinfoDir        = "/usr/share/zoneinfo"
	zoneinfoPath       = "usr/share/zoneinfo"
)

// file is one entry of a layer: a directory (dir), a symbolic link (link) or a regular file
// (data). Names are relative to the root, directories end in a slash.
type file struct {
	name     string
	mode     int64
	uid, gid int
	dir      bool
	link     string
	data     []byte
}

func dir(name string, mode int64, owner int) file {
	return file{name: name + "/", mode: mode, uid: owner, gid: owner, dir: true}
}

func regular(name string, mode int64, data []byte) file {
	return file{name: name, mode: mode, data: data}
}

// baseFiles are the base layer's entries in name order, every directory with an entry of its own.
func baseFiles() ([]file, error) {
	bundle, err := caBundle(CACertificatesDir)
	if err != nil {
		return nil, err
	}
	zones, err := zoneinfo(ZoneinfoDir, zoneinfoPath)
	if err != nil {
		return nil, err
	}
	files := []file{
		dir("etc", 0o755, 0),
		regular("etc/group", 0o644, []byte(Group)),
		regular("etc/passwd", 0o644, []byte(Passwd)),
		dir("etc/ssl", 0o755, 0),
		dir("etc/ssl/certs", 0o755, 0),
		regular(CACertificatesPath, 0o644, bundle),
		dir("home", 0o755, 0),
		dir("home/nonroot", 0o700, nonrootID),
		dir("tmp", 0o1777, 0),
		dir("usr", 0o755, 0),
		dir("usr/share", 0o755, 0),
	}
	files = append(files, zones...)
	slices.SortFunc(files, func(a, b file) int { return strings.Compare(a.name, b.name) })
	return files, nil
}

// appFiles is the binary's layer: /<binary>, executable by anyone.
func appFiles(c Component, binary []byte) []file {
	return []file{regular(c.Binary, 0o755, binary)}
}

// caBundle concatenates the PEM certificates of dir (*.crt) in name order.
func caBundle(dir string) ([]byte, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*.crt"))
	if err != nil {
		return nil, err
	}
	if len(paths) == 0 {
		return nil, fmt.Errorf("no CA certificates (*.crt) in %s: install Debian's ca-certificates", dir)
	}
	slices.Sort(paths)
	var bundle bytes.Buffer
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		bundle.Write(data)
		if !bytes.HasSuffix(data, []byte("\n")) {
			bundle.WriteByte('\n')
		}
	}
	return bundle.Bytes(), nil
}

// zoneinfo is the tree of time zones at src as entries under dst: directories, files and the
// links between zones. Links that leave the tree (localtime -> /etc/localtime) are left out, as
// the image has nothing for them to point at.
func zoneinfo(src, dst string) ([]file, error) {
	var files []file
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		name := path.Join(dst, filepath.ToSlash(rel))
		switch {
		case d.IsDir():
			files = append(files, dir(name, 0o755, 0))
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			if !insideTree(path.Dir(filepath.ToSlash(rel)), filepath.ToSlash(target)) {
				return nil
			}
			files = append(files, file{name: name, mode: 0o777, link: target})
		case d.Type().IsRegular():
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			files = append(files, regular(name, 0o644, data))
		}
		return nil
	})
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("no time zones at %s: install Debian's tzdata", src)
	}
	if err != nil {
		return nil, fmt.Errorf("reading the time zones: %w", err)
	}
	return files, nil
}

// insideTree reports whether a relative link target, seen from the directory linkDir (relative to
// the tree's root), stays inside the tree.
func insideTree(linkDir, target string) bool {
	if path.IsAbs(target) {
		return false
	}
	resolved := path.Join(linkDir, target)
	return resolved != ".." && !strings.HasPrefix(resolved, "../")
}
