package main

// HLS and Low-Latency HLS (draft-pantos-hls-rfc8216bis-15, "HTTP Live
// Streaming 2nd Edition"), made in memory from the frames gms holds: no
// ffmpeg, no files.
//
// A stream's HLS starts with its first HLS request: an hlsStream joins
// the hub as one more subscriber (answered at once from the GOP cache),
// muxes what comes into fragmented MP4 (fmp4.go), cuts segments at
// keyframes and parts every -hls-part (in whole frames), keeps the last -hls-window
// segments. Every HLS viewer of the stream is served the same bytes; no
// viewer costs a copy. A stream nobody asks for stops after hlsIdleStop.
//
// URLs, under /APP/NAME/ (NMS v2's HLS path):
//
//	index.m3u8                    the media playlist
//	init-RUN-EPOCH.mp4            an init segment (a new one per publish or codec change)
//	seg-RUN-MSN.m4s               a media segment
//	part-RUN-MSN-PART.m4s         a partial segment (LL-HLS)
//
// RUN is random per muxer run, so that a URL never names two different
// contents (segments are immutable, and caches may keep them for good).

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"math"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

const (
	hlsIdleStop  = 30 * time.Second // a stream's muxing stops this long after its last HLS request
	hlsKeepExtra = 2                // segments kept past the window, for clients one playlist behind
	// hlsViewerTTL: an HLS viewer (an address and user agent) counts while
	// it has asked for the playlist this recently, or three target
	// durations if longer (plain HLS players reload once a segment).
	hlsViewerTTL = 10 * time.Second
	// hlsFirstWait bounds how long a first playlist request waits for the
	// first complete segment (the GOP cache gives the start at once, the
	// end comes with the next keyframe).
	hlsFirstWait = 15 * time.Second
	// hlsMaxPendingPulls bounds the muxers that wait for an edge's pull
	// of their stream at once.
	hlsMaxPendingPulls = 64
)

// hlsUnpublished is queued to an HLS muxer when its stream's publisher
// leaves (hlsForm.unpublishNotice): the muxer ends its segment and waits
// for the next publisher, whose segments follow a discontinuity.
var hlsUnpublished = &frame{flv: []byte{0}}

// hlsForm is the HLS muxer's part in the hub.
type hlsForm struct{}

func (hlsForm) format() outputFormat             { return formatHLS }
func (hlsForm) publishNotice(streamKey) *frame   { return nil }
func (hlsForm) unpublishNotice(streamKey) *frame { return hlsUnpublished }

// hlsServer holds the streams being muxed.
type hlsServer struct {
	cfg  *config
	hub  *hub
	log  *slog.Logger
	idle time.Duration // hlsIdleStop; shorter in tests

	mu         sync.Mutex
	streams    map[streamKey]*hlsStream
	admittedAt map[string]time.Time // viewers the play hook admitted (viewerDigest), when last seen
	swept      time.Time
	// pendingPulls counts the muxers waiting for a stream this edge
	// pulls (hlsStream.pulling), at most maxPendingPulls.
	pendingPulls, maxPendingPulls int
	// refusalLogged is when the last "hls refused" line went out;
	// refusalsUnlogged counts those refused since (logRefusal).
	refusalLogged    time.Time
	refusalsUnlogged int
}

// logRefusal tells whether a refused request may be logged, at most one
// a second, and how many were refused since the last line. A player
// whose sign has expired asks for parts and playlists a few dozen times
// a second, each refused: a line each would fill the log.
func (hs *hlsServer) logRefusal() (unlogged int, ok bool) {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	now := time.Now()
	if now.Sub(hs.refusalLogged) < time.Second {
		hs.refusalsUnlogged++
		return 0, false
	}
	unlogged, hs.refusalLogged, hs.refusalsUnlogged = hs.refusalsUnlogged, now, 0
	return unlogged, true
}

func newHLSServer(cfg *config, h *hub, log *slog.Logger) *hlsServer {
	hs := &hlsServer{cfg: cfg, hub: h, log: log, idle: hlsIdleStop, streams: map[streamKey]*hlsStream{},
		admittedAt: map[string]time.Time{}, maxPendingPulls: hlsMaxPendingPulls}
	if cfg.HLS && cfg.HLSAlways != "" {
		go hs.startAtPublish()
	}
	return hs
}

