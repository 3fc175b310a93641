package main

// The hub owns the stream table. One goroutine runs it; publishers, players
// and the API talk to it through one channel, so the table, the GOP caches
// and the subscriber sets need no locks, and a publisher's media and its
// unpublish arrive in the order they were sent.

import (
	"context"
	"errors"
	"log/slog"
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
	// watchers get lifecycle events (the API's event stream, hooks); the
	// value, if not nil, hears of the events a watcher loses.
	watchers map[chan hubEvent]func(hubEvent)
	counters counters

	flushers []*flusher // write to players on plain TCP sockets
	clock    *writeClock
	// dirty holds, per flusher, the players that got frames during this
	// op and were not on its list yet; owned by the hub goroutine.
	dirty       [][]*subscriber
	nextFlusher atomic.Uint64
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
		watchers: map[chan hubEvent]func(hubEvent){},
	}
	h.clock = &writeClock{delay: cfg.WriteDelay}
	for range runtime.GOMAXPROCS(0) {
		f := newFlusher(cfg.WriteDelay)
		f.clock, f.index = h.clock, len(h.flushers)
		h.flushers = append(h.flushers, f)
	}
	h.clock.flushers = h.flushers
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
			h.sweepWaiting(time.Now())
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

// errNoPublisher ends a player that waited -play-wait for a publisher.
var errNoPublisher = errors.New(string(reasonNoPublisher))

// sweepWaiting ends the players that have waited config.PlayWait for a
// publisher: a player that waits forever holds a connection slot forever.
// A wait is timed from the first sweep that sees it (sweeps come once a
// second, so a player gives up between PlayWait and PlayWait + 2 s after
// its wait began), and restarts when a publisher has come since: an RTMP
// player stays through an unpublish and waits for the next publisher.
// Streams with a publisher cost nothing here.
func (h *hub) sweepWaiting(now time.Time) {
	if h.cfg.PlayWait <= 0 {
		return
	}
	for _, s := range h.streams {
		if s.pub != nil {
			continue
		}
		for sub := range s.subs {
			switch {
			case sub.waitingSince.IsZero() || s.started.After(sub.waitingSince):
				sub.waitingSince = now
			case now.Sub(sub.waitingSince) >= h.cfg.PlayWait:
				// Its front end tells it and closes it: RTMP
				// StreamNotFound (rtmp.go writeLoop), HTTP and WS the
				// end of the response (http.go flvPlayer.play).
				h.removeSub(s, sub, reasonNoPublisher)
				sub.end(errNoPublisher)
			}
		}
		h.dropIfIdle(s)
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

	// joinCache holds the join headers last stamped, for the next joiner
	// at the same frame (see joinHeaders).
	joinCache struct {
		from   [3]*frame
		ts     uint32
		frames []*frame
	}

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
		h.emit(actPublish, key, info, reasonNone)
		notices := noticeCache{}
		for sub := range s.subs {
			sub.waitKey, sub.started = false, false
			if n := notices.get(sub, playerForm.publishNotice, key); n != nil {
				h.push(s, sub, n)
			}
		}
	})
	if callErr != nil {
		return nil, callErr
	}
	return p, err
}

