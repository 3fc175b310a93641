package main

// The hub owns the stream table. One goroutine runs it; publishers, players
// and the API talk to it through one channel, so the table, the GOP caches
// and the subscriber sets need no locks, and a publisher's media and its
// unpublish arrive in the order they were sent.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Limits of the hub. A viewer costs at most its queue; a stream at most its
// GOP cache.
const (
	subQueueFrames = 1024 // messages queued for one viewer; bytes: config.QueueBytes
	// A status message (RTMP UnpublishNotify, Publish.Notify) is queued even
	// when media fills the queue, up to this many frames and bytes beyond
	// the limits: a viewer that lags must still learn that the stream ended.
	statusSlackFrames = 16
	statusSlackBytes  = 16 << 10
	gopMaxFrames      = 4096     // frames in the GOP cache (NMS v4 clears above 4096 packets)
	gopMaxBytes       = 64 << 20 // bytes in the GOP cache
	maxBehind         = 10 * time.Second
	staleAfter        = 5 * time.Second // a publisher silent this long yields its name to a new one
)

var (
	errStreamBusy        = errors.New("stream is already being published")
	errSubscriptionEnded = errors.New("subscription ended")
	errViewerTooSlow     = errors.New("viewer too slow: disconnected")
	errHubClosed         = errors.New("hub closed")
)

type streamKey struct{ App, Name string }

func (k streamKey) String() string { return "/" + k.App + "/" + k.Name }

// outputFormat is the byte form a subscriber receives.
type outputFormat int

const (
	formatRTMP outputFormat = iota // chunks at our chunk size
	formatFLV                      // FLV tags (HTTP-FLV and WS-FLV)
)

// clientInfo describes a publisher or a player for logs and stats.
type clientInfo struct {
	ID       string
	IP       string
	Protocol protocol
	Created  time.Time
	Query    string
}

// frame is one message encoded once per output form. The byte slices are
// shared by every subscriber and the GOP cache and must not be modified.
type frame struct {
	typ  uint8  // msgAudio, msgVideo, msgDataAMF0, or 0 for control frames
	time uint32 // RTMP timestamp, ms
	// key marks a point where a player can start: a video keyframe, or any
	// audio frame in a stream without video.
	key  bool
	rtmp []byte
	flv  []byte
	meta *metaInfo // on metadata frames: what the metadata declares
}

func (f *frame) bytes(form outputFormat) []byte {
	if form == formatRTMP {
		return f.rtmp
	}
	return f.flv
}

func (f *frame) size() int { return len(f.rtmp) + len(f.flv) }

// hubOp is one request to the hub goroutine: a media frame from a
// publisher, or a function to run there.
type hubOp struct {
	pub   *publisher
	frame *frame
	kind  frameKind
	fn    func()
}

type hub struct {
	cfg     *config
	log     *slog.Logger
	ops     chan hubOp
	done    chan struct{}
	streams map[streamKey]*stream // owned by the hub goroutine
	// watchers get lifecycle events (the API's event stream, hooks).
	watchers map[chan hubEvent]struct{}
	counters counters

	flushers []*flusher // write to players on plain TCP sockets
	// dirty holds, per flusher, the players that got frames during this
	// op and were not on its list yet; owned by the hub goroutine.
	dirty       [][]*subscriber
	nextFlusher atomic.Uint64
}

// counters are server-wide totals, for /api/server and /metrics.
type counters struct {
	accepted          [protoCount]atomic.Uint64
	active            [protoCount]atomic.Int64
	bytesIn, bytesOut atomic.Uint64
	drops, kicks      atomic.Uint64
	authFailures      [protoCount]atomic.Uint64
	hookRejects       atomic.Uint64
	handshakeFailures atomic.Uint64
	tooManyConns      atomic.Uint64
	socketFull        atomic.Uint64 // flusher writes that a viewer's socket did not take whole
}

// protocol is how a client reached us; it indexes the counters.
type protocol uint8

const (
	protoRTMP protocol = iota // RTMP and RTMPS
	protoHTTP                 // HTTP-FLV
	protoWS                   // WebSocket-FLV
	protoCount
)

var protocols = [protoCount]protocol{protoRTMP, protoHTTP, protoWS}

func (p protocol) String() string {
	switch p {
	case protoRTMP:
		return "rtmp"
	case protoHTTP:
		return "http"
	case protoWS:
		return "ws"
	}
	return fmt.Sprintf("protocol(%d)", uint8(p))
}

// MarshalText names the protocol in JSON, logs and hook bodies.
func (p protocol) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

func (p *protocol) UnmarshalText(b []byte) error {
	for _, q := range protocols {
		if q.String() == string(b) {
			*p = q
			return nil
		}
	}
	return fmt.Errorf("unknown protocol %q", b)
}

// action is a lifecycle event, as the API's event stream and the hooks
// name it (NMS's hook actions).
type action string

const (
	actPublish   action = "publish"
	actUnpublish action = "unpublish"
	actPlay      action = "play"
	actStop      action = "stop"
	actKick      action = "kick"
)

func newHub(cfg *config, log *slog.Logger) *hub {
	h := &hub{
		cfg:      cfg,
		log:      log,
		ops:      make(chan hubOp, 1024),
		done:     make(chan struct{}),
		streams:  map[streamKey]*stream{},
		watchers: map[chan hubEvent]struct{}{},
	}
	for range runtime.GOMAXPROCS(0) {
		f := newFlusher(cfg.WriteDelay)
		f.hub, f.index = h, len(h.flushers)
		h.flushers = append(h.flushers, f)
	}
	h.dirty = make([][]*subscriber, len(h.flushers))
	return h
}

// run serves requests until ctx ends. Then it ends every subscription.
func (h *hub) run(ctx context.Context) {
	defer close(h.done)
	var wg sync.WaitGroup
	defer wg.Wait()
	for _, f := range h.flushers {
		wg.Go(func() { f.run(ctx) })
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case now := <-tick.C:
			for _, s := range h.streams {
				s.stats.sample(now, s)
			}
		case <-ctx.Done():
			for _, s := range h.streams {
				for sub := range s.subs {
					sub.end(errSubscriptionEnded)
				}
			}
			return
		case op := <-h.ops:
			if op.fn != nil {
				op.fn()
			} else {
				h.onFrame(op.pub, op.frame, op.kind)
			}
			h.handOver()
		}
	}
}

