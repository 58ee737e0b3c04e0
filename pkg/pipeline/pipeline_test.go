package pipeline

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/diskless/diskless/internal/testenv"
	"github.com/diskless/diskless/internal/testutil"
	"github.com/diskless/diskless/pkg/arch"
	"github.com/diskless/diskless/pkg/publish"
	"github.com/diskless/diskless/pkg/secureboot"
	"github.com/diskless/diskless/pkg/settings"
	"github.com/diskless/diskless/pkg/sign"
	"github.com/diskless/diskless/pkg/smoke"
)

// testSettings loads the test settings (testenv.Lookup, then env on top)
// with a temporary artifacts directory.
func testSettings(t *testing.T, env map[string]string) *settings.Settings {
	t.Helper()
	return testenv.Settings(t, env)
}

// vmlinuz_<arch> carries the fallback initramfs on x86 (inside the ELF
// image) and arm64 (built into the EFI kernel) by default and not with
// NETBOOT_INITRAMFS=0; riscv64's EFI kernel cannot, and asking for it is
// an error naming the step and the variable.
func TestNetbootInitramfsSetting(t *testing.T) {
	riscv, _ := arch.Lookup("riscv64")
	_, err := Netboot(Options{Arch: riscv, Settings: testSettings(t, map[string]string{"NETBOOT_INITRAMFS": "1"})}, "")
	var se *StepError
	if !errors.As(err, &se) || se.Step != "build:netboot" || !strings.Contains(err.Error(), "NETBOOT_INITRAMFS=1") {
		t.Errorf("NETBOOT_INITRAMFS=1 on riscv64: %v", err)
	}
	for _, name := range []string{"x86_64", "i386", "arm64", "riscv64"} {
		a, _ := arch.Lookup(name)
		for env, want := range map[string]bool{"": true, "0": false, "1": true} {
			if name == "riscv64" {
				if env == "1" {
					continue
				}
				want = false
			}
			o := Options{Arch: a, Settings: testSettings(t, map[string]string{"NETBOOT_INITRAMFS": env})}
			carry, err := NetbootCarriesInitramfs(o)
			if err != nil || carry != want {
				t.Errorf("%s with NETBOOT_INITRAMFS=%q: carry=%v err=%v, want %v", name, env, carry, err, want)
			}
			// in the kernel itself only where the firmware loads it alone
			inKernel, _ := KernelCarriesInitramfs(o)
			if inKernel != (want && name == "arm64") {
				t.Errorf("%s with NETBOOT_INITRAMFS=%q: kernel carries it: %v", name, env, inKernel)
			}
			ko, err := SlaveOptions(context.Background(), Options{Arch: a, Settings: testSettings(t, map[string]string{"NETBOOT_INITRAMFS": env, "CONFIG_ONLY": "1"})})
			if err != nil || ko.Initramfs != "" {
				t.Errorf("%s config only: no initramfs is built for the check: %q %v", name, ko.Initramfs, err)
			}
		}
	}
	// without an initramfs built, the x86 netboot image says what to run
	x86, _ := arch.Lookup("x86_64")
	_, err = Netboot(Options{Arch: x86, Settings: testSettings(t, nil)}, "")
	if err == nil || !strings.Contains(err.Error(), "run build:initramfs arch=x86_64 first (or NETBOOT_INITRAMFS=0)") {
		t.Errorf("no initramfs: %v", err)
	}
}

