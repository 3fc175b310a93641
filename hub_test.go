package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// newTestHub runs a hub with the default config, edited.
func newTestHub(t *testing.T, edit func(*config)) *hub {
	t.Helper()
	cfg := defaultConfig()
	if edit != nil {
		edit(&cfg)
	}
	h := newHub(&cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		h.run(ctx)
		close(done)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return h
}

// sync waits until the hub has handled everything sent to it before.
func (h *hub) sync() { h.call(func() {}) }

var (
	testMeta        = amf0AppendAll(nil, "@setDataFrame", "onMetaData", amfECMAArray{{"videocodecid", 7.0}, {"audiocodecid", 10.0}})
	testAudioHeader = []byte{0xAF, 0x00, 0x12, 0x10}
	testVideoHeader = []byte{0x17, 0x00, 0, 0, 0, 1, 0x64, 0x00, 0x1F}
)

func testVideo(key bool, size int) []byte {
	b := make([]byte, max(size, 5))
	b[0], b[1] = 0x27, 1 // inter frame, AVC NALU
	if key {
		b[0] = 0x17
	}
	return b
}

// startTestPublish publishes key on h and sends metadata and sequence headers.
func startTestPublish(t *testing.T, h *hub, key streamKey) *publisher {
	t.Helper()
	p, err := h.publish(key, clientInfo{ID: "PUB"}, func() uint64 { return 0 }, func() {})
	if err != nil {
		t.Fatal(err)
	}
	p.ingest(msgDataAMF0, 0, testMeta)
	p.ingest(msgAudio, 0, testAudioHeader)
	p.ingest(msgVideo, 0, testVideoHeader)
	return p
}

// takeQueued empties sub's queue and says what each frame was.
func takeQueued(sub *subscriber) []string {
	var out []string
	batch := sub.drain(nil)
	sub.dequeued(batch)
	for _, f := range batch {
		out = append(out, describeFrame(f))
	}
	return out
}

func describeFrame(f *frame) string {
	switch {
	case f.typ == 0 && f.flv != nil:
		return "flvheader"
	case f.typ == msgDataAMF0:
		return "meta"
	case f.typ == msgAudio && audioIsHeader(f.flv[flvTagHeaderLen:]):
		return "aseq"
	case f.typ == msgAudio:
		return "audio"
	case f.typ == msgVideo:
		header, key := videoInfo(f.flv[flvTagHeaderLen:])
		switch {
		case header:
			return "vseq"
		case key:
			return "key"
		}
		return "inter"
	}
	return "control"
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestSlowViewerSkipsToKeyframe: a viewer whose queue is full loses frames,
// never blocks the publisher, and restarts at the next keyframe with the
// sequence headers before it.
func TestSlowViewerSkipsToKeyframe(t *testing.T) {
	h := newTestHub(t, nil)
	key := streamKey{"live", "slow"}
	sub := h.subscribe(key, clientInfo{ID: "SUB"}, flvForm{}, nil)
	p := startTestPublish(t, h, key)
	p.ingest(msgVideo, 0, testVideo(true, 100))
	for i := range 1100 { // more than the queue's 1024 messages; nobody reads
		p.ingest(msgVideo, uint32(40*(i+1)), testVideo(false, 100))
	}
	h.sync()
	got := takeQueued(sub)
	if len(got) != subQueueFrames {
		t.Fatalf("queued %d frames; want the queue's capacity %d", len(got), subQueueFrames)
	}
	if want := []string{"flvheader", "meta", "aseq", "vseq", "key", "inter"}; !equalStrings(got[:6], want) {
		t.Errorf("start of stream = %v; want %v", got[:6], want)
	}
	// Inter frames now are useless to it: skipped until a keyframe.
	for i := range 5 {
		p.ingest(msgVideo, uint32(50000+40*i), testVideo(false, 100))
	}
	p.ingest(msgVideo, 60000, testVideo(true, 100))
	p.ingest(msgVideo, 60040, testVideo(false, 100))
	h.sync()
	if got, want := takeQueued(sub), []string{"meta", "aseq", "vseq", "key", "inter"}; !equalStrings(got, want) {
		t.Errorf("after catching up: %v; want %v", got, want)
	}
	if got, want := sub.drops.Load(), uint64(1100-(subQueueFrames-5)+5); got != want {
		t.Errorf("drops = %d; want %d", got, want)
	}
}

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

// TestViewerTooSlowIsDisconnected: a viewer that stays behind for longer
// than maxBehind is ended with errViewerTooSlow (in fake time).
func TestViewerTooSlowIsDisconnected(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newTestHub(t, nil)
		key := streamKey{"live", "stuck"}
		sub := h.subscribe(key, clientInfo{ID: "SUB"}, flvForm{}, nil)
		p := startTestPublish(t, h, key)
		ts := uint32(0)
		for range 1100 {
			p.ingest(msgVideo, ts, testVideo(ts%1000 == 0, 100))
			ts += 40
		}
		h.sync()
		select {
		case <-sub.done:
			t.Fatal("ended too soon")
		default:
		}
		time.Sleep(maxBehind + time.Second)
		p.ingest(msgVideo, ts, testVideo(true, 100))
		h.sync()
		select {
		case <-sub.done:
			if !errors.Is(sub.err, errViewerTooSlow) {
				t.Errorf("ended with %v; want errViewerTooSlow", sub.err)
			}
		default:
			t.Fatal("a viewer behind for more than maxBehind is still subscribed")
		}
	})
}