// startAtPublish starts the muxing of the -hls-always apps' streams as
// they are published (NMS's trans tasks), until the hub stops.
func (hs *hlsServer) startAtPublish() {
	apps := map[string]bool{}
	for app := range strings.SplitSeq(hs.cfg.HLSAlways, ",") {
		apps[strings.TrimSpace(app)] = true
	}
	events, stop := hs.hub.watch()
	defer stop()
	// Streams published before the watch began.
	for _, snap := range hs.hub.snapshot() {
		if snap.Publisher != nil && apps[snap.Key.App] {
			if st := hs.stream(snap.Key); st != nil {
				st.always.Store(true)
			}
		}
	}
	for {
		select {
		case ev := <-events:
			if ev.Type == actPublish && apps[ev.Key.App] {
				if st := hs.stream(ev.Key); st != nil {
					st.always.Store(true)
				}
			}
		case <-hs.hub.done:
			return
		}
	}
}

// stream returns key's muxer, starting one if the stream is live, or
// if this edge pulls it from its origins (the muxer then waits for it,
// as a player does); nil when neither.
func (hs *hlsServer) stream(key streamKey) *hlsStream {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	if st := hs.streams[key]; st != nil {
		st.lastRequest.Store(time.Now().UnixNano())
		return st
	}
	live := hs.hub.isLive(key)
	// A muxer waiting for a pull costs no connection: their number is
	// bounded, or requests for made-up names would each start a pull.
	if !live && (hs.pendingPulls >= hs.maxPendingPulls || !hs.hub.pull(key)) {
		return nil
	}
	st := newHLSStream(hs, key)
	if !live {
		hs.pendingPulls++
		st.pulling.Store(true)
	}
	hs.streams[key] = st
	go st.run()
	return st
}

func (hs *hlsServer) remove(st *hlsStream) {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	if hs.streams[st.key] == st {
		delete(hs.streams, st.key)
	}
}

// admittedLately tells whether viewer (stream, address, user agent and
// query) passed the play hook within hlsViewerTTL.
func (hs *hlsServer) admittedLately(viewer string) bool {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	at, ok := hs.admittedAt[viewer]
	return ok && time.Since(at) < hlsViewerTTL
}

// admitted notes a viewer's admission (again), forgetting those gone.
func (hs *hlsServer) admitted(viewer string) {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	now := time.Now()
	if len(hs.admittedAt) >= 1024 && now.Sub(hs.swept) > hlsViewerTTL {
		for v, at := range hs.admittedAt {
			if now.Sub(at) >= hlsViewerTTL {
				delete(hs.admittedAt, v)
			}
		}
		hs.swept = now
	}
	hs.admittedAt[viewer] = now
}

