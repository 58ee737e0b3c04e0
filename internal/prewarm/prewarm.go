// Package prewarm builds, ahead of the integration tests and on CPU they
// leave idle, what those tests would otherwise build on first use: each
// arch's fallback initramfs, slave kernel and netboot image, and the
// Debian node images, with the settings the tests load (testenv.Load) and
// into the same caches. Nothing a test checks is built here instead of
// there: the tests still call the same builds, which then find their
// inputs unchanged. A test that needs a kernel while it is being built
// here waits on the build's lock (kbuild, image) and finds it done.
//
// On a fresh machine the four kernels and two images are about half of
// the integration stage's time, while most of its tests boot one or two
// single-threaded TCG guests on a 2-core machine: the idle core does the
// building. It is in two parts:
//
//   - Run is the work (go run mage.go test:warm), in the order the
//     integration stage first needs each piece: go test runs packages in
//     import-path order, and pkg/elfboot boots the arm64 kernel first,
//     pkg/kbuild and pkg/lab the x86_64 one, pkg/nodeos the two images,
//     pkg/pipeline the i386 and riscv64 kernels.
//   - Start runs Run in a child process under the SCHED_IDLE policy and
//     the idle I/O class (util-linux's chrt and ionice), so whatever a
//     test runs (its QEMU guests, its own make) is scheduled first; Stop
//     ends the child and its process group and says what it built.
package prewarm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/diskless/diskless/internal/spawn"
	"github.com/diskless/diskless/internal/testenv"
	"github.com/diskless/diskless/pkg/arch"
	"github.com/diskless/diskless/pkg/image"
	"github.com/diskless/diskless/pkg/pipeline"
	"github.com/diskless/diskless/pkg/settings"
)

// Job is one piece of work, named for the log.
type Job struct {
	Name string
	// Arch is the arch built for; Image says the Debian node image,
	// else the initramfs, slave kernel and netboot image.
	Arch  string
	Image bool
}

// Jobs are what the integration stage builds, in the order it first
// needs them.
func Jobs() []Job {
	k := func(a string) Job { return Job{Name: a + " kernel", Arch: a} }
	i := func(a string) Job { return Job{Name: a + " Debian image", Arch: a, Image: true} }
	return []Job{k("arm64"), k("x86_64"), i("x86_64"), i("arm64"), k("i386"), k("riscv64")}
}

// skip says why a job cannot run here, as the tests that need it would
// skip (or fail under CI, naming the package): "" when it can.
func (j Job) skip(a arch.Arch) string {
	if j.Image {
		if os.Geteuid() != 0 {
			return "needs root (debootstrap)"
		}
		if _, err := exec.LookPath("debootstrap"); err != nil {
			return "no debootstrap (Debian package debootstrap)"
		}
		if !a.NativeFor(runtime.GOARCH) {
			if _, err := exec.LookPath("qemu-" + image.QEMUUser(a) + "-static"); err != nil {
				return "no qemu-user-static (Debian package qemu-user-static)"
			}
		}
		return ""
	}
	cc, pkg := a.Compiler()
	if _, err := exec.LookPath(cc); err != nil {
		return fmt.Sprintf("no %s (Debian package %s)", cc, pkg)
	}
	if _, err := exec.LookPath("make"); err != nil {
		return "no make (Debian package make)"
	}
	return ""
}

// Run builds every job of jobs in turn with the tests' settings (the
// project at projectDir), logging each as it is ready, skipped or
// failed. A failure does not stop the next job: the test that needs the
// failed piece builds it again and reports the error where it matters.
func Run(ctx context.Context, projectDir string, jobs []Job, log *slog.Logger) error {
	s, err := testenv.Load(nil, projectDir)
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "diskless-prewarm-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	s.Artifacts = tmp
	quiet := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	var errs []error
	for _, j := range jobs {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		start := time.Now()
		err := j.run(ctx, s, quiet)
		took := time.Since(start).Round(time.Second)
		switch {
		case errors.Is(err, errSkip):
			log.Info("prewarm: skipped", "job", j.Name, "why", strings.TrimPrefix(err.Error(), errSkip.Error()+": "))
		case err != nil:
			log.Error("prewarm: failed (the test that needs it builds it again)", "job", j.Name, "took", took, "err", err)
			errs = append(errs, fmt.Errorf("%s: %w", j.Name, err))
		default:
			log.Info("prewarm: ready", "job", j.Name, "took", took)
		}
	}
	return errors.Join(errs...)
}

var errSkip = errors.New("skipped")

func (j Job) run(ctx context.Context, s *settings.Settings, log *slog.Logger) error {
	a, err := arch.Lookup(j.Arch)
	if err != nil {
		return err
	}
	if why := j.skip(a); why != "" {
		return fmt.Errorf("%w: %s", errSkip, why)
	}
	if j.Image {
		_, err := pipeline.BuildImage(ctx, s, a, log)
		return err
	}
	_, err = pipeline.BuildArch(ctx, pipeline.Options{Arch: a, Settings: s, Log: log})
	return err
}

// Background is Run in a child process on idle CPU.
type Background struct {
	cmd     *exec.Cmd
	logPath string
	start   time.Time
	done    chan struct{}
	once    sync.Once
	report  string
}

// Start runs argv (a command that calls Run: the mage binary and
// "test:warm") under SCHED_IDLE and the idle I/O class, in its own
// process group, its output in logPath. It needs util-linux's chrt and
// ionice (Debian's essential util-linux).
func Start(argv []string, logPath string) (*Background, error) {
	for _, p := range []string{"chrt", "ionice"} {
		if _, err := exec.LookPath(p); err != nil {
			return nil, fmt.Errorf("prewarm: no %s (Debian package util-linux)", p)
		}
	}
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cmd := exec.Command("chrt", append([]string{"--idle", "0", "ionice", "-c", "3"}, argv...)...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := spawn.Start(cmd); err != nil {
		return nil, fmt.Errorf("prewarm: %w", err)
	}
	b := &Background{cmd: cmd, logPath: logPath, start: time.Now(), done: make(chan struct{})}
	go func() { cmd.Wait(); close(b.done) }()
	return b, nil
}

// Stop ends the child and everything it started (its process group) if
// it is still running, and returns its report: how long it ran and its
// log lines.
func (b *Background) Stop() string {
	b.once.Do(func() {
		state := "finished"
		select {
		case <-b.done:
		default:
			state = "stopped (the tests ended first)"
			syscall.Kill(-b.cmd.Process.Pid, syscall.SIGTERM)
			select {
			case <-b.done:
			case <-time.After(10 * time.Second):
				syscall.Kill(-b.cmd.Process.Pid, syscall.SIGKILL)
				<-b.done
			}
		}
		// make's children may outlive make in the group: none is left
		syscall.Kill(-b.cmd.Process.Pid, syscall.SIGKILL)
		out, _ := os.ReadFile(b.logPath)
		b.report = fmt.Sprintf("prewarm: %s after %s (log %s)\n%s", state, time.Since(b.start).Round(time.Second), b.logPath, out)
	})
	return b.report
}
