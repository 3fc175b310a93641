package main

// The write path to players: the bounds of a player's queue, the socket
// sink, and the flushers that write to it (the write delay grid, partial
// writes, stalled sockets).

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// TestViewerQueueBytesBound: the byte limit holds whatever the frame size.
func TestViewerQueueBytesBound(t *testing.T) {
	h := newTestHub(t, func(c *config) { c.QueueBytes = 1 << 20 })
	key := streamKey{"live", "big"}
	sub := h.subscribe(key, clientInfo{ID: "SUB"}, rtmpForm{h.cfg.ChunkSize}, nil)
	p := startTestPublish(t, h, key)
	p.ingest(msgVideo, 0, testVideo(true, 100<<10))
	for i := range 100 { // 10 MB of 100 kB frames
		p.ingest(msgVideo, uint32(40*(i+1)), testVideo(false, 100<<10))
	}
	h.sync()
	if q := sub.queued.Load(); q > 1<<20 || q < 900<<10 {
		t.Errorf("queued %d bytes; want close to but at most %d", q, 1<<20)
	}
	if sub.drops.Load() == 0 {
		t.Errorf("no drops counted")
	}
}

// TestStalledViewerHeld is issue 15's stalled viewer, counted in bytes
// instead of RSS: 20 s of a 20 Mbit/s stream (a 500 kB keyframe a
// second, 30 fps) to an HTTP-FLV and an RTMP viewer that take nothing,
// at the defaults. Each frame is held once, however many viewers and
// forms share it; a viewer's queue stops at -queue-time of media (it
// skips from there); in fake time; both viewers are dropped after -stall-time of media
// to 1.25 times that, their frames let go at once, so that what is held
// comes back to the GOP cache and stays there. It prints what was held
// at each second of media.
func TestStalledViewerHeld(t *testing.T) {
	synctest.Test(t, testStalledViewerHeld)
}

func testStalledViewerHeld(t *testing.T) {
	h := newTestHub(t, nil)
	key := streamKey{"live", "stalled"}
	flvSub := h.subscribe(key, clientInfo{ID: "FLV"}, flvForm{}, nil)
	rtmpSub := h.subscribe(key, clientInfo{ID: "RTMP"}, rtmpForm{h.cfg.ChunkSize}, nil)
	p := startTestPublish(t, h, key)
	const keyBytes, interBytes, fps, seconds = 500_000, 70_000, 30, 20
	const perSecond = keyBytes + (fps-1)*interBytes
	var series []string
	var most, gop int
	for i := range seconds * fps {
		ts := uint32(i * 1000 / fps)
		size := interBytes
		if i%fps == 0 {
			size = keyBytes
		}
		p.ingest(msgVideo, ts, testVideo(i%fps == 0, size))
		time.Sleep(time.Second / fps) // in real time (fake time: no wait)
		if i%fps != fps-1 {
			continue
		}
		sec := i/fps + 1
		held, queued := heldBy(h, key, flvSub, rtmpSub)
		h.call(func() { gop = h.streams[key].gopBytes })
		most = max(most, held)
		series = append(series, fmt.Sprintf("%.1f/%.1f", float64(held)/1e6, float64(queued)/1e6))
		// A queue of -queue-time of media and the frame that found it
		// full: the queues share their frames.
		if bound := gop + int(h.cfg.QueueTime.Seconds()*perSecond) + keyBytes + 64<<10; held > bound {
			t.Errorf("second %d: held %d bytes; want at most %d (a queue of %v and the GOP cache)", sec, held, bound, h.cfg.QueueTime)
		}
		gone := flvSub.isDone() && rtmpSub.isDone()
		switch {
		case float64(sec) < h.cfg.StallTime.Seconds() && gone:
			t.Errorf("second %d: stalled viewers dropped before the stall time %v", sec, h.cfg.StallTime)
		case float64(sec) > 1.25*h.cfg.StallTime.Seconds()+1 && !gone:
			t.Fatalf("second %d: stalled viewers still connected; want them dropped after %v", sec, h.cfg.StallTime)
		case gone && held != gop:
			t.Errorf("second %d: %d bytes held after the viewers were dropped; want the GOP cache's %d", sec, held, gop)
		}
	}
	t.Logf("MB held / MB queued for the two viewers, each second of media: %s (most %.1f MB)", strings.Join(series, " "), float64(most)/1e6)
	for _, sub := range []*subscriber{flvSub, rtmpSub} {
		if !errors.Is(sub.err, errViewerStalled) {
			t.Errorf("%s ended with %v; want errViewerStalled", sub.info.ID, sub.err)
		}
	}
	if n := h.counters.stalled.Load(); n != 2 {
		t.Errorf("stalled counter %d; want 2", n)
	}
}

// heldBy is what the frames queued for subs and the stream's GOP cache
// hold, each frame counted once, and the bytes queued for subs.
func heldBy(h *hub, key streamKey, subs ...*subscriber) (held, queued int) {
	seen := map[*frame]bool{}
	count := func(f *frame) {
		if !seen[f] {
			seen[f] = true
			held += f.heldBytes()
		}
	}
	h.call(func() {
		for _, f := range h.streams[key].gop {
			count(f)
		}
		for _, sub := range subs {
			sub.qmu.Lock()
			for _, f := range sub.q {
				count(f)
			}
			sub.qmu.Unlock()
			queued += int(sub.queued.Load())
		}
	})
	return held, queued
}