// TestSequenceHeaderChange: new sequence headers reach every viewer at
// once, and a later joiner gets the new ones, not the old.
func TestSequenceHeaderChange(t *testing.T) {
	h := newTestHub(t, nil)
	key := streamKey{"live", "change"}
	early := h.subscribe(key, clientInfo{ID: "A"}, flvForm{}, nil)
	p := startTestPublish(t, h, key)
	p.ingest(msgVideo, 0, testVideo(true, 10))
	newHeader := []byte{0x17, 0x00, 0, 0, 0, 1, 0x4D, 0x00, 0x28}
	p.ingest(msgVideo, 40, newHeader)
	p.ingest(msgVideo, 40, testVideo(true, 10))
	h.sync()
	if got, want := takeQueued(early), []string{"flvheader", "meta", "aseq", "vseq", "key", "vseq", "key"}; !equalStrings(got, want) {
		t.Errorf("early viewer: %v; want %v", got, want)
	}
	late := h.subscribe(key, clientInfo{ID: "B"}, flvForm{}, nil)
	var names []string
	for _, f := range late.burst {
		names = append(names, describeFrame(f))
	}
	if want := []string{"flvheader", "meta", "aseq", "vseq", "key"}; !equalStrings(names, want) {
		t.Fatalf("late joiner's burst: %v; want %v", names, want)
	}
	if vseq := late.burst[3].flv[flvTagHeaderLen:]; vseq[6] != 0x4D {
		t.Errorf("late joiner got the old sequence header")
	}
}

// TestGOPCacheCap: past its frame cap the cache is dropped until the next
// keyframe, so a joiner waits rather than getting a partial GOP.
func TestGOPCacheCap(t *testing.T) {
	h := newTestHub(t, nil)
	key := streamKey{"live", "longgop"}
	p := startTestPublish(t, h, key)
	p.ingest(msgVideo, 0, testVideo(true, 10))
	for i := range gopMaxFrames {
		p.ingest(msgVideo, uint32(i+1), testVideo(false, 10))
	}
	h.sync()
	sub := h.subscribe(key, clientInfo{ID: "SUB"}, flvForm{}, nil)
	if len(sub.burst) != 0 || !sub.waitKey {
		t.Fatalf("joiner got a burst of %d frames from an overflowed GOP", len(sub.burst))
	}
	p.ingest(msgVideo, 99999, testVideo(true, 10))
	h.sync()
	if got, want := takeQueued(sub), []string{"flvheader", "meta", "aseq", "vseq", "key"}; !equalStrings(got, want) {
		t.Errorf("joiner after the cap: %v; want %v", got, want)
	}
}

// TestAudioOnlyStream: without video, any audio frame is a starting point.
func TestAudioOnlyStream(t *testing.T) {
	h := newTestHub(t, nil)
	key := streamKey{"live", "radio"}
	p, _ := h.publish(key, clientInfo{ID: "PUB"}, func() uint64 { return 0 }, func() {})
	p.ingest(msgDataAMF0, 0, amf0AppendAll(nil, "@setDataFrame", "onMetaData", amfECMAArray{{"audiocodecid", 10.0}}))
	p.ingest(msgAudio, 0, testAudioHeader)
	p.ingest(msgAudio, 23, []byte{0xAF, 1, 1, 2, 3})
	h.sync()
	sub := h.subscribe(key, clientInfo{ID: "SUB"}, flvForm{}, nil)
	var names []string
	for _, f := range sub.burst {
		names = append(names, describeFrame(f))
	}
	if want := []string{"flvheader", "meta", "aseq", "audio"}; !equalStrings(names, want) {
		t.Errorf("audio-only joiner: %v; want %v", names, want)
	}
	if flags := sub.burst[0].flv[4]; flags != 0x04 {
		t.Errorf("FLV header flags %#x; want 0x04 (audio only)", flags)
	}
}

