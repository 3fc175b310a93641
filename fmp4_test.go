package main

// Fragmented MP4: golden bytes per box (ISO/IEC 14496-12 and the codec
// bindings), the FLV tag readers, the timing of samples, and the muxer
// checked by ffprobe against the FLV it came from.

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// findBox returns the box at path ("moov/trak/mdia") in b, whole, or nil;
// index picks among siblings of the last element's type. It is for tests:
// it trusts sizes only as far as b goes.
func findBox(b []byte, path string, index int) []byte {
	parts := bytes.Split([]byte(path), []byte("/"))
	for i, want := range parts {
		found := false
		for n := 0; len(b) >= 8; {
			size := int(binary.BigEndian.Uint32(b))
			if size < 8 || size > len(b) {
				return nil
			}
			if string(b[4:8]) == string(want) {
				if i < len(parts)-1 || n == index {
					found = true
					if i == len(parts)-1 {
						return b[:size]
					}
					b = b[8:size]
					break
				}
				n++
			}
			b = b[size:]
		}
		if !found {
			return nil
		}
	}
	return nil
}

// children skips the fixed fields of a box whose children follow them.
func children(box []byte, fixed int) []byte { return box[8+fixed:] }

func u32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
func zeros(n int) []byte  { return make([]byte, n) }

// Test tracks: tiny but valid configuration records.
var (
	// AVCDecoderConfigurationRecord: version 1, High profile (100), compat 0, level 3.1,
	// lengthSizeMinusOne 3, one SPS of 4 bytes, one PPS of 2 bytes.
	testAVCC = bs(0x01, 0x64, 0x00, 0x1F, 0xFF, 0xE1, 0x00, 0x04, 0x67, 0x64, 0x00, 0x1F, 0x01, 0x00, 0x02, 0x68, 0xEE)
	// AudioSpecificConfig: AAC LC (2), 44100 Hz (index 4), stereo: 00010 0100 0010 000.
	testASC = bs(0x12, 0x10)
	// OpusHead (RFC 7845 §5.1): version 1, 2 channels, pre-skip 312, 48000 Hz, gain 0, family 0.
	testOpusHead = joinBytes([]byte("OpusHead"), bs(1, 2, 0x38, 0x01, 0x80, 0xBB, 0x00, 0x00, 0x00, 0x00, 0x00))
)