// TestStalledViewerCostsItsQueue pushes 26 MB through a server while one
// HTTP-FLV viewer never reads: another viewer gets every frame, the
// publisher finishes while the stalled one is still connected (so it never
// waited for it), the stalled one's drops are counted, and the heap grows
// by no more than the queue cap plus the GOP cache.
func TestStalledViewerCostsItsQueue(t *testing.T) {
	const queue = 2 << 20
	// No stall limit: the point is that the publisher never waits for the
	// stalled viewer while it stays (TestStalledViewerHeld drops it).
	ts := startServer(t, func(c *config) { c.QueueBytes, c.StallTime = queue, 0 })
	key := streamKey{"live", "stall"}

	stalled, err := net.Dial("tcp", ts.httpAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.Close()
	stalled.(*net.TCPConn).SetReadBuffer(4096)
	fmt.Fprintf(stalled, "GET /live/stall.flv HTTP/1.1\r\nHost: x\r\n\r\n")

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// The good viewer counts media tags as they stream by, keeping none
	// (this test measures the heap of the process it shares with the server).
	good := make(chan int, 1)
	go func() {
		n := 0
		defer func() { good <- n }()
		req, _ := http.NewRequestWithContext(ctx, "GET", ts.httpURL("stall"), nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return
		}
		defer resp.Body.Close()
		fr, err := newFLVReader(resp.Body)
		if err != nil {
			return
		}
		for {
			tag, err := fr.next()
			if err != nil {
				return
			}
			if tag.Type == tagAudio || tag.Type == tagVideo {
				n++
			}
		}
	}()
	waitFor(t, "two viewers", func() bool { return ts.viewers(key) == 2 })

	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)

	pub := dialRTMP(t, ts.rtmpAddr, false)
	pub.connect("live")
	sid := pub.createStream()
	pub.command(sid, "publish", nil, "stall", "live")
	pub.expectStatus()
	pub.chunkSize = 60000
	pub.send(csidControl, msgSetChunkSize, 0, 0, binary.BigEndian.AppendUint32(nil, 60000))
	pub.send(csidData, msgDataAMF0, sid, 0, testMeta)
	pub.send(csidAudio, msgAudio, sid, 0, testAudioHeader)
	pub.send(csidVideo, msgVideo, sid, 0, testVideoHeader)
	// About 130 Mbit/s: paced so that a reading viewer keeps up even
	// under the race detector, far more than the stalled one's queue.
	const frames, size = 400, 64 << 10
	for i := range frames {
		time.Sleep(4 * time.Millisecond)
		pub.send(csidVideo, msgVideo, sid, uint32(40*i), testVideo(i%25 == 0, size))
	}
	// Wait until the good viewer has everything, then check the stalled
	// one is still there: the publisher never waited for it.
	waitFor(t, "the good viewer to get every frame", func() bool {
		for _, s := range ts.hub.snapshot() {
			for _, c := range s.Subscribers {
				if c.Drops == 0 && c.Bytes >= uint64(frames*(size+15)) {
					return true
				}
			}
		}
		return false
	})
	var stalledDrops uint64
	for _, s := range ts.hub.snapshot() {
		for _, c := range s.Subscribers {
			stalledDrops = max(stalledDrops, c.Drops)
		}
	}
	if ts.viewers(key) != 2 || stalledDrops == 0 {
		t.Errorf("viewers %d, stalled viewer drops %d; want 2 viewers and drops counted", ts.viewers(key), stalledDrops)
	}
	// What is live now, with the stalled viewer still connected: each
	// frame is held in two forms (RTMP and FLV); the GOP cache holds 25
	// frames; the stalled viewer's queue at most queue bytes; the good
	// viewer's queue up to one write delay of frames (one per 4 ms).
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	delayed := int(ts.cfg.WriteDelay/(4*time.Millisecond)) + 1
	bound := uint64(queue + 2*25*(size+64) + 2*delayed*(size+64) + 4<<20)
	grew := after.HeapInuse - min(after.HeapInuse, before.HeapInuse)
	t.Logf("pushed %d bytes; stalled viewer dropped %d frames; live heap grew by %d bytes (bound %d)", frames*size, stalledDrops, grew, bound)
	if grew > bound {
		t.Errorf("heap grew by %d bytes with a stalled viewer; want at most %d (pushed %d)", grew, bound, frames*size)
	}
	pub.command(sid, "deleteStream", nil, float64(sid))
	if n := <-good; n != frames+2 {
		t.Errorf("good viewer got %d media tags; want %d", n, frames+2)
	}
}

