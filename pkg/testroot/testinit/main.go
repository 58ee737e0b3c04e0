// Command testinit is /sbin/init of the tiny NFS root the boot tests serve:
// it proves the root was reached by printing the root's line from
// /proc/mounts and the kernel command line on the console, then powers the
// machine off. Built static (CGO off) for the guest's GOARCH.
package main

import (
	"bufio"
	"crypto/sha256"
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
	if data, err := os.ReadFile(WriteConf); err == nil {
		var mb int
		fmt.Sscan(string(data), &mb)
		writeFile(out, mb)
	}
	fmt.Fprintf(out, "diskless-testinit: DISKLESS-ROOT-OK\n")
	out.Sync()
	time.Sleep(200 * time.Millisecond)
	syscall.Sync()
	syscall.Reboot(syscall.LINUX_REBOOT_CMD_POWER_OFF)
	select {}
}

// WriteConf, when the root has it, holds a number of MiB that init writes
// to WritePath before it powers off (the storm's NFS-restart test).
const (
	WriteConf = "/etc/diskless-testinit.write"
	WritePath = "/var/tmp/diskless-write"
)

// writeFile writes mb MiB of a fixed pseudo-random stream in 1 MiB chunks,
// each followed by fsync and a line on the console, then the SHA-256 of
// what it meant to write: the master's copy must hash the same.
func writeFile(out *os.File, mb int) {
	f, err := os.Create(WritePath)
	if err != nil {
		fmt.Fprintf(out, "diskless-testinit: write failed: %v\n", err)
		return
	}
	h := sha256.New()
	chunk := make([]byte, 1<<20)
	x := uint64(0x9e3779b97f4a7c15)
	for i := 1; i <= mb; i++ {
		for j := 0; j < len(chunk); j += 8 {
			x ^= x << 13
			x ^= x >> 7
			x ^= x << 17
			for k := 0; k < 8; k++ {
				chunk[j+k] = byte(x >> (8 * k))
			}
		}
		if _, err := f.Write(chunk); err != nil {
			fmt.Fprintf(out, "diskless-testinit: write failed at %d MB: %v\n", i, err)
			return
		}
		if err := f.Sync(); err != nil {
			fmt.Fprintf(out, "diskless-testinit: fsync failed at %d MB: %v\n", i, err)
			return
		}
		h.Write(chunk)
		fmt.Fprintf(out, "diskless-testinit: wrote %d MB\n", i)
		time.Sleep(100 * time.Millisecond)
	}
	if err := f.Close(); err != nil {
		fmt.Fprintf(out, "diskless-testinit: close failed: %v\n", err)
		return
	}
	fmt.Fprintf(out, "diskless-testinit: write sha256=%x bytes=%d\n", h.Sum(nil), mb<<20)
}