// viewers counts key's HLS viewers: the addresses and user agents that
// have asked for its playlist lately (HTTP has no connection to count; a
// caching proxy in front counts as one).
func (hs *hlsServer) viewers(key streamKey) int {
	hs.mu.Lock()
	st := hs.streams[key]
	hs.mu.Unlock()
	if st == nil {
		return 0
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	st.dropGoneViewers(time.Now())
	return len(st.viewers)
}

// viewerDigest names a viewer by the SHA-256 of what tells it from
// others (address, user agent, and so on): a map of viewers then costs
// 32 bytes a key, whatever a client sends (a user agent and a query can
// take 16 KiB each). The parts hold no NUL (net/http refuses one in a
// header; a query is escaped), so NUL separates them.
func viewerDigest(parts ...string) string {
	sum := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	return string(sum[:])
}

// viewerTTL is how long an HLS viewer counts after its last playlist
// request: hlsViewerTTL, or three target durations if longer (plain HLS
// players reload once a segment). st.mu is held.
func (st *hlsStream) viewerTTL() time.Duration {
	return max(hlsViewerTTL, 3*time.Duration(st.targetDuration())*time.Second)
}

// dropGoneViewers forgets the viewers not seen for viewerTTL. st.mu is
// held.
func (st *hlsStream) dropGoneViewers(now time.Time) {
	ttl := st.viewerTTL()
	for v, last := range st.viewers {
		if now.Sub(last) > ttl {
			delete(st.viewers, v)
		}
	}
}

// seen notes a viewer's playlist or MPD request. Once there are many,
// those gone are dropped here too, at most once a TTL, so that the map
// holds about the viewers of the last TTL however seldom the API counts
// them: a client changing its user agent at every request would
// otherwise grow it without bound. st.mu is held.
func (st *hlsStream) seen(r *http.Request) {
	now := time.Now()
	if len(st.viewers) >= 1024 && now.Sub(st.viewersSwept) > st.viewerTTL() {
		st.dropGoneViewers(now)
		st.viewersSwept = now
	}
	st.viewers[viewerDigest(hostOf(r.RemoteAddr), r.UserAgent())] = now
}

// isLive tells whether key has a publisher.
func (h *hub) isLive(key streamKey) bool {
	live := false
	h.call(func() {
		s := h.streams[key]
		live = s != nil && s.pub != nil
	})
	return live
}

// hlsPart is a partial segment: one fragment (moof and mdat). Its bytes
// never change once made.
type hlsPart struct {
	data        []byte
	tracks      [][]byte // each track's samples as a fragment of its own, for DASH; nil until DASH is asked for
	dur         float64  // seconds
	independent bool     // starts with a keyframe
}

// hlsSegment is a media segment: its parts, back to back.
type hlsSegment struct {
	msn           int
	epoch         int  // the init segment it needs
	discontinuity bool // the first of a new publish, or of new codec parameters
	discSeq       int  // discontinuities up to and including this one
	start         time.Time
	parts         []*hlsPart
	startMs       int64   // media time on its epoch's clock (FLV milliseconds)
	dur           float64 // seconds, once complete
	complete      bool
}

// hlsEpoch is one publish (or codec configuration): its init segment
// and what manifests say about it.
type hlsEpoch struct {
	init          []byte
	codecs        []string // RFC 6381, a track each
	tracks        []*mp4Track
	trackInits    [][]byte // an init segment a track, for DASH
	width, height int
	zero          time.Time // the wall-clock time of media time 0
}

// hlsStream is one stream's muxer and what it has made.
type hlsStream struct {
	srv         *hlsServer
	key         streamKey
	runID       string // RUN in the URLs
	sub         *subscriber
	log         *slog.Logger
	lastRequest atomic.Int64 // unix nanoseconds
	dash        atomic.Bool  // DASH has been asked for: parts carry each track's fragment too
	always      atomic.Bool  // muxed from publish on (-hls-always): no idle stop
	pulling     atomic.Bool  // started for an edge's pull, no media yet: counted in hlsServer.pendingPulls

	mu       sync.Mutex
	changed  chan struct{} // closed and replaced when a part, segment or the end comes
	closed   bool
	segments []*hlsSegment // oldest first; the last may be open
	epochs   map[int]*hlsEpoch
	nextMSN  int
	discSeq  int
	maxDur   float64 // the longest segment yet: TARGETDURATION never shrinks
	// partTarget is PART-TARGET in ms, fixed for the run once the lead
	// track's frame interval is known (setPartTarget); 0 until then.
	partTarget int64
	viewers    map[string]time.Time // viewerDigest(address, user agent): last playlist request
	// viewersSwept is when seen last dropped the viewers gone.
	viewersSwept time.Time
	// version counts the changes a playlist shows; rendered keeps the
	// last playlist of each kind (full, delta) at a version, for the
	// viewers that all ask for it when a part comes.
	version  int
	rendered [2]renderedPlaylist

	// Owned by the run goroutine.
	mux                      *fmp4Muxer
	started                  bool // the epoch's first segment has begun
	epoch                    int
	videoHeader, audioHeader []byte
	width, height            int
	lead                     uint8 // the track that cuts: video, or audio in an audio-only stream
	clock                    msClock
	segStart, partStart      int64 // ms, on clock
	lastLead, leadInterval   int64
	framesPerPart            int64 // lead frames a part holds (setPartTarget)
	partFrames               int64 // lead frames in the open part
	segsInEpoch              int
	partIndependent          bool
	pendingDisc              bool
	anchorMs                 int64
	anchorWall               time.Time
	burstLast                uint32 // while the join burst is muxed: its last frame's time
	inBurst                  bool
	warned                   bool   // a muxing error logged this epoch
	drops                    uint64 // the subscription's drops seen
}

func newHLSStream(hs *hlsServer, key streamKey) *hlsStream {
	var b [4]byte
	rand.Read(b[:])
	st := &hlsStream{srv: hs, key: key, runID: hex.EncodeToString(b[:]), changed: make(chan struct{}), epochs: map[int]*hlsEpoch{},
		viewers: map[string]time.Time{}}
	st.lastRequest.Store(time.Now().UnixNano())
	st.log = hs.log.With("proto", "hls", "app", key.App, "stream", key.Name)
	info := clientInfo{ID: newClientID(), Protocol: protoHLS, Created: time.Now()}
	st.sub = hs.hub.subscribe(key, info, hlsForm{}, nil)
	return st
}

// msClock extends FLV's 32-bit millisecond times to 64 bits.
type msClock struct {
	last    uint32
	ext     int64
	started bool
}

func (c *msClock) at(ms uint32) int64 {
	if !c.started {
		c.started, c.last, c.ext = true, ms, int64(ms)
	}
	c.ext += int64(int32(ms - c.last))
	c.last = ms
	return c.ext
}

// run muxes the subscription's frames until the stream ends or nobody
// has asked for it for hlsIdleStop.
func (st *hlsStream) run() {
	st.log.Info("hls start", "run", st.runID)
	defer func() {
		st.pulled()
		st.srv.remove(st)
		st.srv.hub.unsubscribe(st.sub)
		st.mu.Lock()
		st.closed = true
		st.notify()
		st.mu.Unlock()
		st.log.Info("hls stop", "run", st.runID)
	}()
	burst := st.sub.burst
	st.sub.burst = nil
	if len(burst) > 0 {
		st.pulled()
	}
	var videoTimes, audioTimes []uint32
	for _, f := range burst {
		if f.typ == msgAudio || f.typ == msgVideo {
			st.burstLast, st.inBurst = f.time, true
		}
		if f.typ == msgVideo {
			videoTimes = append(videoTimes, f.time)
		} else if f.typ == msgAudio {
			audioTimes = append(audioTimes, f.time)
		}
	}
	// The GOP cache tells the lead track's frame interval before any part
	// is cut: the video's when there is video, else the audio's (the
	// first is left out: it may be a sequence header, at its frame's time).
	if times := videoTimes; len(times) > 2 || len(audioTimes) > 2 {
		if len(times) <= 2 {
			times = audioTimes
		}
		st.setPartTarget(float64(int32(times[len(times)-1]-times[1]))/float64(len(times)-2), true)
	}
	for _, f := range burst {
		st.onFrame(f)
	}
	st.inBurst = false
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var batch []*frame
	for {
		select {
		case <-st.sub.ready:
		case <-st.sub.done:
			batch = st.sub.drain(batch[:0])
			for _, f := range batch {
				st.onFrame(f)
			}
			st.endEpoch()
			return
		case <-tick.C:
			if !st.always.Load() && time.Since(time.Unix(0, st.lastRequest.Load())) > st.srv.idle {
				return
			}
			continue
		}
		batch = st.sub.drain(batch[:0])
		if len(batch) > 0 {
			st.pulled()
		}
		if d := st.sub.drops.Load(); d != st.drops {
			// The hub skipped frames (the queue was full) and resumes at
			// a keyframe: the muxing starts again there, after a
			// discontinuity, rather than make a part with a hole.
			st.drops = d
			st.endEpoch()
		}
		for _, f := range batch {
			st.onFrame(f)
		}
		// Counted as queued until muxed: a zero count then says the
		// playlist holds every frame the hub handed over.
		st.sub.dequeued(batch)
		clear(batch)
	}
}

// pulled notes that a muxer started for an edge's pull has its stream,
// or has stopped: it no longer counts against hlsMaxPendingPulls.
func (st *hlsStream) pulled() {
	if st.pulling.CompareAndSwap(true, false) {
		st.srv.mu.Lock()
		st.srv.pendingPulls--
		st.srv.mu.Unlock()
	}
}

// onFrame takes one frame from the hub.
func (st *hlsStream) onFrame(f *frame) {
	switch {
	case f == hlsUnpublished:
		st.endEpoch()
		st.videoHeader, st.audioHeader, st.width, st.height = nil, nil, 0, 0
		return
	case f.typ == msgDataAMF0 && f.meta != nil:
		st.width, st.height = metaInt(f.meta.values, "width"), metaInt(f.meta.values, "height")
		if st.audioHeader == nil {
			st.audioHeader = mp3HeaderOf(f.meta.values)
		}
		return
	case f.typ != msgAudio && f.typ != msgVideo:
		return
	}
	body := f.body()
	if f.typ == msgVideo {
		if header, _ := videoInfo(body); header {
			st.setHeader(&st.videoHeader, body)
			return
		}
	} else if audioIsHeader(body) {
		st.setHeader(&st.audioHeader, body)
		return
	} else if st.audioHeader == nil && mp3Frame(body) {
		st.setHeader(&st.audioHeader, body) // and muxed: MP3 has no header
	}
	st.onMedia(f, body)
}

func metaInt(o amfObject, key string) int {
	if v, ok := o.Get(key); ok {
		if n, ok := v.(float64); ok && n > 0 && n < 1<<16 {
			return int(n)
		}
	}
	return 0
}

// setHeader keeps a sequence header. A new one mid-stream (new codec
// parameters) ends the epoch: the next keyframe starts one with a new
// init segment.
func (st *hlsStream) setHeader(dst *[]byte, body []byte) {
	if string(*dst) == string(body) {
		return
	}
	*dst = body // shared, read-only frame bytes: no copy
	if st.mux != nil {
		st.endEpoch()
	}
}

// onMedia muxes one audio or video frame, cutting parts and segments
// before it when it starts one.
func (st *hlsStream) onMedia(f *frame, body []byte) {
	cfg := st.srv.cfg
	if st.mux == nil {
		if st.videoHeader == nil && st.audioHeader == nil {
			return
		}
		if st.width == 0 && f.typ == msgVideo {
			st.width, st.height = keyFrameSize(body) // VP9: vpcC has no size
		}
		mux, err := newFMP4Muxer(st.videoHeader, st.audioHeader, st.width, st.height)
		if err != nil && !st.warned {
			st.warned = true
			st.log.Warn("hls: a track cannot be muxed", "err", err)
		}
		if len(mux.tracks) == 0 {
			return
		}
		if mux.leaveOutMP3() {
			st.log.Info("hls: MP3 audio is left out of HLS, which hls.js cannot play with it; DASH and MP4 recordings have it")
		}
		st.mux, st.started = mux, false
		st.lead = msgAudio
		if mux.video != nil {
			st.lead = msgVideo
		}
	}
	fm, err := st.mux.parse(f.typ, body)
	if err != nil {
		if !st.warned {
			st.warned = true
			st.log.Warn("hls: frame not muxed", "err", err)
		}
		return
	}
	if fm.kind != mediaFrame {
		return
	}
	isLead := f.typ == st.lead
	key := isLead && (f.typ == msgAudio || fm.key)
	if !st.started {
		if !key {
			return
		}
		st.startEpoch(f.time)
	}
	t := st.clock.at(f.time)
	if jump := t - st.lastLead; isLead && (jump > st.maxGap() || jump < -hlsMaxBackStep) {
		// The publisher's clock jumped (restarted, or skipped ahead):
		// cut as usual, the part and segment across the jump would last
		// as long as the jump ahead (TARGETDURATION, and so blocking
		// reloads' waits and caches' lifetimes, with it), or nothing
		// would be cut until the clock came back to where it was, the
		// media in between piling up in the open part. So the epoch
		// ends there, and the next keyframe starts one, after a
		// discontinuity (§4.4.4.3), as a new publish does. Only the
		// lead track tells: audio goes on through a pause of the video.
		st.endEpoch()
		st.onMedia(f, body)
		return
	}
	if isLead && st.started && t > st.partStart {
		elapsedSeg, elapsedPart := t-st.segStart, t-st.partStart
		if st.partTarget == 0 && st.leadInterval > 0 {
			st.setPartTarget(float64(st.leadInterval), false)
		}
		segTarget, partTarget := cfg.HLSSegment.Milliseconds(), st.partTarget
		switch {
		case key && (st.segsInEpoch == 1 && f.typ == msgVideo || elapsedSeg+st.leadInterval/2 >= segTarget):
			// The first segment of an epoch ends at its next keyframe,
			// so that a player has a whole segment as soon as possible
			// (in audio, where every frame is one, at the target).
			st.closePart(f.typ, f.time, t)
			st.nextSegment(t)
		case partTarget > 0 && (st.partFrames >= st.framesPerPart || elapsedPart+st.leadInterval > partTarget+2):
			// A part ends after its frames, or (frames coming late)
			// before the frame that would take it past the part target
			// (give or take FLV's rounding).
			st.closePart(f.typ, f.time, t)
			st.partIndependent = key
		case key:
			// A keyframe inside a segment does not end a part: the part
			// before it would be short of 85% of the part target
			// (§4.4.4.9). The part that holds it is INDEPENDENT=YES (it
			// "contains an independent frame"), a place to start.
			st.partIndependent = true
		}
	}
	if isLead {
		st.partFrames++
		if st.lastLead != 0 || t != 0 {
			st.leadInterval = max(t-st.lastLead, 0)
		}
		st.lastLead = t
	}
	st.mux.add(f.typ, f.time, fm)
}

// hlsMaxBackStep is the most a lead track frame may come before the last
// (FLV times are decoding times: they only go back by a rounding error)
// before onMedia takes it for a jump of the publisher's clock.
const hlsMaxBackStep = 1000 // ms

// maxGap is the most the lead track's frames may be apart before
// onMedia takes it for a jump of the publisher's clock: 10 s, or two
// segment targets if longer.
func (st *hlsStream) maxGap() int64 {
	return max(10*time.Second, 2*st.srv.cfg.HLSSegment).Milliseconds()
}

// setPartTarget fixes PART-TARGET, once, from the lead track's frame
// interval (ms): -hls-part rounded down to whole frames (at least one),
// since a part ends between two frames. §4.4.4.9 wants every part to last
// at most PART-TARGET and, but for a segment's last and independent ones,
// at least 85% of it: -hls-part itself fits only some frame rates (100 ms
// is two and a half 25 fps frames, so its parts would be 80 ms, 80%).
// FLV rounds times to the millisecond (30 fps comes as 33, 33, 34 ms), so
// a part of n frames lasts n intervals give or take a millisecond: a
// millisecond more. An interval measured from two frames (exact false)
// may be a millisecond off too: a millisecond more a frame instead.
func (st *hlsStream) setPartTarget(interval float64, exact bool) {
	if st.partTarget != 0 || interval <= 0 || interval > 1000 || st.srv.cfg.HLSPart <= 0 {
		return // a second between frames is a gap, not a frame rate: the next frames tell
	}
	frames := max(int64(float64(st.srv.cfg.HLSPart.Milliseconds())/interval+0.05), 1)
	target := int64(math.Round(float64(frames)*interval)) + 1
	if !exact {
		target = frames * (int64(interval) + 1)
	}
	st.framesPerPart = frames
	st.mu.Lock()
	st.partTarget = target
	st.version++
	st.mu.Unlock()
}

// startEpoch begins a publish's (or a codec change's) first segment at
// the keyframe at FLV time ms: a new init segment, a discontinuity when
// segments came before, and the wall-clock anchor of PROGRAM-DATE-TIME.
func (st *hlsStream) startEpoch(ms uint32) {
	st.started = true
	st.epoch++
	st.clock = msClock{}
	t := st.clock.at(ms)
	st.segsInEpoch, st.lastLead, st.leadInterval = 0, t, 0
	st.anchorMs, st.anchorWall = t, time.Now()
	if st.inBurst { // the GOP cache's frames are older than now
		st.anchorWall = st.anchorWall.Add(-time.Duration(int32(st.burstLast-ms)) * time.Millisecond)
	}
	ep := &hlsEpoch{init: st.mux.init(), zero: st.anchorWall.Add(-time.Duration(t) * time.Millisecond)}
	for _, tr := range st.mux.tracks {
		ep.tracks = append(ep.tracks, tr)
		ep.trackInits = append(ep.trackInits, appendInit(nil, []*mp4Track{tr}))
		ep.codecs = append(ep.codecs, tr.codecString())
		if tr.video {
			ep.width, ep.height = int(tr.width), int(tr.height)
		}
	}
	st.mu.Lock()
	st.epochs[st.epoch] = ep
	st.pendingDisc = len(st.segments) > 0
	st.version++
	st.mu.Unlock()
	st.warned = false
	st.openSegment(t)
}

// endEpoch ends the open part and segment (the publisher left, or the
// codec parameters changed).
func (st *hlsStream) endEpoch() {
	if st.mux != nil && st.started {
		end := st.lastLead + max(st.leadInterval, 1)
		st.closePart(0, 0, end)
		st.closeSegment(end)
	}
	st.mux, st.started = nil, false
}

func (st *hlsStream) openSegment(t int64) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.openSegmentLocked(t)
	st.notify()
}