// TestWriteDelayMergesWrites: with a write delay, frames that arrive in
// between go out together, and a viewer idle for longer than the delay is
// written to at once (fake time).
func TestWriteDelayMergesWrites(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newTestHub(t, func(c *config) { c.WriteDelay = 100 * time.Millisecond })
		key := streamKey{"live", "merge"}
		sub := h.subscribe(key, clientInfo{ID: "SUB"}, flvForm{}, nil)
		type write struct {
			at     time.Duration
			frames int
		}
		var writes []write
		p := startTestPublish(t, h, key) // metadata and headers: held until the first frame
		h.sync()
		start := time.Now()
		done := make(chan error, 1)
		go func() {
			done <- sub.pumpBlocking(func(b *net.Buffers) error {
				writes = append(writes, write{time.Since(start), len(*b)})
				b.WriteTo(io.Discard)
				return nil
			})
		}()
		synctest.Wait()
		time.Sleep(15 * time.Millisecond)
		p.ingest(msgVideo, 0, testVideo(true, 10)) // the first frame, at 15 ms
		synctest.Wait()
		time.Sleep(5 * time.Millisecond) // then off the timer's grid (15, 115, 215 ms): no ties
		for i := range 19 {              // 19 frames, 10 ms apart, at 20, 30, ... 200 ms
			p.ingest(msgVideo, uint32(10*(i+1)), testVideo(false, 10))
			synctest.Wait()
			time.Sleep(10 * time.Millisecond)
		}
		time.Sleep(time.Second) // idle
		p.ingest(msgVideo, 1000, testVideo(false, 10))
		synctest.Wait()
		h.unsubscribe(sub)
		<-done
		var got []string
		for _, w := range writes {
			got = append(got, fmt.Sprintf("%v:%d", w.at, w.frames))
		}
		// 15 ms: the stream's start (FLV header, metadata, two sequence
		// headers, keyframe) at once; then at most one write per 100 ms,
		// each with what piled up; after the idle second, at once.
		want := "15ms:5 115ms:10 215ms:9 1.21s:1"
		if strings.Join(got, " ") != want {
			t.Errorf("writes (time:frames) = %v; want %s", got, want)
		}
	})
}

// TestFlusherGridAndPartialWrites drives a flusher in fake time through a
// socket that takes at most 3000 bytes per write: a new viewer's start
// goes out at once; after it, passes come at most once per write delay,
// on the shared grid, and finish what earlier writes left before taking
// more; after an idle spell the next frame goes out at once. The bytes
// that arrive are the whole stream in order.
func TestFlusherGridAndPartialWrites(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const delay = 100 * time.Millisecond
		h := newTestHub(t, func(c *config) { c.WriteDelay = delay })
		key := streamKey{"live", "grid"}
		sub := h.subscribe(key, clientInfo{ID: "SUB"}, flvForm{}, nil)

		server, client := net.Pipe()
		var (
			mu       sync.Mutex
			received bytes.Buffer
			passes   []time.Time // the first non-blocking write of each pass
		)
		go func() { // blocking writes (none expected here) land in order too
			buf := make([]byte, 4096)
			for {
				n, err := client.Read(buf)
				mu.Lock()
				received.Write(buf[:n])
				mu.Unlock()
				if err != nil {
					return
				}
			}
		}()
		var total atomic.Uint64
		out := newSink(server, time.Minute, nil, &total)
		out.writeNonblock = func(bufs net.Buffers) (int, error) {
			mu.Lock()
			defer mu.Unlock()
			if now := time.Now(); len(passes) == 0 || !passes[len(passes)-1].Equal(now) {
				passes = append(passes, now)
			}
			n := 0
			for _, b := range bufs {
				take := min(len(b), 3000-n)
				received.Write(b[:take])
				if n += take; n == 3000 {
					break
				}
			}
			return n, nil
		}
		done := make(chan error, 1)
		go sub.pump(out, func(err error) { done <- err })

		p := startTestPublish(t, h, key)
		synctest.Wait()
		start := time.Now()
		const frames = 20
		for i := range frames { // 20 frames of 2000 bytes, 10 ms apart
			p.ingest(msgVideo, uint32(10*i), testVideo(i == 0, 2000))
			synctest.Wait()
			time.Sleep(10 * time.Millisecond)
		}
		time.Sleep(2 * time.Second) // all written by now; then idle
		idleFrame := time.Now()
		p.ingest(msgVideo, 2000, testVideo(false, 100))
		synctest.Wait()
		h.unsubscribe(sub)
		if err := <-done; !errors.Is(err, errSubscriptionEnded) {
			t.Fatalf("serve: %v", err)
		}
		server.Close()

		mu.Lock()
		defer mu.Unlock()
		if len(passes) < 3 {
			t.Fatalf("%d passes; want the start, several partial passes, the idle frame", len(passes))
		}
		if !passes[0].Equal(start) {
			t.Errorf("first pass at %v; want at once, at the viewer's start", passes[0].Sub(start))
		}
		last := passes[len(passes)-1]
		if !last.Equal(idleFrame) {
			t.Errorf("last pass %v after the idle frame; want at once", last.Sub(idleFrame))
		}
		for i := 1; i < len(passes)-1; i++ {
			if gap := passes[i].Sub(passes[i-1]); gap < delay {
				t.Errorf("pass %d only %v after the one before; want at least %v", i, gap, delay)
			}
			if (passes[i].Sub(gridEpoch)-ingestLead)%delay != 0 {
				t.Errorf("pass %d at %v: not on the grid", i, passes[i].Sub(start))
			}
		}
		fr, err := newFLVReader(bytes.NewReader(received.Bytes()))
		if err != nil {
			t.Fatal(err)
		}
		var video []uint32
		for {
			tag, err := fr.next()
			if err != nil {
				break
			}
			if header, _ := videoInfo(tag.Data); tag.Type == tagVideo && !header {
				video = append(video, tag.Time)
			}
		}
		if len(video) != frames+1 {
			t.Errorf("%d video frames arrived whole; want %d (timestamps %v)", len(video), frames+1, video)
		}
		t.Logf("%d passes, %d bytes", len(passes), received.Len())
	})
}

