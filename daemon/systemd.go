package daemon

import (
	"context"
	"log/slog"
	"net"
	"os"
	"strconv"
	"time"
)

// sdNotify sends a state to systemd when it runs sinkd as Type=notify; it is a
// no-op elsewhere.
func sdNotify(state string) {
	sock := os.Getenv("NOTIFY_SOCKET")
	if sock == "" {
		return
	}
	conn, err := net.DialTimeout("unixgram", sock, time.Second)
	if err != nil {
		return
	}
	defer conn.Close()
	_ = conn.SetWriteDeadline(time.Now().Add(time.Second))
	_, _ = conn.Write([]byte(state))
}

// systemdWatchdog pings the watchdog, under WatchdogSec, at half its period
// for as long as ctx lives. READY=1 is awaitSource's.
func systemdWatchdog(ctx context.Context, log *slog.Logger) func() {
	usec, err := strconv.ParseInt(os.Getenv("WATCHDOG_USEC"), 10, 64)
	if err != nil || usec <= 0 {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		t := time.NewTicker(time.Duration(usec) * time.Microsecond / 2)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				sdNotify("WATCHDOG=1")
			}
		}
	}()
	log.Debug("systemd watchdog enabled", "period", time.Duration(usec)*time.Microsecond)
	return cancel
}
