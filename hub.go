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
	"slices"
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
	tapQueueFrames    = 1 << 16         // a tap's queue: its bytes are the bound (see subscriber.patient)
	staleAfter        = 5 * time.Second // a publisher silent this long yields its name to a new one
)

var (
	errStreamBusy        = errors.New("stream is already being published")
	errSubscriptionEnded = errors.New("subscription ended")
	errViewerTooSlow     = errors.New("viewer too slow: disconnected")
	errViewerStalled     = errors.New("viewer took nothing for the stall time: disconnected")
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
	dirty [][]*subscriber
	// wake holds the players with a writer of their own (pumpBlocking)
	// that got frames during this op; owned by the hub goroutine. They
	// are told after the op, so that a writer never wakes to half of what
	// one op queues (a joiner's headers and its keyframe).
	wake        []*subscriber
	nextFlusher atomic.Uint64

	tappers []func(h *hub, key streamKey) []*subscriber // see tap; fixed before run
	// demand, if set, is called on the hub goroutine when a player asks
	// for a stream that has no publisher (an edge pulls it), and tells
	// whether a pull of it runs; it must not block. Fixed before run.
	demand func(key streamKey) bool
	// now is when the op being run began (onFrame's frame arrived), since
	// hubEpoch: the limits in media time also want that much wall time,
	// so that a publisher sending faster than real time (a file pushed
	// at once) does not make viewers that keep up look behind.
	now time.Duration
}

var hubEpoch = time.Now()

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
			h.handOver()
		case <-ctx.Done():
			for _, s := range h.streams {
				for sub := range s.subs {
					sub.end(errSubscriptionEnded)
				}
				for _, t := range s.taps {
					t.end(errSubscriptionEnded)
				}
			}
			return
		case op := <-h.ops:
			h.now = time.Since(hubEpoch)
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
	for _, sub := range h.wake {
		select {
		case sub.ready <- struct{}{}:
		default:
		}
	}
	clear(h.wake)
	h.wake = h.wake[:0]
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
	taps    []*subscriber // the server's own outputs of this publish (see hub.tap)
	started time.Time

	meta, audioHeader, videoHeader *frame
	metaInfo                       *metaInfo
	videoFirst                     bool // the video sequence header came before the audio one
	// trackHeaders are the other headers a joiner needs, in the order
	// they first came: Enhanced RTMP multitrack SequenceStarts of other
	// tracks, MultichannelConfig, video Metadata (colorInfo); a new one
	// replaces the one of its slot (codec.go headerSlotOf).
	trackHeaders       []*frame
	trackSlots         []headerSlot
	gop                []*frame // from the last keyframe; nil when not caching
	gopBytes           int
	hasAudio, hasVideo bool

	// joinCache holds the join headers last stamped, for the next joiner
	// at the same frame (see joinHeaders); headersGen counts the changes
	// of the headers it was made from.
	headersGen uint64
	joinCache  struct {
		gen    uint64
		ts     uint32
		frames []*frame
	}

	stats     streamStats
	bytesGone uint64 // bytes sent to players that have left

	// clock is the stream's media time, ms: how much audio and video has
	// come, from frame timestamps, across publishers. Viewers' limits in
	// media time are measured on it. A jump of the timestamps (a wrap, a
	// new encoder session) is not media time: it moves the clock by
	// nothing (see tick).
	clock    int64
	lastTime uint32 // the latest media timestamp
	ticking  bool   // lastTime is set: a publisher's media has come
}

// tick moves s's media clock to a media frame at ts. Timestamps that go
// back a little (audio and video interleaved out of order) move it by
// nothing; a step of more than maxClockStep either way is a jump, and
// the clock goes on from the new time.
func (s *stream) tick(ts uint32) {
	const maxClockStep = 1000 // ms
	d := int64(int32(ts - s.lastTime))
	switch {
	case !s.ticking || d > maxClockStep || d < -maxClockStep:
		s.lastTime, s.ticking = ts, true
	case d > 0:
		s.clock += d
		s.lastTime = ts
	}
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
	p.enc.codecs.log = h.log.With("conn", info.ID, "stream", key.String())
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
		for _, t := range h.tappers {
			h.addTaps(s, t(h, key))
		}
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
	return p.ingestIn(typ, ts, payload, nil)
}