// TestOwnMessagesQueueBehindMedia: while a flusher writes a player's media,
// a message of the connection's own (a pong, an RTMP ping) goes behind what
// is pending, without blocking on the full socket, and comes out after the
// media; a player that reads nothing cannot pile them up without bound.
func TestOwnMessagesQueueBehindMedia(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		server, client := net.Pipe() // nobody reads client: a blocking write would hang
		defer client.Close()
		var total atomic.Uint64
		out := newSink(server, time.Minute, nil, &total)
		var got bytes.Buffer
		allow := 3 // bytes the socket takes per write
		out.writeNonblock = func(bufs net.Buffers) (int, error) {
			n := 0
			for _, b := range bufs {
				take := min(len(b), allow-n)
				got.Write(b[:take])
				if n += take; n == allow {
					break
				}
			}
			return n, nil
		}
		out.flusher, out.sub = newFlusher(0), &subscriber{}
		out.mu.Lock()
		out.writeNow(&net.Buffers{[]byte("media1"), []byte("media2")})
		out.mu.Unlock()

		returned := make(chan error, 1)
		go func() { returned <- out.writeOwn([]byte("PONG")) }()
		synctest.Wait()
		select {
		case err := <-returned:
			if err != nil {
				t.Fatal(err)
			}
		default:
			t.Fatal("write blocked on a full socket while a flusher owns the media")
		}
		if !slices.Contains(out.flusher.dirty, out.sub) {
			t.Error("the pong waits behind pending media, but the flusher's next pass will not visit its player")
		}
		allow = 1 << 20
		out.mu.Lock()
		out.tryWrite(out.pending)
		out.mu.Unlock()
		if got.String() != "media1media2PONG" {
			t.Errorf("socket got %q; want the media, then the pong", got.String())
		}

		allow = 0 // reads nothing any more
		var err error
		for i := 0; err == nil && i < 1000; i++ {
			err = out.writeOwn(make([]byte, 1000))
		}
		if !errors.Is(err, errPlayerNotReading) {
			t.Errorf("1000 KB of pongs to a player that reads nothing: err %v; want errPlayerNotReading", err)
		}
	})
}

// TestStalledPlayerTimesOut: a player whose socket takes nothing is
// dropped after the write timeout even when no frame comes to find it
// too slow (the stream has stopped), as a blocking write would time out.
func TestStalledPlayerTimesOut(t *testing.T) {
	for _, delay := range []time.Duration{0, 50 * time.Millisecond} {
		t.Run(fmt.Sprint("delay=", delay), func(t *testing.T) { testStalledPlayerTimesOut(t, delay) })
	}
}

func testStalledPlayerTimesOut(t *testing.T, delay time.Duration) {
	synctest.Test(t, func(t *testing.T) {
		h := newTestHub(t, func(c *config) { c.WriteDelay = delay })
		key := streamKey{"live", "stuck"}
		sub := h.subscribe(key, clientInfo{ID: "SUB"}, flvForm{}, nil)
		server, client := net.Pipe()
		defer client.Close()
		var total atomic.Uint64
		const timeout = 2 * time.Second
		out := newSink(server, timeout, nil, &total)
		out.writeNonblock = func(net.Buffers) (int, error) { return 0, nil } // always full
		done := make(chan error, 1)
		go sub.pump(out, func(err error) { done <- err })
		p := startTestPublish(t, h, key)
		p.ingest(msgVideo, 0, testVideo(true, 100)) // the start: it stays pending
		synctest.Wait()
		start := time.Now()
		select {
		case err := <-done:
			if !errors.Is(err, errWriteStalled) {
				t.Fatalf("serve: %v; want errWriteStalled", err)
			}
			if waited := time.Since(start); waited < timeout || waited > timeout+time.Second {
				t.Errorf("dropped after %v (fake time); want just past the %v timeout", waited, timeout)
			}
		case <-time.After(time.Minute):
			t.Fatal("a player that takes nothing was still there a minute later")
		}
		// A full socket is retried every pendingRetry (or delay), not in a
		// loop: a flusher that spun on it would burn a core.
		var visits uint64
		for _, f := range h.flushers {
			visits += f.visits.Load()
		}
		if most := uint64(timeout/max(delay, pendingRetry)) + 10; visits > most {
			t.Errorf("%d visits to a full socket in %v; want at most %d", visits, timeout, most)
		}
		h.unsubscribe(sub)
	})
}

// TestPassesVisitOnlyPlayersWithFrames: a flusher's pass visits the
// players that got frames, not every player it has. With the write delay
// at 0 a pass follows each frame, so visiting idle players would cost
// O(all viewers) per frame of any stream.
func TestPassesVisitOnlyPlayersWithFrames(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newTestHub(t, func(c *config) { c.WriteDelay = 0 })
		var total atomic.Uint64
		watch := func(key streamKey, id string) (*subscriber, chan error) {
			sub := h.subscribe(key, clientInfo{ID: id}, flvForm{}, nil)
			server, client := net.Pipe()
			t.Cleanup(func() { client.Close(); server.Close() })
			out := newSink(server, time.Minute, nil, &total)
			out.writeNonblock = func(bufs net.Buffers) (int, error) {
				n := 0
				for _, b := range bufs {
					n += len(b)
				}
				return n, nil // a socket that takes everything
			}
			done := make(chan error, 1)
			go sub.pump(out, func(err error) { done <- err })
			return sub, done
		}
		busy, idle := streamKey{"live", "busy"}, streamKey{"live", "idle"}
		const idlePlayers = 20
		var subs []*subscriber
		var dones []chan error
		for i := range idlePlayers {
			sub, done := watch(idle, fmt.Sprint("IDLE", i))
			subs, dones = append(subs, sub), append(dones, done)
		}
		sub, done := watch(busy, "BUSY")
		subs, dones = append(subs, sub), append(dones, done)
		var busyPub *publisher
		for _, key := range []streamKey{idle, busy} {
			busyPub = startTestPublish(t, h, key)
			busyPub.ingest(msgVideo, 0, testVideo(true, 100)) // every player starts
		}
		synctest.Wait()
		visits := func() (n uint64) {
			for _, f := range h.flushers {
				n += f.visits.Load()
			}
			return n
		}
		before := visits()
		const frames = 50
		for i := range frames {
			busyPub.ingest(msgVideo, uint32(40*(i+1)), testVideo(false, 100))
			synctest.Wait()
		}
		got := visits() - before
		t.Logf("%d frames on one stream: %d visits (%d idle players elsewhere)", frames, got, idlePlayers)
		if got > frames {
			t.Errorf("%d frames to one player took %d visits; want at most %d: passes visit idle players", frames, got, frames)
		}
		for i, sub := range subs {
			h.unsubscribe(sub)
			if err := <-dones[i]; !errors.Is(err, errSubscriptionEnded) {
				t.Errorf("serve: %v", err)
			}
		}
	})
}