func TestInitGolden(t *testing.T) {
	video := &mp4Track{id: 1, video: true, codec: "avc1", timescale: 90000, config: testAVCC, width: 320, height: 240}
	audio := &mp4Track{id: 2, codec: "mp4a", timescale: 44100, config: testASC, rate: 44100, channels: 2}
	init := appendInit(nil, []*mp4Track{video, audio})
	matrix := joinBytes(u32(0x00010000), u32(0), u32(0), u32(0), u32(0x00010000), u32(0), u32(0), u32(0), u32(0x40000000))
	for _, tc := range []struct {
		path  string
		index int
		want  []byte
	}{
		{"ftyp", 0, joinBytes(u32(28), []byte("ftyp"),
			[]byte("iso5"),         // major_brand
			u32(512),               // minor_version
			[]byte("iso5iso6mp41"), // compatible_brands
		)},
		{"moov/mvhd", 0, joinBytes(u32(108), []byte("mvhd"), bs(0, 0, 0, 0), // version 0, flags 0
			u32(0), u32(0), // creation_time, modification_time
			u32(1000),                                  // timescale
			u32(0),                                     // duration
			u32(0x00010000), bs(0x01, 0x00), zeros(10), // rate 1.0, volume 1.0, reserved
			matrix, zeros(24), // matrix, pre_defined
			u32(3), // next_track_ID
		)},
		{"moov/trak/tkhd", 0, joinBytes(u32(92), []byte("tkhd"), bs(0, 0, 0, 3), // flags: enabled, in movie
			u32(0), u32(0), u32(1), u32(0), u32(0), // times, track_ID 1, reserved, duration
			zeros(8), bs(0, 0), bs(0, 0), bs(0, 0), // reserved, layer, alternate_group, volume 0 (video)
			bs(0, 0), matrix, // reserved, matrix
			u32(320<<16), u32(240<<16), // width, height in 16.16
		)},
		{"moov/trak/mdia/mdhd", 1, joinBytes(u32(32), []byte("mdhd"), bs(0, 0, 0, 0),
			u32(0), u32(0), u32(44100), u32(0), // times, timescale (the audio track's), duration
			bs(0x55, 0xC4), bs(0, 0), // "und", pre_defined
		)},
		{"moov/trak/mdia/hdlr", 0, joinBytes(u32(42), []byte("hdlr"), bs(0, 0, 0, 0),
			u32(0), []byte("vide"), zeros(12), []byte("gms video\x00"))},
		{"moov/trak/mdia/minf/vmhd", 0, joinBytes(u32(20), []byte("vmhd"), bs(0, 0, 0, 1), zeros(8))},
		{"moov/trak/mdia/minf/dinf", 0, joinBytes(u32(36), []byte("dinf"),
			u32(28), []byte("dref"), bs(0, 0, 0, 0), u32(1), // one entry
			u32(12), []byte("url "), bs(0, 0, 0, 1), // flags 1: in this file
		)},
		{"moov/mvex/trex", 1, joinBytes(u32(32), []byte("trex"), bs(0, 0, 0, 0),
			u32(2), u32(1), u32(0), u32(0), u32(0), // track_ID 2, description 1, no defaults
		)},
	} {
		var got []byte
		if rest, inTrak := strings.CutPrefix(tc.path, "moov/trak/"); inTrak {
			got = findBox(findBox(init, "moov/trak", tc.index), "trak/"+rest, 0)
		} else {
			got = findBox(init, tc.path, tc.index)
		}
		if !bytes.Equal(got, tc.want) {
			t.Errorf("%s[%d] =\n% x\nwant\n% x", tc.path, tc.index, got, tc.want)
		}
	}
	// The sample entries, with their configuration boxes.
	stsd := findBox(findBox(init, "moov/trak", 0), "trak/mdia/minf/stbl/stsd", 0)
	wantAVC1 := joinBytes(u32(86+8+uint32(len(testAVCC))), []byte("avc1"),
		zeros(6), bs(0, 1), zeros(16), // reserved, data_reference_index 1, pre_defined and reserved
		bs(0x01, 0x40), bs(0x00, 0xF0), // width 320, height 240
		u32(0x00480000), u32(0x00480000), u32(0), bs(0, 1), // 72 dpi, reserved, frame_count 1
		zeros(32), bs(0, 0x18), bs(0xFF, 0xFF), // compressorname, depth 24, pre_defined -1
		u32(8+uint32(len(testAVCC))), []byte("avcC"), testAVCC,
	)
	if got := children(stsd, 8); !bytes.Equal(got, wantAVC1) {
		t.Errorf("avc1 entry =\n% x\nwant\n% x", got, wantAVC1)
	}
	stsd = findBox(findBox(init, "moov/trak", 1), "trak/mdia/minf/stbl/stsd", 0)
	wantMP4A := joinBytes(u32(36+39), []byte("mp4a"),
		zeros(6), bs(0, 1), zeros(8), // reserved, data_reference_index, reserved
		bs(0, 2), bs(0, 16), u32(0), // channelcount 2, samplesize 16, pre_defined and reserved
		u32(44100<<16), // samplerate 16.16
		u32(39), []byte("esds"), bs(0, 0, 0, 0),
		bs(0x03, 25), bs(0, 0), bs(0), // ES_Descriptor, 25 bytes: ES_ID 0, flags 0
		bs(0x04, 17), bs(0x40, 0x15), bs(0, 0, 0), u32(0), u32(0), // DecoderConfig: AAC, audio stream, buffer, bitrates
		bs(0x05, 2), testASC, // DecoderSpecificInfo: the AudioSpecificConfig
		bs(0x06, 1, 2), // SLConfigDescriptor: predefined 2
	)
	if got := children(stsd, 8); !bytes.Equal(got, wantMP4A) {
		t.Errorf("mp4a entry =\n% x\nwant\n% x", got, wantMP4A)
	}
	for _, typ := range []string{"stts", "stsc", "stco"} {
		want := joinBytes(u32(16), []byte(typ), bs(0, 0, 0, 0), u32(0))
		if got := findBox(init, "moov/trak/mdia/minf/stbl/"+typ, 0); !bytes.Equal(got, want) {
			t.Errorf("%s = % x; want % x (empty)", typ, got, want)
		}
	}
}

// TestConfigBoxesGolden pins the configuration boxes of the other codecs.
func TestConfigBoxesGolden(t *testing.T) {
	av1C := bs(0x81, 0x08, 0x0C, 0x00) // marker+version, profile 0 level 8, 8-bit 4:2:0
	vpcC := bs(0x00, 0x1F, 0x80, 0x01, 0x01, 0x01, 0x00, 0x00)
	hvcC := append(bs(0x01), zeros(22)...)
	for _, tc := range []struct {
		track *mp4Track
		path  string
		want  []byte
	}{
		{&mp4Track{id: 1, video: true, codec: "av01", timescale: 90000, config: av1C}, "av01/av1C",
			joinBytes(u32(12), []byte("av1C"), av1C)},
		{&mp4Track{id: 1, video: true, codec: "vp09", timescale: 90000, config: vpcC}, "vp09/vpcC",
			joinBytes(u32(20), []byte("vpcC"), bs(1, 0, 0, 0), vpcC)}, // a full box, version 1
		{&mp4Track{id: 1, video: true, codec: "hvc1", timescale: 90000, config: hvcC}, "hvc1/hvcC",
			joinBytes(u32(31), []byte("hvcC"), hvcC)},
	} {
		stsd := findBox(appendInit(nil, []*mp4Track{tc.track}), "moov/trak/mdia/minf/stbl/stsd", 0)
		entry := children(stsd, 8)
		got := findBox(children(entry, 78), tc.path[5:], 0)
		if string(entry[4:8]) != tc.path[:4] || !bytes.Equal(got, tc.want) {
			t.Errorf("%s = % x; want % x", tc.path, got, tc.want)
		}
	}
	// Opus: the OpusHead's little-endian fields become dOps' big-endian ones.
	m, err := parseFLVAudio(joinBytes(bs(0x90), []byte("Opus"), testOpusHead)) // SoundFormat 9, SequenceStart
	if err != nil {
		t.Fatal(err)
	}
	track, err := newAudioTrack(m)
	if err != nil {
		t.Fatal(err)
	}
	track.id = 1
	init := appendInit(nil, []*mp4Track{track})
	want := joinBytes(u32(19), []byte("dOps"),
		bs(0),          // Version 0
		bs(2),          // OutputChannelCount
		bs(0x01, 0x38), // PreSkip 312
		u32(48000),     // InputSampleRate
		bs(0, 0),       // OutputGain
		bs(0),          // ChannelMappingFamily 0: no table
	)
	entry := children(findBox(init, "moov/trak/mdia/minf/stbl/stsd", 0), 8)
	if got := findBox(children(entry, 28), "dOps", 0); string(entry[4:8]) != "Opus" || !bytes.Equal(got, want) {
		t.Errorf("Opus/dOps = % x; want % x", got, want)
	}
	if got := findBox(init, "moov/trak/mdia/mdhd", 0)[20:24]; binary.BigEndian.Uint32(got) != 48000 {
		t.Errorf("Opus timescale = % x; want 48000", got)
	}
}

