package main

// FLV golden bytes (Adobe Flash Video File Format Specification 10.1,
// Annex E), the codec header classification (§E.4.2.1, §E.4.3.1 and
// Enhanced RTMP), metadata handling, and the encode-once output.

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"
)

func TestAppendFLVHeaderGolden(t *testing.T) {
	for _, tc := range []struct {
		audio, video bool
		want         []byte
	}{
		{true, true, joinBytes(
			[]byte("FLV"),              // Signature (§E.2)
			bs(0x01),                   // Version 1
			bs(0x05),                   // TypeFlagsAudio (0x04) | TypeFlagsVideo (0x01)
			bs(0x00, 0x00, 0x00, 0x09), // DataOffset: 9, the header's length
			bs(0x00, 0x00, 0x00, 0x00), // PreviousTagSize0 (§E.3)
		)},
		{true, false, joinBytes([]byte("FLV"), bs(0x01), bs(0x04), bs(0, 0, 0, 9), bs(0, 0, 0, 0))},
		{false, true, joinBytes([]byte("FLV"), bs(0x01), bs(0x01), bs(0, 0, 0, 9), bs(0, 0, 0, 0))},
		{false, false, joinBytes([]byte("FLV"), bs(0x01), bs(0x00), bs(0, 0, 0, 9), bs(0, 0, 0, 0))},
	} {
		got := appendFLVHeader(nil, tc.audio, tc.video)
		if !bytes.Equal(got, tc.want) {
			t.Errorf("appendFLVHeader(%v, %v) = % x; want % x", tc.audio, tc.video, got, tc.want)
		}
		fr, err := newFLVReader(bytes.NewReader(got))
		if err != nil {
			t.Fatalf("newFLVReader(% x) = %v", got, err)
		}
		if fr.HasAudio != tc.audio || fr.HasVideo != tc.video {
			t.Errorf("newFLVReader(% x) flags = %v, %v; want %v, %v", got, fr.HasAudio, fr.HasVideo, tc.audio, tc.video)
		}
		if _, err := fr.next(); err != io.EOF {
			t.Errorf("next after the header = %v; want io.EOF", err)
		}
	}
}

// flvTagGolden pins appendFLVTag's bytes (§E.4.1).
var flvTagGolden = []struct {
	name string
	typ  uint8
	ts   uint32
	data []byte
	enc  []byte
}{
	{
		name: "video keyframe at 0",
		typ:  tagVideo, ts: 0, data: bs(0x17, 0x01, 0x00, 0x00, 0x00),
		enc: joinBytes(
			bs(0x09),                   // Reserved 0, Filter 0, TagType 9: video
			bs(0x00, 0x00, 0x05),       // DataSize 5
			bs(0x00, 0x00, 0x00),       // Timestamp, lower 24 bits
			bs(0x00),                   // TimestampExtended, upper 8 bits
			bs(0x00, 0x00, 0x00),       // StreamID, always 0
			bs(0x17, 0x01, 0, 0, 0),    // Data: VIDEODATA
			bs(0x00, 0x00, 0x00, 0x10), // PreviousTagSize: 11 + 5
		),
	},
	{
		name: "audio at 0x123456 ms",
		typ:  tagAudio, ts: 0x123456, data: bs(0xAF, 0x01, 0x21),
		enc: joinBytes(
			bs(0x08),                   // TagType 8: audio
			bs(0x00, 0x00, 0x03),       // DataSize 3
			bs(0x12, 0x34, 0x56),       // Timestamp
			bs(0x00),                   // TimestampExtended
			bs(0x00, 0x00, 0x00),       // StreamID
			bs(0xAF, 0x01, 0x21),       // Data: AUDIODATA
			bs(0x00, 0x00, 0x00, 0x0E), // PreviousTagSize: 14
		),
	},
	{
		name: "script data past 2^24 ms",
		typ:  tagScript, ts: 0x01234567, data: bs(0x05),
		enc: joinBytes(
			bs(0x12),                   // TagType 18: script data
			bs(0x00, 0x00, 0x01),       // DataSize 1
			bs(0x23, 0x45, 0x67),       // Timestamp: lower 24 bits of 0x01234567
			bs(0x01),                   // TimestampExtended: the upper 8
			bs(0x00, 0x00, 0x00),       // StreamID
			bs(0x05),                   // Data
			bs(0x00, 0x00, 0x00, 0x0C), // PreviousTagSize: 12
		),
	},
	{
		name: "timestamp 0xFFFFFFFF",
		typ:  tagVideo, ts: 0xFFFFFFFF, data: bs(0x27, 0x01),
		enc: joinBytes(
			bs(0x09),
			bs(0x00, 0x00, 0x02),
			bs(0xFF, 0xFF, 0xFF), // Timestamp
			bs(0xFF),             // TimestampExtended
			bs(0x00, 0x00, 0x00),
			bs(0x27, 0x01),
			bs(0x00, 0x00, 0x00, 0x0D),
		),
	},
	{
		name: "empty data",
		typ:  tagAudio, ts: 1, data: nil,
		enc: joinBytes(
			bs(0x08),
			bs(0x00, 0x00, 0x00), // DataSize 0
			bs(0x00, 0x00, 0x01),
			bs(0x00),
			bs(0x00, 0x00, 0x00),
			bs(0x00, 0x00, 0x00, 0x0B), // PreviousTagSize: 11, the header alone
		),
	},
	{
		name: "300 bytes of data",
		typ:  tagVideo, ts: 40, data: goldP300,
		enc: joinBytes(
			bs(0x09),
			bs(0x00, 0x01, 0x2C), // DataSize 300
			bs(0x00, 0x00, 0x28),
			bs(0x00),
			bs(0x00, 0x00, 0x00),
			goldP300,
			bs(0x00, 0x00, 0x01, 0x37), // PreviousTagSize: 311
		),
	},
}

