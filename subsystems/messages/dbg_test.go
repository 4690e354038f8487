package messages

import (
	"log/slog"
	"os"
)

func init() {
	if os.Getenv("MSGDEBUG") != "" {
		debugLogger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
}
