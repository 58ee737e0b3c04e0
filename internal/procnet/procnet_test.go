package procnet

import (
	"net"
	"os"
	"testing"
)

func TestListens(t *testing.T) {
	table := `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:0801 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0
   1: 0100007F:006F 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0 100 0 0 10 0
`
	if !listens(table, ":0801", true) {
		t.Error("2049 LISTEN not seen")
	}
	if listens(table, ":006F", true) {
		t.Error("an ESTABLISHED socket on 111 counted as listening")
	}
	if !listens(table, ":006F", false) {
		t.Error("a bound UDP socket on 111 not seen")
	}
	if listens(table, ":0045", false) {
		t.Error("port 69 seen in a table without it")
	}
}

func TestListeningOwnSocket(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if !Listening(os.Getpid(), "tcp", port) {
		t.Errorf("our own listener on %d not seen", port)
	}
	l.Close()
	if Listening(os.Getpid(), "tcp", port) {
		t.Errorf("a closed listener on %d still seen", port)
	}
}