func TestFragmentGolden(t *testing.T) {
	video := &mp4Track{id: 1, video: true, codec: "avc1", timescale: 90000}
	audio := &mp4Track{id: 2, codec: "mp4a", timescale: 44100}
	got := appendFragment(nil, 7, []mp4Run{
		{video, []mp4Sample{
			{dts: 90000, dur: 3600, cto: 7200, key: true, data: bs(0xAA, 0xBB)},
			{dts: 93600, dur: 3600, cto: 0, data: bs(0xCC)},
		}},
		{audio, []mp4Sample{{dts: 44100, dur: 1024, key: true, data: bs(0xDD, 0xEE, 0xEE)}}},
	})
	want := joinBytes(
		u32(192), []byte("moof"),
		u32(16), []byte("mfhd"), bs(0, 0, 0, 0), u32(7), // sequence_number
		u32(96), []byte("traf"),
		u32(16), []byte("tfhd"), bs(0, 0x02, 0x00, 0x00), u32(1), // default-base-is-moof; track 1
		u32(20), []byte("tfdt"), bs(1, 0, 0, 0), bs(0, 0, 0, 0), u32(90000), // version 1: 64-bit baseMediaDecodeTime
		u32(52), []byte("trun"), bs(0, 0x00, 0x0F, 0x01), // data-offset, duration, size, flags, composition offset
		u32(2),                                        // sample_count
		u32(200),                                      // data_offset: moof (192) + mdat header (8)
		u32(3600), u32(2), u32(0x02000000), u32(7200), // a sync sample: depends on nothing
		u32(3600), u32(1), u32(0x01010000), u32(0), // depends on others, non-sync
		u32(72), []byte("traf"),
		u32(16), []byte("tfhd"), bs(0, 0x02, 0x00, 0x00), u32(2),
		u32(20), []byte("tfdt"), bs(1, 0, 0, 0), bs(0, 0, 0, 0), u32(44100),
		u32(28), []byte("trun"), bs(0, 0x00, 0x03, 0x01), // data-offset, duration, size (flags from trex)
		u32(1), u32(203), // after the video's 3 bytes
		u32(1024), u32(3),
		u32(14), []byte("mdat"), bs(0xAA, 0xBB, 0xCC), bs(0xDD, 0xEE, 0xEE),
	)
	if !bytes.Equal(got, want) {
		t.Errorf("fragment =\n% x\nwant\n% x", got, want)
	}
	// A negative composition offset needs trun version 1 (signed).
	neg := appendFragment(nil, 1, []mp4Run{{video, []mp4Sample{{dts: 0, dur: 1, cto: -3, key: true, data: bs(1)}}}})
	trun := findBox(neg, "moof/traf/trun", 0)
	if trun[8] != 1 || !bytes.Equal(trun[len(trun)-4:], u32(math.MaxUint32-2)) {
		t.Errorf("trun with a negative offset = % x; want version 1 and -3", trun)
	}
}

