package initramfs

import (
	"log/slog"
	"os"
)

// quietLog is a logger for tests: warnings and errors only.
func quietLog() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}