// handOver gives the players that got frames during an op to their
// flushers.
func (h *hub) handOver() {
	for i, subs := range h.dirty {
		if len(subs) > 0 {
			h.flushers[i].list(subs...)
			clear(subs)
			h.dirty[i] = subs[:0]
		}
	}
}

// call runs fn on the hub goroutine and waits for it.
func (h *hub) call(fn func()) error {
	ran := make(chan struct{})
	select {
	case h.ops <- hubOp{fn: func() { fn(); close(ran) }}:
	case <-h.done:
		return errHubClosed
	}
	select {
	case <-ran:
		return nil
	case <-h.done:
		return errHubClosed
	}
}

// stream is one app/name: its publisher (or none yet), its subscribers and
// what a late joiner needs.
type stream struct {
	key     streamKey
	pub     *publisher
	subs    map[*subscriber]struct{}
	started time.Time

	meta, audioHeader, videoHeader *frame
	metaInfo                       *metaInfo
	videoFirst                     bool     // the video sequence header came before the audio one
	gop                            []*frame // from the last keyframe; nil when not caching
	gopBytes                       int
	hasAudio, hasVideo             bool

	stats     streamStats
	bytesGone uint64 // bytes sent to players that have left
}

func (h *hub) stream(key streamKey) *stream {
	s := h.streams[key]
	if s == nil {
		s = &stream{key: key, subs: map[*subscriber]struct{}{}}
		h.streams[key] = s
	}
	return s
}

// dropIfIdle removes a stream with no publisher and no players.
func (h *hub) dropIfIdle(s *stream) {
	if s.pub == nil && len(s.subs) == 0 {
		delete(h.streams, s.key)
	}
}

// ---- Admission ----

// ---- Publishing ----

// publisher is the hub's handle for one publishing connection.
type publisher struct {
	hub       *hub
	key       streamKey
	info      clientInfo
	kick      func()
	bytesIn   func() uint64
	lastMedia atomic.Int64 // unix nanoseconds of the last media message

	// Owned by the publishing goroutine.
	enc publishState
}

// publish makes pub the stream's publisher. A live name is refused unless
// its publisher has gone silent (a dead encoder whose socket has not timed
// out yet), in which case the old one is kicked and the new one takes over.
func (h *hub) publish(key streamKey, info clientInfo, bytesIn func() uint64, kick func()) (*publisher, error) {
	p := &publisher{hub: h, key: key, info: info, bytesIn: bytesIn, kick: kick}
	p.lastMedia.Store(time.Now().UnixNano())
	var err error
	callErr := h.call(func() {
		s := h.stream(key)
		if old := s.pub; old != nil {
			silent := time.Since(time.Unix(0, old.lastMedia.Load()))
			if silent < staleAfter {
				err = errStreamBusy
				return
			}
			h.log.Info("replacing silent publisher", "stream", key.String(), "old", old.info.ID, "silent", silent.Round(time.Millisecond))
			old.kick()
			h.endPublish(s)
		}
		s.pub = p
		s.started = time.Now()
		s.stats = streamStats{}
		h.emit(actPublish, key, info, "")
		notify := rtmpPublishNotify(key, h.cfg.ChunkSize)
		for sub := range s.subs {
			sub.waitKey, sub.started = false, false
			if sub.form == formatRTMP {
				h.push(s, sub, notify)
			}
		}
	})
	if callErr != nil {
		return nil, callErr
	}
	return p, err
}

// write encodes one message from the publisher and hands it to the hub.
// payload is only borrowed: it is copied into the encoded forms.
func (p *publisher) write(typ uint8, ts uint32, payload []byte) error {
	p.lastMedia.Store(time.Now().UnixNano())
	f, kind := p.enc.encode(typ, ts, payload, p.hub.cfg.ChunkSize)
	if f == nil {
		return nil
	}
	select {
	case p.hub.ops <- hubOp{pub: p, frame: f, kind: kind}:
		return nil
	case <-p.hub.done:
		return errHubClosed
	}
}

func (h *hub) unpublish(p *publisher) {
	h.call(func() {
		s := h.streams[p.key]
		if s == nil || s.pub != p {
			return
		}
		h.endPublish(s)
		h.dropIfIdle(s)
	})
}

// endPublish ends the current publish: HTTP players' responses end, RTMP
// players get UnpublishNotify and Stream EOF and wait for the next
// publisher, as NMS players do.
func (h *hub) endPublish(s *stream) {
	h.emitBytes(actUnpublish, s.key, s.pub.info, "", s.pub.bytesIn())
	s.pub = nil
	s.meta, s.audioHeader, s.videoHeader, s.metaInfo = nil, nil, nil, nil
	s.gop, s.gopBytes = nil, 0
	s.hasAudio, s.hasVideo = false, false
	notify := rtmpUnpublishNotify(s.key, h.cfg.ChunkSize)
	for sub := range s.subs {
		if sub.form != formatRTMP {
			h.removeSub(s, sub, "stream ended")
			sub.end(errSubscriptionEnded)
			continue
		}
		sub.waitKey = true
		sub.started = false
		h.push(s, sub, notify)
	}
}

// frameKind says how the hub treats a frame.
type frameKind int

const (
	kindMedia frameKind = iota
	kindMeta
	kindAudioHeader
	kindVideoHeader
)

func (h *hub) onFrame(p *publisher, f *frame, kind frameKind) {
	s := h.streams[p.key]
	if s == nil || s.pub != p {
		return // a kicked or replaced publisher's last frames
	}
	s.stats.onFrame(f, kind)
	switch kind {
	case kindMeta:
		s.meta, s.metaInfo = f, f.meta
	case kindAudioHeader:
		if s.audioHeader == nil {
			s.videoFirst = s.videoHeader != nil
		}
		s.audioHeader = f
		s.hasAudio = true
	case kindVideoHeader:
		if s.videoHeader == nil {
			s.videoFirst = s.audioHeader == nil
		}
		s.videoHeader = f
		s.hasVideo = true
	case kindMedia:
		switch f.typ {
		case msgAudio:
			s.hasAudio = true
		case msgVideo:
			s.hasVideo = true
		}
		h.cacheGOP(s, f)
	}
	for sub := range s.subs {
		h.deliver(s, sub, f, kind)
	}
}