func TestAppendFLVTagGolden(t *testing.T) {
	stream := appendFLVHeader(nil, true, true)
	for _, tc := range flvTagGolden {
		got := appendFLVTag(nil, tc.typ, tc.ts, tc.data)
		if !bytes.Equal(got, tc.enc) {
			t.Errorf("%s: appendFLVTag(%d, %#x, % x) =\n% x\nwant\n% x", tc.name, tc.typ, tc.ts, tc.data, got, tc.enc)
		}
		stream = append(stream, tc.enc...)
	}
	// The same bytes, read back as one stream.
	fr, err := newFLVReader(bytes.NewReader(stream))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range flvTagGolden {
		tag, err := fr.next()
		if err != nil {
			t.Fatalf("%s: next = %v", tc.name, err)
		}
		if tag.Type != tc.typ || tag.Time != tc.ts || !bytes.Equal(tag.Data, tc.data) {
			t.Errorf("%s: next = {%d %#x % x}; want {%d %#x % x}", tc.name, tag.Type, tag.Time, tag.Data, tc.typ, tc.ts, tc.data)
		}
	}
	if _, err := fr.next(); err != io.EOF {
		t.Errorf("next at the end = %v; want io.EOF", err)
	}
}

func TestFLVReaderErrors(t *testing.T) {
	header := appendFLVHeader(nil, true, true)
	tag := appendFLVTag(nil, tagVideo, 5, bs(0x17, 0x01))
	for _, tc := range []struct {
		name      string
		in        []byte
		headerErr error // from newFLVReader
		tagErr    error // from the first next
		want      *flvTag
	}{
		{name: "empty", in: nil, headerErr: io.EOF},
		{name: "short header", in: header[:5], headerErr: io.ErrUnexpectedEOF},
		{name: "bad signature", in: joinBytes([]byte("FLW"), header[3:]), headerErr: errFLVSignature},
		{name: "DataOffset 8, inside the header", in: joinBytes(header[:5], bs(0, 0, 0, 8), bs(0, 0, 0, 0)), headerErr: errFLVSignature},
		{name: "DataOffset 1025", in: joinBytes(header[:5], bs(0, 0, 4, 1), bs(0, 0, 0, 0)), headerErr: errFLVSignature},
		{
			// §E.2: DataOffset may be larger than 9; the reader skips the rest.
			name: "DataOffset 13 skips 4 bytes",
			in:   joinBytes(header[:5], bs(0, 0, 0, 13), bs(0xEE, 0xEE, 0xEE, 0xEE), bs(0, 0, 0, 0), tag),
			want: &flvTag{Type: tagVideo, Time: 5, Data: bs(0x17, 0x01)},
		},
		{name: "DataOffset past the end", in: joinBytes(header[:5], bs(0, 0, 0, 100), bs(0, 0, 0, 0)), headerErr: io.EOF},
		{
			// §E.4.1: TagType is the low 5 bits; Filter (0x20) marks encrypted tags.
			name: "Filter bit set",
			in:   joinBytes(header, bs(0x29), tag[1:]),
			want: &flvTag{Type: tagVideo, Time: 5, Data: bs(0x17, 0x01)},
		},
		{name: "PreviousTagSize wrong", in: joinBytes(header, tag[:len(tag)-1], bs(0x0E)), tagErr: errFLVTag},
		{name: "tag header cut", in: joinBytes(header, tag[:6]), tagErr: io.ErrUnexpectedEOF},
		{name: "tag data cut", in: joinBytes(header, tag[:12]), tagErr: io.ErrUnexpectedEOF},
		{name: "PreviousTagSize cut", in: joinBytes(header, tag[:len(tag)-2]), tagErr: io.ErrUnexpectedEOF},
		{name: "DataSize 0xFFFFFF with 2 bytes", in: joinBytes(header, bs(9, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0, 0, 0, 0, 1, 2)), tagErr: io.ErrUnexpectedEOF},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fr, err := newFLVReader(bytes.NewReader(tc.in))
			if tc.headerErr != nil || err != nil {
				if !errors.Is(err, tc.headerErr) {
					t.Fatalf("newFLVReader(% x) = %v; want %v", tc.in, err, tc.headerErr)
				}
				return
			}
			tag, err := fr.next()
			if tc.tagErr != nil || err != nil {
				if !errors.Is(err, tc.tagErr) {
					t.Fatalf("next = %v; want %v", err, tc.tagErr)
				}
				return
			}
			if tag.Type != tc.want.Type || tag.Time != tc.want.Time || !bytes.Equal(tag.Data, tc.want.Data) {
				t.Errorf("next = %+v; want %+v", tag, *tc.want)
			}
		})
	}
}

