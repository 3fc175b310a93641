package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os/exec"
	"path/filepath"
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

// noMediaLimits turns off the limits in media time (-queue-time,
// -stall-time), for tests of the limits in frames and bytes.
func noMediaLimits(c *config) { c.QueueTime, c.StallTime = 0, 0 }

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

// wireBytes is f in form as one slice: what a player gets for it.
func (f *frame) wireBytes(form outputFormat) []byte {
	return bytes.Join(f.appendWire(nil, form), nil)
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
	h := newTestHub(t, noMediaLimits)
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

// TestViewerTooSlowIsDisconnected: a viewer that stays behind for longer
// than maxBehind is ended with errViewerTooSlow (in fake time).
func TestViewerTooSlowIsDisconnected(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newTestHub(t, noMediaLimits)
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
			videoParams{Codec: "H264", CodecString: "avc1.64001f", Width: 320, Height: 240, Profile: "High", Level: 3.1},
			audioParams{Codec: "AAC", CodecString: "mp4a.40.2", Profile: "LC", SampleRate: 44100, Channels: 1}},
		{[]string{"-f", "lavfi", "-i", "testsrc2=size=642x362:rate=30", "-f", "lavfi", "-i", "sine=sample_rate=48000",
			"-c:v", "libx264", "-profile:v", "baseline", "-c:a", "aac", "-ac", "2"},
			videoParams{Codec: "H264", CodecString: "avc1.42c01e", Width: 642, Height: 362, Profile: "Baseline", Level: 3},
			audioParams{Codec: "AAC", CodecString: "mp4a.40.2", Profile: "LC", SampleRate: 48000, Channels: 2}},
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
		msg, err := newChunkReader(bufio.NewReader(bytes.NewReader(f.wireBytes(formatRTMP)))).readMessage()
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

// TestLaggingPlayerStillGetsUnpublish: an RTMP player whose queue is full
// of media when its publisher leaves still gets UnpublishNotify, and the
// next publisher's Publish.Notify; the queue's overflow stays bounded.
func TestLaggingPlayerStillGetsUnpublish(t *testing.T) {
	h := newTestHub(t, noMediaLimits)
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

// TestGOPCacheOff: a joiner gets the headers, then waits for the next
// keyframe instead of getting the cached GOP.
func TestGOPCacheOff(t *testing.T) {
	clip := testClip(t)
	ts := startServer(t, func(c *config) { c.GOPCache = false })
	key := streamKey{"live", "nocache"}
	wait := startPublish(t, clip, ts.rtmpURL("nocache"))
	waitFor(t, "the publisher", func() bool { return ts.live(key) })
	time.Sleep(1500 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// The keyframe the stream is in now: a GOP cache would start a joiner there.
	var current uint32
	ts.hub.call(func() { current = ts.hub.streams[key].stats.lastKey })
	_, data, err := httpGetFLV(ctx, ts.httpURL("nocache"))
	if err != nil {
		t.Fatal(err)
	}
	if err := wait(); err != nil {
		t.Fatal(err)
	}
	_, tags := parseFLV(t, data)
	checkJoin(t, tags)
	if kt := tags[3].Time; kt <= current {
		t.Errorf("first keyframe at %d ms; want one after %d ms, where the stream was at the join", kt, current)
	}
}

// TestPlayWaitSweep: in fake time, players of a name nobody publishes
// give up -play-wait after they began to wait (the sweep runs once a
// second, so between play-wait and play-wait + 2 s), with errNoPublisher
// and a stop event naming the reason; with -play-wait 0 they wait on.
func TestPlayWaitSweep(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newTestHub(t, func(c *config) { c.PlayWait = 5 * time.Second })
		events, stop := h.watch()
		defer stop()
		key := streamKey{"live", "nobody"}
		httpSub := h.subscribe(key, clientInfo{ID: "H"}, flvForm{}, nil)
		rtmpSub := h.subscribe(key, clientInfo{ID: "R"}, rtmpForm{h.cfg.ChunkSize}, nil)
		time.Sleep(4500 * time.Millisecond)
		synctest.Wait()
		for _, sub := range []*subscriber{httpSub, rtmpSub} {
			if sub.isDone() {
				t.Fatalf("%s gave up after 4.5 s; want it to wait 5 s", sub.info.ID)
			}
		}
		time.Sleep(2 * time.Second) // 6.5 s
		synctest.Wait()
		for _, sub := range []*subscriber{httpSub, rtmpSub} {
			if !gaveUp(sub) {
				t.Errorf("%s after 6.5 s: still waiting; want it ended with %v", sub.info.ID, errNoPublisher)
			}
		}
		stops := 0
		for len(events) > 0 {
			if ev := <-events; ev.Type == actStop && ev.Reason == reasonNoPublisher {
				stops++
			}
		}
		if stops != 2 {
			t.Errorf("%d stop events with reason %q; want 2", stops, reasonNoPublisher)
		}
		var streams int
		h.call(func() { streams = len(h.streams) })
		if streams != 0 {
			t.Errorf("%d streams left; want the idle one dropped", streams)
		}
	})
	synctest.Test(t, func(t *testing.T) {
		h := newTestHub(t, func(c *config) { c.PlayWait = 0 })
		sub := h.subscribe(streamKey{"live", "nobody"}, clientInfo{ID: "H"}, flvForm{}, nil)
		time.Sleep(time.Hour)
		synctest.Wait()
		if sub.isDone() {
			t.Errorf("with -play-wait 0 a player gave up: %v", sub.err)
		}
	})
}

// gaveUp reports whether sub's subscription ended for want of a publisher.
func gaveUp(sub *subscriber) bool {
	return sub.isDone() && errors.Is(sub.err, errNoPublisher) // err is written before done closes
}

// TestPlayWaitRestarts: an RTMP player that stays through an unpublish
// waits play-wait again from the leave, even when the publisher came and
// went between two sweeps; time with a publisher never counts.
func TestPlayWaitRestarts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newTestHub(t, func(c *config) { c.PlayWait = 5 * time.Second })
		key := streamKey{"live", "comeback"}
		sub := h.subscribe(key, clientInfo{ID: "R"}, rtmpForm{h.cfg.ChunkSize}, nil)
		time.Sleep(3500 * time.Millisecond)
		p := startTestPublish(t, h, key) // live from 3.5 s to 20.5 s
		time.Sleep(17 * time.Second)
		h.unpublish(p)
		synctest.Wait()
		if sub.isDone() {
			t.Fatalf("player ended by the time its publisher left: %v", sub.err)
		}
		time.Sleep(2 * time.Second) // 22.5 s: a publish and unpublish between two sweeps
		p = startTestPublish(t, h, key)
		h.unpublish(p)
		leave := time.Now()
		time.Sleep(4500 * time.Millisecond) // 27 s: 6.5 s after the first leave
		synctest.Wait()
		if sub.isDone() {
			t.Fatalf("player gave up %v after the last leave; want at least 5 s", time.Since(leave))
		}
		time.Sleep(3 * time.Second) // 7.5 s after the last leave
		synctest.Wait()
		if !gaveUp(sub) {
			t.Errorf("player still waiting 7.5 s after the last leave; want it ended with %v", errNoPublisher)
		}
	})
}

