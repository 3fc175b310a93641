package main

// Enhanced RTMP (veovera enhanced-rtmp v2) tag headers inside audio and
// video messages: ExHeader, ModEx, Multitrack; what a publisher's
// messages are (sequence header, keyframe) and which slot a header fills
// for joiners. The bitstreams inside are codec.go's.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
)

// Enhanced RTMP v2 packet types beyond those in flv.go (enhanced-rtmp-v2,
// "Enhanced Video" and "Enhanced Audio" tables).
const (
	exSequenceEnd       = 2
	exMetadata          = 4 // video: AMF-encoded metadata (colorInfo)
	exVideoMultitrack   = 6
	exAudioMultitrack   = 5
	exModEx             = 7
	exMultichannelCfg   = 4 // audio: MultichannelConfig
	videoFrameKey       = 1
	videoFrameCommand   = 5
	codecHEVCLegacy     = 12 // FLV CodecID 12: HEVC by CDN convention (flv.js forks, SRS, NMS v2)
	multitrackOneTrack  = 0
	multitrackManyCodec = 2
	maxExTracks         = 16 // tracks read from one message; more are passed through unread
	maxModEx            = 8  // ModEx prefixes on one message
)

var errExTag = errors.New("e-rtmp: bad tag")

// exTrack is one track's part of an Enhanced RTMP message.
type exTrack struct {
	fourCC string
	id     uint8
	body   []byte // the codec's data: a configuration record, coded frames (with a CTS for avc1/hvc1/vvc1 CodedFrames), metadata
}

// exTag is an Enhanced RTMP audio or video message, or a legacy AVC/HEVC
// video message put in the same shape.
type exTag struct {
	frameType  byte // video only: 1 key, 2 inter, 5 command
	packetType byte // after ModEx and Multitrack: SequenceStart, CodedFrames, ...
	multitrack bool
	tracks     [maxExTracks]exTrack
	n          int // tracks read
}

// parseExVideo reads a video message: an ExVideoTagHeader (IsExHeader set)
// or a legacy AVC (7) or HEVC (12) header. ok is false for other legacy
// codecs, which gms does not look into.
func parseExVideo(p []byte, t *exTag) (ok bool, err error) {
	*t = exTag{}
	if len(p) == 0 {
		return false, nil
	}
	t.frameType = p[0] >> 4 & 0x07
	if p[0]&videoExHeader == 0 {
		// FLV 10.1 §E.4.3.1 VideoTagHeader: AVCPacketType (0 sequence
		// header, 1 NALU, 2 end of sequence), CompositionTime, data. The
		// same layout serves legacy HEVC (codec id 12).
		var cc string
		switch p[0] & 0x0F {
		case codecAVC:
			cc = "avc1"
		case codecHEVCLegacy:
			cc = "hvc1"
		default:
			return false, nil
		}
		if t.frameType == videoFrameCommand {
			return true, nil
		}
		if len(p) < 2 {
			return true, fmt.Errorf("%w: legacy %s header of %d bytes", errExTag, cc, len(p))
		}
		switch p[1] {
		case 0:
			t.packetType = exSequenceStart
		case 1:
			t.packetType = exCodedFrames
		case 2:
			t.packetType = exSequenceEnd
		default:
			t.packetType = 0x0F // not a type gms knows
		}
		// As in Enhanced RTMP, only CodedFrames keep the CompositionTime
		// before their data (see codedData); a sequence header is the
		// configuration record alone.
		body := p[2:]
		if t.packetType != exCodedFrames {
			body = p[min(5, len(p)):]
		}
		t.tracks[0], t.n = exTrack{fourCC: cc, body: body}, 1
		return true, nil
	}
	return true, parseExBody(p, t, true)
}

// parseExAudio reads an ExAudioTagHeader (SoundFormat 9); ok is false for
// legacy audio.
func parseExAudio(p []byte, t *exTag) (ok bool, err error) {
	*t = exTag{}
	if len(p) == 0 || p[0]>>4 != soundExHeader {
		return false, nil
	}
	return true, parseExBody(p, t, false)
}

