package connlimit

import (
	"bufio"
	"net"
	"testing"
)

// A client over the cap gets the refusal and is closed; once a served
// connection closes, the next client is served.
func TestCap(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := New(ln, 1, "BUSY\r\n", nil)
	defer l.Close()
	accepted := make(chan net.Conn, 2)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	first, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	served := <-accepted
	second, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	if line, err := bufio.NewReader(second).ReadString('\n'); err != nil || line != "BUSY\r\n" {
		t.Fatalf("over the cap: %q, %v; want the refusal", line, err)
	}
	served.Close()
	l.Wait() // the one served connection is released
	third, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer third.Close()
	(<-accepted).Close()
}