// ingestTag is ingest for an audio or video message read into tag, an
// array with room for its FLV tag around the payload (rtmpMessage.Tag),
// that the hub then keeps as the frame's bytes.
func (p *publisher) ingestTag(typ uint8, ts uint32, tag []byte) error {
	return p.ingestIn(typ, ts, tag[flvTagHeaderLen:len(tag)-4], tag)
}

func (p *publisher) ingestIn(typ uint8, ts uint32, payload, tag []byte) error {
	p.lastMedia.Store(time.Now().UnixNano())
	f, kind := p.enc.encodeIn(typ, ts, payload, tag, p.hub.cfg.ChunkSize)
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
	s.trackHeaders, s.trackSlots = nil, nil
	s.headersGen++
	s.gop, s.gopBytes = nil, 0
	s.hasAudio, s.hasVideo = false, false
	s.ticking = false // the next publisher's timestamps start afresh
	s.joinCache.frames = nil
	for _, t := range s.taps {
		t.end(errSubscriptionEnded)
	}
	s.taps = nil
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
	if kind == kindAudioHeader || kind == kindVideoHeader {
		if slot := headerSlotOf(f.typ, f.body()); slot != (headerSlot{typ: f.typ}) {
			s.setTrackHeader(slot, f)
			kind = kindTrackHeader
		}
	}
	h.now = time.Since(hubEpoch)
	s.stats.onFrame(f, kind)
	if kind != kindMedia {
		s.headersGen++
	}
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
		s.tick(f.time)
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
	for _, t := range s.taps {
		h.deliver(s, t, f, kind)
	}
}

// setTrackHeader keeps f as the header of its slot.
func (s *stream) setTrackHeader(slot headerSlot, f *frame) {
	for i, sl := range s.trackSlots {
		if sl == slot {
			s.trackHeaders[i] = f
			return
		}
	}
	if len(s.trackSlots) < 2*maxExTracks { // a publisher cycling track ids keeps a bounded set
		s.trackSlots = append(s.trackSlots, slot)
		s.trackHeaders = append(s.trackHeaders, f)
	}
}

// cacheGOP keeps the frames since the last keyframe, up to a cap; past
// the cap it stops caching until the next keyframe.
func (h *hub) cacheGOP(s *stream, f *frame) {
	if !h.cfg.GOPCache {
		return
	}
	if f.key {
		s.gop, s.gopBytes = []*frame{f}, f.heldBytes() // a new slice: joiners may hold the old one
		return
	}
	if s.gop == nil {
		return
	}
	if len(s.gop) >= gopMaxFrames || s.gopBytes+f.heldBytes() > gopMaxBytes {
		s.gop, s.gopBytes = nil, 0
		return
	}
	s.gop = append(s.gop, f)
	s.gopBytes += f.heldBytes()
}

// ---- Playing ----

// pull has an edge pull key from its origins, as a player's subscribe
// does when nobody publishes it, and tells whether a pull of it runs.
func (h *hub) pull(key streamKey) bool {
	pulling := false
	h.call(func() { pulling = h.demand != nil && h.demand(key) })
	return pulling
}