// exVideo builds an Enhanced RTMP ExHeader video body: IsExHeader,
// FrameType (3 bits), PacketType (4 bits), FourCC, then data.
func exVideo(frameType, packetType byte, fourCC string, data ...byte) []byte {
	return joinBytes(bs(0x80|frameType<<4|packetType), []byte(fourCC), data)
}

func TestVideoInfo(t *testing.T) {
	for _, tc := range []struct {
		name        string
		p           []byte
		header, key bool
	}{
		{"empty", nil, false, false},
		// §E.4.3.1: FrameType (4 bits) CodecID (4 bits), then for AVC
		// AVCPacketType: 0 sequence header, 1 NALU, 2 end of sequence.
		{"AVC sequence header", bs(0x17, 0x00, 0, 0, 0, 0x01, 0x64), true, false},
		{"AVC keyframe", bs(0x17, 0x01, 0, 0, 0, 0x65), false, true},
		{"AVC inter frame", bs(0x27, 0x01, 0, 0, 0, 0x41), false, false},
		{"AVC disposable inter frame", bs(0x37, 0x01, 0, 0, 0), false, false},
		{"AVC keyframe byte alone", bs(0x17), false, true},
		{"AVC inter sequence header (frame type 2)", bs(0x27, 0x00), true, false},
		{"HEVC in the legacy header (codec 12)", bs(0x1C, 0x00, 0, 0, 0), true, false},
		{"AV1 in the legacy header (codec 13)", bs(0x1D, 0x00), true, false},
		{"HEVC keyframe, legacy header", bs(0x1C, 0x01), false, true},
		{"Sorenson H.263 keyframe", bs(0x12, 0x00), false, true},
		{"Sorenson H.263 inter frame", bs(0x22, 0x00), false, false},
		{"VP6 keyframe, no packet type", bs(0x14, 0x00), false, true},
		{"video info/command frame", bs(0x57, 0x01), false, false},
		// Enhanced RTMP: IsExHeader | FrameType | PacketType, FourCC.
		{"hvc1 SequenceStart", exVideo(1, exSequenceStart, "hvc1", 0x01), true, false},
		{"av01 SequenceStart", exVideo(1, exSequenceStart, "av01", 0x81), true, false},
		{"av01 MPEG2TSSequenceStart", exVideo(1, exMPEG2TSSequenceStart, "av01"), true, false},
		{"hvc1 CodedFrames key", exVideo(1, exCodedFrames, "hvc1", 0, 0, 0, 0x26), false, true},
		{"hvc1 CodedFrames inter", exVideo(2, exCodedFrames, "hvc1", 0, 0, 0, 0x02), false, false},
		{"av01 CodedFramesX key", exVideo(1, exCodedFramesX, "av01", 0x12), false, true},
		{"av01 CodedFramesX inter", exVideo(2, exCodedFramesX, "av01", 0x32), false, false},
		{"SequenceEnd", exVideo(1, 2, "hvc1"), false, false},
		{"Metadata", exVideo(1, 4, "hvc1", 0x02, 0x00), false, false},
		{"unknown FourCC CodedFrames key passes as a frame", exVideo(1, exCodedFrames, "zzzz", 1, 2), false, true},
		{"unknown FourCC inter", exVideo(2, exCodedFramesX, "zzzz"), false, false},
		{"ExHeader byte alone", bs(0x90), true, false},
		{"unknown packet type 15", exVideo(1, 15, "hvc1"), false, false},
	} {
		header, key := videoInfo(tc.p)
		if header != tc.header || key != tc.key {
			t.Errorf("%s: videoInfo(% x) = %v, %v; want %v, %v", tc.name, tc.p, header, key, tc.header, tc.key)
		}
	}
}