// TestJoinHeadersStamped: a joiner's metadata and sequence headers carry
// its first frame's time, in the frame and in both encodings (readers that
// probe a stream's first seconds for its tracks drop a track whose header
// came seconds before its media); the headers as published are untouched,
// and joiners at the same frame share one stamped copy.
func TestJoinHeadersStamped(t *testing.T) {
	h := newTestHub(t, nil)
	key := streamKey{"live", "late"}
	p := startTestPublish(t, h, key) // headers at 0
	p.ingest(msgVideo, 0, testVideo(true, 100))
	p.ingest(msgVideo, 1000, testVideo(false, 100))
	p.ingest(msgVideo, 2000, testVideo(true, 100))
	p.ingest(msgVideo, 2040, testVideo(false, 100))
	h.sync()
	a := h.subscribe(key, clientInfo{ID: "A"}, flvForm{}, nil)
	b := h.subscribe(key, clientInfo{ID: "B"}, rtmpForm{h.cfg.ChunkSize}, nil)
	h.sync()
	for _, sub := range []*subscriber{a, b} {
		burst := sub.burst
		if len(burst) != 6 { // FLV header, metadata, two sequence headers, the GOP's two frames
			t.Fatalf("%s: burst of %d frames; want 6", sub.info.ID, len(burst))
		}
		for _, f := range burst[1:4] {
			want := uint32(2000) // the GOP's first frame
			if f.typ == msgDataAMF0 {
				want = 0 // metadata: ffmpeg reads it as such only at 0
			}
			if f.time != want {
				t.Errorf("%s: header of type %d at %d; want %d", sub.info.ID, f.typ, f.time, want)
			}
			if ts := be24(f.flv[4:7]) | uint32(f.flv[7])<<24; ts != want {
				t.Errorf("%s: FLV tag of type %d stamped %d; want %d", sub.info.ID, f.typ, ts, want)
			}
			if ts := be24(f.wireBytes(formatRTMP)[1:4]); ts != want { // type 0 chunk header: timestamp after the basic header
				t.Errorf("%s: RTMP chunk of type %d stamped %d; want %d", sub.info.ID, f.typ, ts, want)
			}
		}
	}
	if a.burst[2] != b.burst[2] {
		t.Errorf("two joiners at the same frame got two stamped copies; want one shared")
	}
	var published *frame
	h.call(func() { published = h.streams[key].videoHeader })
	if published.time != 0 || be24(published.flv[4:7]) != 0 {
		t.Errorf("the cached video header was changed: time %d", published.time)
	}
}

