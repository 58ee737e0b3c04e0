//go:build ignore

// Zero-install entry point: `go run mage.go <target>` runs the magefile's
// targets without a mage binary on PATH (`go run mage.go -l` lists them).
package main

import (
	"os"

	"github.com/magefile/mage/mage"
)

func main() { os.Exit(mage.Main()) }