// cacheGOP keeps the frames since the last keyframe, up to a cap; past
// the cap it stops caching until the next keyframe.
func (h *hub) cacheGOP(s *stream, f *frame) {
	if !h.cfg.GOPCache {
		return
	}
	if f.key {
		s.gop, s.gopBytes = []*frame{f}, f.size() // a new slice: joiners may hold the old one
		return
	}
	if s.gop == nil {
		return
	}
	if len(s.gop) >= gopMaxFrames || s.gopBytes+f.size() > gopMaxBytes {
		s.gop, s.gopBytes = nil, 0
		return
	}
	s.gop = append(s.gop, f)
	s.gopBytes += f.size()
}

// ---- Playing ----

// subscriber is one player's bounded queue. The hub goroutine pushes
// without ever blocking; the player's writer goroutine drains it.
type subscriber struct {
	hub  *hub
	key  streamKey
	info clientInfo
	form outputFormat

	// The queue: the hub appends, the writer takes all at once. A mutex
	// and a slice, not a channel: a push is the hub's only cost per
	// viewer per frame, and a batch comes out in one step.
	qmu sync.Mutex
	// listed: on flusher's list of players to visit. Next to qmu: the hub
	// and the flusher touch both together, so they share a cache line.
	listed atomic.Bool
	q      []*frame      // guarded by qmu; at most subQueueFrames
	ready  chan struct{} // cap 1: q has frames; for run, not for flushers
	queued atomic.Int64  // bytes in q
	// flusher takes from q once set; then nobody waits on ready.
	flusher atomic.Pointer[flusher]
	hangup  func()
	burst   []*frame // the join burst (GOP cache), written before q
	done    chan struct{}
	err     error // why done was closed; written before close(done)

	drops, bytesOut         atomic.Uint64
	noAudio, noVideo, pause atomic.Bool

	// Owned by whoever writes for it: its own goroutine (run), or a
	// flusher while it holds out.mu (see serve).
	waitVideoKey bool // after an unpause: skip video until a keyframe
	out          *sink
	detached     bool          // its goroutine has taken it back from the flusher; guarded by out.mu
	failed       chan struct{} // closed by the flusher when a write fails
	writeErr     error

	// Owned by the hub goroutine.
	waitKey     bool      // skipping until the next keyframe
	started     bool      // the FLV header has been queued
	behindSince time.Time // when it started skipping; zero when in step
	ended       bool
	lastDropLog time.Time
}

// subscribe adds a player to key's stream, creating the stream if nobody
// publishes it yet: the player then waits for a publisher. hangup, if not
// nil, closes the player's connection: the hub calls it when it drops a
// player, so that a writer stuck on a full socket ends at once.
func (h *hub) subscribe(key streamKey, info clientInfo, form outputFormat, hangup func()) *subscriber {
	sub := &subscriber{
		hub:     h,
		key:     key,
		info:    info,
		form:    form,
		hangup:  hangup,
		ready:   make(chan struct{}, 1),
		done:    make(chan struct{}),
		waitKey: true,
	}
	err := h.call(func() {
		s := h.stream(key)
		s.subs[sub] = struct{}{}
		h.emit(actPlay, key, info, "")
		if s.pub == nil || len(s.gop) == 0 {
			return // headers and frames come at the next keyframe
		}
		burst := make([]*frame, 0, 4+len(s.gop))
		burst = append(burst, h.flvHeader(s))
		burst = append(burst, h.joinHeaders(s)...)
		sub.burst = append(burst, s.gop...)
		sub.waitKey, sub.started = false, true
	})
	if err != nil {
		sub.end(err)
	}
	return sub
}

// flvHeader is the FLV header with the stream's real audio/video flags,
// from what the metadata declares and what has arrived.
func (h *hub) flvHeader(s *stream) *frame {
	hasAudio, hasVideo := s.hasAudio, s.hasVideo
	if m := s.metaInfo; m != nil {
		hasAudio = hasAudio || m.hasAudio
		hasVideo = hasVideo || m.hasVideo
	}
	return &frame{flv: appendFLVHeader(nil, hasAudio, hasVideo)}
}

// joinHeaders is what a player needs before its first keyframe:
// metadata and sequence headers, as far as the stream has them.
func (h *hub) joinHeaders(s *stream) []*frame {
	var out []*frame
	headers := []*frame{s.meta, s.audioHeader, s.videoHeader}
	if s.videoFirst {
		headers[1], headers[2] = headers[2], headers[1] // keep the publisher's order
	}
	for _, f := range headers {
		if f != nil {
			out = append(out, f)
		}
	}
	return out
}

func (h *hub) unsubscribe(sub *subscriber) {
	h.call(func() {
		if s := h.streams[sub.key]; s != nil {
			h.removeSub(s, sub, "")
			h.dropIfIdle(s)
		}
		sub.end(errSubscriptionEnded)
	})
}

// removeSub takes sub out of s, once, keeping its bytes in the stream's
// total and telling watchers.
func (h *hub) removeSub(s *stream, sub *subscriber, reason string) {
	if _, ok := s.subs[sub]; !ok {
		return
	}
	delete(s.subs, sub)
	s.bytesGone += sub.bytesOut.Load()
	h.emitBytes(actStop, s.key, sub.info, reason, sub.bytesOut.Load())
}

