package simnode

import (
	"context"
	"errors"
	"fmt"
	"path"
	"strings"
	"time"

	"github.com/diskless/diskless/pkg/boot"
	"github.com/diskless/diskless/pkg/pxe"
)

// pxelinux is what PXELINUX does from DHCP's pxelinux.0: ldlinux.c32, its
// configuration (the lookups in PXELINUX's order: the MAC's file, the
// address in hex shortened a digit at a time, default), the default
// label's COM32 modules when it is the CPU's choice, then the kernel and
// initramfs, all over TFTP. It returns the kernel's command line.
func (n *node) pxelinux(ctx context.Context) (string, error) {
	if err := n.tftp(ctx, "pxelinux.0"); err != nil {
		return "", err
	}
	n.reach(boot.FirstFile)
	if err := n.tftp(ctx, "ldlinux.c32"); err != nil {
		return "", err
	}
	mac, _ := pxe.MACFileName(n.nd.MAC)
	hexIP, _ := pxe.HexIPFileName(n.nd.IP)
	names := []string{mac}
	for i := len(hexIP); i > 0; i-- {
		names = append(names, hexIP[:i])
	}
	names = append(names, "default")
	var cfg string
	for _, name := range names {
		data, err := n.tftpMaybe(ctx, "pxelinux.cfg/"+name)
		if errors.Is(err, errNotFound) {
			continue
		}
		if err != nil {
			return "", &stageError{TFTP, boot.Fetched, err}
		}
		cfg = string(data)
		break
	}
	if cfg == "" {
		return "", &stageError{TFTP, boot.Fetched, errors.New("no pxelinux.cfg file for this node, not even default")}
	}
	label := labelOf(cfg, defaultOf(cfg))
	if mod := label["COM32"]; mod != "" {
		for _, f := range append([]string{mod}, "libcom32.c32") {
			if err := n.tftp(ctx, f); err != nil {
				return "", err
			}
		}
		// ifcpu64.c32: a 64-bit CPU takes the label before "--"
		choice, _, _ := strings.Cut(label["APPEND"], " -- ")
		if n.nd.Arch == "i386" {
			_, choice, _ = strings.Cut(label["APPEND"], " -- ")
		}
		label = labelOf(cfg, strings.TrimSpace(choice))
	}
	if label["KERNEL"] == "" {
		return "", &stageError{TFTP, boot.Fetched, fmt.Errorf("pxelinux.cfg: no KERNEL for label %q", defaultOf(cfg))}
	}
	for _, f := range append([]string{label["KERNEL"]}, strings.Split(label["INITRD"], ",")...) {
		if f == "" {
			continue
		}
		if err := n.tftp(ctx, f); err != nil {
			return "", err
		}
	}
	n.reach(boot.Fetched)
	return label["APPEND"], nil
}

// defaultOf is a PXELINUX configuration's DEFAULT label.
func defaultOf(cfg string) string {
	for _, l := range strings.Split(cfg, "\n") {
		if f := strings.Fields(l); len(f) == 2 && strings.EqualFold(f[0], "DEFAULT") {
			return f[1]
		}
	}
	return ""
}

// labelOf is a label's keywords (KERNEL, INITRD, APPEND, COM32).
func labelOf(cfg, name string) map[string]string {
	out := map[string]string{}
	in := false
	for _, l := range strings.Split(cfg, "\n") {
		f := strings.Fields(l)
		if len(f) == 0 {
			continue
		}
		k := strings.ToUpper(f[0])
		if k == "LABEL" {
			in = len(f) > 1 && f[1] == name
			continue
		}
		if in && len(f) > 1 {
			out[k] = strings.TrimSpace(strings.TrimSpace(l)[len(f[0]):])
		}
	}
	return out
}