func TestParseFLVMedia(t *testing.T) {
	for _, tc := range []struct {
		name  string
		video bool
		body  []byte
		want  flvMedia
		err   bool
	}{
		{"AVC sequence header", true, joinBytes(bs(0x17, 0, 0, 0, 0), testAVCC), flvMedia{kind: mediaConfig, codec: "avc1", key: true, data: testAVCC}, false},
		{"AVC keyframe, cto 80", true, bs(0x17, 1, 0, 0, 80, 9, 9), flvMedia{kind: mediaFrame, codec: "avc1", key: true, cto: 80, data: bs(9, 9)}, false},
		{"AVC inter frame, cto -40", true, bs(0x27, 1, 0xFF, 0xFF, 0xD8, 9), flvMedia{kind: mediaFrame, codec: "avc1", cto: -40, data: bs(9)}, false},
		{"AVC end of sequence", true, bs(0x17, 2, 0, 0, 0), flvMedia{}, false},
		{"AVC short", true, bs(0x17, 1, 0), flvMedia{}, true},
		{"VP6", true, bs(0x14, 1, 2), flvMedia{}, true},
		{"hvc1 CodedFrames with cto", true, joinBytes(bs(0x91), []byte("hvc1"), bs(0, 0, 40), bs(7)), flvMedia{kind: mediaFrame, codec: "hvc1", key: true, cto: 40, data: bs(7)}, false},
		{"hvc1 CodedFramesX", true, joinBytes(bs(0xA3), []byte("hvc1"), bs(7)), flvMedia{kind: mediaFrame, codec: "hvc1", data: bs(7)}, false},
		{"av01 CodedFrames: no cto", true, joinBytes(bs(0x91), []byte("av01"), bs(1, 2, 3)), flvMedia{kind: mediaFrame, codec: "av01", key: true, data: bs(1, 2, 3)}, false},
		{"vp09 SequenceStart", true, joinBytes(bs(0x90), []byte("vp09"), bs(1, 2)), flvMedia{kind: mediaConfig, codec: "vp09", key: true, data: bs(1, 2)}, false},
		{"vp08 refused", true, joinBytes(bs(0x91), []byte("vp08"), bs(1)), flvMedia{}, true},
		{"hvc1 CodedFrames short", true, joinBytes(bs(0x91), []byte("hvc1"), bs(0)), flvMedia{}, true},
		{"AAC header", false, joinBytes(bs(0xAF, 0), testASC), flvMedia{kind: mediaConfig, codec: "mp4a", key: true, data: testASC}, false},
		{"AAC frame", false, bs(0xAF, 1, 5, 6), flvMedia{kind: mediaFrame, codec: "mp4a", key: true, data: bs(5, 6)}, false},
		{"Opus frame", false, joinBytes(bs(0x91), []byte("Opus"), bs(5)), flvMedia{kind: mediaFrame, codec: "Opus", key: true, data: bs(5)}, false},
		{"MP3 frame", false, bs(0x2F, 1), flvMedia{kind: mediaFrame, codec: ".mp3", key: true, data: bs(1)}, false},
		{"E-RTMP MP3 frame", false, joinBytes(bs(0x91), []byte(".mp3"), bs(5)), flvMedia{kind: mediaFrame, codec: ".mp3", key: true, data: bs(5)}, false},
		{"E-RTMP AAC header", false, joinBytes(bs(0x90), []byte("mp4a"), testASC), flvMedia{kind: mediaConfig, codec: "mp4a", key: true, data: testASC}, false},
		{"PCM refused", false, bs(0x3F, 1), flvMedia{}, true},
		{"E-RTMP FLAC refused", false, joinBytes(bs(0x91), []byte("fLaC"), bs(5)), flvMedia{}, true},
		{"empty", false, nil, flvMedia{}, true},
	} {
		var got flvMedia
		var err error
		if tc.video {
			got, err = parseFLVVideo(tc.body)
		} else {
			got, err = parseFLVAudio(tc.body)
		}
		if (err != nil) != tc.err || err != nil && !errors.Is(err, errMP4Input) {
			t.Errorf("%s: err = %v; want error %v", tc.name, err, tc.err)
		}
		if got.kind != tc.want.kind || got.codec != tc.want.codec || got.key != tc.want.key || got.cto != tc.want.cto || !bytes.Equal(got.data, tc.want.data) {
			t.Errorf("%s: got %+v; want %+v", tc.name, got, tc.want)
		}
	}
}

// TestTrackTimer: durations from the next sample's time, FLV's 32-bit
// wrap, AAC's exact 1024-sample frames through millisecond rounding, and
// the pending sample flushed at a fragment's end.
func TestTrackTimer(t *testing.T) {
	video := &trackTimer{track: &mp4Track{video: true, timescale: 90000}, expect: -1}
	for _, ms := range []uint32{math.MaxUint32 - 40, math.MaxUint32, 40} { // wraps past 2^32
		video.add(ms, 0, false, nil)
	}
	video.flush(80, true)
	var durs []uint32
	for _, s := range video.take() {
		durs = append(durs, s.dur)
	}
	if want := []uint32{3600, 3690, 3600}; !equalU32(durs, want) {
		t.Errorf("video durations = %v; want %v", durs, want)
	}
	audio := &trackTimer{track: &mp4Track{timescale: 44100, frameLen: 1024}, expect: -1}
	for i := range 10 {
		audio.add(uint32(math.Round(float64(i)*1024*1000/44100)), 0, true, nil) // 0, 23, 46, 70, ...
	}
	audio.flush(0, false)
	for i, s := range audio.take() {
		if s.dts != int64(i*1024) || s.dur != 1024 {
			t.Errorf("audio sample %d: dts %d, dur %d; want %d, 1024", i, s.dts, s.dur, i*1024)
		}
	}
	audio.add(5000, 0, true, nil) // a gap: back to the FLV time
	if audio.pending.dts != 5000*44100/1000 {
		t.Errorf("after a gap dts = %d; want %d", audio.pending.dts, 5000*44100/1000)
	}
}