// deliver gives f to sub, or skips it. A subscriber whose queue is full
// drops frames until the next keyframe, then gets the sequence headers
// again with it; one that cannot catch up for maxBehind is disconnected.
func (h *hub) deliver(s *stream, sub *subscriber, f *frame, kind frameKind) {
	if sub.waitKey {
		h.resync(s, sub, f)
		return
	}
	if !sub.started {
		// A player that waited for this publisher starts at its first
		// audio or video frame, with the metadata and sequence headers
		// that came before it from the cache: no frame is lost, and by
		// then the FLV header's flags can say what the stream really has
		// (some encoders' first metadata leaves a codec out).
		if kind != kindMedia || f.typ != msgAudio && f.typ != msgVideo {
			return
		}
		h.push(s, sub, h.flvHeader(s))
		for _, jf := range h.joinHeaders(s) {
			h.push(s, sub, jf)
		}
		sub.started = true
		h.startNow()
	}
	if !h.push(s, sub, f) {
		sub.waitKey = true
		sub.behindSince = time.Now()
	}
}

// resync starts (or restarts) a player at a keyframe: FLV header if it
// has none yet, metadata and sequence headers (they may have changed while
// it skipped), then the keyframe, all or nothing.
func (h *hub) resync(s *stream, sub *subscriber, f *frame) {
	if !f.key {
		if !sub.behindSince.IsZero() {
			sub.drops.Add(1)
			h.counters.drops.Add(1)
		}
		return
	}
	var join []*frame
	if !sub.started {
		join = append(join, h.flvHeader(s))
		defer h.startNow()
	}
	join = append(join, h.joinHeaders(s)...)
	join = append(join, f)
	if !sub.fits(join) {
		sub.drops.Add(1)
		h.counters.drops.Add(1)
		if !sub.behindSince.IsZero() && time.Since(sub.behindSince) > maxBehind {
			h.kickSub(s, sub, errViewerTooSlow)
		}
		return
	}
	for _, jf := range join {
		h.push(s, sub, jf)
	}
	sub.waitKey, sub.started = false, true
	sub.behindSince = time.Time{}
}

// startNow has the flushers write at once, not at their next tick: a new
// viewer's first keyframe goes out without the write delay.
func (h *hub) startNow() {
	for _, f := range h.flushers {
		f.urgent.Store(true)
	}
}

// push queues f for sub without blocking; false when the queue is full.
func (h *hub) push(s *stream, sub *subscriber, f *frame) bool {
	b := f.bytes(sub.form)
	if b == nil {
		return true // nothing to send in this form
	}
	maxBytes, maxFrames := int64(h.cfg.QueueBytes), subQueueFrames
	if f.typ == 0 {
		maxBytes, maxFrames = maxBytes+statusSlackBytes, maxFrames+statusSlackFrames
	}
	if sub.queued.Load()+int64(len(b)) > maxBytes {
		h.dropped(sub)
		return false
	}
	sub.qmu.Lock()
	if len(sub.q) >= maxFrames {
		sub.qmu.Unlock()
		h.dropped(sub)
		return false
	}
	sub.q = append(sub.q, f)
	sub.qmu.Unlock()
	sub.queued.Add(int64(len(b)))
	if fl := sub.flusher.Load(); fl == nil {
		select {
		case sub.ready <- struct{}{}:
		default:
		}
	} else if !sub.listed.Load() && !sub.listed.Swap(true) { // Load first: no write while it is listed
		h.dirty[fl.index] = append(h.dirty[fl.index], sub)
	}
	return true
}

// queueLen is the number of frames in sub's queue.
func (sub *subscriber) queueLen() int {
	sub.qmu.Lock()
	defer sub.qmu.Unlock()
	return len(sub.q)
}

// dropped counts a drop and logs at most one line per viewer per 10 s.
func (h *hub) dropped(sub *subscriber) {
	h.counters.drops.Add(1)
	n := sub.drops.Add(1)
	if time.Since(sub.lastDropLog) > 10*time.Second {
		sub.lastDropLog = time.Now()
		h.log.Warn("viewer too slow: skipping to next keyframe", "conn", sub.info.ID, "proto", sub.info.Protocol,
			"stream", sub.key.String(), "drops", n)
	}
}

func (sub *subscriber) fits(fs []*frame) bool {
	n := 0
	for _, f := range fs {
		n += len(f.bytes(sub.form))
	}
	return sub.queueLen()+len(fs) <= subQueueFrames && sub.queued.Load()+int64(n) <= int64(sub.hub.cfg.QueueBytes)
}

func (h *hub) kickSub(s *stream, sub *subscriber, err error) {
	h.counters.kicks.Add(1)
	h.removeSub(s, sub, err.Error())
	h.log.Warn("disconnecting viewer", "conn", sub.info.ID, "stream", s.key.String(), "reason", err, "drops", sub.drops.Load())
	sub.end(err)
	if sub.hangup != nil {
		sub.hangup()
	}
}

// end closes the subscription once; the writer drains what is queued
// (unless err says to stop now) and returns err.
func (sub *subscriber) end(err error) {
	if sub.ended {
		return
	}
	sub.ended = true
	sub.err = err
	close(sub.done)
}

func (sub *subscriber) setReceive(audio, on bool) {
	if audio {
		sub.noAudio.Store(!on)
	} else {
		sub.noVideo.Store(!on)
	}
}

func (sub *subscriber) setPaused(p bool) { sub.pause.Store(p) }

// run is the player's writer loop: it sends the join burst, then drains
// the queue, writing everything that has piled up in one writev (derp's
// sendLoop shape: drain without flushing, flush when empty, then block).
// With a write delay it writes at most once per delay, so that a viewer
// costs a few large writes a second instead of one per frame; a viewer
// that has been idle that long is written to at once.
// It returns when the subscription ends or a write fails.
func (sub *subscriber) run(write func(*net.Buffers) error) error {
	bufs := make(net.Buffers, 0, 64)
	if err := sub.send(sub.burst, &bufs, write); err != nil {
		return err
	}
	sub.burst = nil
	delay := sub.hub.cfg.WriteDelay
	var lastWrite time.Time
	var timer *time.Timer
	batch := make([]*frame, 0, 64)
	for {
		// Sleep out the rest of the delay first: while frames keep coming,
		// this timer is the writer's only wake-up per write.
		if wait := time.Until(lastWrite.Add(delay)); delay > 0 && wait > 0 {
			if timer == nil {
				timer = time.NewTimer(wait)
				defer timer.Stop()
			} else {
				timer.Reset(wait)
			}
			select {
			case <-timer.C:
			case <-sub.done:
			}
		}
		batch = sub.drain(batch)
		for len(batch) == 0 && !sub.isDone() {
			// Idle for at least the delay: the next frame goes out at once.
			select {
			case <-sub.ready:
				batch = sub.drain(batch)
			case <-sub.done:
			}
		}
		select {
		case <-sub.done:
			if !errors.Is(sub.err, errSubscriptionEnded) {
				return sub.err
			}
			// Send what was queued before the end, then stop.
			if batch = sub.drain(batch); len(batch) == 0 {
				return sub.err
			}
		default:
		}
		sub.dequeued(batch)
		if err := sub.send(batch, &bufs, write); err != nil {
			return err
		}
		if delay > 0 {
			lastWrite = time.Now()
		}
		clear(batch)
		batch = batch[:0]
	}
}