func TestAudioIsHeader(t *testing.T) {
	for _, tc := range []struct {
		name string
		p    []byte
		want bool
	}{
		{"empty", nil, false},
		// §E.4.2.1: SoundFormat 10 (AAC), then AACPacketType 0: AudioSpecificConfig.
		{"AAC sequence header", bs(0xAF, 0x00, 0x12, 0x10), true},
		{"AAC raw", bs(0xAF, 0x01, 0x21, 0x00), false},
		{"AAC byte alone", bs(0xAF), false},
		{"AAC mono 22 kHz sequence header", bs(0xA6, 0x00, 0x13, 0x88), true},
		{"MP3", bs(0x2F, 0x00, 0xFF), false},
		{"Speex", bs(0xB6, 0x00), false},
		// Enhanced RTMP audio: SoundFormat 9 (ExHeader), AudioPacketType, FourCC.
		{"Opus SequenceStart", joinBytes(bs(0x90), []byte("Opus"), bs(1, 2)), true},
		{"Opus CodedFrames", joinBytes(bs(0x91), []byte("Opus"), bs(1, 2)), false},
		{"unknown FourCC SequenceStart", joinBytes(bs(0x90), []byte("zzzz")), true},
		{"ExHeader byte alone", bs(0x90), true},
	} {
		if got := audioIsHeader(tc.p); got != tc.want {
			t.Errorf("%s: audioIsHeader(% x) = %v; want %v", tc.name, tc.p, got, tc.want)
		}
	}
}

func TestParseMetadata(t *testing.T) {
	onMeta := amf0AppendAll(nil, "onMetaData", amfECMAArray{{"width", 320.0}, {"videocodecid", 7.0}, {"audiocodecid", 10.0}})
	videoOnly := amf0AppendAll(nil, "onMetaData", amfObject{{"videocodecid", 12.0}})
	cue := amf0AppendAll(nil, "onCuePoint", amfObject{{"name", "x"}})
	for _, tc := range []struct {
		name     string
		in       []byte
		payload  []byte
		meta     *metaInfo
		ok       bool
		noValues bool // meta.values is nil
	}{
		{
			name:    "@setDataFrame onMetaData: wrapper stripped",
			in:      joinBytes(amf0Append(nil, "@setDataFrame"), onMeta),
			payload: onMeta, ok: true,
			meta: &metaInfo{hasAudio: true, hasVideo: true},
		},
		{
			name: "plain onMetaData, object, video only",
			in:   videoOnly, payload: videoOnly, ok: true,
			meta: &metaInfo{hasVideo: true},
		},
		{name: "@clearDataFrame: not relayed", in: amf0AppendAll(nil, "@clearDataFrame", "onMetaData"), ok: false},
		{name: "onCuePoint: relayed, no metadata", in: cue, payload: cue, ok: true},
		{
			name: "@setDataFrame onCuePoint: stripped",
			in:   joinBytes(amf0Append(nil, "@setDataFrame"), cue), payload: cue, ok: true,
		},
		{name: "@setDataFrame alone: dropped", in: amf0Append(nil, "@setDataFrame"), ok: false},
		{name: "@setDataFrame then garbage: dropped", in: joinBytes(amf0Append(nil, "@setDataFrame"), bs(0xFF)), ok: false},
		{name: "garbage: relayed as it came", in: bs(0xFF, 0x00, 0x01), payload: bs(0xFF, 0x00, 0x01), ok: true},
		{name: "empty: relayed as it came", in: nil, payload: nil, ok: true},
		{name: "a number first: relayed", in: amf0Append(nil, 1.0), payload: amf0Append(nil, 1.0), ok: true},
		{
			name: "onMetaData alone: metadata with nothing declared",
			in:   amf0Append(nil, "onMetaData"), payload: amf0Append(nil, "onMetaData"), ok: true,
			meta: &metaInfo{}, noValues: true,
		},
		{
			name: "onMetaData with a number: nothing declared",
			in:   amf0AppendAll(nil, "onMetaData", 3.0), payload: amf0AppendAll(nil, "onMetaData", 3.0), ok: true,
			meta: &metaInfo{}, noValues: true,
		},
		{
			name: "onMetaData with a truncated object",
			in:   onMeta[:len(onMeta)-3], payload: onMeta[:len(onMeta)-3], ok: true,
			meta: &metaInfo{}, noValues: true,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			payload, meta, ok := parseMetadata(bytes.Clone(tc.in))
			if ok != tc.ok || !bytes.Equal(payload, tc.payload) {
				t.Errorf("parseMetadata(% x) = % x, ok %v; want % x, ok %v", tc.in, payload, ok, tc.payload, tc.ok)
			}
			switch {
			case (meta == nil) != (tc.meta == nil):
				t.Errorf("parseMetadata(% x) meta = %+v; want %+v", tc.in, meta, tc.meta)
			case meta != nil:
				if meta.hasAudio != tc.meta.hasAudio || meta.hasVideo != tc.meta.hasVideo {
					t.Errorf("meta audio, video = %v, %v; want %v, %v", meta.hasAudio, meta.hasVideo, tc.meta.hasAudio, tc.meta.hasVideo)
				}
				if (meta.values == nil) != tc.noValues {
					t.Errorf("meta.values = %v; want nil: %v", meta.values, tc.noValues)
				}
			}
		})
	}
	// The values come through, in order.
	_, meta, _ := parseMetadata(onMeta)
	if w, _ := meta.values.Number("width"); w != 320 || len(meta.values) != 3 || meta.values[0].Key != "width" {
		t.Errorf("meta.values = %v; want width 320 first of 3", meta.values)
	}
}

