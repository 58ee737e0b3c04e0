// Command testinit is /sbin/init of the tiny NFS root the boot tests serve:
// it proves the root was reached by printing the root's line from
// /proc/mounts and the kernel command line on the console, then powers the
// machine off. Built static (CGO off) for the guest's GOARCH.
package main

import (
	"bufio"
	"fmt"
	"os"
	"strings"
	"syscall"
	"time"
)

func main() {
	out := os.Stdout
	if c, err := os.OpenFile("/dev/console", os.O_WRONLY, 0); err == nil {
		out = c
	}
	os.MkdirAll("/proc", 0o755)
	syscall.Mount("proc", "/proc", "proc", 0, "")
	cmdline, _ := os.ReadFile("/proc/cmdline")
	fmt.Fprintf(out, "\ndiskless-testinit: started as pid %d\n", os.Getpid())
	fmt.Fprintf(out, "diskless-testinit: cmdline=%s\n", strings.TrimSpace(string(cmdline)))
	if f, err := os.Open("/proc/mounts"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) >= 3 && fields[1] == "/" {
				fmt.Fprintf(out, "diskless-testinit: root=%s\n", sc.Text())
			}
		}
		f.Close()
	}
	// prove the root is writable (go-nfs needs billy.Change for this)
	if err := os.WriteFile("/tmp/diskless-testinit.stamp", []byte("ok\n"), 0o644); err != nil {
		fmt.Fprintf(out, "diskless-testinit: write failed: %v\n", err)
	} else {
		fmt.Fprintf(out, "diskless-testinit: write ok\n")
	}
	fmt.Fprintf(out, "diskless-testinit: DISKLESS-ROOT-OK\n")
	out.Sync()
	time.Sleep(200 * time.Millisecond)
	syscall.Sync()
	syscall.Reboot(syscall.LINUX_REBOOT_CMD_POWER_OFF)
	select {}
}