// TestTrackHeadersForJoiners: Enhanced RTMP v2 headers beyond the main
// ones reach a joiner: a multitrack audio SequenceStart (ManyTracks, tracks
// 0 and 1), another track's SequenceStart in a OneTrack message, audio
// MultichannelConfig and video Metadata (colorInfo). A header whose first
// track is 0 is the main header of its type. A new header of a
// slot replaces the old one in place; SequenceEnd and coded frames are not
// kept; the publisher's next start clears them all.
func TestTrackHeadersForJoiners(t *testing.T) {
	h := newTestHub(t, nil)
	key := streamKey{"live", "tracks"}
	p := startTestPublish(t, h, key) // metadata, AAC header, AVC header
	audioMT := joinBytes(bs(0x90|exAudioMultitrack, 1<<4|exSequenceStart), []byte("Opus"), bs(0, 0, 0, 2, 0xA, 0xB), bs(1, 0, 0, 1, 0xC))
	track2 := func(v byte) []byte {
		return joinBytes(bs(0x90|exAudioMultitrack, 0<<4|exSequenceStart), []byte("Opus"), bs(2, v))
	}
	multichannel := joinBytes(bs(0x90|exMultichannelCfg), []byte("Opus"), bs(1, 2, 0, 1))
	colorInfo := func(v float64) []byte {
		return exVideo(0, exMetadata, "hvc1", amf0AppendAll(nil, "colorInfo", amfObject{{"colorConfig", amfObject{{"bitDepth", v}}}})...)
	}
	p.ingest(msgAudio, 0, audioMT)
	p.ingest(msgAudio, 0, track2(1))
	p.ingest(msgAudio, 0, multichannel)
	p.ingest(msgVideo, 0, colorInfo(8))
	p.ingest(msgVideo, 0, exVideo(1, exSequenceEnd, "hvc1"))
	p.ingest(msgVideo, 0, testVideo(true, 100))
	p.ingest(msgAudio, 10, track2(2))     // replaces track 2's header
	p.ingest(msgVideo, 20, colorInfo(10)) // replaces the colorInfo
	p.ingest(msgVideo, 40, testVideo(false, 100))
	h.sync()
	sub := h.subscribe(key, clientInfo{ID: "late"}, flvForm{}, nil)
	h.sync()
	var got [][]byte
	for _, f := range sub.burst[1:] { // after the FLV header
		got = append(got, f.body())
	}
	// Track 0 of the multitrack SequenceStart is the main audio track: it
	// takes the AAC header's place.
	want := [][]byte{testMeta[len(amf0Append(nil, "@setDataFrame")):], audioMT, testVideoHeader,
		track2(2), multichannel, colorInfo(10), testVideo(true, 100), testVideo(false, 100)}
	if len(got) != len(want) {
		for _, g := range got {
			t.Logf("% x", g[:min(len(g), 12)])
		}
		t.Fatalf("joiner got %d frames; want %d", len(got), len(want))
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Errorf("joiner frame %d = % x; want % x", i, got[i][:min(len(got[i]), 12)], want[i][:min(len(want[i]), 12)])
		}
	}
	var api streamSnapshot
	h.call(func() { api = h.streams[key].snapshot() })
	if len(api.Tracks) != 3 || api.Tracks[2].ID != 2 || api.Tracks[0].Audio == nil || api.Tracks[0].Audio.Codec != "Opus" {
		t.Errorf("snapshot tracks %+v; want Opus tracks 0, 1, 2", api.Tracks)
	}
	h.unpublish(p)
	p = startTestPublish(t, h, key)
	p.ingest(msgVideo, 0, testVideo(true, 100))
	h.sync()
	sub = h.subscribe(key, clientInfo{ID: "next"}, flvForm{}, nil)
	h.sync()
	if len(sub.burst) != 5 { // FLV header, metadata, two headers, the keyframe
		t.Errorf("after a new publish a joiner got %d frames; want 5: the old tracks' headers stay behind", len(sub.burst))
	}
}

