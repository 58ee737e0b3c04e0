package image

import (
	"strings"
	"sync"
	"testing"
)

// debootstrap's output is read for progress lines while it is written.
func TestLockedBufferConcurrent(t *testing.T) {
	var b lockedBuffer
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for i := 0; i < 1000; i++ {
			b.Write([]byte("I: Unpacking x...\n"))
		}
	}()
	go func() {
		defer wg.Done()
		for i := 0; i < 1000; i++ {
			_ = lastLine(b.String())
		}
	}()
	wg.Wait()
	if n := strings.Count(b.String(), "\n"); n != 1000 {
		t.Errorf("%d lines", n)
	}
}