func equalU32(a, b []uint32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// muxFLV muxes an FLV file's tags into init + fragments, a fragment at
// every video keyframe, as hls.go cuts segments.
func muxFLV(t *testing.T, tags []flvTag) []byte {
	t.Helper()
	var videoHeader, audioHeader []byte
	var width, height int
	var m *fmp4Muxer
	var out []byte
	for _, tag := range tags {
		switch {
		case tag.Type == tagScript && m == nil && audioHeader == nil:
			if _, meta, ok := parseMetadata(tag.Data); ok && meta != nil {
				audioHeader = mp3HeaderOf(meta.values) // as hls.go: MP3's stand-in header
			}
			continue
		case tag.Type == tagVideo && m == nil && videoHeader == nil:
			videoHeader = tag.Data
			continue
		case tag.Type == tagAudio && m == nil && audioHeader == nil:
			audioHeader = tag.Data
			if !mp3Frame(tag.Data) { // an MP3 frame stands for a header and is muxed too
				continue
			}
		case tag.Type != tagVideo && tag.Type != tagAudio:
			continue
		}
		if m == nil {
			var err error
			if m, err = newFMP4Muxer(videoHeader, audioHeader, width, height); err != nil {
				t.Fatal(err)
			}
			out = m.init()
		}
		fm, err := m.parse(tag.Type, tag.Data)
		if err != nil {
			t.Fatalf("tag at %d ms: %v", tag.Time, err)
		}
		if fm.kind != mediaFrame {
			continue
		}
		if tag.Type == tagVideo && fm.key {
			out = m.fragment(out, tag.Type, tag.Time)
		}
		m.add(tag.Type, tag.Time, fm)
	}
	return m.fragment(out, 0, 0)
}

// timedPacket is a packet as ffprobe reports it, with times in seconds.
type timedPacket struct {
	CodecType string `json:"codec_type"`
	PTS       string `json:"pts_time"`
	DTS       string `json:"dts_time"`
	Size      string `json:"size"`
	Flags     string `json:"flags"`
}

func ffprobeTimed(t testing.TB, input string, inputOptions ...string) []timedPacket {
	t.Helper()
	args := append([]string{"-v", "error"}, inputOptions...)
	cmd := exec.Command("ffprobe", append(args, "-show_packets", "-show_entries",
		"packet=codec_type,pts_time,dts_time,size,flags", "-of", "json", input)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("ffprobe %s: %v\n%s", input, err, stderr.Bytes())
	}
	var res struct{ Packets []timedPacket }
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatal(err)
	}
	return res.Packets
}

func seconds(s string) float64 { v, _ := strconv.ParseFloat(s, 64); return v }

// comparePacketsTimed checks got against want: same count per type, same
// order, sizes and keyframe flags, and times within tolerance (seconds).
func comparePacketsTimed(t *testing.T, what string, got, want []timedPacket, tolerance float64) {
	t.Helper()
	kinds := []string{"video", "audio"}
	if !slices.ContainsFunc(want, func(p timedPacket) bool { return p.CodecType == "video" }) {
		kinds = []string{"audio"} // an audio-only source
	}
	for _, kind := range kinds {
		var g, w []timedPacket
		for _, p := range got {
			if p.CodecType == kind {
				g = append(g, p)
			}
		}
		for _, p := range want {
			if p.CodecType == kind {
				w = append(w, p)
			}
		}
		if len(g) != len(w) || len(w) == 0 {
			t.Errorf("%s: %d %s packets; want %d", what, len(g), kind, len(w))
			continue
		}
		bad := 0
		for i := range w {
			key := func(p timedPacket) bool { return len(p.Flags) > 0 && p.Flags[0] == 'K' }
			if g[i].Size != w[i].Size || key(g[i]) != key(w[i]) ||
				math.Abs(seconds(g[i].PTS)-seconds(w[i].PTS)) > tolerance || math.Abs(seconds(g[i].DTS)-seconds(w[i].DTS)) > tolerance {
				if bad++; bad <= 5 {
					t.Errorf("%s: %s packet %d = %+v; want %+v", what, kind, i, g[i], w[i])
				}
			}
		}
	}
}