// TestViewerQueueTime: a viewer whose queue holds more than -queue-time
// of media skips to the next keyframe, whatever the bytes; one that
// keeps taking its queue is never dropped for stalling, however far
// behind it was.
func TestViewerQueueTime(t *testing.T) {
	synctest.Test(t, testViewerQueueTime)
}

func testViewerQueueTime(t *testing.T) {
	h := newTestHub(t, func(c *config) { c.QueueTime, c.StallTime = time.Second, 2*time.Second })
	key := streamKey{"live", "late"}
	sub := h.subscribe(key, clientInfo{ID: "SUB"}, flvForm{}, nil)
	p := startTestPublish(t, h, key)
	ts := uint32(0)
	for i := range 50 { // 2 s of 25 fps, a keyframe each second; nobody reads
		p.ingest(msgVideo, ts, testVideo(i%25 == 0, 100))
		time.Sleep(40 * time.Millisecond) // in real time (fake time: no wait)
		ts += 40
	}
	h.sync()
	got := takeQueued(sub) // the player takes its queue at last
	// Header, metadata, two sequence headers, then 1 s of media and the
	// frame at 1 s: the next (at 1040 ms) was more than 1 s after the first.
	if want := 4 + 26; len(got) != want {
		t.Errorf("queued %d frames; want %d (1 s of media after the headers): %v", len(got), want, got)
	}
	if sub.drops.Load() == 0 {
		t.Errorf("no drops counted")
	}
	for sec := range 5 { // 5 s more, taken as it comes: never stalled
		for i := range 25 {
			p.ingest(msgVideo, ts, testVideo(i == 0, 100))
			time.Sleep(40 * time.Millisecond)
			ts += 40
		}
		h.sync()
		got = takeQueued(sub)
		// It goes back in step at the next keyframe, with the headers again.
		if want := []string{"meta", "aseq", "vseq", "key"}; sec == 0 && (len(got) < 4 || !equalStrings(got[:4], want)) {
			t.Errorf("the second after it took its queue: %v; want it to start with %v", got, want)
		}
	}
	if sub.isDone() {
		t.Fatalf("a viewer that takes its queue was dropped: %v", sub.err)
	}
}

// TestBurstIsNotLate: a publisher that sends media faster than real
// time (a file pushed at once) does not make a viewer look behind or
// stalled: the limits in media time also want as much wall time.
func TestBurstIsNotLate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newTestHub(t, func(c *config) { c.QueueTime, c.StallTime = time.Second, 2*time.Second })
		key := streamKey{"live", "burst"}
		sub := h.subscribe(key, clientInfo{ID: "SUB"}, flvForm{}, nil)
		p := startTestPublish(t, h, key)
		for i := range 250 { // 10 s of media in 0.25 s
			p.ingest(msgVideo, uint32(40*i), testVideo(i%25 == 0, 100))
			time.Sleep(time.Millisecond)
		}
		h.sync()
		if got := takeQueued(sub); len(got) != 4+250 || sub.drops.Load() != 0 || sub.isDone() {
			t.Errorf("queued %d frames, dropped %d, ended %v; want all 254, no drops, still there", len(got), sub.drops.Load(), sub.isDone())
		}
	})
}

// TestStreamClock: the media clock moves with frame timestamps, not
// with their wraps, jumps or interleaving.
func TestStreamClock(t *testing.T) {
	var s stream
	for _, ts := range []uint32{
		0, 40, 30, 80, // audio behind video: no step back
		0x80000000, 0xFFFFFFE0, 0xFFFFFFF0, 8, // jumps, then a wrap: 16 and 24
		5000, 5040, // a jump forward: 40
		100, 140, // a jump back: 40
	} {
		s.tick(ts)
	}
	if want := int64(80 + 16 + 24 + 40 + 40); s.clock != want {
		t.Errorf("clock %d ms; want %d", s.clock, want)
	}
}