// nextSegment completes the open segment and opens the next at t in one
// hold of st.mu: a playlist between the two would have no open segment,
// so no preload hint for its LL-HLS players to wait on.
func (st *hlsStream) nextSegment(t int64) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.closeSegmentLocked(t)
	st.openSegmentLocked(t)
	st.notify()
}

// openSegmentLocked opens a segment at t. st.mu is held.
func (st *hlsStream) openSegmentLocked(t int64) {
	st.segStart, st.partStart, st.partIndependent, st.partFrames = t, t, true, 0
	st.segsInEpoch++
	seg := &hlsSegment{msn: st.nextMSN, epoch: st.epoch, discontinuity: st.pendingDisc, startMs: t,
		start: st.anchorWall.Add(time.Duration(t-st.anchorMs) * time.Millisecond)}
	if seg.discontinuity {
		st.discSeq++
	}
	seg.discSeq = st.discSeq
	st.pendingDisc = false
	st.nextMSN++
	st.segments = append(st.segments, seg)
}

// closePart writes what is queued as the open segment's next part,
// ending at t (ms on the clock), before a frame of type typ at FLV time
// ms (0: none).
func (st *hlsStream) closePart(typ uint8, ms uint32, t int64) {
	var data []byte
	var tracks [][]byte
	if st.dash.Load() {
		data, tracks = st.mux.fragments(typ, ms)
	} else {
		data = st.mux.fragment(nil, typ, ms)
	}
	if len(data) == 0 {
		return
	}
	p := &hlsPart{data: data, tracks: tracks, dur: float64(t-st.partStart) / 1000, independent: st.partIndependent}
	st.partStart, st.partFrames = t, 0
	st.mu.Lock()
	defer st.mu.Unlock()
	seg := st.segments[len(st.segments)-1]
	seg.parts = append(seg.parts, p)
	st.notify()
}

