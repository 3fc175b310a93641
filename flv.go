package main

// FLV (Adobe Flash Video File Format Specification 10.1, Annex E) and the
// codec headers inside its tags, including Enhanced RTMP's extended
// audio/video headers (veovera enhanced-rtmp v2).

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// FLV tag types (§E.4.1) equal the RTMP message types they carry.
const (
	tagAudio  = msgAudio
	tagVideo  = msgVideo
	tagScript = msgDataAMF0
)

const (
	flvHeaderLen    = 9
	flvTagHeaderLen = 11
	maxFLVTagData   = 16 << 20 // DataSize is 24 bits
)

var (
	errFLVSignature = errors.New("flv: not an FLV stream")
	errFLVTag       = errors.New("flv: bad tag")
)

// appendFLVHeader writes the FLV header (§E.2) and PreviousTagSize0.
func appendFLVHeader(dst []byte, hasAudio, hasVideo bool) []byte {
	var flags byte
	if hasAudio {
		flags |= 0x04 // TypeFlagsAudio
	}
	if hasVideo {
		flags |= 0x01 // TypeFlagsVideo
	}
	dst = append(dst, 'F', 'L', 'V', 1, flags) // Signature, Version 1, flags
	dst = append(dst, 0, 0, 0, flvHeaderLen)   // DataOffset: the header's length
	return append(dst, 0, 0, 0, 0)             // PreviousTagSize0 is always 0
}

// appendFLVTag writes one tag (§E.4.1) and the PreviousTagSize after it.
func appendFLVTag(dst []byte, typ uint8, ts uint32, data []byte) []byte {
	n := len(data)
	dst = append(dst, typ)                                  // TagType; Filter and Reserved bits 0
	dst = append(dst, byte(n>>16), byte(n>>8), byte(n))     // DataSize
	dst = append(dst, byte(ts>>16), byte(ts>>8), byte(ts))  // Timestamp, lower 24 bits
	dst = append(dst, byte(ts>>24))                         // TimestampExtended, upper 8 bits
	dst = append(dst, 0, 0, 0)                              // StreamID, always 0
	dst = append(dst, data...)                              // Data
	return binary.BigEndian.AppendUint32(dst, uint32(11+n)) // PreviousTagSize
}

// flvTag is one parsed tag. Data is valid until the next read.
type flvTag struct {
	Type uint8
	Time uint32
	Data []byte
}

// flvReader reads an FLV stream: header, then tags.
type flvReader struct {
	r    io.Reader
	hdr  [flvTagHeaderLen]byte
	data []byte
	// Flags of the header: TypeFlagsAudio and TypeFlagsVideo.
	HasAudio, HasVideo bool
}

// newFLVReader reads and checks the FLV header.
func newFLVReader(r io.Reader) (*flvReader, error) {
	fr := &flvReader{r: r}
	var h [flvHeaderLen + 4]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return nil, fmt.Errorf("flv: header: %w", err)
	}
	if h[0] != 'F' || h[1] != 'L' || h[2] != 'V' {
		return nil, errFLVSignature
	}
	off := binary.BigEndian.Uint32(h[5:9])
	if off < flvHeaderLen || off > 1024 {
		return nil, fmt.Errorf("%w: DataOffset %d", errFLVSignature, off)
	}
	if _, err := io.CopyN(io.Discard, r, int64(off-flvHeaderLen)); err != nil {
		return nil, fmt.Errorf("flv: header: %w", err)
	}
	fr.HasAudio, fr.HasVideo = h[4]&0x04 != 0, h[4]&0x01 != 0
	return fr, nil
}

// next reads one tag and its PreviousTagSize.
func (fr *flvReader) next() (flvTag, error) {
	if _, err := io.ReadFull(fr.r, fr.hdr[:]); err != nil {
		return flvTag{}, err
	}
	h := fr.hdr[:]
	n := be24(h[1:4])
	if n > maxFLVTagData {
		return flvTag{}, fmt.Errorf("%w: DataSize %d", errFLVTag, n)
	}
	ts := be24(h[4:7]) | uint32(h[7])<<24
	fr.data = growLen(fr.data[:0], int(n)+4)
	if _, err := io.ReadFull(fr.r, fr.data); err != nil {
		return flvTag{}, fmt.Errorf("flv: tag data: %w", io.ErrUnexpectedEOF)
	}
	if prev := binary.BigEndian.Uint32(fr.data[n:]); prev != 11+n {
		return flvTag{}, fmt.Errorf("%w: PreviousTagSize %d, want %d", errFLVTag, prev, 11+n)
	}
	return flvTag{Type: h[0] & 0x1F, Time: ts, Data: fr.data[:n]}, nil
}

