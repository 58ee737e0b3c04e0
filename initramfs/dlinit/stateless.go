package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/diskless/diskless/initramfs/fallback"
	"github.com/diskless/diskless/pkg/pxe"
)

// A stateless node's layers: the fetched squashfs in a tmpfs (RAM), the
// squashfs mounted from it read-only, a tmpfs for the writable layer,
// and the overlayfs of both on newRoot.
const (
	ramDir   = "/run/diskless"
	lowerDir = "/run/diskless/lower"
	upperFS  = "/run/diskless/rw"
)

// attemptStateless fetches the image and the overlay from the boot
// server, checks both against the signed SHA256SUMS of their set, and
// mounts the image with a tmpfs overlay on newRoot, the node's identity
// unpacked over it.
func attemptStateless(cmd fallback.Cmdline, st fallback.Settings, sl fallback.Stateless, first bool) (fallback.Target, error) {
	_, server, _, err := network(cmd, first)
	if err != nil {
		return fallback.Target{}, err
	}
	t := fallback.Target{Server: server, Path: sl.Image}
	if server == "" && len(sl.Masters) == 0 {
		return t, &fallback.Failure{Step: fallback.StepConfig, Err: errors.New("DHCP named no boot server (next-server) to fetch the image from")}
	}
	// the boot server first, then every other master: each serves the
	// same signed set, and each file is checked against it
	var overlay []byte
	var img string
	servers := sl.Servers(server)
	for i, srv := range servers {
		t.Server = srv
		// with another master to ask, a server that stops answering is
		// left sooner
		tries := 4
		if i+1 < len(servers) {
			tries = 2
		}
		if overlay, img, err = fetchStateless(srv, sl, st, tries); err == nil {
			break
		}
		if i+1 < len(servers) {
			say("%s", failureLine(err))
			say("%s fetching from master %s instead", fallback.Prefix, servers[i+1])
		}
	}
	if err != nil {
		return t, err
	}
	server = t.Server
	fail := func(err error) (fallback.Target, error) {
		unmountStateless()
		return t, &fallback.Failure{Step: fallback.StepImage, Server: server, Export: sl.Image, Err: err}
	}
	if err := mountImage(img, sl.Tmpfs); err != nil {
		return fail(err)
	}
	if overlay != nil {
		n, err := fallback.ApplyOverlay(bytes.NewReader(overlay), newRoot)
		if err != nil {
			return fail(fmt.Errorf("overlay %s: %w", sl.Overlay, err))
		}
		say("%s overlay %s: %d entries", fallback.Prefix, sl.Overlay, n)
	}
	init := initPath(cmd)
	if err := existsInRoot(newRoot, init); err != nil {
		return fail(fmt.Errorf("no %s in the image", init))
	}
	return t, nil
}

// fetchStateless fetches the overlay (in memory) and the image (into RAM,
// at the returned path) from server, each checked against its set's
// signed SHA256SUMS, each tried tries times.
func fetchStateless(server string, sl fallback.Stateless, st fallback.Settings, tries int) (overlay []byte, img string, err error) {
	want, err := signedSums(server, fallback.SetDir(sl.Image), st)
	if err != nil {
		return nil, "", err
	}
	unmountStateless()
	if err := os.MkdirAll(ramDir, 0o700); err != nil {
		return nil, "", err
	}
	// the squashfs lives in RAM, in the /run tmpfs (switch_root moves it
	// into the node's /run): unlinked once the loop device holds it, it
	// stays until the loop device goes
	// the small overlay first: a refused one costs no image download
	if sl.Overlay != "" {
		p := filepath.Join(ramDir, "overlay.cpio")
		if err := fetchChecked(server, sl.Overlay, want, p, tries); err != nil {
			return nil, "", err
		}
		data, err := os.ReadFile(p)
		os.Remove(p)
		if err != nil {
			return nil, "", &fallback.Failure{Step: fallback.StepFetch, Server: server, Export: sl.Overlay, Err: err}
		}
		overlay = data
	}
	img = filepath.Join(ramDir, "image.squashfs")
	if err := fetchChecked(server, sl.Image, want, img, tries); err != nil {
		os.Remove(img)
		return nil, "", err
	}
	return overlay, img, nil
}