// ingest encodes one message from the publisher and hands it to the hub.
// payload is only borrowed: it is copied into the encoded forms.
func (p *publisher) ingest(typ uint8, ts uint32, payload []byte) error {
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

// endPublish ends the current publish. Players whose form has an
// unpublish notice get it and wait for the next publisher (RTMP players:
// UnpublishNotify and Stream EOF, as with NMS); the others' subscriptions
// end (HTTP-FLV and WS-FLV responses).
func (h *hub) endPublish(s *stream) {
	h.emitBytes(actUnpublish, s.key, s.pub.info, reasonNone, s.pub.bytesIn())
	s.pub = nil
	s.meta, s.audioHeader, s.videoHeader, s.metaInfo = nil, nil, nil, nil
	s.gop, s.gopBytes = nil, 0
	s.hasAudio, s.hasVideo = false, false
	s.joinCache.frames = nil
	notices := noticeCache{}
	for sub := range s.subs {
		n := notices.get(sub, playerForm.unpublishNotice, s.key)
		if n == nil {
			h.removeSub(s, sub, reasonStreamEnded)
			sub.end(errSubscriptionEnded)
			continue
		}
		sub.waitKey = true
		sub.started = false
		h.push(s, sub, n)
	}
}

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

// subscribe adds a player to key's stream, creating the stream if nobody
// publishes it yet: the player then waits for a publisher. form is the
// player's protocol's part (see playerForm). hangup, if not nil, closes the
// player's connection: the hub calls it when it drops a player, so that a
// writer stuck on a full socket ends at once.
func (h *hub) subscribe(key streamKey, info clientInfo, form playerForm, hangup func()) *subscriber {
	sub := &subscriber{
		hub:     h,
		key:     key,
		info:    info,
		form:    form.format(),
		notices: form,
		hangup:  hangup,
		ready:   make(chan struct{}, 1),
		done:    make(chan struct{}),
		waitKey: true,
	}
	err := h.call(func() {
		s := h.stream(key)
		s.subs[sub] = struct{}{}
		if sub.form != formatHLS { // the HLS muxer is no player: no play or stop events, no hooks
			h.emit(actPlay, key, info, reasonNone)
		}
		if s.pub == nil || len(s.gop) == 0 {
			return // headers and frames come at the next keyframe
		}
		burst := make([]*frame, 0, 4+len(s.gop))
		burst = append(burst, h.flvHeader(s))
		burst = append(burst, h.joinHeaders(s, s.gop[0].time)...)
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

// joinHeaders is what a player needs before its first frame, stamped
// with that frame's time ts (see frame.at): metadata and sequence headers,
// as far as the stream has them. The stamped copies are kept for the next
// joiner at the same frame.
func (h *hub) joinHeaders(s *stream, ts uint32) []*frame {
	from := [3]*frame{s.meta, s.audioHeader, s.videoHeader}
	c := &s.joinCache
	if c.from == from && c.ts == ts && c.frames != nil {
		return c.frames
	}
	headers := from
	if s.videoFirst {
		headers[1], headers[2] = headers[2], headers[1] // keep the publisher's order
	}
	out := make([]*frame, 0, len(headers))
	for _, f := range headers {
		if f != nil {
			out = append(out, f.at(ts, h.cfg.ChunkSize))
		}
	}
	c.from, c.ts, c.frames = from, ts, out
	return out
}

func (h *hub) unsubscribe(sub *subscriber) {
	h.call(func() {
		if s := h.streams[sub.key]; s != nil {
			h.removeSub(s, sub, reasonNone)
			h.dropIfIdle(s)
		}
		sub.end(errSubscriptionEnded)
	})
}

// removeSub takes sub out of s, once, keeping its bytes in the stream's
// total and telling watchers.
func (h *hub) removeSub(s *stream, sub *subscriber, reason closeReason) {
	if _, ok := s.subs[sub]; !ok {
		return
	}
	delete(s.subs, sub)
	s.bytesGone += sub.bytesOut.Load()
	if sub.form != formatHLS {
		h.emitBytes(actStop, s.key, sub.info, reason, sub.bytesOut.Load())
	}
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
		for _, jf := range h.joinHeaders(s, f.time) {
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
	join = append(join, h.joinHeaders(s, f.time)...)
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

func (h *hub) kickSub(s *stream, sub *subscriber, err error) {
	h.counters.kicks.Add(1)
	h.removeSub(s, sub, closeReason(err.Error()))
	h.log.Warn("disconnecting viewer", "conn", sub.info.ID, "stream", s.key.String(), "reason", err, "drops", sub.drops.Load())
	sub.end(err)
	if sub.hangup != nil {
		sub.hangup()
	}
}

// ---- Events and kicks ----

// hubEvent is one lifecycle event: publish, unpublish, play, stop, kick.
type hubEvent struct {
	Type   action
	Key    streamKey
	Client clientInfo
	Reason closeReason
	Bytes  uint64 // on unpublish and stop: bytes received or sent
	Time   time.Time
}

// watch returns a channel of events. A watcher that falls 256 events
// behind loses events rather than holding up the hub.
func (h *hub) watch() (events <-chan hubEvent, stop func()) { return h.watchLossy(nil) }

// watchLossy is watch for a watcher that must know what it lost: the hub
// goroutine calls onDrop with each event that found the channel full, so
// onDrop must be quick and must not block.
func (h *hub) watchLossy(onDrop func(hubEvent)) (events <-chan hubEvent, stop func()) {
	ch := make(chan hubEvent, 256)
	h.call(func() { h.watchers[ch] = onDrop })
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

func (h *hub) emit(typ action, key streamKey, c clientInfo, reason closeReason) {
	h.emitBytes(typ, key, c, reason, 0)
}

func (h *hub) emitBytes(typ action, key streamKey, c clientInfo, reason closeReason, n uint64) {
	ev := hubEvent{Type: typ, Key: key, Client: c, Reason: reason, Bytes: n, Time: time.Now()}
	for ch, onDrop := range h.watchers {
		select {
		case ch <- ev:
		default:
			if onDrop != nil {
				onDrop(ev)
			}
		}
	}
}

// kickStream disconnects a stream's publisher; false if it has none.
func (h *hub) kickStream(key streamKey) bool {
	var p *publisher
	h.call(func() {
		if s := h.streams[key]; s != nil && s.pub != nil {
			p = s.pub
			h.emit(actKick, key, p.info, reasonByAPI)
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
				h.emit(actKick, s.key, p.info, reasonByAPI)
				return
			}
			for sub := range s.subs {
				if sub.info.ID == id {
					h.emit(actKick, s.key, sub.info, reasonByAPI)
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