// TestSlowReaderGetsWholeTags has viewers on HTTP-FLV, WS-FLV and RTMP read
// far slower than a stream of 64 KB frames. Their sockets fill, so the
// flusher's non-blocking writes leave the rest of a batch pending (over WS,
// the rest of a WebSocket message), and their queues overflow, so the hub
// skips them to keyframes. What they get must still be whole tags in
// order: a gap only before a keyframe, with the metadata and sequence
// headers again since the last frame. Control messages (WS pongs, RTMP
// pings) written meanwhile must land between batches, not inside one. A
// fast viewer on the same stream gets every frame. The counters prove the
// paths ran.
func TestSlowReaderGetsWholeTags(t *testing.T) {
	ts := startServer(t, func(c *config) {
		// The queue is small so that slow viewers overflow it soon; the
		// fast viewer needs one write delay of frames in it (5 of 15),
		// and room for a late pass on a busy machine.
		c.QueueBytes = 1 << 20
		c.Ping = 500 * time.Millisecond // RTMP pings go out while batches are pending
	})
	// The main part is 16 MB. A slow viewer reads 2 MB of it meanwhile;
	// the server's socket (at most 4 MB with Linux's default tcp_wmem),
	// the viewer's queue and a pending batch hold 6 MB more: so its socket
	// fills and its queue overflows, whatever the timing. (A host that lets
	// a socket buffer 16 MB could absorb it all.)
	const (
		name       = "slowread"
		mainFrames = 250
		frameSize  = 64 << 10
		framePause = 10 * time.Millisecond // 6.4 MB/s: 8 times what a slow viewer reads
	)
	key := streamKey{"live", name}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second) // a safety net only
	defer cancel()

	var hurry atomic.Bool       // the main part is over: slow viewers read at full speed to catch up
	var caughtUp sync.WaitGroup // each slow viewer has seen the tail, or has ended
	var viewers sync.WaitGroup
	newCheck := func(proto string, slow bool) *mediaCheck {
		c := &mediaCheck{name: proto, tailFrom: mainFrames, onTail: func() {}}
		if slow {
			caughtUp.Add(1)
			c.onTail = sync.OnceFunc(caughtUp.Done)
		}
		return c
	}
	// run plays in the background; a slow viewer that ends before the
	// tail must not hold the publisher up.
	run := func(c *mediaCheck, play func() error) {
		viewers.Go(func() {
			defer c.onTail()
			if err := play(); err != nil && c.err == nil {
				c.err = err
			}
		})
	}

	fast := newCheck("fast http", false)
	run(fast, func() error {
		req, _ := http.NewRequestWithContext(ctx, "GET", ts.httpURL(name), nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		return fast.readFLV(resp.Body)
	})

	slowHTTP := newCheck("slow http", true)
	run(slowHTTP, func() error {
		nc, err := dialSlow(ctx, ts.httpAddr, &hurry)
		if err != nil {
			return err
		}
		fmt.Fprintf(nc, "GET /live/%s.flv HTTP/1.1\r\nHost: %s\r\n\r\n", name, ts.httpAddr)
		resp, err := http.ReadResponse(bufio.NewReader(nc), nil)
		if err != nil {
			return err
		}
		return slowHTTP.readFLV(resp.Body)
	})

	slowWS := newCheck("slow ws", true)
	run(slowWS, func() error {
		nc, err := dialSlow(ctx, ts.httpAddr, &hurry)
		if err != nil {
			return err
		}
		c, err := upgradeWS(nc, ts.httpAddr, "/live/"+name+".flv")
		if err != nil {
			return err
		}
		// Pings from the viewer make the server write pongs while media
		// batches are pending.
		stop := make(chan struct{})
		defer close(stop)
		go func() {
			for tick := time.NewTicker(500 * time.Millisecond); ; {
				select {
				case <-stop:
					tick.Stop()
					return
				case <-tick.C:
					c.writeFrame(wsOpPing, []byte(wsPingPayload))
				}
			}
		}()
		msgs := &wsMessages{c: c}
		err = slowWS.readFLV(msgs)
		slowWS.controls = msgs.pongs
		if err != nil {
			return err
		}
		// Each batch goes out as one message: a message that ends inside
		// a tag means a write was torn or a control frame cut in.
		for _, end := range msgs.ends {
			if !slowWS.tagEnds[end] {
				return fmt.Errorf("a WebSocket message ends at byte %d, inside a tag", end)
			}
		}
		return nil
	})

	// The RTMP player's reads go through a slowConn from the start: the
	// handshake reads nc itself, so its chunk reader has buffered nothing.
	play := dialRTMP(t, ts.rtmpAddr, false)
	play.nc.(*net.TCPConn).SetReadBuffer(slowBuffer)
	play.nc = slowConn{Conn: play.nc, hurry: &hurry}
	play.cr = newChunkReader(bufio.NewReader(play.nc))
	context.AfterFunc(ctx, func() { play.nc.Close() })
	play.connect("live")
	play.command(play.createStream(), "play", nil, name)
	slowRTMP := newCheck("slow rtmp", true)
	run(slowRTMP, func() error {
		for {
			msg, err := play.read()
			if err != nil {
				return err
			}
			switch msg.Type {
			case msgAudio, msgVideo, msgDataAMF0:
				if err := slowRTMP.add(msg.Type, msg.Time, msg.Payload); err != nil {
					return err
				}
			case msgUserControl:
				switch binary.BigEndian.Uint16(msg.Payload) {
				case ucPingRequest:
					slowRTMP.controls++
				case ucStreamEOF: // after the publisher has left: the end
					return nil
				}
			}
		}
	})
	waitFor(t, "four viewers", func() bool { return ts.viewers(key) == 4 })

	pub := dialRTMP(t, ts.rtmpAddr, false)
	pub.connect("live")
	sid := pub.createStream()
	pub.command(sid, "publish", nil, name, "live")
	if code := pub.expectStatus(); code != "NetStream.Publish.Start" {
		t.Fatalf("publish: %s", code)
	}
	pub.chunkSize = 60000
	pub.send(csidControl, msgSetChunkSize, 0, 0, binary.BigEndian.AppendUint32(nil, 60000))
	pub.send(csidData, msgDataAMF0, sid, 0, testMeta)
	pub.send(csidAudio, msgAudio, sid, 0, testAudioHeader)
	pub.send(csidVideo, msgVideo, sid, 0, testVideoHeader)
	seq := 0
	for ; seq < mainFrames; seq++ {
		time.Sleep(framePause)
		pub.send(csidVideo, msgVideo, sid, uint32(seq*10), seqVideo(seq, seq%10 == 0, frameSize))
	}
	// The tail: small keyframes until every slow viewer, reading at full
	// speed now, has got one. Then it has had all it will get of the
	// main part, and it is not stuck.
	hurry.Store(true)
	caught := make(chan struct{})
	go func() { caughtUp.Wait(); close(caught) }()
tail:
	for ; ; seq++ {
		select {
		case <-caught:
			break tail
		case <-ctx.Done():
			t.Fatal("the slow viewers did not catch up")
		case <-time.After(20 * time.Millisecond):
		}
		pub.send(csidVideo, msgVideo, sid, uint32(seq*10), seqVideo(seq, true, 100))
	}
	pub.command(sid, "deleteStream", nil, float64(sid))
	viewers.Wait() // the stream has ended: HTTP and WS responses end, RTMP gets Stream EOF

	for _, c := range []*mediaCheck{fast, slowHTTP, slowWS, slowRTMP} {
		t.Logf("%s: %d frames, %d gaps, %d control messages", c.name, c.frames, c.gaps, c.controls)
		if c.err != nil {
			t.Errorf("%s: after %d frames (last %d): %v", c.name, c.frames, c.lastSeq, c.err)
		}
	}
	if fast.gaps != 0 || fast.frames != seq || fast.lastSeq != seq-1 {
		t.Errorf("fast viewer: %d frames up to %d with %d gaps; want all %d", fast.frames, fast.lastSeq, fast.gaps, seq)
	}
	for _, c := range []*mediaCheck{slowHTTP, slowWS, slowRTMP} {
		switch {
		case c.err != nil: // said above
		case !c.sawTail:
			t.Errorf("%s ended before the tail", c.name)
		case c.gaps == 0:
			t.Errorf("%s saw no gap: its queue never overflowed, the skip path did not run", c.name)
		case c.controls == 0 && c != slowHTTP:
			t.Errorf("%s got no pong or ping among the media", c.name)
		}
	}
	full := ts.metric(t, "gms_socket_full_total")
	t.Logf("gms_socket_full_total %v, gms_dropped_frames_total %v", full, ts.metric(t, "gms_dropped_frames_total"))
	switch {
	case full == 0 && !blockingWrites:
		t.Errorf("gms_socket_full_total = 0: no write was partial, the pending path did not run")
	case full > 0 && blockingWrites:
		t.Errorf("gms_socket_full_total = %v with blocking writes: a non-blocking write ran", full)
	}
}