// parseExBody reads what follows the first byte's packet type, as in
// enhanced-rtmp-v2's ExVideoTagHeader/ExAudioTagHeader and their
// ExVideoTagBody/ExAudioTagBody pseudocode: ModEx prefixes, then either
// one FourCC and its body, or a Multitrack header and one entry per track.
func parseExBody(p []byte, t *exTag, video bool) error {
	t.packetType = p[0] & 0x0F
	i := 1
	for mods := 0; t.packetType == exModEx; mods++ {
		if mods == maxModEx {
			return fmt.Errorf("%w: more than %d ModEx", errExTag, maxModEx)
		}
		// modExDataSize = UI8 + 1; 256 means a UI16 + 1 follows.
		if i >= len(p) {
			return fmt.Errorf("%w: ModEx size at %d", errExTag, i)
		}
		size := int(p[i]) + 1
		i++
		if size == 256 {
			if i+2 > len(p) {
				return fmt.Errorf("%w: ModEx size at %d", errExTag, i)
			}
			size = int(binary.BigEndian.Uint16(p[i:])) + 1
			i += 2
		}
		i += size // modExData: TimestampOffsetNano and future types, none needed to relay
		if i >= len(p) {
			return fmt.Errorf("%w: ModEx data of %d bytes at %d", errExTag, size, i)
		}
		t.packetType = p[i] & 0x0F // the high nibble is the ModEx type
		i++
	}
	multitrackType := byte(exVideoMultitrack)
	if !video {
		multitrackType = exAudioMultitrack
	}
	if video && t.frameType == videoFrameCommand && t.packetType != exMetadata {
		return nil // a command frame: one UI8 command, no body
	}
	if t.packetType != multitrackType {
		if i+4 > len(p) {
			return fmt.Errorf("%w: FourCC at %d", errExTag, i)
		}
		t.tracks[0], t.n = exTrack{fourCC: internFourCC(p[i : i+4]), body: p[i+4:]}, 1
		return nil
	}
	// Multitrack: AvMultitrackType (4 bits), the tracks' packet type (4
	// bits), a FourCC shared by all tracks unless ManyTracksManyCodecs.
	t.multitrack = true
	if i >= len(p) {
		return fmt.Errorf("%w: multitrack type at %d", errExTag, i)
	}
	mtType := p[i] >> 4
	t.packetType = p[i] & 0x0F
	i++
	if t.packetType == multitrackType || t.packetType == exModEx || mtType > multitrackManyCodec {
		return fmt.Errorf("%w: multitrack type %d, packet type %d", errExTag, mtType, t.packetType)
	}
	var shared string
	if mtType != multitrackManyCodec {
		if i+4 > len(p) {
			return fmt.Errorf("%w: FourCC at %d", errExTag, i)
		}
		shared = internFourCC(p[i : i+4])
		i += 4
	}
	for i < len(p) {
		if t.n == maxExTracks {
			return fmt.Errorf("%w: more than %d tracks", errExTag, maxExTracks)
		}
		tr := exTrack{fourCC: shared}
		if mtType == multitrackManyCodec {
			if i+4 > len(p) {
				return fmt.Errorf("%w: track FourCC at %d", errExTag, i)
			}
			tr.fourCC = internFourCC(p[i : i+4])
			i += 4
		}
		if i >= len(p) {
			return fmt.Errorf("%w: track id at %d", errExTag, i)
		}
		tr.id = p[i]
		i++
		if mtType == multitrackOneTrack {
			tr.body = p[i:]
			i = len(p)
		} else {
			// sizeOfTrack (UI24) counts the bytes after itself.
			if i+3 > len(p) {
				return fmt.Errorf("%w: track size at %d", errExTag, i)
			}
			size := int(be24(p[i:]))
			i += 3
			if size > len(p)-i {
				return fmt.Errorf("%w: track %d of %d bytes at %d, %d left", errExTag, tr.id, size, i, len(p)-i)
			}
			tr.body = p[i : i+size]
			i += size
		}
		t.tracks[t.n] = tr
		t.n++
	}
	if t.n == 0 {
		return fmt.Errorf("%w: multitrack message without tracks", errExTag)
	}
	return nil
}