// closeSegment completes the open segment at t and drops segments past
// the window (and their init segments once no segment needs them).
func (st *hlsStream) closeSegment(t int64) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.closeSegmentLocked(t)
	st.notify()
}

// closeSegmentLocked completes the open segment at t. st.mu is held.
func (st *hlsStream) closeSegmentLocked(t int64) {
	seg := st.segments[len(st.segments)-1]
	if len(seg.parts) == 0 {
		st.segments = st.segments[:len(st.segments)-1] // nothing in it: never listed
		st.nextMSN--
		if seg.discontinuity {
			st.discSeq--
			st.pendingDisc = true
		}
		return
	}
	seg.complete = true
	seg.dur = 0
	for _, p := range seg.parts {
		seg.dur += p.dur
	}
	st.maxDur = max(st.maxDur, seg.dur)
	if extra := len(st.segments) - (st.srv.cfg.HLSWindow + hlsKeepExtra + 1); extra > 0 {
		clear(st.segments[:extra])
		st.segments = st.segments[extra:]
		for epoch := range st.epochs {
			if epoch < st.segments[0].epoch {
				delete(st.epochs, epoch)
			}
		}
	}
}

// notify wakes the requests waiting for a change. st.mu is held.
func (st *hlsStream) notify() {
	st.version++
	close(st.changed)
	st.changed = make(chan struct{})
}

// waitFor waits until ready (called with st.mu held) holds, the stream
// closes, or the deadline or the request's end comes. It returns with
// st.mu held and whether ready holds.
func (st *hlsStream) waitFor(r *http.Request, deadline time.Time, ready func() bool) bool {
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	for !ready() {
		if st.closed {
			return false
		}
		ch := st.changed
		st.mu.Unlock()
		select {
		case <-ch:
		case <-timer.C:
			st.mu.Lock()
			return ready()
		case <-r.Context().Done():
			st.mu.Lock()
			return false
		}
		st.mu.Lock()
	}
	return true
}