// A slow viewer: a small receive buffer, and reads of a few KB with a
// pause before each, at most 800 KB/s. The buffer is not smaller because
// it is set after connecting, when Linux has advertised a larger window:
// with 4 or 16 KB, loopback crawled at 0.1-0.2 MB/s however fast the
// reader read (segments dropped, retransmitted with backoff), so the
// viewer would be slow for the kernel's reasons and never catch up.
const (
	slowBuffer = 64 << 10
	slowRead   = 4 << 10
	slowPause  = 5 * time.Millisecond
)

// slowConn reads slowly until hurry is set, then at full speed. The cap is
// here, not in a bufio.Reader: those pass large reads straight through.
type slowConn struct {
	net.Conn
	hurry *atomic.Bool
}

func (c slowConn) Read(p []byte) (int, error) {
	if !c.hurry.Load() {
		time.Sleep(slowPause)
		p = p[:min(len(p), slowRead)]
	}
	return c.Conn.Read(p)
}

// dialSlow connects a slow viewer, closed when ctx ends.
func dialSlow(ctx context.Context, addr string, hurry *atomic.Bool) (net.Conn, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	nc.(*net.TCPConn).SetReadBuffer(slowBuffer)
	context.AfterFunc(ctx, func() { nc.Close() })
	return slowConn{Conn: nc, hurry: hurry}, nil
}