// TestPublisherLeaves: HTTP viewers end; RTMP viewers get UnpublishNotify
// and stay for the next publisher, which they then get from its start.
func TestPublisherLeaves(t *testing.T) {
	h := newTestHub(t, nil)
	key := streamKey{"live", "leave"}
	httpSub := h.subscribe(key, clientInfo{ID: "H"}, flvForm{}, nil)
	rtmpSub := h.subscribe(key, clientInfo{ID: "R"}, rtmpForm{h.cfg.ChunkSize}, nil)
	p := startTestPublish(t, h, key)
	p.ingest(msgVideo, 0, testVideo(true, 10))
	h.unpublish(p)
	h.sync()
	select {
	case <-httpSub.done:
	default:
		t.Errorf("HTTP viewer still subscribed after unpublish")
	}
	takeQueued(httpSub)
	select {
	case <-rtmpSub.done:
		t.Fatalf("RTMP viewer ended on unpublish")
	default:
	}
	got := takeQueued(rtmpSub)
	// control: Stream Begin + PublishNotify when the publisher came, then
	// UnpublishNotify + Stream EOF when it left.
	if want := []string{"control", "meta", "aseq", "vseq", "key", "control"}; !equalStrings(got, want) {
		t.Errorf("RTMP viewer: %v; want %v", got, want)
	}
	p2 := startTestPublish(t, h, key)
	p2.ingest(msgVideo, 0, testVideo(true, 10))
	h.sync()
	if got, want := takeQueued(rtmpSub), []string{"control", "meta", "aseq", "vseq", "key"}; !equalStrings(got, want) {
		t.Errorf("RTMP viewer after republish: %v; want %v", got, want)
	}
}

// TestDeliverAllocs: handing a frame to viewers allocates nothing per viewer.
func TestDeliverAllocs(t *testing.T) {
	h := newTestHub(t, nil)
	key := streamKey{"live", "allocs"}
	p := startTestPublish(t, h, key)
	p.ingest(msgVideo, 0, testVideo(true, 100))
	var subs []*subscriber
	for range 100 {
		subs = append(subs, h.subscribe(key, clientInfo{ID: "S"}, flvForm{}, nil))
	}
	h.sync()
	f, kind := p.enc.encode(msgVideo, 40, testVideo(false, 100), 60000)
	batch := make([]*frame, 0, subQueueFrames)
	allocs := testing.AllocsPerRun(5, func() {
		h.call(func() {
			for range 10 {
				h.onFrame(p, f, kind)
			}
		})
		for _, sub := range subs {
			sub.dequeued(sub.drain(batch[:0]))
		}
	})
	// h.call itself allocates a closure and a channel; 100 viewers x 10
	// frames must add nothing on top.
	if allocs > 10 {
		t.Errorf("%v allocs for 1000 deliveries; want no per-viewer allocation", allocs)
	}
}

