package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
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
	p.write(msgDataAMF0, 0, testMeta)
	p.write(msgAudio, 0, testAudioHeader)
	p.write(msgVideo, 0, testVideoHeader)
	return p
}

// takeQueued empties sub's queue and says what each frame was.
func takeQueued(sub *subscriber) []string {
	var out []string
	for {
		select {
		case f := <-sub.q:
			sub.queued.Add(-int64(len(f.bytes(sub.form))))
			out = append(out, describeFrame(f))
		default:
			return out
		}
	}
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
	sub := h.subscribe(key, clientInfo{ID: "SUB"}, formatFLV)
	p := startTestPublish(t, h, key)
	p.write(msgVideo, 0, testVideo(true, 100))
	for i := range 1100 { // more than the queue's 1024 messages; nobody reads
		p.write(msgVideo, uint32(40*(i+1)), testVideo(false, 100))
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
		p.write(msgVideo, uint32(50000+40*i), testVideo(false, 100))
	}
	p.write(msgVideo, 60000, testVideo(true, 100))
	p.write(msgVideo, 60040, testVideo(false, 100))
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
	sub := h.subscribe(key, clientInfo{ID: "SUB"}, formatRTMP)
	p := startTestPublish(t, h, key)
	p.write(msgVideo, 0, testVideo(true, 100<<10))
	for i := range 100 { // 10 MB of 100 kB frames
		p.write(msgVideo, uint32(40*(i+1)), testVideo(false, 100<<10))
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
		sub := h.subscribe(key, clientInfo{ID: "SUB"}, formatFLV)
		p := startTestPublish(t, h, key)
		ts := uint32(0)
		for range 1100 {
			p.write(msgVideo, ts, testVideo(ts%1000 == 0, 100))
			ts += 40
		}
		h.sync()
		select {
		case <-sub.done:
			t.Fatal("ended too soon")
		default:
		}
		time.Sleep(maxBehind + time.Second)
		p.write(msgVideo, ts, testVideo(true, 100))
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
	early := h.subscribe(key, clientInfo{ID: "A"}, formatFLV)
	p := startTestPublish(t, h, key)
	p.write(msgVideo, 0, testVideo(true, 10))
	newHeader := []byte{0x17, 0x00, 0, 0, 0, 1, 0x4D, 0x00, 0x28}
	p.write(msgVideo, 40, newHeader)
	p.write(msgVideo, 40, testVideo(true, 10))
	h.sync()
	if got, want := takeQueued(early), []string{"flvheader", "meta", "aseq", "vseq", "key", "vseq", "key"}; !equalStrings(got, want) {
		t.Errorf("early viewer: %v; want %v", got, want)
	}
	late := h.subscribe(key, clientInfo{ID: "B"}, formatFLV)
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
	p.write(msgVideo, 0, testVideo(true, 10))
	for i := range gopMaxFrames {
		p.write(msgVideo, uint32(i+1), testVideo(false, 10))
	}
	h.sync()
	sub := h.subscribe(key, clientInfo{ID: "SUB"}, formatFLV)
	if len(sub.burst) != 0 || !sub.waitKey {
		t.Fatalf("joiner got a burst of %d frames from an overflowed GOP", len(sub.burst))
	}
	p.write(msgVideo, 99999, testVideo(true, 10))
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
	p.write(msgDataAMF0, 0, amf0AppendAll(nil, "@setDataFrame", "onMetaData", amfECMAArray{{"audiocodecid", 10.0}}))
	p.write(msgAudio, 0, testAudioHeader)
	p.write(msgAudio, 23, []byte{0xAF, 1, 1, 2, 3})
	h.sync()
	sub := h.subscribe(key, clientInfo{ID: "SUB"}, formatFLV)
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
	httpSub := h.subscribe(key, clientInfo{ID: "H"}, formatFLV)
	rtmpSub := h.subscribe(key, clientInfo{ID: "R"}, formatRTMP)
	p := startTestPublish(t, h, key)
	p.write(msgVideo, 0, testVideo(true, 10))
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
	p2.write(msgVideo, 0, testVideo(true, 10))
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
	p.write(msgVideo, 0, testVideo(true, 100))
	var subs []*subscriber
	for range 100 {
		subs = append(subs, h.subscribe(key, clientInfo{ID: "S"}, formatFLV))
	}
	h.sync()
	f, kind := p.enc.encode(msgVideo, 40, testVideo(false, 100), 60000)
	allocs := testing.AllocsPerRun(5, func() {
		h.call(func() {
			for range 10 {
				h.onFrame(p, f, kind)
			}
		})
		for _, sub := range subs {
			for len(sub.q) > 0 {
				f := <-sub.q
				sub.queued.Add(-int64(len(f.flv)))
			}
		}
	})
	// h.call itself allocates a closure and a channel; 100 viewers x 10
	// frames must add nothing on top.
	if allocs > 10 {
		t.Errorf("%v allocs for 1000 deliveries; want no per-viewer allocation", allocs)
	}
}
