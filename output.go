package main

// A frame: one message from a publisher, encoded once into each output
// form (RTMP chunks, FLV tags) and shared read-only by every player and
// the GOP cache; and the part each player protocol plays in the hub.

// playerForm is a player protocol's part in the hub: which bytes of a
// frame its players get, and what they are told when a stream's publisher
// comes or goes. rtmp.go and http.go implement it; a new output (HLS)
// adds a format, its encoding in publishState.encode, and a playerForm.
type playerForm interface {
	format() outputFormat
	// publishNotice is queued for waiting players when a publisher
	// starts; nil for none.
	publishNotice(key streamKey) *frame
	// unpublishNotice is queued when the publisher leaves, and the player
	// waits for the next one; nil ends the subscription with the stream.
	unpublishNotice(key streamKey) *frame
}

// noticeCache builds a notice once per format for all of a stream's
// players.
type noticeCache map[outputFormat]*frame

func (c noticeCache) get(sub *subscriber, notice func(playerForm, streamKey) *frame, key streamKey) *frame {
	n, ok := c[sub.form]
	if !ok {
		n = notice(sub.notices, key)
		c[sub.form] = n
	}
	return n
}

// outputFormat is the byte form a subscriber receives.
type outputFormat int

const (
	formatRTMP outputFormat = iota // chunks at our chunk size
	formatFLV                      // FLV tags (HTTP-FLV and WS-FLV)
	formatHLS                      // the HLS muxer (hls.go): it reads frames' body() and fields; queued by their FLV size
)

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

// body is the message payload: the FLV tag's data.
func (f *frame) body() []byte { return f.flv[flvTagHeaderLen : len(f.flv)-4] }

func (f *frame) size() int { return len(f.rtmp) + len(f.flv) }

// frameKind says how the hub treats a frame.
type frameKind int

const (
	kindMedia frameKind = iota
	kindMeta
	kindAudioHeader
	kindVideoHeader
)

// publishState classifies and encodes one publisher's messages. It is
// owned by the publisher's goroutine.
type publishState struct {
	sawVideo      bool
	declaredVideo bool
}

// encode turns one publisher message into a frame in both output forms.
// It returns nil for messages that are not relayed.
func (ps *publishState) encode(typ uint8, ts uint32, payload []byte, chunkSize int) (*frame, frameKind) {
	kind := kindMedia
	f := &frame{typ: typ, time: ts}
	csid := uint32(csidData)
	switch typ {
	case msgDataAMF0, msgDataAMF3:
		typ = msgDataAMF0
		f.typ = typ
		var ok bool
		payload, f.meta, ok = parseMetadata(payload)
		if !ok {
			return nil, 0
		}
		if f.meta != nil {
			kind = kindMeta
			ps.declaredVideo = f.meta.hasVideo
		}
	case msgAudio:
		if len(payload) == 0 {
			return nil, 0
		}
		csid = csidAudio
		if audioIsHeader(payload) {
			kind = kindAudioHeader
		} else {
			f.key = !ps.sawVideo && !ps.declaredVideo
		}
	case msgVideo:
		if len(payload) == 0 {
			return nil, 0
		}
		csid = csidVideo
		ps.sawVideo = true
		header, key := videoInfo(payload)
		if header {
			kind = kindVideoHeader
		}
		f.key = key
	default:
		return nil, 0
	}
	f.encode(csid, payload, chunkSize)
	return f, kind
}

// encode fills f's output forms with payload at f's type and time.
func (f *frame) encode(csid uint32, payload []byte, chunkSize int) {
	f.rtmp = appendChunks(make([]byte, 0, chunksLen(csid, f.time, len(payload), chunkSize)),
		csid, f.typ, mediaStreamID, f.time, payload, chunkSize)
	f.flv = appendFLVTag(make([]byte, 0, flvTagHeaderLen+len(payload)+4), f.typ, f.time, payload)
}

// at is a copy of the media or data frame f stamped ts, in every output
// form. A joiner gets its metadata and sequence headers stamped with its
// first frame's time, as nginx-rtmp sends them: readers that probe the
// first seconds of a stream for its tracks would otherwise see the
// headers at 0 and the media seconds later, and may drop a track.
func (f *frame) at(ts uint32, chunkSize int) *frame {
	if f.time == ts || f.flv == nil {
		return f
	}
	csid := map[uint8]uint32{msgAudio: csidAudio, msgVideo: csidVideo}[f.typ]
	if csid == 0 {
		csid = csidData
	}
	g := &frame{typ: f.typ, time: ts, key: f.key, meta: f.meta}
	g.encode(csid, f.body(), chunkSize)
	return g
}