// TestStalledViewerCostsItsQueue pushes 26 MB through a server while one
// HTTP-FLV viewer never reads: another viewer gets every frame, the
// publisher finishes while the stalled one is still connected (so it never
// waited for it), the stalled one's drops are counted, and the heap grows
// by no more than the queue cap plus the GOP cache.
func TestStalledViewerCostsItsQueue(t *testing.T) {
	const queue = 2 << 20
	ts := startServer(t, func(c *config) { c.QueueBytes = queue })
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

// TestCodecParams reads size, profile and level from real encoder output,
// including a size that needs SPS cropping, and AAC's configuration.
func TestCodecParams(t *testing.T) {
	needFFmpeg(t)
	for _, tc := range []struct {
		args  []string
		video videoParams
		audio audioParams
	}{
		{[]string{"-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25", "-f", "lavfi", "-i", "sine=sample_rate=44100",
			"-c:v", "libx264", "-profile:v", "high", "-level", "3.1", "-c:a", "aac"},
			videoParams{Codec: "H264", Width: 320, Height: 240, Profile: "High", Level: 3.1},
			audioParams{Codec: "AAC", Profile: "LC", SampleRate: 44100, Channels: 1}},
		{[]string{"-f", "lavfi", "-i", "testsrc2=size=642x362:rate=30", "-f", "lavfi", "-i", "sine=sample_rate=48000",
			"-c:v", "libx264", "-profile:v", "baseline", "-c:a", "aac", "-ac", "2"},
			videoParams{Codec: "H264", Width: 642, Height: 362, Profile: "Baseline", Level: 3},
			audioParams{Codec: "AAC", Profile: "LC", SampleRate: 48000, Channels: 2}},
	} {
		path := filepath.Join(t.TempDir(), "c.flv")
		args := append([]string{"-v", "error"}, tc.args...)
		args = append(args, "-t", "0.2", "-f", "flv", path)
		if out, err := exec.Command("ffmpeg", args...).CombinedOutput(); err != nil {
			t.Fatalf("ffmpeg: %v\n%s", err, out)
		}
		_, tags := readFLVFile(t, path)
		var gotV videoParams
		var gotA audioParams
		for _, tag := range tags {
			if tag.Type == tagVideo && gotV.Codec == "" {
				gotV = parseVideoHeader(tag.Data)
			}
			if tag.Type == tagAudio && gotA.Codec == "" {
				gotA = parseAudioHeader(tag.Data)
			}
		}
		if gotV != tc.video {
			t.Errorf("video = %+v; want %+v", gotV, tc.video)
		}
		if gotA != tc.audio {
			t.Errorf("audio = %+v; want %+v", gotA, tc.audio)
		}
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

// TestTimestampJumps: timestamps that wrap past 2^32 ms or jump backwards
// are passed on as they are, and viewers keep getting every frame.
func TestTimestampJumps(t *testing.T) {
	h := newTestHub(t, nil)
	key := streamKey{"live", "wrap"}
	sub := h.subscribe(key, clientInfo{ID: "SUB"}, rtmpForm{h.cfg.ChunkSize}, nil)
	p := startTestPublish(t, h, key)
	times := []uint32{0, 40, 0xFFFFFFB0, 0xFFFFFFD8, 0x00000008, 0x00000030, 10, 50, 0x01000000}
	for i, ts := range times {
		p.ingest(msgVideo, ts, testVideo(i%3 == 0, 20))
	}
	h.sync()
	var got []uint32
	for _, f := range sub.drain(nil) {
		if f.typ != msgVideo {
			continue
		}
		msg, err := newChunkReader(bufio.NewReader(bytes.NewReader(f.rtmp))).readMessage()
		if err != nil {
			t.Fatal(err)
		}
		if header, _ := videoInfo(msg.Payload); !header {
			got = append(got, msg.Time)
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(times) {
		t.Errorf("viewer got times %v; want %v", got, times)
	}
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
		go func() { done <- sub.pump(out) }()

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
		go func() { done <- sub.pump(out) }()
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
			go func() { done <- sub.pump(out) }()
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

// TestLaggingPlayerStillGetsUnpublish: an RTMP player whose queue is full
// of media when its publisher leaves still gets UnpublishNotify, and the
// next publisher's Publish.Notify; the queue's overflow stays bounded.
func TestLaggingPlayerStillGetsUnpublish(t *testing.T) {
	h := newTestHub(t, nil)
	key := streamKey{"live", "lag"}
	sub := h.subscribe(key, clientInfo{ID: "SUB"}, rtmpForm{h.cfg.ChunkSize}, nil)
	for round := range 40 { // more rounds than the slack: it must stay bounded
		p := startTestPublish(t, h, key)
		p.ingest(msgVideo, 0, testVideo(true, 100))
		for i := range 1100 { // more than the queue holds; nobody reads
			p.ingest(msgVideo, uint32(40*(i+1)), testVideo(false, 100))
		}
		h.unpublish(p)
		h.sync()
		q := sub.queueLen()
		if q > subQueueFrames+statusSlackFrames {
			t.Fatalf("round %d: %d frames queued; want at most %d", round, q, subQueueFrames+statusSlackFrames)
		}
		if round == 0 {
			sub.qmu.Lock()
			last := describeFrame(sub.q[len(sub.q)-1])
			sub.qmu.Unlock()
			if last != "control" {
				t.Fatalf("last frame queued after the publisher left: %s; want the UnpublishNotify status", last)
			}
		}
	}
}
