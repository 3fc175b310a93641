package main

// A frame: one message from a publisher, its payload held once and given
// to players in each output form (FLV tags, RTMP chunks), shared read-only
// by every player and the GOP cache; and the part each player protocol
// plays in the hub.

import "encoding/binary"

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

// frame is one message in every output form, its payload held once: the
// FLV tag (header, payload, PreviousTagSize) is the one copy, and the RTMP
// form is its payload cut at the chunk size behind chunk headers kept in
// the frame itself (§5.3.1: every chunk after the first has the same
// type 3 header). A frame costs its payload whatever protocols its viewers
// use; a writer gets a form's bytes as the slices to write (appendWire).
// The bytes are shared by every subscriber and the GOP cache and must not
// be modified.
type frame struct {
	typ  uint8  // msgAudio, msgVideo, msgDataAMF0, or 0 for control frames
	time uint32 // RTMP timestamp, ms
	// key marks a point where a player can start: a video keyframe, or any
	// audio frame in a stream without video.
	key bool
	// flv is the FLV tag, or for control frames their FLV bytes (the FLV
	// header), or nil.
	flv []byte
	// rtmp is a control frame's RTMP bytes (a status message); nil for
	// media and data frames, whose RTMP form is made from flv.
	rtmp []byte
	meta *metaInfo // on metadata frames: what the metadata declares

	// The RTMP form of a media or data frame: the first chunk's header
	// (basic header, type 0 message header, extended timestamp), and the
	// header of each further chunk of chunkSize bytes.
	chunkSize        int32
	headLen, contLen uint8
	chunkHead        [3 + 11 + 4]byte
	chunkCont        [3 + 4]byte
}

// wireLen is how many bytes f is in form; 0 for a form it has none in.
func (f *frame) wireLen(form outputFormat) int {
	switch {
	case form == formatFLV, form == formatHLS: // the HLS muxer is queued by the FLV size
		return len(f.flv)
	case form != formatRTMP:
		return 0
	case f.rtmp != nil || f.headLen == 0:
		return len(f.rtmp)
	}
	n := len(f.body())
	chunks := max(1, (n+int(f.chunkSize)-1)/int(f.chunkSize))
	return int(f.headLen) + n + (chunks-1)*int(f.contLen)
}

// appendWire appends f's bytes in form to bufs, as the slices to write:
// the FLV tag whole; the RTMP chunks as headers between cuts of the
// payload (no copy).
func (f *frame) appendWire(bufs [][]byte, form outputFormat) [][]byte {
	switch {
	case (form == formatFLV || form == formatHLS) && f.flv != nil:
		return append(bufs, f.flv)
	case form != formatRTMP:
		return bufs
	case f.rtmp != nil:
		return append(bufs, f.rtmp)
	case f.headLen == 0:
		return bufs
	}
	bufs = append(bufs, f.chunkHead[:f.headLen])
	body := f.body()
	for {
		k := min(len(body), int(f.chunkSize))
		if k > 0 {
			bufs = append(bufs, body[:k])
		}
		if body = body[k:]; len(body) == 0 {
			return bufs
		}
		bufs = append(bufs, f.chunkCont[:f.contLen])
	}
}

// body is the message payload: the FLV tag's data.
func (f *frame) body() []byte { return f.flv[flvTagHeaderLen : len(f.flv)-4] }

// heldBytes is the memory f's bytes take.
func (f *frame) heldBytes() int { return len(f.rtmp) + len(f.flv) }

// frameKind says how the hub treats a frame.
type frameKind int

const (
	kindMedia frameKind = iota
	kindMeta
	kindAudioHeader
	kindVideoHeader
	kindTrackHeader // another header a joiner needs (hub.go trackHeaders)
)

// publishState classifies and encodes one publisher's messages. It is
// owned by the publisher's goroutine.
type publishState struct {
	sawVideo      bool
	declaredVideo bool
	codecs        codecState // codec.go: headers, keyframes in the bitstream
}

// encode turns one publisher message into a frame in both output forms.
// It returns nil for messages that are not relayed.
func (ps *publishState) encode(typ uint8, ts uint32, payload []byte, chunkSize int) (*frame, frameKind) {
	return ps.encodeIn(typ, ts, payload, nil, chunkSize)
}

// encodeIn is encode for an audio or video payload that is the Data of
// tag, an array with room for its FLV tag around it (rtmpMessage.Tag):
// the frame keeps tag, without a copy. tag nil: the payload is copied.
func (ps *publishState) encodeIn(typ uint8, ts uint32, payload, tag []byte, chunkSize int) (*frame, frameKind) {
	kind := kindMedia
	f := &frame{typ: typ, time: ts}
	csid := uint32(csidData)
	switch typ {
	case msgDataAMF0, msgDataAMF3:
		tag = nil // parseMetadata may rewrite it
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
		if ps.codecs.classifyAudio(payload).header {
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
		c := ps.codecs.classifyVideo(payload)
		if c.header {
			kind = kindVideoHeader
		}
		f.key = c.key
	default:
		return nil, 0
	}
	f.encodeIn(csid, payload, tag, chunkSize)
	return f, kind
}

// encode fills f's output forms with payload at f's type and time: the
// FLV tag, the one copy of the payload, and the RTMP chunk headers that go
// around it (what appendChunks writes, without the payload).
func (f *frame) encode(csid uint32, payload []byte, chunkSize int) {
	f.encodeIn(csid, payload, nil, chunkSize)
}

// encodeIn is encode with the FLV tag made in tag, around the payload
// that is its Data already, unless tag is nil.
func (f *frame) encodeIn(csid uint32, payload, tag []byte, chunkSize int) {
	if tag != nil {
		f.flv = fillFLVTag(tag, f.typ, f.time)
	} else {
		f.flv = appendFLVTag(make([]byte, 0, flvTagHeaderLen+len(payload)+4), f.typ, f.time, payload)
	}
	head := appendChunkHeader(f.chunkHead[:0], csid, f.typ, mediaStreamID, f.time, len(payload))
	cont := appendBasicHeader(f.chunkCont[:0], 3, csid)
	if f.time >= 0xFFFFFF {
		cont = binary.BigEndian.AppendUint32(cont, f.time) // §5.3.1.3: type 3 chunks repeat it
	}
	f.headLen, f.contLen, f.chunkSize = uint8(len(head)), uint8(len(cont)), int32(chunkSize)
}

// at is a copy of the media or data frame f stamped ts, in every output
// form. A joiner gets its sequence headers stamped with its first
// frame's time, as nginx-rtmp sends them: readers that probe the first
// seconds of a stream for its tracks would otherwise see the headers at 0
// and the media seconds later, and may drop a track. Metadata goes at 0
// whatever ts: ffmpeg takes a script tag for the stream's onMetaData only
// at time 0, and anywhere else for a packet of an extra data stream.
func (f *frame) at(ts uint32, chunkSize int) *frame {
	if f.typ == msgDataAMF0 {
		ts = 0
	}
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