// seqVideo is frame seq of a test stream: a video tag body with seq after
// the AVC header, then n bytes of byte(seq), so that a viewer can tell
// which frame it got and that it got all of it.
func seqVideo(seq int, key bool, n int) []byte {
	b := testVideo(key, 9+n)
	binary.BigEndian.PutUint32(b[5:], uint32(seq))
	for i := 9; i < len(b); i++ {
		b[i] = byte(seq)
	}
	return b
}

// mediaCheck follows what one viewer of a seqVideo stream gets, tag by tag
// (or RTMP message by message), and keeps the first thing wrong with it.
type mediaCheck struct {
	name     string
	tailFrom int    // frames from this sequence number on are the tail
	onTail   func() // called at the first frame of the tail

	headers      []string // metadata and sequence headers since the last frame
	started      bool
	lastSeq      int
	lastTime     uint32
	frames, gaps int
	controls     int // WS pongs or RTMP pings among the media
	sawTail      bool
	tagEnds      map[int64]bool // FLV byte offsets where a tag (or the header) ends
	err          error
}

// add checks one tag: a frame right after the last one, or, after a gap
// (or at the start), a keyframe with the metadata and both sequence
// headers since the last frame; timestamps never go back.
func (c *mediaCheck) add(typ uint8, ts uint32, data []byte) error {
	header, key := false, false
	switch typ {
	case tagScript:
		c.headers = append(c.headers, "meta")
		return nil
	case tagAudio:
		if !audioIsHeader(data) {
			return errors.New("an audio frame; none was sent")
		}
		c.headers = append(c.headers, "aseq")
		return nil
	case tagVideo:
		// A keyframe as the server sees one: by its flag, or by an IDR
		// NAL unit in the bitstream (some frames' bytes read as one).
		var cs codecState
		class := cs.classifyVideo(data)
		if header, key = class.header, class.key; header {
			c.headers = append(c.headers, "vseq")
			return nil
		}
	default:
		return fmt.Errorf("a tag of type %d", typ)
	}
	if len(data) < 9 {
		return fmt.Errorf("a video frame of %d bytes", len(data))
	}
	seq := int(binary.BigEndian.Uint32(data[5:]))
	if bytes.Count(data[9:], []byte{byte(seq)}) != len(data)-9 {
		return fmt.Errorf("frame %d (%d bytes) is not the one that was sent", seq, len(data))
	}
	switch {
	case c.started && seq <= c.lastSeq:
		return fmt.Errorf("frame %d after frame %d", seq, c.lastSeq)
	case c.started && ts < c.lastTime:
		return fmt.Errorf("frame %d at %d ms, after %d ms", seq, ts, c.lastTime)
	case !c.started || seq != c.lastSeq+1:
		if c.started {
			c.gaps++
		}
		if got := strings.Join(c.headers, " "); !key || got != "meta aseq vseq" {
			return fmt.Errorf("frame %d (keyframe %v) after frame %d with [%s] between; want a keyframe after [meta aseq vseq]",
				seq, key, c.lastSeq, got)
		}
	}
	c.started, c.lastSeq, c.lastTime = true, seq, ts
	c.headers = c.headers[:0]
	c.frames++
	if seq >= c.tailFrom && !c.sawTail {
		c.sawTail = true
		c.onTail()
	}
	return nil
}

// readFLV checks an FLV stream until it ends, which must be between tags.
func (c *mediaCheck) readFLV(r io.Reader) error {
	fr, err := newFLVReader(r)
	if err != nil {
		return err
	}
	off := int64(flvHeaderLen + 4)
	c.tagEnds = map[int64]bool{off: true}
	for {
		tag, err := fr.next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("tag at byte %d: %w", off, err)
		}
		off += flvTagHeaderLen + int64(len(tag.Data)) + 4
		c.tagEnds[off] = true
		if err := c.add(tag.Type, tag.Time, tag.Data); err != nil {
			return err
		}
	}
}

const wsPingPayload = "slow" // what the pongs must echo

// wsMessages is the byte stream of a WS-FLV viewer's binary messages, for
// newFLVReader; it notes the offset where each message ends, and counts
// the pongs between them.
type wsMessages struct {
	c     *wsClient
	buf   []byte
	off   int64
	ends  []int64
	pongs int
}

func (w *wsMessages) Read(p []byte) (int, error) {
	for len(w.buf) == 0 {
		op, payload, err := w.c.readFrame()
		switch {
		case err != nil:
			return 0, err
		case op == wsOpClose:
			return 0, io.EOF
		case op == wsOpPong && string(payload) == wsPingPayload:
			w.pongs++
			continue
		case op != wsOpBinary:
			return 0, fmt.Errorf("a WebSocket frame with opcode %d", op)
		}
		w.buf = payload
		w.off += int64(len(payload))
		w.ends = append(w.ends, w.off)
	}
	n := copy(p, w.buf)
	w.buf = w.buf[n:]
	return n, nil
}