// dequeued takes batch's bytes off the queue's count.
func (sub *subscriber) dequeued(batch []*frame) {
	var n int64
	for _, f := range batch {
		n += int64(len(f.bytes(sub.form)))
	}
	sub.queued.Add(-n)
}

// drain moves what is queued now into batch, without blocking.
func (sub *subscriber) drain(batch []*frame) []*frame {
	sub.qmu.Lock()
	defer sub.qmu.Unlock()
	batch = append(batch, sub.q...)
	clear(sub.q)
	sub.q = sub.q[:0]
	return batch
}

func (sub *subscriber) isDone() bool {
	select {
	case <-sub.done:
		return true
	default:
		return false
	}
}

// send writes the frames of a batch that this player wants, in one write.
func (sub *subscriber) send(batch []*frame, bufs *net.Buffers, write func(*net.Buffers) error) error {
	*bufs = (*bufs)[:0]
	var total int
	for _, f := range batch {
		b := f.bytes(sub.form)
		if len(b) == 0 || sub.skip(f) {
			continue
		}
		*bufs = append(*bufs, b)
		total += len(b)
	}
	if total == 0 {
		return nil
	}
	all := *bufs
	err := write(bufs)
	clear(all) // drop references to frames the writer is done with
	*bufs = all[:0]
	sub.bytesOut.Add(uint64(total))
	return err
}

// skip applies pause and receiveAudio/receiveVideo to one frame.
func (sub *subscriber) skip(f *frame) bool {
	if f.typ != msgAudio && f.typ != msgVideo {
		return false
	}
	if sub.pause.Load() {
		sub.waitVideoKey = true
		return true
	}
	if f.typ == msgAudio {
		return sub.noAudio.Load()
	}
	if sub.waitVideoKey && !f.key {
		return true
	}
	sub.waitVideoKey = false
	return sub.noVideo.Load()
}

// ---- Writing to players ----

// sink is the write side of a player's connection. The fan-out writes
// media to it and the connection its own messages (RTMP status and pings,
// WebSocket pongs and Close), all under mu, so that nothing lands inside a
// half-written batch.
type sink struct {
	nc net.Conn
	// writeNonblock writes what the socket takes now, never waiting; nil
	// when there is no such write (TLS, or not Linux): blocking writes only.
	writeNonblock func(net.Buffers) (int, error)
	timeout       time.Duration  // of a blocking write
	ws            bool           // each media batch goes out as one WebSocket binary message
	total         *atomic.Uint64 // the server's bytes out
	bytesOut      atomic.Uint64

	mu        sync.Mutex
	pending   net.Buffers // what a non-blocking write left over
	pendStore net.Buffers // pending's backing array
	flusher   *flusher    // while one writes the media: messages of our own queue behind pending
	sub       *subscriber // whose media the flusher writes
	queuedOwn int         // bytes of our own messages in pending
	moved     time.Time   // when pending last shrank, or became non-empty
	deadline  writeDeadline
	wsHeader  [10]byte
	framed    net.Buffers
}

func newSink(nc net.Conn, timeout time.Duration, ws bool, total *atomic.Uint64) *sink {
	return &sink{nc: nc, writeNonblock: newNonblockWriter(nc), timeout: timeout, ws: ws, total: total}
}

// maxQueuedOwn bounds the connection's own messages waiting behind media
// for a player that does not read: a client that keeps sending pings and
// reads nothing must not grow our memory.
const maxQueuedOwn = 64 << 10

var (
	errPlayerNotReading = errors.New("player reads nothing: its own messages piled up")
	errWriteStalled     = errors.New("write timeout: player took nothing for the ping timeout")
)

// write sends b, one message of the connection's own, after anything
// pending. While a flusher writes the media it never blocks: b goes behind
// what is pending and the flusher sends the rest (a blocking write there
// would hold mu, and the flusher with it, for as long as a slow player
// takes to drain its socket). Otherwise it blocks up to the timeout.
func (o *sink) write(b []byte) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.flusher != nil {
		if o.queuedOwn += len(b); o.queuedOwn > maxQueuedOwn {
			return errPlayerNotReading
		}
		if len(o.pending) == 0 {
			o.moved = time.Now()
		}
		o.pending = append(o.pending, bytes.Clone(b))
		o.pendStore = o.pending
		err := o.tryWrite(o.pending)
		if len(o.pending) > 0 {
			o.flusher.visit(o.sub) // the rest goes out with the next pass
		}
		return err
	}
	if err := o.finishPending(); err != nil {
		return err
	}
	n, err := o.nc.Write(b)
	o.count(n)
	return err
}

// writeMedia sends one batch of media after anything pending, blocking.
func (o *sink) writeMedia(bufs *net.Buffers) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if err := o.finishPending(); err != nil {
		return err
	}
	b := *o.frame(bufs) // a copy: WriteTo consumes it
	n, err := b.WriteTo(o.nc)
	o.count(int(n))
	return err
}

// flush finishes what a non-blocking write left, blocking.
func (o *sink) flush() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.finishPending()
}

// finishPending writes what is pending, blocking; it also moves the write
// deadline for the blocking write its callers make next. mu is held.
func (o *sink) finishPending() error {
	o.deadline.refresh(o.nc, o.timeout)
	if len(o.pending) == 0 {
		return nil
	}
	n, err := o.pending.WriteTo(o.nc)
	o.count(int(n))
	o.dropPending()
	return err
}

