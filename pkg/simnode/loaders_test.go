package simnode

import (
	"testing"

	"github.com/diskless/diskless/pkg/arch"
	"github.com/diskless/diskless/pkg/nodes"
	"github.com/diskless/diskless/pkg/publish"
	"github.com/diskless/diskless/pkg/pxe"
)

const inv = `[network]
master = "192.168.1.1"
subnet = "192.168.1.0/24"

[[node]]
name = "n1"
mac = "52:54:00:5D:00:01"
ip = "192.168.1.101"
arch = "x86_64"
boot = "ipxe"
`

// The simulated iPXE follows the scripts publish and nodes:render write:
// boot.ipxe's node script first (its arch's when there is none), then the
// kernel and initrd lines with the command line (without initrd=).
func TestInterpretPublishedScripts(t *testing.T) {
	x, _ := arch.Lookup("x86_64")
	i, _ := arch.Lookup("i386")
	files := []publish.File{{Name: "bzImage_x86_64", Arch: "x86_64", Kind: "kernel"}, {Name: "bzImage_i386", Arch: "i386", Kind: "kernel"},
		{Name: "initramfs_x86_64.cpio.zst", Arch: "x86_64", Kind: "initramfs"}}
	gen, err := publish.BootConfigs(files, pxe.Settings{}.WithDefaults())
	if err != nil {
		t.Fatal(err)
	}
	script := map[string]string{}
	for _, f := range gen {
		script[f.Name] = pxe.Pin(string(f.Data), publish.GenerationDir(3), func(string) bool { return true })
	}
	n := &node{nd: Node{Name: "n1", MAC: "52:54:00:5D:00:01", IP: "192.168.1.101", Arch: x.Name}}
	next, alt, kernel, _, _ := n.interpret(script["boot.ipxe"])
	if next != "/.diskless/generations/000003/ipxe/52-54-00-5d-00-01.ipxe" || alt != "/.diskless/generations/000003/boot-x86_64.ipxe" || kernel != "" {
		t.Errorf("boot.ipxe: next %q alt %q kernel %q", next, alt, kernel)
	}
	n.nd.Arch = i.Name
	if _, alt, _, _, _ := n.interpret(script["boot.ipxe"]); alt != "/.diskless/generations/000003/boot-i386.ipxe" {
		t.Errorf("an i386 node's arch script: %q", alt)
	}
	n.nd.Arch = x.Name
	_, _, kernel, initrd, args := n.interpret(script["boot-x86_64.ipxe"])
	if kernel != "/.diskless/generations/000003/bzImage_x86_64" || initrd != "/.diskless/generations/000003/initramfs_x86_64.cpio.zst" || args != "ip=dhcp root=/dev/nfs nfsroot=/diskless/%s,vers=3,tcp rw console=ttyS0" {
		t.Errorf("boot-x86_64.ipxe: kernel %q initrd %q args %q", kernel, initrd, args)
	}
	// the node's own script, as nodes:render writes it
	in, err := nodes.Parse([]byte(inv), "nodes.toml")
	if err != nil {
		t.Fatal(err)
	}
	in.Initrd = map[string]string{"x86_64": "initramfs_x86_64.cpio.zst"}
	own, err := in.IPXE(in.Nodes[0])
	if err != nil {
		t.Fatal(err)
	}
	_, _, kernel, initrd, args = n.interpret(own)
	if kernel != "/bzImage_x86_64" || initrd != "/initramfs_x86_64.cpio.zst" || args != "ip=dhcp root=/dev/nfs nfsroot=192.168.1.1:/diskless/192.168.1.101,vers=3,tcp rw console=ttyS0" {
		t.Errorf("the node's script: kernel %q initrd %q args %q", kernel, initrd, args)
	}
}

// PXELINUX's default label, and the CPU's choice of label.
func TestPXELinuxLabels(t *testing.T) {
	x, _ := arch.Lookup("x86_64")
	i, _ := arch.Lookup("i386")
	cfg, err := pxe.Config("test", pxe.SlaveLabels(pxe.Settings{}.WithDefaults(), []arch.Arch{x, i}, map[string]string{"i386": "initramfs_i386.cpio.zst"}))
	if err != nil {
		t.Fatal(err)
	}
	if d := defaultOf(cfg); d != "auto" {
		t.Fatalf("default %q", d)
	}
	auto := labelOf(cfg, "auto")
	if auto["COM32"] != "ifcpu64.c32" || auto["APPEND"] != "slave_x86_64 -- slave_i386" {
		t.Errorf("auto %v", auto)
	}
	if l := labelOf(cfg, "slave_i386"); l["KERNEL"] != "bzImage_i386" || l["INITRD"] != "initramfs_i386.cpio.zst" {
		t.Errorf("slave_i386 %v", l)
	}
}