// ---- Codec headers ----

// Legacy video CodecIDs (§E.4.3.1) and Enhanced RTMP packet types.
const (
	codecAVC               = 7
	videoExHeader          = 0x80
	exSequenceStart        = 0
	exCodedFrames          = 1
	exCodedFramesX         = 3
	exMPEG2TSSequenceStart = 5
	soundAAC               = 10
	soundExHeader          = 9
)

// videoInfo classifies a video tag body: a sequence header (decoder
// configuration) or a keyframe. Unknown codecs pass as plain frames.
func videoInfo(p []byte) (header, key bool) {
	if len(p) == 0 {
		return false, false
	}
	frameType := p[0] >> 4 & 0x07 // 1 = keyframe, in both header forms
	if p[0]&videoExHeader != 0 {
		// Enhanced RTMP: IsExHeader, FrameType(3 bits), PacketType(4 bits), FourCC.
		switch p[0] & 0x0F {
		case exSequenceStart, exMPEG2TSSequenceStart:
			return true, false
		case exCodedFrames, exCodedFramesX:
			return false, frameType == 1
		}
		return false, false
	}
	// §E.4.3.1: AVC (and the HEVC/AV1 ids some encoders put in the legacy
	// header) carry AVCPacketType 0 for the sequence header.
	codec := p[0] & 0x0F
	if (codec == codecAVC || codec == 12 || codec == 13) && len(p) > 1 && p[1] == 0 {
		return true, false
	}
	return false, frameType == 1
}

// audioIsHeader reports whether an audio tag body is a sequence header:
// AAC's AudioSpecificConfig (AACPacketType 0, §E.4.2.1), or an Enhanced
// RTMP SequenceStart.
func audioIsHeader(p []byte) bool {
	if len(p) == 0 {
		return false
	}
	switch p[0] >> 4 {
	case soundAAC:
		return len(p) > 1 && p[1] == 0
	case soundExHeader:
		return p[0]&0x0F == exSequenceStart
	}
	return false
}

// metaInfo is what a stream's onMetaData declares.
type metaInfo struct {
	hasAudio, hasVideo bool
	values             amfObject
}

// parseMetadata reads a data message. It returns the payload to relay
// (with ffmpeg's "@setDataFrame" wrapper removed, so that players get
// "onMetaData" as Flash expects) and, for onMetaData, what it declares.
// ok is false for messages that are not to be relayed.
func parseMetadata(p []byte) (payload []byte, meta *metaInfo, ok bool) {
	name, rest, err := amf0Decode(p)
	if err != nil {
		return p, nil, true // not AMF we understand: relay as it came
	}
	switch name {
	case "@setDataFrame":
		p = rest
		if name, _, err = amf0Decode(p); err != nil {
			return nil, nil, false
		}
	case "@clearDataFrame":
		return nil, nil, false
	}
	if name != "onMetaData" {
		return p, nil, true
	}
	vals, err := amf0DecodeAll(p)
	if err != nil || len(vals) < 2 {
		return p, &metaInfo{}, true
	}
	var obj amfObject
	switch v := vals[1].(type) {
	case amfObject:
		obj = v
	case amfECMAArray:
		obj = amfObject(v)
	}
	_, hasAudio := obj.Get("audiocodecid")
	_, hasVideo := obj.Get("videocodecid")
	return p, &metaInfo{hasAudio: hasAudio, hasVideo: hasVideo, values: obj}, true
}

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
	f.rtmp = appendChunks(make([]byte, 0, chunksLen(csid, ts, len(payload), chunkSize)),
		csid, typ, mediaStreamID, ts, payload, chunkSize)
	f.flv = appendFLVTag(make([]byte, 0, flvTagHeaderLen+len(payload)+4), typ, ts, payload)
	return f, kind
}