// dropPending forgets what was pending (it has been written), keeping no
// references into frames. mu is held.
func (o *sink) dropPending() {
	clear(o.pendStore)
	o.pending, o.queuedOwn = nil, 0
}

// writeNow sends one batch of media without blocking; what the socket does
// not take now stays pending. mu is held and nothing is pending.
func (o *sink) writeNow(bufs *net.Buffers) error {
	return o.tryWrite(*o.frame(bufs))
}

// tryWrite writes what b's socket takes now and keeps the rest pending.
// mu is held.
func (o *sink) tryWrite(b net.Buffers) error {
	o.deadline.refresh(o.nc, o.timeout) // an expired deadline fails even a non-blocking write
	now := time.Now()
	if len(o.pending) == 0 {
		o.moved = now // a fresh batch: the stall clock starts here
	}
	n, err := o.writeNonblock(b)
	o.count(n)
	if err != nil {
		return err
	}
	if n > 0 {
		o.moved = now
	}
	for len(b) > 0 && n >= len(b[0]) {
		n -= len(b[0])
		b = b[1:]
	}
	if len(b) > 0 {
		rest := b[0][n:]
		o.pending = append(append(o.pendStore[:0], rest), b[1:]...)
		o.pendStore = o.pending
	} else {
		o.dropPending()
		return nil
	}
	// A player that takes nothing for the timeout is gone, like one whose
	// blocking write times out (a new frame would find it too slow, but
	// on a stream that has stopped no frame comes).
	if now.Sub(o.moved) > o.timeout {
		return errWriteStalled
	}
	return nil
}

// frame puts a WebSocket frame header before bufs over WS. mu is held.
func (o *sink) frame(bufs *net.Buffers) *net.Buffers {
	if !o.ws {
		return bufs
	}
	var n int
	for _, b := range *bufs {
		n += len(b)
	}
	o.framed = append(append(o.framed[:0], appendWSHeader(o.wsHeader[:0], wsOpBinary, n)), *bufs...)
	return &o.framed
}

func (o *sink) count(n int) {
	o.bytesOut.Add(uint64(n))
	o.total.Add(uint64(n))
}

// serve writes the subscription to out until it ends or a write fails. A
// player on a plain TCP socket is written to by a flusher, together with
// the other players of that flusher and without blocking; its own
// goroutine only waits here. The others (TLS) get run, a blocking writer
// of their own.
func (sub *subscriber) serve(out *sink) error {
	sub.out = out
	if out.writeNonblock == nil {
		return sub.run(out.writeMedia)
	}
	var bufs net.Buffers
	if err := sub.send(sub.burst, &bufs, out.writeMedia); err != nil {
		return err // the join burst goes out at once
	}
	sub.burst = nil
	sub.failed = make(chan struct{})
	f := sub.hub.flushers[sub.hub.nextFlusher.Add(1)%uint64(len(sub.hub.flushers))]
	out.mu.Lock()
	out.flusher, out.sub = f, sub
	out.mu.Unlock()
	sub.flusher.Store(f)
	f.visit(sub) // for what was queued before
	select {
	case <-sub.done:
	case <-sub.failed:
	}
	out.mu.Lock()
	sub.detached = true // the flusher will not touch it again
	out.flusher = nil
	err := sub.writeErr
	out.mu.Unlock()
	if err != nil {
		return err
	}
	if !errors.Is(sub.err, errSubscriptionEnded) {
		return sub.err
	}
	// Send what was pending and queued before the end, then stop.
	batch := sub.drain(nil)
	sub.dequeued(batch)
	if err := out.flush(); err != nil {
		return err
	}
	if err := sub.send(batch, &bufs, out.writeMedia); err != nil {
		return err
	}
	return sub.err
}

// flusher writes to its share of the players on plain TCP sockets: after
// frames arrive, one pass over those that got some, one non-blocking
// writev each. With a write delay it makes at most one pass per delay, on
// a grid of instants that all flushers share, so that one wake-up serves
// every viewer and the writes of all streams go out together.
type flusher struct {
	hub    *hub
	index  int // in hub.flushers
	delay  time.Duration
	wake   chan struct{} // cap 1: frames were queued
	urgent atomic.Bool   // a new viewer starts: pass now, whatever the delay
	mu     sync.Mutex
	// dirty lists the players the next pass visits: those that got frames
	// since the last (a player is on it once, see subscriber.listed), and
	// those the last left with bytes pending. A pass costs what its
	// players have to write, not how many players are idle. Guarded by mu.
	dirty    []*subscriber
	passTime atomic.Int64  // how long a pass takes, ns, smoothed over about 8 passes
	visits   atomic.Uint64 // players visited by passes so far

	// Owned by run.
	pass  []*subscriber
	again []*subscriber // to visit next pass as well
	batch []*frame
	bufs  net.Buffers
	retry bool // a socket was full: try again even if no frame comes
}

// pendingRetry is how soon a flusher tries a full socket again when no
// frame wakes it.
const pendingRetry = 20 * time.Millisecond

func newFlusher(delay time.Duration) *flusher {
	return &flusher{delay: delay, wake: make(chan struct{}, 1)}
}

