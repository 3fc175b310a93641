package main

import (
	"net"
	"os"
	"runtime"
	"testing"
)

// GMS_BLOCKING_WRITES=1 runs the tests on the write path of systems other
// than Linux: no non-blocking writer, no flushers, every player written to
// by its own goroutine with blocking writes. .ci/run runs the tests that
// write to players a second time so.
func init() {
	if os.Getenv("GMS_BLOCKING_WRITES") == "1" {
		blockingWrites = true
	}
}

// TestWritePath: players on plain TCP get the flushers' non-blocking
// writes, or, with blockingWrites, blocking writes of their own and no
// flusher ever visits them.
func TestWritePath(t *testing.T) {
	if want := os.Getenv("GMS_BLOCKING_WRITES") == "1" || runtime.GOOS != "linux"; blockingWrites != want {
		t.Fatalf("blockingWrites = %v; want %v (GMS_BLOCKING_WRITES=%q)", blockingWrites, want, os.Getenv("GMS_BLOCKING_WRITES"))
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if got := newNonblockWriter(nc) != nil; got == blockingWrites {
		t.Errorf("newNonblockWriter(TCP conn) != nil is %v with blockingWrites %v", got, blockingWrites)
	}

	ts := startServer(t, nil)
	checkPublishPlay(t, ts)
	var visits uint64
	for _, f := range ts.hub.flushers {
		visits += f.visits.Load()
	}
	switch {
	case blockingWrites && visits > 0:
		t.Errorf("blocking writes, yet flushers visited players %d times", visits)
	case !blockingWrites && visits == 0:
		t.Errorf("no flusher visited the HTTP-FLV player: it did not get non-blocking writes")
	}
	t.Logf("blockingWrites %v: %d flusher visits", blockingWrites, visits)
}
