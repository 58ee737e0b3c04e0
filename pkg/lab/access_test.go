package lab

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/diskless/diskless/internal/testutil"
)

// A root under a 0700 directory (as mktemp -d makes) is refused before any
// daemon starts, naming the daemon, its user, the directory and its mode;
// tftpd-hpa, which chroots into the root first, is not stopped by it.
func TestCheckReadable(t *testing.T) {
	if os.Geteuid() != 0 {
		testutil.Integration(t, "root")
		testutil.SkipOrFail(t, "needs root to check a file as another user")
	}
	top := t.TempDir()
	os.Chmod(top, 0o755)
	os.Chmod(filepath.Dir(top), 0o755) // t.TempDir's parent is 0700 too
	private := filepath.Join(top, "private")
	root := filepath.Join(private, "diskless")
	os.MkdirAll(root, 0o755)
	os.Chmod(private, 0o700)
	file := filepath.Join(root, "SHA256SUMS")
	os.WriteFile(file, []byte("x\n"), 0o644)
	rs := []reader{{"tftpd-hpa", "nobody", true}, {"nginx", "nobody", false}}
	err := CheckReadable(root, file, rs)
	if err == nil {
		t.Fatal("a root under a 0700 directory passed")
	}
	for _, want := range []string{"nginx runs as nobody, which cannot enter " + private, "mode -rwx------ (0700)", "chmod o+x " + private} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%v\nlacks %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "tftpd-hpa") {
		t.Errorf("tftpd-hpa chroots into the root; its parents do not matter: %v", err)
	}
	os.Chmod(private, 0o755)
	if err := CheckReadable(root, file, rs); err != nil {
		t.Errorf("a readable root: %v", err)
	}
	os.Chmod(file, 0o600)
	if err := CheckReadable(root, file, rs); err == nil || !strings.Contains(err.Error(), "cannot read "+file) {
		t.Errorf("an unreadable file: %v", err)
	}
	os.Chmod(file, 0o644)
	os.Chmod(root, 0o700)
	if err := CheckReadable(root, file, rs[:1]); err == nil || !strings.Contains(err.Error(), "tftpd-hpa runs as nobody, which cannot enter "+root) {
		t.Errorf("a 0700 root for tftpd-hpa: %v", err)
	}
	if err := CheckReadable(root, "", []reader{{"nginx", "no-such-user-here", false}}); err == nil || !strings.Contains(err.Error(), "which this machine does not have") {
		t.Errorf("an unknown user: %v", err)
	}
}
