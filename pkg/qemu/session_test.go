package qemu

import (
	"io"
	"testing"
	"time"

	"github.com/diskless/diskless/pkg/boot"
)

// A getty's prompt has no newline after it: Expect never sees it, while
// ExpectOrPrompt and TimelineWithPrompt do, so a node at its login prompt
// is judged up.
func TestLoginPromptWithoutNewline(t *testing.T) {
	pr, pw := io.Pipe()
	s := &Session{m: &Machine{}, notify: make(chan struct{}, 1), exited: make(chan struct{}), start: time.Now()}
	go s.read(pr)
	defer pw.Close()
	io.WriteString(pw, "[  OK  ] Reached target \x1b[0;1;39mgetty.target\x1b[0m - Login Prompts.\n\nDebian GNU/Linux 12 storm01 ttyS0\n\nstorm01 login: ")
	up := boot.Markers(boot.MultiUser, boot.Login)
	if _, err := s.Expect(up, nil, 300*time.Millisecond); err == nil {
		t.Fatal("Expect matched an unfinished line")
	}
	if r, err := s.ExpectOrPrompt(up, nil, 2*time.Second); err != nil || r.Matched != " login:" {
		t.Fatalf("ExpectOrPrompt: %+v %v", r, err)
	}
	tl := s.TimelineWithPrompt()
	if last := tl[len(tl)-1]; last.Text != "storm01 login: " {
		t.Errorf("last line %q", last.Text)
	}
	if v := boot.Judge(tl, []string{boot.MultiUser, boot.Login}); !v.Up {
		t.Errorf("judged %+v", v)
	}
	if v := boot.Judge(s.Timeline(), []string{boot.MultiUser, boot.Login}); v.Up {
		t.Error("the complete lines alone are up")
	}
}