// decodeFrameForms reads back a frame's two forms: the RTMP chunks at
// chunkSize, and the FLV tag after a header.
func decodeFrameForms(t testing.TB, f *frame, chunkSize int) (rtmpMessage, flvTag) {
	t.Helper()
	cr := newChunkReader(bufio.NewReader(bytes.NewReader(f.wireBytes(formatRTMP))))
	cr.chunkSize = uint32(chunkSize)
	msg, err := cr.readMessage()
	if err != nil {
		t.Fatalf("reading the RTMP form back: %v", err)
	}
	if _, err := cr.readMessage(); err != io.EOF {
		t.Fatalf("after the message, the RTMP form has more: %v", err)
	}
	fr, err := newFLVReader(bytes.NewReader(joinBytes(appendFLVHeader(nil, true, true), f.flv)))
	if err != nil {
		t.Fatal(err)
	}
	tag, err := fr.next()
	if err != nil {
		t.Fatalf("reading the FLV form back: %v", err)
	}
	if _, err := fr.next(); err != io.EOF {
		t.Fatalf("after the tag, the FLV form has more: %v", err)
	}
	return msg, tag
}

func TestPublishStateEncode(t *testing.T) {
	meta := amf0AppendAll(nil, "onMetaData", amfECMAArray{{"videocodecid", 7.0}, {"audiocodecid", 10.0}})
	audioMeta := amf0AppendAll(nil, "onMetaData", amfECMAArray{{"audiocodecid", 10.0}})
	type step struct {
		typ     uint8
		ts      uint32
		in      []byte
		outTyp  uint8  // the message type relayed
		out     []byte // the payload relayed; nil: not relayed
		csid    uint32
		kind    frameKind
		key     bool
		hasMeta bool
	}
	for _, tc := range []struct {
		name      string
		chunkSize int
		steps     []step
	}{
		{
			name: "audio and video with metadata", chunkSize: 128,
			steps: []step{
				{typ: msgDataAMF0, in: joinBytes(amf0Append(nil, "@setDataFrame"), meta), outTyp: msgDataAMF0, out: meta, csid: csidData, kind: kindMeta, hasMeta: true},
				{typ: msgAudio, in: bs(0xAF, 0x00, 0x12, 0x10), outTyp: msgAudio, out: bs(0xAF, 0x00, 0x12, 0x10), csid: csidAudio, kind: kindAudioHeader},
				{typ: msgVideo, in: bs(0x17, 0x00, 0, 0, 0, 1), outTyp: msgVideo, out: bs(0x17, 0x00, 0, 0, 0, 1), csid: csidVideo, kind: kindVideoHeader},
				// Video is declared: audio frames are not join points.
				{typ: msgAudio, ts: 3, in: bs(0xAF, 0x01, 0x21), outTyp: msgAudio, out: bs(0xAF, 0x01, 0x21), csid: csidAudio, kind: kindMedia},
				{typ: msgVideo, ts: 40, in: joinBytes(bs(0x17, 0x01, 0, 0, 0), goldP300), outTyp: msgVideo, out: joinBytes(bs(0x17, 0x01, 0, 0, 0), goldP300), csid: csidVideo, kind: kindMedia, key: true},
				{typ: msgVideo, ts: 0x1000000, in: bs(0x27, 0x01, 0, 0, 0, 9), outTyp: msgVideo, out: bs(0x27, 0x01, 0, 0, 0, 9), csid: csidVideo, kind: kindMedia},
				{typ: msgVideo, ts: 50, in: nil},                           // empty: dropped
				{typ: msgAudio, ts: 50, in: nil},                           // empty: dropped
				{typ: msgCommandAMF0, in: amf0Append(nil, "onStatus")},     // not media
				{typ: msgDataAMF0, in: amf0Append(nil, "@clearDataFrame")}, // not relayed
				{typ: msgDataAMF0, ts: 60, in: amf0Append(nil, "onCuePoint"), outTyp: msgDataAMF0, out: amf0Append(nil, "onCuePoint"), csid: csidData, kind: kindMedia},
			},
		},
		{
			name: "audio only: every audio frame is a join point", chunkSize: 60000,
			steps: []step{
				{typ: msgDataAMF3, in: audioMeta, outTyp: msgDataAMF0, out: audioMeta, csid: csidData, kind: kindMeta, hasMeta: true},
				{typ: msgAudio, in: bs(0xAF, 0x00, 0x12, 0x10), outTyp: msgAudio, out: bs(0xAF, 0x00, 0x12, 0x10), csid: csidAudio, kind: kindAudioHeader},
				{typ: msgAudio, ts: 23, in: bs(0xAF, 0x01, 1), outTyp: msgAudio, out: bs(0xAF, 0x01, 1), csid: csidAudio, kind: kindMedia, key: true},
				{typ: msgAudio, ts: 0xFFFFFF, in: goldP300, outTyp: msgAudio, out: goldP300, csid: csidAudio, kind: kindMedia, key: true},
			},
		},
		{
			name: "audio before any video or metadata, then video", chunkSize: 1,
			steps: []step{
				{typ: msgAudio, ts: 1, in: bs(0x2F, 1, 2), outTyp: msgAudio, out: bs(0x2F, 1, 2), csid: csidAudio, kind: kindMedia, key: true},
				{typ: msgVideo, ts: 2, in: bs(0x12, 1, 2), outTyp: msgVideo, out: bs(0x12, 1, 2), csid: csidVideo, kind: kindMedia, key: true},
				{typ: msgAudio, ts: 3, in: bs(0x2F, 3), outTyp: msgAudio, out: bs(0x2F, 3), csid: csidAudio, kind: kindMedia},
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var ps publishState
			for i, s := range tc.steps {
				in := bytes.Clone(s.in)
				f, kind := ps.encode(s.typ, s.ts, in, tc.chunkSize)
				if s.out == nil && s.outTyp == 0 {
					if f != nil {
						t.Errorf("step %d: encode(%d, % x) = frame; want nil", i, s.typ, s.in)
					}
					continue
				}
				if f == nil {
					t.Fatalf("step %d: encode(%d, % x) = nil; want a frame", i, s.typ, s.in)
				}
				if kind != s.kind || f.key != s.key || f.typ != s.outTyp || f.time != s.ts || (f.meta != nil) != s.hasMeta {
					t.Errorf("step %d: encode(%d, % x) = kind %d key %v typ %d time %d meta %v; want %d %v %d %d %v",
						i, s.typ, s.in, kind, f.key, f.typ, f.time, f.meta != nil, s.kind, s.key, s.outTyp, s.ts, s.hasMeta)
				}
				// The encoded forms copy the payload.
				clear(in)
				msg, tag := decodeFrameForms(t, f, tc.chunkSize)
				want := rtmpMessage{Type: s.outTyp, StreamID: mediaStreamID, Time: s.ts, Payload: s.out}
				if !sameMessage(msg, want) {
					t.Errorf("step %d: RTMP form = %s; want %s", i, describeMessage(msg), describeMessage(want))
				}
				// The RTMP form is appendChunks' bytes exactly, its length
				// known without making it.
				wantChunks := appendChunks(nil, s.csid, s.outTyp, mediaStreamID, s.ts, s.out, tc.chunkSize)
				if got := f.wireBytes(formatRTMP); !bytes.Equal(got, wantChunks) {
					t.Errorf("step %d: RTMP form % x; want % x", i, got, wantChunks)
				}
				if n := chunksLen(s.csid, s.ts, len(s.out), tc.chunkSize); f.wireLen(formatRTMP) != n {
					t.Errorf("step %d: RTMP form len %d; want chunksLen = %d", i, f.wireLen(formatRTMP), n)
				}
				// The payload is held once, in the FLV tag.
				if f.heldBytes() != flvTagHeaderLen+len(s.out)+4 {
					t.Errorf("step %d: frame holds %d bytes; want the FLV tag's %d", i, f.heldBytes(), flvTagHeaderLen+len(s.out)+4)
				}
				if tag.Type != s.outTyp || tag.Time != s.ts || !bytes.Equal(tag.Data, s.out) {
					t.Errorf("step %d: FLV form = {%d %d % x}; want {%d %d % x}", i, tag.Type, tag.Time, tag.Data, s.outTyp, s.ts, s.out)
				}
			}
		})
	}
}

