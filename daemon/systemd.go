package daemon

import (
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync"
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

// systemdWatchdog is an actor that pings the watchdog, under WatchdogSec, at
// half its period until interrupted; execute is nil when systemd set no
// watchdog. READY=1 is awaitSource's.
func systemdWatchdog(log *slog.Logger) (execute func() error, interrupt func(error)) {
	usec, err := strconv.ParseInt(os.Getenv("WATCHDOG_USEC"), 10, 64)
	if err != nil || usec <= 0 {
		return nil, nil
	}
	stop := make(chan struct{})
	var once sync.Once
	execute = func() error {
		log.Debug("systemd watchdog enabled", "period", time.Duration(usec)*time.Microsecond)
		t := time.NewTicker(time.Duration(usec) * time.Microsecond / 2)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return nil
			case <-t.C:
				sdNotify("WATCHDOG=1")
			}
		}
	}
	return execute, func(error) { once.Do(func() { close(stop) }) }
}