// TestMuxFLVFFprobe muxes a real ffmpeg-made H.264 + AAC FLV (B-frames, a
// keyframe a second) and has ffprobe read the result: codecs, size, and
// every packet's time, size and keyframe flag as in the source.
func TestMuxFLVFFprobe(t *testing.T) {
	clip := testClip(t)
	_, tags := readFLVFile(t, clip)
	path := filepath.Join(t.TempDir(), "fmp4.mp4")
	if err := os.WriteFile(path, muxFLV(t, tags), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, want := ffprobeStreams(t, path), "stream|codec_name=h264|codec_type=video|width=320|height=240\nstream|codec_name=aac|codec_type=audio"; got != want {
		t.Errorf("streams:\n%s\nwant\n%s", got, want)
	}
	// Audio times are exact sample counts in the MP4, the FLV's are
	// rounded to the millisecond.
	comparePacketsTimed(t, "fmp4", ffprobeTimed(t, path), ffprobeTimed(t, clip), 0.0011)
	decodesCleanly(t, "fmp4", path)
}

// FuzzFMP4Input: no tag body panics the readers or the muxer, and what
// they accept makes boxes whose sizes add up.
func FuzzFMP4Input(f *testing.F) {
	f.Add(joinBytes(bs(0x17, 0, 0, 0, 0), testAVCC), joinBytes(bs(0xAF, 0), testASC), bs(0x17, 1, 0, 0, 0, 0, 0, 0, 1, 0x65))
	f.Add(joinBytes(bs(0x90), []byte("hvc1"), bs(1), zeros(22)), joinBytes(bs(0x90), []byte("Opus"), testOpusHead), joinBytes(bs(0x91), []byte("hvc1"), bs(0, 0, 0, 1)))
	f.Add(joinBytes(bs(0x90), []byte("av01"), bs(0x81, 0, 0, 0)), joinBytes(bs(0x91), []byte("Opus"), bs(1)), joinBytes(bs(0x93), []byte("av01"), bs(1)))
	f.Add(joinBytes(bs(0x90), []byte("vp09"), zeros(8)), bs(0xAF, 0, 0xFF), joinBytes(bs(0xA1), []byte("vp09"), bs(1)))
	f.Add(joinBytes(bs(0x17, 0, 0, 0, 0), testAVCC), bs(0x2E, 0xFF, 0xFB, 0x94, 0x64, 0), bs(0x2F, 0xFF, 0xF3, 0x84, 0, 1))
	f.Fuzz(func(t *testing.T, videoHeader, audioHeader, frame []byte) {
		m, err := newFMP4Muxer(videoHeader, audioHeader, 0, 0)
		if len(m.tracks) == 0 {
			if err == nil {
				t.Fatal("no tracks and no error")
			}
			return
		}
		init := m.init()
		if int(binary.BigEndian.Uint32(init[28:])) != len(init)-28 { // ftyp is 28 bytes, moov the rest
			t.Fatalf("moov size %d; the init has %d bytes after ftyp", binary.BigEndian.Uint32(init[28:]), len(init)-28)
		}
		for i, typ := range []uint8{msgVideo, msgAudio, msgVideo} {
			fm, err := m.parse(typ, frame)
			if err == nil {
				m.add(typ, uint32(i*40), fm)
			}
		}
		frag := m.fragment(nil, 0, 0)
		if len(frag) == 0 {
			return
		}
		moof := int(binary.BigEndian.Uint32(frag))
		if moof > len(frag)-8 || int(binary.BigEndian.Uint32(frag[moof:])) != len(frag)-moof {
			t.Fatalf("moof %d, mdat %d, fragment %d bytes", moof, binary.BigEndian.Uint32(frag[moof:]), len(frag))
		}
	})
}

func TestFMP4CodecString(t *testing.T) {
	for _, tc := range []struct {
		track mp4Track
		want  string
	}{
		{mp4Track{codec: "avc1", config: testAVCC}, "avc1.64001f"},
		{mp4Track{codec: "mp4a", config: testASC}, "mp4a.40.2"},
		{mp4Track{codec: "Opus"}, "opus"},
		// hvcC: version 1; Main (1), compatibility flags 0x60000000, level 93 (3.1), constraint 0x90 then zeros.
		{mp4Track{codec: "hvc1", config: bs(1, 0x01, 0x60, 0, 0, 0, 0x90, 0, 0, 0, 0, 0, 93)}, "hvc1.1.6.L93.90"},
		// av1C: profile 0, level 8, main tier, 8-bit.
		{mp4Track{codec: "av01", config: bs(0x81, 0x08, 0x0C, 0)}, "av01.0.08M.08"},
		// vpcC: profile 0, level 31, 8-bit.
		{mp4Track{codec: "vp09", config: bs(0, 31, 0x80, 1, 1, 1, 0, 0)}, "vp09.00.31.08"},
	} {
		if got := tc.track.codecString(); got != tc.want {
			t.Errorf("%s codec string = %q; want %q", tc.track.codec, got, tc.want)
		}
	}
}

// TestVP9FullBoxRecord: a vpcC record sent with the FullBox version and
// flags before it, as ffmpeg and OBS send it over Enhanced RTMP, is
// written once in the init segment's vpcC box, not after a second
// header, and gives the same codecs parameter as the bare record.
func TestVP9FullBoxRecord(t *testing.T) {
	record := bs(0, 31, 0x80, 1, 1, 1, 0, 0) // profile 0, level 3.1, 8-bit
	for _, sent := range [][]byte{record, joinBytes(bs(1, 0, 0, 0), record)} {
		header := joinBytes(bs(0x80|exSequenceStart), []byte("vp09"), sent)
		m, err := newFMP4Muxer(header, nil, 320, 240)
		if err != nil {
			t.Fatal(err)
		}
		init := m.init()
		var vpcC []byte // inside the sample entry's fixed fields: found by its type
		if i := bytes.Index(init, []byte("vpcC")); i >= 4 {
			vpcC = init[i-4 : min(i-4+int(binary.BigEndian.Uint32(init[i-4:])), len(init))]
		}
		if want := joinBytes(u32(uint32(8+4+len(record))), []byte("vpcC"), bs(1, 0, 0, 0), record); !bytes.Equal(vpcC, want) {
			t.Errorf("sent % x: vpcC box % x; want % x", sent, vpcC, want)
		}
		if got := m.tracks[0].codecString(); got != "vp09.00.31.08" {
			t.Errorf("sent % x: codecs %q; want vp09.00.31.08", sent, got)
		}
	}
}

// TestVideoTrackSize: a sample entry carries the picture size from the
// configuration record when the stream's metadata has none (Chromium
// refuses an av01 entry of size 0): hvcC's SPS, av1C's sequence header.
func TestVideoTrackSize(t *testing.T) {
	for _, c := range []struct{ codec, file string }{{"hvc1", "h265.hvcC"}, {"av01", "av1.av1C"}} {
		tr, err := newVideoTrack(flvMedia{codec: c.codec, data: readTestdata(t, c.file)}, 0, 0)
		if err != nil {
			t.Fatalf("%s: %v", c.codec, err)
		}
		if tr.width != 64 || tr.height != 64 {
			t.Errorf("%s: sample entry %dx%d; want the clip's 64x64", c.codec, tr.width, tr.height)
		}
	}
}

// TestMPEGAudioHeader reads MPEG audio frame headers of each version and
// layer, and refuses what is not one.
func TestMPEGAudioHeader(t *testing.T) {
	for _, c := range []struct {
		header []byte
		want   mpegAudioHeader
		ok     bool
	}{
		{bs(0xFF, 0xFB, 0x90, 0x64), mpegAudioHeader{44100, 2, 1152}, true}, // MPEG-1 Layer III, 128 kbit/s, joint stereo
		{bs(0xFF, 0xFB, 0x94, 0xC4), mpegAudioHeader{48000, 1, 1152}, true}, // mono
		{bs(0xFF, 0xF3, 0x84, 0x00), mpegAudioHeader{24000, 2, 576}, true},  // MPEG-2 Layer III
		{bs(0xFF, 0xE3, 0x88, 0xC0), mpegAudioHeader{8000, 1, 576}, true},   // MPEG 2.5
		{bs(0xFF, 0xFD, 0x90, 0x00), mpegAudioHeader{44100, 2, 1152}, true}, // MPEG-1 Layer II
		{bs(0xFF, 0xFF, 0x90, 0x00), mpegAudioHeader{44100, 2, 384}, true},  // MPEG-1 Layer I
		{bs(0xFF, 0xEB, 0x90, 0x00), mpegAudioHeader{}, false},              // version 1: reserved
		{bs(0xFF, 0xF9, 0x90, 0x00), mpegAudioHeader{}, false},              // layer 0: reserved
		{bs(0xFF, 0xFB, 0x9C, 0x00), mpegAudioHeader{}, false},              // sampling frequency 3: reserved
		{bs(0xFF, 0xFB, 0x90), mpegAudioHeader{}, false},                    // short
		{bs(0x49, 0x44, 0x33, 0x04), mpegAudioHeader{}, false},              // "ID3"
	} {
		got, err := parseMPEGAudioHeader(c.header)
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("% x: %+v, %v; want %+v, ok %v", c.header, got, err, c.want, c.ok)
		}
	}
}