// ---- Fuzz targets ----

func flvSeeds() [][]byte {
	stream := appendFLVHeader(nil, true, true)
	for _, tc := range flvTagGolden {
		stream = append(stream, tc.enc...)
	}
	return [][]byte{
		stream,
		appendFLVHeader(nil, false, false),
		joinBytes(appendFLVHeader(nil, true, false)[:5], bs(0, 0, 0, 13), bs(1, 2, 3, 4), bs(0, 0, 0, 0), flvTagGolden[0].enc),
		joinBytes(appendFLVHeader(nil, true, true), bs(9, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0, 0, 0, 0)),
	}
}

// FuzzFLVReader: no panic, and no tag claims more data than the input
// has.
func FuzzFLVReader(f *testing.F) {
	for _, s := range flvSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fr, err := newFLVReader(bytes.NewReader(data))
		if err != nil {
			return
		}
		total := flvHeaderLen + 4
		for range 10000 {
			tag, err := fr.next()
			if err != nil {
				break
			}
			if len(tag.Data) > maxFLVTagData || tag.Type > 0x1F {
				t.Fatalf("tag type %d with %d bytes", tag.Type, len(tag.Data))
			}
			total += flvTagHeaderLen + len(tag.Data) + 4
			if total > len(data) {
				t.Fatalf("tags cover %d bytes; the input has %d", total, len(data))
			}
			// Writing the tag again gives a tag that reads back the same.
			again := appendFLVTag(nil, tag.Type, tag.Time, tag.Data)
			fr2, _ := newFLVReader(bytes.NewReader(joinBytes(appendFLVHeader(nil, true, true), again)))
			tag2, err := fr2.next()
			if err != nil || tag2.Type != tag.Type || tag2.Time != tag.Time || !bytes.Equal(tag2.Data, tag.Data) {
				t.Fatalf("tag %+v written again reads %+v, %v", tag, tag2, err)
			}
		}
	})
}