// subscribe adds a player to key's stream, creating the stream if nobody
// publishes it yet: the player then waits for a publisher. form is the
// player's protocol's part (see playerForm). hangup, if not nil, closes the
// player's connection: the hub calls it when it drops a player, so that a
// writer stuck on a full socket ends at once.
func (h *hub) subscribe(key streamKey, info clientInfo, form playerForm, hangup func()) *subscriber {
	sub := h.newSubscriber(key, info, form, hangup)
	err := h.call(func() {
		s := h.stream(key)
		s.subs[sub] = struct{}{}
		h.startClocks(s, sub)
		if sub.form != formatHLS { // the HLS muxer is no player: no play or stop events, no hooks
			h.emit(actPlay, key, info, reasonNone)
		}
		if s.pub == nil && h.demand != nil {
			h.demand(key)
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

// newSubscriber makes a subscriber that waits for a keyframe.
func (h *hub) newSubscriber(key streamKey, info clientInfo, form playerForm, hangup func()) *subscriber {
	return &subscriber{
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
}

// tap has fn called on the hub goroutine at every publish; a subscriber
// it returns is fed the publish from its first keyframe, like a player,
// and ends with it. Taps (recordings, push relays) are the server's own
// outputs: they are not players, so they are not listed, counted or
// reported to hooks. Call tap before run.
func (h *hub) tap(fn func(h *hub, key streamKey) []*subscriber) {
	h.tappers = append(h.tappers, fn)
}

// untap removes a tap that stopped by itself (a file error, a relay given
// up), so the hub stops feeding it.
func (h *hub) untap(sub *subscriber) {
	h.call(func() {
		if s := h.streams[sub.key]; s != nil {
			s.taps = slices.DeleteFunc(s.taps, func(t *subscriber) bool { return t == sub })
		}
	})
}

// startClocks starts sub's stall clocks at s's media time and now.
func (h *hub) startClocks(s *stream, sub *subscriber) {
	sub.checkedAt, sub.movedAt, sub.movedWall = s.clock, s.clock, time.Since(hubEpoch)
}

// addTaps adds taps to s's publish. On the hub goroutine.
func (h *hub) addTaps(s *stream, taps []*subscriber) {
	for _, t := range taps {
		h.startClocks(s, t)
	}
	s.taps = append(s.taps, taps...)
}

// players is how many players key's stream has.
func (h *hub) players(key streamKey) int {
	n := 0
	h.call(func() {
		if s := h.streams[key]; s != nil {
			n = len(s.subs)
		}
	})
	return n
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
	c := &s.joinCache
	if c.gen == s.headersGen && c.ts == ts && c.frames != nil {
		return c.frames
	}
	headers := [3]*frame{s.meta, s.audioHeader, s.videoHeader}
	if s.videoFirst {
		headers[1], headers[2] = headers[2], headers[1] // keep the publisher's order
	}
	out := make([]*frame, 0, len(headers)+len(s.trackHeaders))
	for _, f := range append(headers[:], s.trackHeaders...) {
		if f != nil {
			out = append(out, f.at(ts, h.cfg.ChunkSize))
		}
	}
	c.gen, c.ts, c.frames = s.headersGen, ts, out
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
	if !sub.patient && h.stalled(s, sub) {
		h.counters.stalled.Add(1)
		h.kickSub(s, sub, errViewerStalled)
		return
	}
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

// stalled reports whether sub has taken nothing (no frame from its queue,
// no byte on its socket) for config.StallTime of media, and as long in
// wall time, while it had frames queued: a player that stopped reading,
// whose queue would otherwise hold its limit until the write timeout. It
// looks a few times per StallTime of media, so a stalled viewer of a
// real-time stream goes after 1 to 1.25 StallTime.
func (h *hub) stalled(s *stream, sub *subscriber) bool {
	limit := h.cfg.StallTime.Milliseconds()
	if limit <= 0 || s.clock-sub.checkedAt < limit/4 {
		return false
	}
	sub.checkedAt = s.clock
	if took := sub.took.Load(); took != sub.lastTook || sub.queued.Load() == 0 {
		sub.lastTook, sub.movedAt, sub.movedWall = took, s.clock, h.now
		return false
	}
	return s.clock-sub.movedAt > limit && h.now-sub.movedWall > h.cfg.StallTime
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
	if !sub.fits(join, s.clock, h.now) {
		sub.drops.Add(1)
		h.counters.drops.Add(1)
		if !sub.patient && !sub.behindSince.IsZero() && time.Since(sub.behindSince) > maxBehind {
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
	n := int64(f.wireLen(sub.form))
	if n == 0 {
		return true // nothing to send in this form
	}
	maxBytes, maxFrames := int64(h.cfg.QueueBytes), subQueueFrames
	if sub.patient {
		maxFrames = tapQueueFrames
	}
	if f.typ == 0 {
		maxBytes, maxFrames = maxBytes+statusSlackBytes, maxFrames+statusSlackFrames
	}
	if sub.queued.Load()+n > maxBytes {
		h.dropped(sub)
		return false
	}
	sub.qmu.Lock()
	if len(sub.q) >= maxFrames || f.typ != 0 && len(sub.q) > 0 && sub.tooLate(s.clock, h.now) {
		sub.qmu.Unlock()
		h.dropped(sub)
		return false
	}
	if len(sub.q) == 0 {
		sub.qStart, sub.qStartWall = s.clock, h.now
	}
	sub.q = append(sub.q, f)
	sub.qmu.Unlock()
	sub.queued.Add(n)
	if fl := sub.flusher.Load(); fl == nil {
		h.wake = append(h.wake, sub) // told in handOver: all of this op's frames at once
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
	h.log.Warn("disconnecting viewer", "conn", sub.info.ID, "stream", s.key.String(), "reason", err, "drops", sub.drops.Load(),
		"queued", sub.queued.Load())
	sub.end(err)
	sub.forget() // its writer stops without sending them
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