// metric reads one value from the server's /metrics.
func (ts *testServer) metric(t *testing.T, name string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + ts.httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(data)) {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatalf("/metrics: %q: %v", line, err)
			}
			return f
		}
	}
	t.Fatalf("/metrics has no %s", name)
	return 0
}

// deadlineConn records the write deadlines set on it.
type deadlineConn struct {
	net.Conn
	deadlines []time.Time
}

func (c *deadlineConn) SetWriteDeadline(t time.Time) error {
	c.deadlines = append(c.deadlines, t)
	return nil
}

// TestWriteDeadlineShortTimeout: with a ping timeout under a second, the
// write deadline still moves often enough that a write always has at least
// half the timeout (it once moved only every second, so a 300 ms timeout
// failed every write between 300 ms and 1 s after a move).
func TestWriteDeadlineShortTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		for _, timeout := range []time.Duration{300 * time.Millisecond, 30 * time.Second} {
			var d writeDeadline
			nc := &deadlineConn{}
			for range 100 {
				d.refresh(nc, timeout)
				if left := nc.deadlines[len(nc.deadlines)-1].Sub(time.Now()); left < timeout/2 {
					t.Fatalf("timeout %v: a write has %v left; want at least %v", timeout, left, timeout/2)
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
	})
}

// TestSlowJoinIsNotAStall: a joiner whose GOP burst takes longer than
// -stall-time to write (a slow link, a long GOP) is taking it, and is not
// dropped as stalled (fake time).
func TestSlowJoinIsNotAStall(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newTestHub(t, func(c *config) { c.QueueTime, c.StallTime, c.WriteDelay = 0, time.Second, 0 })
		key := streamKey{"live", "slowjoin"}
		p := startTestPublish(t, h, key)
		ts := uint32(0)
		for i := range 100 { // a GOP of 100 frames
			p.ingest(msgVideo, ts, testVideo(i == 0, 100))
			ts += 40
		}
		h.sync()
		sub := h.subscribe(key, clientInfo{ID: "SUB"}, flvForm{}, nil)
		done := make(chan error, 1)
		go func() {
			// 30 ms a frame: the burst alone takes 3 s.
			done <- sub.pumpBlocking(func(b *net.Buffers) error {
				time.Sleep(time.Duration(len(*b)) * 30 * time.Millisecond)
				b.WriteTo(io.Discard)
				return nil
			})
		}()
		for range 100 { // 4 s more of the stream, in real time
			p.ingest(msgVideo, ts, testVideo(false, 100))
			ts += 40
			time.Sleep(40 * time.Millisecond)
		}
		h.sync()
		if sub.isDone() {
			t.Fatalf("a joiner taking its burst was dropped: %v", sub.err)
		}
		h.unsubscribe(sub)
		<-done
	})
}

// TestPatientTapKept: a tap (a recording or a relay) that takes nothing
// for 20 s of a 20 Mbit/s stream is never disconnected, as a viewer
// would be after the stall time: it holds at most its queue, and when it
// takes its queue again it goes on from a keyframe.
func TestPatientTapKept(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newTestHub(t, nil)
		key := streamKey{"live", "tap"}
		var tap *subscriber
		h.call(func() {
			h.tappers = append(h.tappers, func(h *hub, key streamKey) []*subscriber {
				tap = h.newSubscriber(key, clientInfo{ID: "TAP"}, recordForm{}, nil)
				tap.patient = true
				return []*subscriber{tap}
			})
		})
		p := startTestPublish(t, h, key)
		const fps = 30
		for i := range 20 * fps {
			p.ingest(msgVideo, uint32(i*1000/fps), testVideo(i%fps == 0, 80_000))
			time.Sleep(time.Second / fps)
		}
		h.sync()
		if tap.isDone() {
			t.Fatalf("the tap was disconnected: %v", tap.err)
		}
		if q := tap.queued.Load(); q > int64(h.cfg.QueueBytes) {
			t.Errorf("tap holds %d bytes; want at most -queue-bytes %d", q, h.cfg.QueueBytes)
		}
		tap.dequeued(tap.drain(nil)) // the disk is back
		for i := 20 * fps; i < 22*fps; i++ {
			p.ingest(msgVideo, uint32(i*1000/fps), testVideo(i%fps == 0, 80_000))
			time.Sleep(time.Second / fps)
		}
		h.sync()
		for _, f := range tap.drain(nil) {
			if f.typ == msgVideo && !isVideoHeader(f) {
				if !f.key {
					t.Errorf("after its queue was taken the tap went on at an inter frame (time %d)", f.time)
				}
				break
			}
		}
	})
}

func isVideoHeader(f *frame) bool {
	header, _ := videoInfo(f.body())
	return header
}

// TestHandBackKeepsKickReason: a kick ends the subscription, then closes
// the connection; a flusher's write that failed on that closed connection
// before the player was handed back must not hide the kick (the close
// line said "closed by server" for some kicked viewers).
func TestHandBackKeepsKickReason(t *testing.T) {
	server, client := net.Pipe()
	defer client.Close()
	var total atomic.Uint64
	out := newSink(server, time.Minute, nil, &total)
	sub := &subscriber{done: make(chan struct{})}
	sub.end(errKicked)
	server.Close()
	out.writeErr = &net.OpError{Op: "write", Net: "tcp", Err: net.ErrClosed} // what the flusher saw
	if err := sub.handBack(out); !errors.Is(err, errKicked) {
		t.Errorf("handBack = %v; want the kick", err)
	}
}
