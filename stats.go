package main

import (
	"math"
	"sync/atomic"
	"time"
)

// counters are server-wide totals, for /api/server and /metrics.
type counters struct {
	accepted          [protoCount]atomic.Uint64
	active            [protoCount]atomic.Int64
	bytesIn, bytesOut atomic.Uint64
	drops, kicks      atomic.Uint64
	stalled           atomic.Uint64 // viewers disconnected for taking nothing (also in kicks)
	authFailures      [protoCount]atomic.Uint64
	hookRejects       atomic.Uint64
	hookDropped       atomic.Uint64 // unpublish and stop events the hooks' queue had no room for
	handshakeFailures atomic.Uint64
	tooManyConns      atomic.Uint64
	playersRefused    atomic.Uint64 // over the players' share of -max-conns
	socketFull        atomic.Uint64 // flusher writes that a viewer's socket did not take whole
}

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
	Tracks      []trackParams // Enhanced RTMP multitrack: every track's codec
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
		ss.Tracks = append([]trackParams(nil), s.stats.tracks...)
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

// streamStats is measured by the hub goroutine as frames pass.
type streamStats struct {
	video      videoParams
	audio      audioParams
	tracks     []trackParams // of multitrack SequenceStarts, one per type and id
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
	if kind == kindVideoHeader || kind == kindAudioHeader || kind == kindTrackHeader {
		for _, tp := range multitrackParams(f.typ, payload) {
			st.setTrack(tp)
		}
	}
	switch kind {
	case kindVideoHeader:
		fps, gop, gopSec := st.video.FPS, st.video.GOPFrames, st.video.GOPSeconds
		st.video = parseVideoHeader(payload)
		st.video.FPS, st.video.GOPFrames, st.video.GOPSeconds = fps, gop, gopSec
		return
	case kindAudioHeader:
		st.audio = parseAudioHeader(payload)
		return
	case kindTrackHeader:
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
	if f.key && st.video.Width == 0 {
		st.video.Width, st.video.Height = keyFrameSize(payload) // VP9, VP8: not in their records
	}
	if f.key {
		if st.videoCount > 1 && f.time > st.lastKey {
			st.video.GOPFrames = st.sinceKey
			st.video.GOPSeconds = float64(f.time-st.lastKey) / 1000
		}
		st.lastKey, st.sinceKey = f.time, 0
		st.video.KeyframeBytes = len(payload)
	}
}

// setTrack keeps tp, replacing the track of the same type and id.
func (st *streamStats) setTrack(tp trackParams) {
	for i, old := range st.tracks {
		if old.Type == tp.Type && old.ID == tp.ID {
			st.tracks[i] = tp
			return
		}
	}
	if len(st.tracks) < 2*maxExTracks {
		st.tracks = append(st.tracks, tp)
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