// internFourCC is b as a string, without allocating for the FourCCs gms
// knows: it runs for every message.
func internFourCC(b []byte) string {
	switch string(b) {
	case "avc1":
		return "avc1"
	case "hvc1":
		return "hvc1"
	case "av01":
		return "av01"
	case "vp09":
		return "vp09"
	case "vp08":
		return "vp08"
	case "Opus":
		return "Opus"
	case "mp4a":
		return "mp4a"
	case "fLaC":
		return "fLaC"
	case "ac-3":
		return "ac-3"
	case "ec-3":
		return "ec-3"
	case ".mp3":
		return ".mp3"
	}
	return string(b)
}

// codedData is a CodedFrames or CodedFramesX body without its composition
// time offset (SI24, present for avc1, hvc1 and vvc1 CodedFrames).
func codedData(fourCC string, packetType byte, body []byte) ([]byte, bool) {
	if packetType == exCodedFrames && (fourCC == "avc1" || fourCC == "hvc1" || fourCC == "vvc1") {
		if len(body) < 3 {
			return nil, false
		}
		return body[3:], true
	}
	return body, packetType == exCodedFrames || packetType == exCodedFramesX
}

// mediaClass is how the hub treats an audio or video message.
type mediaClass struct {
	header bool // cached for joiners: a sequence header, an E-RTMP SequenceStart, MultichannelConfig or Metadata
	key    bool // video: a player can start here
}

// codecState is what a publisher's earlier messages tell about its later
// ones. It is owned by the publisher's goroutine (inside publishState).
type codecState struct {
	log         *slog.Logger // nil: nothing logged
	tag         exTag        // scratch, so that parsing allocates nothing
	nalLen      map[string]int
	keyTrack    uint8 // the track whose keyframes start GOPs: track 0, else the first with coded frames
	keyTrackSet bool
	warned      map[string]bool
}

// warnOnce logs what once per publish.
func (cs *codecState) warnOnce(what string, args ...any) {
	if cs.log == nil || cs.warned[what] {
		return
	}
	if cs.warned == nil {
		cs.warned = map[string]bool{}
	}
	cs.warned[what] = true
	cs.log.Warn(what+": passed through as it came", args...)
}

// knownVideo and knownAudio are the FourCCs gms reads; others pass through.
func knownVideo(cc string) bool {
	switch cc {
	case "avc1", "hvc1", "av01", "vp09", "vp08":
		return true
	}
	return false
}

func knownAudio(cc string) bool {
	switch cc {
	case "Opus", "fLaC", "ac-3", "ec-3", "mp4a", ".mp3":
		return true
	}
	return false
}

// classifyVideo says whether a video message is a sequence header or a
// keyframe. The frame type is trusted when it says keyframe; otherwise
// the bitstream is read (publishers such as MediaMTX's RTMP client send
// every Enhanced RTMP message with frame type 0). In a multitrack stream
// track 0 decides where GOPs start (until it shows up, the first track to
// send coded frames).
func (cs *codecState) classifyVideo(p []byte) mediaClass {
	header, key := videoInfo(p)
	t := &cs.tag
	ok, err := parseExVideo(p, t)
	if !ok {
		return mediaClass{header: header, key: key}
	}
	if err != nil {
		cs.warnOnce("unreadable video tag header", "err", err)
		return mediaClass{header: header, key: key}
	}
	if t.n == 0 {
		return mediaClass{} // a command frame
	}
	switch t.packetType {
	case exSequenceStart, exMPEG2TSSequenceStart:
		for i := range t.n {
			tr := &t.tracks[i]
			if tr.fourCC == "avc1" || tr.fourCC == "hvc1" {
				if cs.nalLen == nil {
					cs.nalLen = map[string]int{}
				}
				cs.nalLen[tr.fourCC] = nalLengthSize(tr.fourCC, tr.body)
			}
		}
		return mediaClass{header: true}
	case exMetadata:
		return mediaClass{header: true} // colorInfo, for the frames that follow
	case exCodedFrames, exCodedFramesX:
	case exSequenceEnd:
		return mediaClass{}
	default:
		cs.warnOnce("unknown video packet type", "packetType", t.packetType)
		return mediaClass{}
	}
	// E-RTMP v2 "Track Ordering": track 0 SHOULD be the default track.
	if !cs.keyTrackSet || cs.keyTrack != 0 && t.tracks[0].id == 0 {
		cs.keyTrack, cs.keyTrackSet = t.tracks[0].id, true
	}
	for i := range t.n {
		tr := &t.tracks[i]
		if !knownVideo(tr.fourCC) {
			cs.warnOnce("unknown video FourCC", "fourcc", fourCCName(tr.fourCC))
		}
		if tr.id != cs.keyTrack {
			continue
		}
		if t.frameType == videoFrameKey {
			return mediaClass{key: true}
		}
		data, ok := codedData(tr.fourCC, t.packetType, tr.body)
		return mediaClass{key: ok && bitstreamKey(tr.fourCC, data, cs.nalLen[tr.fourCC])}
	}
	return mediaClass{}
}