// ciArtifacts runs the CI job for name in the artifacts directory and
// checks its bundle: only that arch's files; it returns the bundle's path,
// copied into keep (the job's own artifacts directory goes with its test).
func ciArtifacts(t *testing.T, name, artifacts, keep string, env map[string]string) string {
	a := testenv.Arch(t, name)
	tarBin := testutil.NeedTool(t, "tar", "tar")
	testutil.NeedTool(t, "zstd", "zstd")
	s := testSettings(t, env)
	s.Artifacts = artifacts
	res, err := CIArtifacts(context.Background(), Options{Arch: a, Settings: s,
		Log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if res != nil && res.Smoke != nil {
		t.Log(res.Smoke.Summary())
		if len(res.Smoke.Paths) != len(smoke.Paths(a)) {
			t.Errorf("%d boot paths ran, want %d", len(res.Smoke.Paths), len(smoke.Paths(a)))
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(filepath.Base(res.Bundle), "diskless_"+a.Name+"_6.") {
		t.Errorf("bundle name %s", res.Bundle)
	}
	// unpacked with the standard tools, the bundle checks with sha256sum -c
	dir := t.TempDir()
	if out, err := exec.Command(tarBin, "--zstd", "-xf", res.Bundle, "-C", dir).CombinedOutput(); err != nil {
		t.Fatalf("tar: %v\n%s", err, out)
	}
	c := exec.Command("sha256sum", "-c", publish.SumsName)
	c.Dir = dir
	if out, err := c.CombinedOutput(); err != nil {
		t.Fatalf("sha256sum -c: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(dir, "vmlinuz_"+a.Name)); err != nil {
		t.Error("bundle lacks the netboot image")
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		for _, other := range arch.Names() {
			base := strings.SplitN(e.Name(), ".", 2)[0]
			if other != a.Name && (strings.HasSuffix(base, "_"+other) || strings.HasSuffix(base, "-"+other)) {
				t.Errorf("the %s bundle carries %s", a.Name, e.Name())
			}
		}
	}
	// what CI built is what goes to /diskless: PUBLISH_FROM
	files, err := publish.ReadBundle(res.Bundle, t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	if _, err := publish.Publish(context.Background(), files, publish.Options{Root: root}); err != nil {
		t.Fatal(err)
	}
	if _, err := publish.Verify(root); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(res.Bundle)
	if err != nil {
		t.Fatal(err)
	}
	kept := filepath.Join(keep, filepath.Base(res.Bundle))
	if err := os.WriteFile(kept, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return kept
}

// The CI jobs of every arch in one checkout (one artifacts directory:
// i386's job after x86_64's bundles and boots i386 alone; each job boots
// every path of the smoke suite, so this is the smoke suite's proof too),
// signed with a CI key, then what a master trusting that key does with
// their bundles: published one after the other (PUBLISH_FROM, as the
// publish target does) and signed with its own key, every arch is live,
// PXELINUX too with the CPU's choice of kernel, sha256sum -c passes in the
// root, signify-openbsd verifies the bundles and the tree, and verify with
// TRUSTED_KEY accepts it.
func TestIntegrationCIArtifacts(t *testing.T) {
	testutil.Slow(t)
	signify := testutil.NeedTool(t, "signify-openbsd", "signify-openbsd")
	keys := t.TempDir()
	ciPub, ciSec, err := sign.WriteKeyPair(keys, "ci")
	if err != nil {
		t.Fatal(err)
	}
	masterPub, masterSec, _ := sign.WriteKeyPair(keys, "master")
	testutil.NeedTool(t, secureboot.SignProgram, secureboot.Package)
	dbKey, dbCrt, _, err := secureboot.WriteKeyPair(keys, "db", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	bundles, keep, artifacts := map[string]string{}, t.TempDir(), t.TempDir()
	order := []string{"x86_64", "i386", "arm64", "riscv64"}
	for _, a := range order {
		t.Run(a, func(t *testing.T) {
			// the EFI binaries signed for Secure Boot: each path of the
			// smoke suite boots the signed files
			bundles[a] = ciArtifacts(t, a, artifacts, keep, map[string]string{"SIGNING_KEY": ciSec, "SECUREBOOT_KEY": dbKey, "SECUREBOOT_CERT": dbCrt})
		})
	}
	if t.Failed() || len(bundles) < len(order) {
		return
	}
	signifyV := func(dir, pub string) {
		t.Helper()
		c := exec.Command(signify, "-V", "-p", pub, "-m", publish.SumsName, "-x", publish.SigName)
		c.Dir = dir
		if out, err := c.CombinedOutput(); err != nil {
			t.Errorf("signify-openbsd -V in %s: %v\n%s", dir, err, out)
		}
	}
	unpacked := t.TempDir()
	if out, err := exec.Command("tar", "--zstd", "-xf", bundles["arm64"], "-C", unpacked).CombinedOutput(); err != nil {
		t.Fatalf("tar: %v\n%s", err, out)
	}
	signifyV(unpacked, ciPub)
	root := t.TempDir()
	trust := map[string]string{"TRUSTED_KEY": ciPub + "," + masterPub, "SIGNING_KEY": masterSec, "DISKLESS_ROOT": root}
	for _, a := range order {
		trust["PUBLISH_FROM"] = bundles[a]
		if _, err := Publish(context.Background(), testSettings(t, trust), nil); err != nil {
			t.Fatalf("publishing the %s bundle: %v", a, err)
		}
	}
	signifyV(filepath.Join(root, ".diskless", "current"), masterPub)
	master, err := sign.ReadPublicKey(masterPub)
	if err != nil {
		t.Fatal(err)
	}
	m, err := publish.Verify(root, master)
	if err != nil {
		t.Fatal(err)
	}
	live, efi := map[string]bool{}, map[string]bool{}
	for _, f := range m.Files {
		live[f.Name] = true
		if f.SecureBoot == "" {
			continue
		}
		efi[f.Name] = true
		if err := secureboot.Verify(context.Background(), dbCrt, filepath.Join(root, f.Name)); err != nil {
			t.Error(err)
		}
	}
	for _, want := range []string{"bzImage_x86_64", "snponly.efi", "Image_arm64", "vmlinuz_arm64", "Image_riscv64", "vmlinuz_riscv64"} {
		if !efi[want] {
			t.Errorf("%s is not signed for Secure Boot in the published set", want)
		}
	}
	for _, want := range []string{"bzImage_x86_64", "vmlinuz_x86_64", "bzImage_i386", "pxelinux.0", "ifcpu64.c32", "pxelinux.cfg/default", "Image_arm64", "vmlinuz_arm64", "initramfs_arm64.cpio.zst", "vmlinuz_riscv64"} {
		if !live[want] {
			t.Errorf("%s is not live after publishing %s", want, strings.Join(order, ", "))
		}
	}
	if def, _ := os.ReadFile(filepath.Join(root, "pxelinux.cfg", "default")); !strings.Contains(string(def), "DEFAULT auto\n") {
		t.Errorf("x86_64 and i386 are live, yet the default does not choose by CPU:\n%s", def)
	}
	c := exec.Command("sha256sum", "-c", "--quiet", publish.SumsName)
	c.Dir = root
	if out, err := c.CombinedOutput(); err != nil {
		t.Fatalf("sha256sum -c: %v\n%s", err, out)
	}
}

// With TRUSTED_KEY, a publish that could not pass verify afterwards is
// refused before any work, saying what to set.
func TestPublishTrustChecks(t *testing.T) {
	keys := t.TempDir()
	ciPub, _, _ := sign.WriteKeyPair(keys, "ci")
	masterPub, masterSec, _ := sign.WriteKeyPair(keys, "master")
	_, otherSec, _ := sign.WriteKeyPair(keys, "other")
	bundle := filepath.Join(t.TempDir(), "b.tar.zst")
	os.WriteFile(bundle, nil, 0o644)
	root := t.TempDir()
	for _, c := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"TRUSTED_KEY": ciPub}, "only signed bundles are published (PUBLISH_FROM"},
		{map[string]string{"TRUSTED_KEY": ciPub, "PUBLISH_FROM": bundle}, "set SIGNING_KEY to the master's secret key"},
		{map[string]string{"TRUSTED_KEY": ciPub + "," + masterPub, "PUBLISH_FROM": bundle, "SIGNING_KEY": otherSec}, "SIGNING_KEY (key "},
	} {
		c.env["DISKLESS_ROOT"] = root
		_, err := Publish(context.Background(), testSettings(t, c.env), nil)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v (want %q)", c.env, err, c.want)
		}
	}
	// the right keys get past the check to the bundle itself
	_, err := Publish(context.Background(), testSettings(t, map[string]string{"TRUSTED_KEY": ciPub + "," + masterPub, "PUBLISH_FROM": bundle, "SIGNING_KEY": masterSec, "DISKLESS_ROOT": root}), nil)
	if err == nil || !strings.Contains(err.Error(), "b.tar.zst") {
		t.Errorf("an empty bundle: %v", err)
	}
	if entries, _ := os.ReadDir(root); len(entries) != 0 {
		t.Errorf("a refused publish left %d entries in the root", len(entries))
	}
}

// publish:pull's arguments: from= is needed, anything else named.
func TestPullArguments(t *testing.T) {
	s := testSettings(t, nil)
	for args, want := range map[string]string{
		"":                             "publish:pull wants from=",
		"http://192.168.1.1/":          `unknown argument "http://192.168.1.1/"`,
		"from=http://x/ older=maybe":   "older",
		"from=http://x/ colder=1":      `unknown argument "colder=1"`,
		"from=http://127.0.0.1:9/ x=1": `unknown argument "x=1"`,
	} {
		if _, err := Pull(context.Background(), s, args, nil); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", args, err, want)
		}
	}
	// the arguments are right: what is missing is the trusted key
	if _, err := Pull(context.Background(), s, "from=http://127.0.0.1:9/ older=1", nil); err == nil || !strings.Contains(err.Error(), "needs TRUSTED_KEY") {
		t.Errorf("no TRUSTED_KEY: %v", err)
	}
}