func (f *flusher) poke() {
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// list puts players on the next pass, and wakes the flusher. The caller
// has set their listed flags.
func (f *flusher) list(subs ...*subscriber) {
	f.mu.Lock()
	f.dirty = append(f.dirty, subs...)
	f.mu.Unlock()
	f.poke()
}

// visit puts sub on the next pass unless it is on it already.
func (f *flusher) visit(sub *subscriber) {
	if !sub.listed.Load() && !sub.listed.Swap(true) {
		f.list(sub)
	}
}

func (f *flusher) run(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var last time.Time // when the last pass was due
	for {
		var retry <-chan time.Time
		if f.retry {
			timer.Reset(max(f.delay, pendingRetry))
			retry = timer.C
		}
		select {
		case <-f.wake:
		case <-retry:
		case <-ctx.Done():
			return
		}
		due := time.Now()
		if next := last.Add(f.delay); f.delay > 0 && due.Before(next) && !f.urgent.Swap(false) {
			lead := time.Duration(0)
			if f.hub.passesShort() {
				lead = ingestLead // publishers are read on the grid instant
			}
			due = gridCeil(next.Add(-lead), f.delay).Add(lead)
			timer.Reset(time.Until(due))
			select {
			case <-timer.C:
			case <-ctx.Done():
				return
			}
		}
		last = due
		start := time.Now()
		f.flushAll()
		// A smoothed pass time, so that publishers and flushers see the
		// same mode from one tick to the next (see passesShort).
		avg := f.passTime.Load()
		f.passTime.Store(avg - avg/8 + int64(time.Since(start))/8)
	}
}

var gridEpoch = time.Now()

// ingestLead is how long after a grid instant the flushers pass while
// publishers are read on the instant itself (waitForTick): what they read
// then should make this pass. With 20 publishers on 2 cores reading them
// all takes about 2 ms; at a 2 ms lead p99 delay was 89-95 ms, at 5 ms 58.
const ingestLead = 5 * time.Millisecond

// passesShort reports whether every flusher's passes take less than
// shortPass. While passes are long (a thousand viewers on a busy machine
// take tens of milliseconds), frames that arrive during a pass still reach
// the viewers it has not visited yet, but only if publishers are read at
// once; batching their reads would then add delay.
func (h *hub) passesShort() bool {
	for _, f := range h.flushers {
		if f.passTime.Load() >= int64(shortPass) {
			return false
		}
	}
	return true
}

const shortPass = 5 * time.Millisecond

// gridCeil is the first instant at or after t on the grid of period d.
func gridCeil(t time.Time, d time.Duration) time.Time {
	off := t.Sub(gridEpoch) % d
	if off < 0 {
		off += d // t before the epoch (tests in fake time)
	}
	if off == 0 {
		return t
	}
	return t.Add(d - off)
}

func (f *flusher) flushAll() {
	f.mu.Lock()
	f.pass, f.dirty = f.dirty, f.pass
	f.mu.Unlock()
	f.visits.Add(uint64(len(f.pass)))
	for _, sub := range f.pass {
		// Unlisted before its queue is drained: a frame pushed from here
		// on lists it again.
		sub.listed.Store(false)
		if !f.flush(sub) {
			f.again = append(f.again, sub)
		}
	}
	clear(f.pass)
	f.pass = f.pass[:0]
	// Players with full sockets: on the next pass too, which the retry
	// timer brings (a poke would spin on a socket that stays full).
	f.retry = len(f.again) > 0
	f.mu.Lock()
	for _, sub := range f.again {
		if !sub.listed.Swap(true) {
			f.dirty = append(f.dirty, sub)
		}
	}
	f.mu.Unlock()
	clear(f.again)
	f.again = f.again[:0]
}

// flush writes what is pending and queued for sub, without blocking. It
// reports whether sub is done with until more frames come; false means
// the next pass must visit it again.
func (f *flusher) flush(sub *subscriber) bool {
	o := sub.out
	if !o.mu.TryLock() {
		return false // its connection is writing a message of its own
	}
	defer o.mu.Unlock()
	if sub.detached || sub.writeErr != nil {
		return true
	}
	if err := f.write(sub); err != nil {
		sub.writeErr = err
		close(sub.failed)
		return true
	}
	if len(o.pending) > 0 {
		sub.hub.counters.socketFull.Add(1)
		return false
	}
	return true
}

func (f *flusher) write(sub *subscriber) error {
	o := sub.out
	if len(o.pending) > 0 {
		if err := o.tryWrite(o.pending); err != nil || len(o.pending) > 0 {
			return err // still full: the queue takes what comes meanwhile
		}
	}
	f.batch = sub.drain(f.batch[:0])
	if len(f.batch) == 0 {
		return nil
	}
	sub.dequeued(f.batch)
	err := sub.send(f.batch, &f.bufs, o.writeNow)
	clear(f.batch)
	return err
}

// ---- Stats and events ----

type clientSnapshot struct {
	clientInfo
	Bytes, Drops uint64
	Queue        int   // messages waiting in its queue
	QueueBytes   int64 // bytes waiting in its queue
}

type streamSnapshot struct {
	Key         streamKey
	Publisher   *clientSnapshot // nil while players wait for one
	Subscribers []clientSnapshot
	Started     time.Time
	Video       *videoParams // nil when the stream has no video (yet)
	Audio       *audioParams
	Meta        amfObject
	FramesIn    uint64
	// kbit/s over the last second and the last 30 s.
	BitrateIn, BitrateOut, BitrateIn30, BitrateOut30 float64
}

// snapshot returns the state of every stream, for the API.
func (h *hub) snapshot() []streamSnapshot {
	var out []streamSnapshot
	h.call(func() {
		for _, s := range h.streams {
			out = append(out, s.snapshot())
		}
	})
	return out
}

func (s *stream) snapshot() streamSnapshot {
	ss := streamSnapshot{Key: s.key, Started: s.started, FramesIn: s.stats.framesIn}
	ss.BitrateIn, ss.BitrateOut, ss.BitrateIn30, ss.BitrateOut30 = s.stats.rates()
	if p := s.pub; p != nil {
		ss.Publisher = &clientSnapshot{clientInfo: p.info, Bytes: p.bytesIn()}
		if s.metaInfo != nil {
			ss.Meta = s.metaInfo.values
		}
		if v := s.stats.video; v.Codec != "" {
			ss.Video = &v
			fillFromMeta(ss.Video, ss.Meta)
		}
		if a := s.stats.audio; a.Codec != "" {
			ss.Audio = &a
		}
	}
	for sub := range s.subs {
		ss.Subscribers = append(ss.Subscribers, clientSnapshot{clientInfo: sub.info,
			Bytes: sub.bytesOut.Load(), Drops: sub.drops.Load(), Queue: sub.queueLen(), QueueBytes: sub.queued.Load()})
	}
	return ss
}

// fillFromMeta uses the metadata for what the sequence header did not tell.
func fillFromMeta(v *videoParams, meta amfObject) {
	if w, ok := meta.Number("width"); ok && v.Width == 0 {
		v.Width = int(w)
	}
	if h, ok := meta.Number("height"); ok && v.Height == 0 {
		v.Height = int(h)
	}
}

// hubEvent is one lifecycle event: publish, unpublish, play, stop, kick.
type hubEvent struct {
	Type   action
	Key    streamKey
	Client clientInfo
	Reason string
	Bytes  uint64 // on unpublish and stop: bytes received or sent
	Time   time.Time
}

// watch returns a channel of events. A watcher that falls 256 events
// behind loses events rather than holding up the hub.
func (h *hub) watch() (events <-chan hubEvent, stop func()) {
	ch := make(chan hubEvent, 256)
	h.call(func() { h.watchers[ch] = struct{}{} })
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			// After the hub has stopped nobody sends; before, the hub
			// goroutine removes the watcher; either way close is safe.
			h.call(func() { delete(h.watchers, ch) })
			close(ch)
		})
	}
}