func FuzzVideoAudioInfo(f *testing.F) {
	for _, s := range [][]byte{
		nil, bs(0x17, 0x00), bs(0x17, 0x01), bs(0x27, 0x01), bs(0xAF, 0x00), bs(0xAF, 0x01),
		exVideo(1, exSequenceStart, "hvc1"), exVideo(1, exCodedFrames, "av01"), exVideo(2, exCodedFramesX, "zzzz"),
		joinBytes(bs(0x90), []byte("Opus")),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		header, key := videoInfo(p)
		if header && key {
			t.Fatalf("videoInfo(% x) = header and key", p)
		}
		if (header || key) && len(p) == 0 {
			t.Fatalf("videoInfo(empty) = %v, %v", header, key)
		}
		if key && p[0]>>4&0x07 != 1 {
			t.Fatalf("videoInfo(% x) = key with frame type %d", p, p[0]>>4&0x07)
		}
		if audioIsHeader(p) && len(p) == 0 {
			t.Fatalf("audioIsHeader(empty) = true")
		}
		// Only the first two bytes matter to either.
		if len(p) > 2 {
			h2, k2 := videoInfo(p[:2])
			if p[0]&videoExHeader == 0 && (h2 != header || k2 != key) {
				t.Fatalf("videoInfo(% x) = %v, %v but on its first 2 bytes %v, %v", p, header, key, h2, k2)
			}
			if audioIsHeader(p[:2]) != audioIsHeader(p) {
				t.Fatalf("audioIsHeader(% x) depends on bytes after the second", p)
			}
		}
	})
}