// TestMP3Track: MP3 in FLV (SoundFormat 2, which FFmpeg's FLV muxer picks
// by default) is muxed as an mp4a sample entry whose esds says MPEG-1
// audio (objectTypeIndication 0x6B) and carries no decoder specific info,
// from its first frame or from the metadata that declares it, before it.
func TestMP3Track(t *testing.T) {
	frame := bs(soundMP3<<4|0x0F, 0xFF, 0xFB, 0x94, 0x64, 1, 2, 3)
	meta := amfObject{{"audiocodecid", float64(2)}, {"audiosamplerate", float64(48000)}, {"stereo", true}}
	fromMeta := mp3HeaderOf(meta)
	for _, header := range [][]byte{frame, fromMeta} {
		m, err := newFMP4Muxer(nil, header, 0, 0)
		if err != nil {
			t.Fatalf("header % x: %v", header, err)
		}
		tr := m.tracks[0]
		if tr.rate != 48000 || tr.timescale != 48000 || tr.channels != 2 || tr.frameLen != 1152 {
			t.Errorf("header % x: %d Hz (timescale %d), %d channels, %d samples a frame; want 48000, 2, 1152", header, tr.rate, tr.timescale, tr.channels, tr.frameLen)
		}
		if got := tr.codecString(); got != "mp4a.6B" {
			t.Errorf("codecs %q; want mp4a.6B", got)
		}
		init := m.init()
		var esds []byte // inside the sample entry's fixed fields: found by its type
		if i := bytes.Index(init, []byte("esds")); i >= 4 {
			esds = init[i-4 : min(i-4+int(binary.BigEndian.Uint32(init[i-4:])), len(init))]
		}
		if !bytes.Contains(init, []byte("mp4a")) {
			t.Errorf("no mp4a sample entry in the init segment")
		}
		// ES_Descriptor of 3 + DecoderConfigDescriptor of 13 (no DecSpecificInfo) + SLConfigDescriptor.
		want := joinBytes(u32(12+2+3+2+13+3), []byte("esds"), zeros(4),
			bs(0x03, 3+2+13+3), bs(0, 0, 0), bs(0x04, 13, 0x6B, 0x15), zeros(3), zeros(8), bs(0x06, 1, 2))
		if !bytes.Equal(esds, want) {
			t.Errorf("esds\n% x\nwant\n% x", esds, want)
		}
		fm, err := m.parse(msgAudio, frame)
		if err != nil || fm.kind != mediaFrame || !bytes.Equal(fm.data, frame[1:]) {
			t.Errorf("frame: %+v, %v; want the MP3 frame as a sample", fm, err)
		}
	}
	if h := mp3HeaderOf(amfObject{{"audiocodecid", float64(10)}, {"audiosamplerate", float64(48000)}}); h != nil {
		t.Errorf("AAC metadata: stand-in % x; want none", h)
	}
	if h := mp3HeaderOf(amfObject{{"audiocodecid", float64(2)}, {"audiosamplerate", float64(44000)}}); h != nil {
		t.Errorf("MP3 at 44000 Hz: stand-in % x; want none", h)
	}
}