// lookupNode asks the boot server for the node's own command line
// (cmdline/<mac>), which publish writes for a stateless node whose kernel
// has its command line built in. The live set's signed SHA256SUMS says
// whether there is one: when it lists none for this MAC, or there is no
// signed set to ask (a master without HTTP, an unsigned set: NFS-root
// nodes only), it returns nil and the node boots its NFS root. Once the
// signed list names the node's file, any failure to fetch or check it is
// an error (the node is stateless: retried, never sent to an NFS root).
func lookupNode(cmd fallback.Cmdline, st fallback.Settings, first bool) (fallback.Cmdline, error) {
	if st.TrustedKeys == "" {
		return nil, nil // no set could be checked: nothing to look up
	}
	ip, server, _, err := network(cmd, first)
	if err != nil {
		return nil, err
	}
	mac := interfaceMAC(ip)
	if server == "" || mac == "" {
		return nil, nil
	}
	name, err := pxe.NodeCmdlineName(mac)
	if err != nil {
		return nil, nil
	}
	// a publish switching between the list and the file: once more
	var last error
	for try := 0; try < 2; try++ {
		want, err := signedSumsWithin(server, "/", st, 5*time.Second)
		if err != nil {
			if first && try == 0 {
				say("%s no signed set on %s to look this node up in (%s): trying the NFS root", fallback.Prefix, server, strings.TrimPrefix(failureLine(err), fallback.Prefix+" "))
			}
			return nil, nil
		}
		sum, ok := want[name]
		if !ok {
			return nil, nil // not a stateless node
		}
		file, err := fetchBytes("http://"+server+"/"+name, 64<<10)
		if err != nil {
			last = &fallback.Failure{Step: fallback.StepFetch, Server: server, Export: "/" + name, Err: err}
			continue
		}
		if _, err := fallback.CheckedCopy(io.Discard, bytes.NewReader(file), "/"+name, sum, nil); err != nil {
			var f *fallback.Failure
			if errors.As(err, &f) {
				f.Server = server
			}
			last = err
			continue
		}
		own, err := fallback.NodeCmdline(cmd, file, "/"+name)
		if err != nil {
			return nil, &fallback.Failure{Step: fallback.StepConfig, Server: server, Export: "/" + name, Err: err}
		}
		say("%s command line of %s from %s:/%s (signed)", fallback.Prefix, mac, server, name)
		return own, nil
	}
	return nil, last
}

// signedSums fetches SHA256SUMS and its signature from dir (a set's
// directory: "/" or a generation's) on server, checks the signature with
// the trusted keys and returns name -> sha256.
func signedSums(server, dir string, st fallback.Settings) (map[string]string, error) {
	return signedSumsWithin(server, dir, st, client.Timeout)
}

// signedSumsWithin is signedSums with a timeout for each fetch.
func signedSumsWithin(server, dir string, st fallback.Settings, timeout time.Duration) (map[string]string, error) {
	base := "http://" + server + dir
	sums, err := fetchBytesWithin(base+"SHA256SUMS", 1<<20, timeout)
	if err != nil {
		return nil, &fallback.Failure{Step: fallback.StepFetch, Server: server, Export: dir + "SHA256SUMS", Err: err}
	}
	sig, err := fetchBytesWithin(base+"SHA256SUMS.sig", 4096, timeout)
	if err != nil && !errors.Is(err, errNotFound) {
		return nil, &fallback.Failure{Step: fallback.StepFetch, Server: server, Export: dir + "SHA256SUMS.sig", Err: err}
	}
	want, err := fallback.VerifySums(sums, sig, st.TrustedKeys)
	if err != nil {
		return nil, &fallback.Failure{Step: fallback.StepVerify, Server: server, Export: dir + "SHA256SUMS", Err: err}
	}
	return want, nil
}

// interfaceMAC is the hardware address of the interface that has ip.
func interfaceMAC(ip string) string {
	ifs, _ := net.Interfaces()
	for _, i := range ifs {
		addrs, _ := i.Addrs()
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.String() == ip {
				return i.HardwareAddr.String()
			}
		}
	}
	return ""
}

var errNotFound = errors.New("404 not found")

var client = &http.Client{Timeout: 30 * time.Second}

func fetchBytes(url string, max int64) ([]byte, error) {
	return fetchBytesWithin(url, max, client.Timeout)
}

func fetchBytesWithin(url string, max int64, timeout time.Duration) ([]byte, error) {
	resp, err := (&http.Client{Timeout: timeout}).Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return nil, errNotFound
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("HTTP %s", resp.Status)
	}
	return io.ReadAll(io.LimitReader(resp.Body, max))
}

// fetchChecked downloads path into file dst, checking it against want
// (SHA256SUMS), trying a failed transfer tries times with backoff and
// jitter; a checksum mismatch is not retried (the set would have to
// change: the caller's next attempt fetches SHA256SUMS again).
func fetchChecked(server, path string, want map[string]string, dst string, tries int) error {
	base := "http://" + server
	name := fallback.SetName(path)
	sum, ok := want[name]
	if !ok {
		return &fallback.Failure{Step: fallback.StepVerify, Server: server, Export: path, Err: errors.New("not listed in the set's SHA256SUMS; refused")}
	}
	var last error
	for n := 1; n <= tries; n++ {
		if n > 1 {
			time.Sleep(fallback.Jitter(fallback.Backoff(n-1, 16*time.Second), rand.Float64()))
			say("%s retry %d of %s: %v", fallback.Prefix, n-1, path, last)
		}
		err := fetchOnce(base+path, path, name, sum, dst)
		var f *fallback.Failure
		if errors.As(err, &f) {
			f.Server = server
			return err
		}
		if err == nil {
			return nil
		}
		last = err
	}
	return &fallback.Failure{Step: fallback.StepFetch, Server: server, Export: path, Err: last}
}