// ipxe is what iPXE does with the script DHCP named (boot.ipxe): the
// node's own script if there is one, else its arch's, then the kernel and
// initramfs over HTTP, each attempt after the script's pauses. It returns
// the kernel's command line.
func (n *node) ipxe(ctx context.Context, url string) (string, error) {
	script, err := n.httpGet(ctx, url, true)
	if err != nil {
		return "", script404(err, url)
	}
	if n.c.Firmware == IPXE && len(n.res.Stages) == 1 {
		n.reach(boot.FirstFile) // an iPXE ROM's first file is the script
	}
	n.reach(boot.Script)
	base := strings.TrimSuffix(url, "/"+path.Base(url))
	for depth := 0; depth < 4; depth++ {
		next, alt, kernel, initrd, args := n.interpret(string(script))
		switch {
		case kernel != "":
			return args, n.fetchKernel(ctx, base, kernel, initrd)
		case next == "":
			return "", &stageError{HTTP, boot.Fetched, fmt.Errorf("%s: nothing to boot in the script", url)}
		}
		script, err = n.httpGet(ctx, base+next, true)
		if errors.Is(err, errNotFound) && alt != "" {
			// imgfetch ... || goto by_arch: no script of its own
			script, err = n.httpGet(ctx, base+alt, true)
			next = alt
		}
		if err != nil {
			return "", script404(err, base+next)
		}
	}
	return "", &stageError{HTTP, boot.Fetched, fmt.Errorf("%s: scripts chain too deep", url)}
}

func script404(err error, url string) error {
	if errors.Is(err, errNotFound) {
		return &stageError{HTTP, boot.Fetched, fmt.Errorf("GET %s: HTTP 404", url)}
	}
	return err
}

// interpret reads a script the way the published ones are written: the
// node's own script (imgfetch ... ${mac:hexhyp}.ipxe, which may be
// missing: then alt, the arch's, by_arch), a chain to the arch's, or
// kernel and initrd. It returns the script to fetch next (and the one if
// that is missing), or the kernel's and initramfs's paths and the command
// line.
func (n *node) interpret(script string) (next, alt, kernel, initrd, args string) {
	hexhyp := strings.ReplaceAll(strings.ToLower(n.nd.MAC), ":", "-")
	for _, l := range strings.Split(script, "\n") {
		f := strings.Fields(strings.ReplaceAll(l, "${mac:hexhyp}", hexhyp))
		if len(f) < 2 || strings.HasPrefix(f[0], "#") {
			continue
		}
		switch f[0] {
		case "imgfetch":
			next = f[len(firstNonOption(f))]
		case "chain":
			target := f[len(f)-1]
			if strings.HasPrefix(target, "/") && alt == "" && (n.nd.Arch != "i386" || strings.Contains(target, "i386")) {
				alt = target
			}
		case "kernel":
			kernel = f[1]
			var rest []string
			for i, w := range f[2:] {
				if w == "&&" {
					for j, v := range f[2+i:] {
						if v == "initrd" && 2+i+j+1 < len(f) {
							initrd = f[2+i+j+1]
						}
					}
					break
				}
				if !strings.HasPrefix(w, "initrd=") {
					rest = append(rest, w)
				}
			}
			return "", "", kernel, initrd, strings.Join(rest, " ")
		}
	}
	if next == "" {
		next, alt = alt, ""
	}
	return next, alt, "", "", ""
}

// firstNonOption is the words up to the image argument of an iPXE
// command (after --name NAME).
func firstNonOption(f []string) []string {
	for i := 1; i < len(f); i++ {
		if f[i] == "--name" || f[i] == "-n" {
			i++
			continue
		}
		if !strings.HasPrefix(f[i], "-") {
			return f[:i]
		}
	}
	return f[:len(f)-1]
}

// fetchKernel fetches the kernel and initramfs over HTTP, again after the
// published scripts' pauses when a fetch fails.
func (n *node) fetchKernel(ctx context.Context, base, kernel, initrd string) error {
	var err error
	for attempt := 0; attempt <= len(pxe.IPXERetryWaits); attempt++ {
		if attempt > 0 {
			select {
			case <-time.After(time.Duration(pxe.IPXERetryWaits[attempt-1]) * time.Second):
			case <-ctx.Done():
				return &stageError{HTTP, boot.Fetched, ctx.Err()}
			}
		}
		if _, err = n.httpGet(ctx, base+kernel, false); err != nil {
			continue
		}
		if initrd != "" {
			if _, err = n.httpGet(ctx, base+initrd, false); err != nil {
				continue
			}
		}
		n.reach(boot.Fetched)
		return nil
	}
	return script404(err, base+kernel)
}