func (h *hub) emit(typ action, key streamKey, c clientInfo, reason string) {
	h.emitBytes(typ, key, c, reason, 0)
}

func (h *hub) emitBytes(typ action, key streamKey, c clientInfo, reason string, n uint64) {
	ev := hubEvent{Type: typ, Key: key, Client: c, Reason: reason, Bytes: n, Time: time.Now()}
	for ch := range h.watchers {
		select {
		case ch <- ev:
		default:
		}
	}
}

// kickStream disconnects a stream's publisher; false if it has none.
func (h *hub) kickStream(key streamKey) bool {
	var p *publisher
	h.call(func() {
		if s := h.streams[key]; s != nil && s.pub != nil {
			p = s.pub
			h.emit(actKick, key, p.info, "by API")
		}
	})
	if p == nil {
		return false
	}
	h.counters.kicks.Add(1)
	p.kick()
	return true
}

// kickClient disconnects a publisher or player by client id.
func (h *hub) kickClient(id string) bool {
	var p *publisher
	found := false
	h.call(func() {
		for _, s := range h.streams {
			if s.pub != nil && s.pub.info.ID == id {
				p, found = s.pub, true
				h.emit(actKick, s.key, p.info, "by API")
				return
			}
			for sub := range s.subs {
				if sub.info.ID == id {
					h.emit(actKick, s.key, sub.info, "by API")
					h.kickSub(s, sub, errKicked)
					found = true
					return
				}
			}
		}
	})
	if p != nil {
		h.counters.kicks.Add(1)
		p.kick()
	}
	return found
}

// streamStats is measured by the hub goroutine as frames pass.
type streamStats struct {
	video      videoParams
	audio      audioParams
	framesIn   uint64
	videoTimes [32]uint32 // timestamps of the last video frames, a ring
	videoCount int
	lastKey    uint32 // timestamp of the last keyframe
	sinceKey   int    // video frames since it
	samples    [31]rateSample
	nsamples   int
}

// rateSample is the stream's byte counters at one second.
type rateSample struct{ in, out uint64 }

func (st *streamStats) onFrame(f *frame, kind frameKind) {
	payload := f.flv[flvTagHeaderLen : len(f.flv)-4]
	switch kind {
	case kindVideoHeader:
		fps, gop, gopSec := st.video.FPS, st.video.GOPFrames, st.video.GOPSeconds
		st.video = parseVideoHeader(payload)
		st.video.FPS, st.video.GOPFrames, st.video.GOPSeconds = fps, gop, gopSec
		return
	case kindAudioHeader:
		st.audio = parseAudioHeader(payload)
		return
	case kindMeta:
		if fr, ok := f.meta.values.Number("framerate"); ok {
			st.video.DeclaredFPS = fr
		}
		return
	}
	st.framesIn++
	if f.typ == msgAudio && st.audio.Codec == "" {
		st.audio = parseAudioHeader(payload)
	}
	if f.typ != msgVideo {
		return
	}
	if st.video.Codec == "" {
		st.video = parseVideoHeader(payload)
	}
	st.videoTimes[st.videoCount%len(st.videoTimes)] = f.time
	st.videoCount++
	// Frame rate from the timestamps of the last frames, not the metadata.
	if n := min(st.videoCount, len(st.videoTimes)); n >= 2 {
		first := st.videoTimes[(st.videoCount-n)%len(st.videoTimes)]
		if span := f.time - first; span > 0 && span < 1<<31 {
			st.video.FPS = math.Round(float64(n-1)*1000/float64(span)*100) / 100
		}
	}
	st.sinceKey++
	if f.key {
		if st.videoCount > 1 && f.time > st.lastKey {
			st.video.GOPFrames = st.sinceKey
			st.video.GOPSeconds = float64(f.time-st.lastKey) / 1000
		}
		st.lastKey, st.sinceKey = f.time, 0
		st.video.KeyframeBytes = len(payload)
	}
}

// sample records the byte counters once a second, for the bitrates.
func (st *streamStats) sample(now time.Time, s *stream) {
	var in uint64
	if s.pub != nil {
		in = s.pub.bytesIn()
	}
	out := s.bytesGone
	for sub := range s.subs {
		out += sub.bytesOut.Load()
	}
	copy(st.samples[1:], st.samples[:len(st.samples)-1])
	st.samples[0] = rateSample{in, out}
	st.nsamples = min(st.nsamples+1, len(st.samples))
}

// rates returns kbit/s in and out over the last second and the last 30 s.
func (st *streamStats) rates() (in1, out1, in30, out30 float64) {
	kbps := func(a, b rateSample, secs int) (float64, float64) {
		return math.Round(float64(a.in-min(a.in, b.in)) * 8 / 1000 / float64(secs)),
			math.Round(float64(a.out-min(a.out, b.out)) * 8 / 1000 / float64(secs))
	}
	if st.nsamples < 2 {
		return 0, 0, 0, 0
	}
	in1, out1 = kbps(st.samples[0], st.samples[1], 1)
	n := st.nsamples - 1
	in30, out30 = kbps(st.samples[0], st.samples[n], n)
	return in1, out1, in30, out30
}