// stall is how long a download may go without a byte before it is
// abandoned and tried again (an image takes long: no overall timeout).
const stall = 60 * time.Second

// transport: a server that does not answer (gone, not refusing) is given
// up on after 10 s, one that answers waits 30 s for its headers
var transport = &http.Transport{DialContext: (&net.Dialer{Timeout: 10 * time.Second}).DialContext, ResponseHeaderTimeout: 30 * time.Second}

func fetchOnce(url, path, name, sum, dst string) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	watchdog := time.AfterFunc(stall, cancel)
	defer watchdog.Stop()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := (&http.Client{Transport: transport}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("HTTP %s", resp.Status)
	}
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	defer out.Close()
	p := &fallback.Progress{Name: name, Total: resp.ContentLength, Every: 2 * time.Second, Say: func(s string) { say("%s", s) }}
	_, err = fallback.CheckedCopy(out, resp.Body, path, sum, func(n int64) {
		watchdog.Reset(stall)
		p.Update(n)
	})
	if ctx.Err() != nil && err != nil {
		err = fmt.Errorf("no byte for %s: %w", stall, err)
	}
	if err != nil {
		os.Remove(dst)
	}
	return err
}

// mountImage attaches the squashfs file to a loop device, mounts it
// read-only, and mounts on newRoot an overlayfs of it under a tmpfs of
// the given size.
func mountImage(img, size string) error {
	f, err := os.OpenFile(img, os.O_RDONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	loop, lf, err := attachLoop(f)
	if err != nil {
		os.Remove(img)
		return fmt.Errorf("loop device: %w (is CONFIG_BLK_DEV_LOOP built in?)", err)
	}
	// autoclear: the device (and the image's RAM) goes when its last
	// user does: this descriptor, closed once the squashfs is mounted
	// (or not), then the mount
	defer lf.Close()
	os.Remove(img) // the loop device holds it; nothing else needs its name
	for _, d := range []string{lowerDir, upperFS, newRoot} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	if err := unix.Mount(loop, lowerDir, "squashfs", unix.MS_RDONLY, ""); err != nil {
		return fmt.Errorf("mount squashfs %s: %w (CONFIG_SQUASHFS, CONFIG_SQUASHFS_ZSTD)", loop, err)
	}
	if err := unix.Mount("tmpfs", upperFS, "tmpfs", 0, "mode=0755,size="+size); err != nil {
		return fmt.Errorf("tmpfs size=%s: %w", size, err)
	}
	for _, d := range []string{upperFS + "/upper", upperFS + "/work"} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	opts := "lowerdir=" + lowerDir + ",upperdir=" + upperFS + "/upper,workdir=" + upperFS + "/work"
	if err := unix.Mount("overlay", newRoot, "overlay", 0, opts); err != nil {
		return fmt.Errorf("mount overlayfs: %w (CONFIG_OVERLAY_FS)", err)
	}
	say("%s image %s in RAM: squashfs on %s, writes to a tmpfs of size %s", fallback.Prefix, filepath.Base(img), loop, size)
	return nil
}

// attachLoop binds f to a free loop device (LOOP_CTL_GET_FREE,
// LOOP_CONFIGURE) read-only with autoclear, and returns its path and an
// open descriptor of it: the device stays until that is closed and
// nothing mounts it.
func attachLoop(f *os.File) (string, *os.File, error) {
	ctl, err := os.OpenFile("/dev/loop-control", os.O_RDWR, 0)
	if err != nil {
		return "", nil, err
	}
	defer ctl.Close()
	n, err := unix.IoctlRetInt(int(ctl.Fd()), unix.LOOP_CTL_GET_FREE)
	if err != nil {
		return "", nil, fmt.Errorf("LOOP_CTL_GET_FREE: %w", err)
	}
	dev := "/dev/loop" + strconv.Itoa(n)
	lf, err := os.OpenFile(dev, os.O_RDWR, 0)
	if err != nil {
		return "", nil, err
	}
	cfg := unix.LoopConfig{Fd: uint32(f.Fd())}
	cfg.Info.Flags = unix.LO_FLAGS_READ_ONLY | unix.LO_FLAGS_AUTOCLEAR
	copy(cfg.Info.File_name[:], "diskless-image")
	if err := unix.IoctlLoopConfigure(int(lf.Fd()), &cfg); err != nil {
		lf.Close()
		return "", nil, fmt.Errorf("LOOP_CONFIGURE %s: %w", dev, err)
	}
	return dev, lf, nil
}

// unmountStateless undoes what a failed attempt mounted.
func unmountStateless() {
	for _, d := range []string{newRoot, upperFS, lowerDir} {
		unix.Unmount(d, unix.MNT_DETACH)
	}
}