// classifyAudio says whether an audio message is to be cached for
// joiners: AAC's AudioSpecificConfig, an Enhanced RTMP SequenceStart or
// MultichannelConfig, of any track.
func (cs *codecState) classifyAudio(p []byte) mediaClass {
	t := &cs.tag
	ok, err := parseExAudio(p, t)
	if !ok {
		return mediaClass{header: audioIsHeader(p)}
	}
	if err != nil {
		cs.warnOnce("unreadable audio tag header", "err", err)
		return mediaClass{header: audioIsHeader(p)}
	}
	for i := range t.n {
		if !knownAudio(t.tracks[i].fourCC) {
			cs.warnOnce("unknown audio FourCC", "fourcc", fourCCName(t.tracks[i].fourCC))
		}
	}
	switch t.packetType {
	case exSequenceStart, exMultichannelCfg:
		return mediaClass{header: true}
	case exCodedFrames, exSequenceEnd:
	default:
		cs.warnOnce("unknown audio packet type", "packetType", t.packetType)
	}
	return mediaClass{}
}

// headerSlot names what a cached header stands for, so that a new one
// replaces the one it updates: message type, packet type (SequenceStart,
// MultichannelConfig, Metadata) and the track of its first entry. Legacy
// AVC/AAC headers and single-track SequenceStarts are slot
// {typ, 0, 0}, the stream's main header of that type.
type headerSlot struct {
	typ, packetType, track uint8
}

func headerSlotOf(typ uint8, body []byte) headerSlot {
	var t exTag
	var ok bool
	if typ == msgVideo {
		ok, _ = parseExVideo(body, &t)
	} else {
		ok, _ = parseExAudio(body, &t)
	}
	if !ok || t.n == 0 || t.packetType == exMPEG2TSSequenceStart {
		return headerSlot{typ: typ}
	}
	return headerSlot{typ: typ, packetType: t.packetType, track: t.tracks[0].id}
}

// trackParams is what the API shows about one track of a multitrack
// stream.
type trackParams struct {
	Type  string       `json:"type"` // "video" or "audio"
	ID    int          `json:"id"`
	Video *videoParams `json:"video,omitempty"`
	Audio *audioParams `json:"audio,omitempty"`
}

// multitrackParams reads every track of a multitrack SequenceStart; nil
// for other messages.
func multitrackParams(typ uint8, body []byte) []trackParams {
	var t exTag
	var err error
	if typ == msgVideo {
		_, err = parseExVideo(body, &t)
	} else {
		_, err = parseExAudio(body, &t)
	}
	if err != nil || !t.multitrack || t.packetType != exSequenceStart {
		return nil
	}
	out := make([]trackParams, 0, t.n)
	for i := range t.n {
		tr := &t.tracks[i]
		if typ == msgVideo {
			v := exVideoParams(tr)
			out = append(out, trackParams{Type: "video", ID: int(tr.id), Video: &v})
		} else {
			a := exAudioParams(tr)
			out = append(out, trackParams{Type: "audio", ID: int(tr.id), Audio: &a})
		}
	}
	return out
}
