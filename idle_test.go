package main

import (
	"net"
	"testing"
	"time"
)

// TestIdlePoller: a parked connection resumes once when its peer writes,
// once when it is closed here (and woken), and never twice for one park.
func TestIdlePoller(t *testing.T) {
	p := idle()
	if p == nil {
		t.Skip("no idle poller on this system: every connection keeps a reading goroutine")
	}
	client, server := tcpPair(t)
	var w idleWait
	resumed := make(chan string, 4)
	park := func(name string) {
		t.Helper()
		if !p.park(&w, server, func() { resumed <- name }) {
			t.Fatal("a TCP connection could not be parked")
		}
	}
	expect := func(want string) {
		t.Helper()
		select {
		case got := <-resumed:
			if got != want {
				t.Fatalf("resumed %q, want %q", got, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%q never resumed", want)
		}
	}
	quiet := func() {
		t.Helper()
		select {
		case got := <-resumed:
			t.Fatalf("resumed %q with nothing to read", got)
		case <-time.After(100 * time.Millisecond):
		}
	}

	park("idle")
	quiet()
	client.Write([]byte("x"))
	expect("idle")
	quiet() // one-shot

	park("unread") // the byte is still there: resumes at once
	expect("unread")
	var b [8]byte
	if n, err := server.Read(b[:]); n != 1 || err != nil {
		t.Fatalf("read %d, %v", n, err)
	}

	park("again")
	quiet()
	client.Write([]byte("yz"))
	expect("again")
	server.Read(b[:])

	park("closed here")
	server.Close()
	quiet() // a closed socket leaves the set without an event
	p.wake(&w)
	expect("closed here")
	p.wake(&w)
	quiet()
	if p.park(&w, server, func() { resumed <- "closed" }) {
		t.Error("a closed connection was parked")
	}
}

// TestIdlePollerPeerClose: the peer's close resumes a parked connection.
func TestIdlePollerPeerClose(t *testing.T) {
	p := idle()
	if p == nil {
		t.Skip("no idle poller on this system")
	}
	client, server := tcpPair(t)
	var w idleWait
	resumed := make(chan bool, 1)
	if !p.park(&w, server, func() { resumed <- true }) {
		t.Fatal("not parked")
	}
	client.Close()
	select {
	case <-resumed:
	case <-time.After(10 * time.Second):
		t.Fatal("the peer's close did not resume it")
	}
}

// tcpPair is a connected pair of loopback TCP sockets, closed at the end.
func tcpPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}
