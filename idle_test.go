package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"runtime"
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

// TestIdlePlayersHoldNoGoroutine: HTTP-FLV and WS-FLV players waiting
// for a publisher hold no goroutine, also after the client has sent
// something that filled the read buffer exactly (64 bytes for HTTP-FLV,
// a 16-byte WS ping), which a read until a short one would have missed.
func TestIdlePlayersHoldNoGoroutine(t *testing.T) {
	if idle() == nil {
		t.Skip("no idle poller on this system: every player keeps a reading goroutine")
	}
	ts := startServer(t, nil)
	base := -1 // the server's own, once they have all started
	for n := runtime.NumGoroutine(); n != base; n = runtime.NumGoroutine() {
		base = n
		time.Sleep(200 * time.Millisecond)
	}
	settled := func(what string) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for runtime.NumGoroutine() > base && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if n := runtime.NumGoroutine(); n > base {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("%s: %d goroutines, %d before\n%s", what, n, base, buf)
		}
	}

	nc, err := net.Dial("tcp", ts.httpAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	fmt.Fprintf(nc, "GET /live/idle.flv HTTP/1.1\r\nHost: %s\r\n\r\n", ts.httpAddr)
	waitFor(t, "the HTTP-FLV player", func() bool { return ts.viewers(streamKey{"live", "idle"}) == 1 })
	settled("the HTTP-FLV player to park")
	nc.Write(bytes.Repeat([]byte("x"), 128))
	time.Sleep(50 * time.Millisecond)
	settled("the HTTP-FLV player to park again after 128 bytes")

	ws, err := dialWS(context.Background(), ts.httpAddr, "/live/idle.flv")
	if err != nil {
		t.Fatal(err)
	}
	defer ws.nc.Close()
	waitFor(t, "the WS-FLV player", func() bool { return ts.viewers(streamKey{"live", "idle"}) == 2 })
	settled("the WS-FLV player to park")
	ping := maskedFrame(0x80|wsOpPing, [4]byte{1, 2, 3, 4}, []byte("0123456789"))
	if len(ping) != 16 {
		t.Fatalf("ping of %d bytes", len(ping))
	}
	ws.nc.Write(ping)
	ws.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if op, payload, err := ws.readFrame(); err != nil || op != wsOpPong || string(payload) != "0123456789" {
		t.Fatalf("answer to a ping: %d %q %v", op, payload, err)
	}
	settled("the WS-FLV player to park again after a ping")
}
