package supervisor

import (
	"fmt"
	"net"
	"os"
)

// Notify sends state (such as "READY=1" or "STOPPING=1") to systemd's
// notification socket, named by $NOTIFY_SOCKET. Without that variable, as
// when not started by systemd with Type=notify, it does nothing.
func Notify(state string) error {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return nil
	}
	if path[0] == '@' {
		path = "\x00" + path[1:] // abstract socket
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("notify systemd: %w", err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(state)); err != nil {
		return fmt.Errorf("notify systemd: %w", err)
	}
	return nil
}