func FuzzParseMetadata(f *testing.F) {
	for _, s := range [][]byte{
		amf0AppendAll(nil, "@setDataFrame", "onMetaData", amfECMAArray{{"videocodecid", 7.0}}),
		amf0AppendAll(nil, "onMetaData", amfObject{{"audiocodecid", 10.0}}),
		amf0AppendAll(nil, "@clearDataFrame"),
		amf0AppendAll(nil, "onCuePoint", amfObject{{"name", "x"}}),
		bs(0xFF, 0x00),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		in := bytes.Clone(p)
		payload, meta, ok := parseMetadata(p)
		if !bytes.Equal(in, p) {
			t.Fatalf("parseMetadata modified its input")
		}
		if !ok {
			if payload != nil || meta != nil {
				t.Fatalf("parseMetadata(% x) = % x, %v, false; want nothing with false", p, payload, meta)
			}
			return
		}
		// The relayed payload is the input, or the input after the wrapper.
		if !bytes.HasSuffix(p, payload) {
			t.Fatalf("parseMetadata(% x) = % x: not a suffix of the input", p, payload)
		}
		if meta != nil {
			if name, _, err := amf0Decode(payload); err != nil || name != "onMetaData" {
				t.Fatalf("parseMetadata(% x) = metadata, but the payload starts with %v, %v", p, name, err)
			}
		}
	})
}

// FuzzEncodeFrame encodes an arbitrary payload as one publisher message,
// at a chunk size of at least 128, and reads both forms back.
func FuzzEncodeFrame(f *testing.F) {
	f.Add(uint8(0), uint32(0), uint32(0), bs(0xAF, 0x00, 0x12, 0x10))
	f.Add(uint8(1), uint32(0x1000000), uint32(0), joinBytes(bs(0x17, 0x01), goldP300))
	f.Add(uint8(2), uint32(0xFFFFFF), uint32(100), amf0AppendAll(nil, "@setDataFrame", "onMetaData", amfECMAArray{{"videocodecid", 7.0}}))
	f.Add(uint8(3), uint32(5), uint32(1<<20), amf0AppendAll(nil, "onMetaData", 1.0))
	f.Add(uint8(1), uint32(40), uint32(0x7FFFFFFF), goldP300)
	f.Fuzz(func(t *testing.T, typSel uint8, ts uint32, size uint32, payload []byte) {
		typ := []uint8{msgAudio, msgVideo, msgDataAMF0, msgDataAMF3}[typSel%4]
		chunkSize := 128 + int(size%(0xFFFFFF-127)) // what -chunk-size allows
		want := payload
		wantType := typ
		if typ == msgDataAMF0 || typ == msgDataAMF3 {
			wantType = msgDataAMF0
			var ok bool
			if want, _, ok = parseMetadata(bytes.Clone(payload)); !ok {
				want = nil
			}
		}
		var ps publishState
		fr, _ := ps.encode(typ, ts, bytes.Clone(payload), chunkSize)
		if fr == nil {
			if want != nil && len(payload) > 0 {
				t.Fatalf("encode(%d, %d, % x) = nil; want a frame", typ, ts, payload)
			}
			return
		}
		if fr.typ != wantType || fr.time != ts {
			t.Fatalf("frame type %d time %d; want %d %d", fr.typ, fr.time, wantType, ts)
		}
		msg, tag := decodeFrameForms(t, fr, chunkSize)
		if w := (rtmpMessage{Type: wantType, StreamID: mediaStreamID, Time: ts, Payload: want}); !sameMessage(msg, w) {
			t.Fatalf("RTMP form = %s; want %s", describeMessage(msg), describeMessage(w))
		}
		if tag.Type != wantType || tag.Time != ts || !bytes.Equal(tag.Data, want) {
			t.Fatalf("FLV form = {%d %d %d bytes}; want {%d %d %d bytes}", tag.Type, tag.Time, len(tag.Data), wantType, ts, len(want))
		}
		rtmpForm := fr.wireBytes(formatRTMP)
		csid := uint32(rtmpForm[0] & 0x3F)
		if n := chunksLen(csid, ts, len(want), chunkSize); n != len(rtmpForm) || n != fr.wireLen(formatRTMP) {
			t.Fatalf("chunksLen = %d; the RTMP form has %d, wireLen says %d", n, len(rtmpForm), fr.wireLen(formatRTMP))
		}
		if n := flvTagHeaderLen + len(want) + 4; len(fr.flv) != n || binary.BigEndian.Uint32(fr.flv[n-4:]) != uint32(n-4) {
			t.Fatalf("FLV form has %d bytes; want %d", len(fr.flv), n)
		}
	})
}

// ---- Reading FLV: the server only writes it; tests read what players got ----