// TestMuxMP3FFprobe muxes FFmpeg-made FLVs with MP3 audio (with H.264,
// and alone) and has ffprobe read them: every MP3 packet as in the FLV.
// Before, the audio was dropped without a word, and MP3 alone made no
// HLS, DASH or MP4 recording at all.
func TestMuxMP3FFprobe(t *testing.T) {
	needFFmpeg(t)
	dir := t.TempDir()
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"h264-mp3", []string{"-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25", "-f", "lavfi", "-i", "sine=sample_rate=48000",
			"-c:v", "libx264", "-preset", "ultrafast", "-g", "25", "-pix_fmt", "yuv420p", "-c:a", "libmp3lame"},
			"stream|codec_name=h264|codec_type=video|width=320|height=240\nstream|codec_name=mp3|codec_type=audio"},
		{"mp3-44k-stereo", []string{"-f", "lavfi", "-i", "sine=sample_rate=44100", "-ac", "2", "-c:a", "libmp3lame"},
			"stream|codec_name=mp3|codec_type=audio"},
		{"mp3-22k", []string{"-f", "lavfi", "-i", "sine=sample_rate=22050", "-c:a", "libmp3lame"},
			"stream|codec_name=mp3|codec_type=audio"},
	} {
		t.Run(c.name, func(t *testing.T) {
			clip := filepath.Join(dir, c.name+".flv")
			args := append(append([]string{"-hide_banner", "-loglevel", "error"}, c.args...), "-t", "3", "-f", "flv", clip)
			if out, err := exec.Command("ffmpeg", args...).CombinedOutput(); err != nil {
				t.Fatalf("making the clip: %v\n%s", err, out)
			}
			_, tags := readFLVFile(t, clip)
			path := filepath.Join(dir, c.name+".mp4")
			if err := os.WriteFile(path, muxFLV(t, tags), 0o644); err != nil {
				t.Fatal(err)
			}
			if got := ffprobeStreams(t, path); got != c.want {
				t.Errorf("streams:\n%s\nwant\n%s", got, c.want)
			}
			comparePacketsTimed(t, c.name, ffprobeTimed(t, path), ffprobeTimed(t, clip), 0.0011)
			decodesCleanly(t, c.name, path)
		})
	}
}

// TestLeaveOutMP3: a muxer told to leave MP3 out (HLS with video, for
// hls.js) writes an init and whole fragments of the video alone, and
// per-track fragments (DASH) with the MP3 too; without video, or with
// AAC, nothing is left out.
func TestLeaveOutMP3(t *testing.T) {
	video := joinBytes(bs(0x17, 0, 0, 0, 0), testAVCC)
	mp3 := bs(soundMP3<<4|0x0F, 0xFF, 0xFB, 0x94, 0x64, 1, 2, 3)
	m, err := newFMP4Muxer(video, mp3, 320, 240)
	if err != nil {
		t.Fatal(err)
	}
	if !m.leaveOutMP3() {
		t.Fatal("H.264 + MP3: nothing left out")
	}
	if init := m.init(); bytes.Contains(init, []byte("mp4a")) || !bytes.Contains(init, []byte("avc1")) {
		t.Errorf("init of the video alone has mp4a %v, avc1 %v", bytes.Contains(init, []byte("mp4a")), bytes.Contains(init, []byte("avc1")))
	}
	for i, tag := range []struct {
		typ  uint8
		body []byte
	}{{msgVideo, bs(0x17, 1, 0, 0, 0, 0, 0, 0, 1, 0x65)}, {msgAudio, mp3}, {msgVideo, bs(0x27, 1, 0, 0, 0, 0, 0, 0, 1, 0x41)}} {
		fm, err := m.parse(tag.typ, tag.body)
		if err != nil {
			t.Fatal(err)
		}
		m.add(tag.typ, uint32(i*40), fm)
	}
	whole, tracks := m.fragments(msgVideo, 120)
	if n := bytes.Count(whole, []byte("traf")); n != 1 {
		t.Errorf("whole fragment: %d trafs; want the video's alone", n)
	}
	if len(tracks) != 2 || tracks[1] == nil || !bytes.HasSuffix(tracks[1], mp3[1:]) {
		t.Errorf("per-track fragments: %d, the MP3's % x; want it with the frame", len(tracks), tracks)
	}
	for _, c := range []struct {
		name         string
		video, audio []byte
	}{{"MP3 alone", nil, mp3}, {"H.264 + AAC", video, joinBytes(bs(0xAF, 0), testASC)}} {
		m, err := newFMP4Muxer(c.video, c.audio, 320, 240)
		if err != nil {
			t.Fatal(err)
		}
		if m.leaveOutMP3() || !bytes.Contains(m.init(), []byte("mp4a")) {
			t.Errorf("%s: the audio is left out", c.name)
		}
	}
}

// TestEnhancedAACFFprobe: AAC in Enhanced RTMP's ExAudioTagHeader (FourCC
// mp4a, the AudioSpecificConfig in its SequenceStart, as E-RTMP v2 defines
// and FFmpeg 8 reads) is muxed as the classic tags are: the test clip with
// its AAC tags so rewritten reads in ffprobe with every packet as the
// clip's. Before, "FourCC mp4a not muxed": no audio in HLS, DASH or MP4.
func TestEnhancedAACFFprobe(t *testing.T) {
	clip := testClip(t)
	_, tags := readFLVFile(t, clip)
	for i, tag := range tags {
		if tag.Type == tagAudio && len(tag.Data) >= 2 && tag.Data[0]>>4 == soundAAC {
			packetType := byte(exCodedFrames)
			if tag.Data[1] == 0 {
				packetType = exSequenceStart
			}
			tags[i].Data = joinBytes(bs(soundExHeader<<4|packetType), []byte("mp4a"), tag.Data[2:])
		}
	}
	path := filepath.Join(t.TempDir(), "eaac.mp4")
	if err := os.WriteFile(path, muxFLV(t, tags), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, want := ffprobeStreams(t, path), "stream|codec_name=h264|codec_type=video|width=320|height=240\nstream|codec_name=aac|codec_type=audio"; got != want {
		t.Errorf("streams:\n%s\nwant\n%s", got, want)
	}
	comparePacketsTimed(t, "fmp4", ffprobeTimed(t, path), ffprobeTimed(t, clip), 0.0011)
}
