package main

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
)

// The clips in testdata/codec are 10 frames of 64x64 testsrc2 at 25 fps,
// a keyframe every 5, made by Debian 12's ffmpeg 5.1:
//
//	S="-f lavfi -i testsrc2=size=64x64:rate=25 -frames:v 10 -pix_fmt yuv420p"
//	ffmpeg $S -c:v libx264 -preset ultrafast -g 5 -bf 2 -bsf:v h264_metadata=aud=insert h264.264
//	ffmpeg $S -c:v libx265 -preset ultrafast -x265-params keyint=5:min-keyint=5:scenecut=0:bframes=2 \
//	  -bsf:v hevc_metadata=aud=insert h265.265
//	ffmpeg $S -c:v libaom-av1 -cpu-used 8 -g 5 -keyint_min 5 -f obu av1.obu
//	ffmpeg $S -c:v libvpx-vp9 -pass 1/2 -deadline good -cpu-used 8 -g 5 -auto-alt-ref 1 -lag-in-frames 16 -b:v 100k vp9.ivf
//
// (two-pass VP9, so that hidden alt-ref frames make superframes), and the
// configuration records (avcC, hvcC, av1C, vpcC) are those ffmpeg wrote
// when remuxing each into MP4 with -c copy. ffprobe -show_packets marks
// these frames K: H.264 0 and 5, HEVC 0 and 4 (decode order; x265 puts a
// CRA there), AV1 0 and 5, VP9 0 and 5.

// testClipFrames is one clip: its frames as Enhanced RTMP carries them
// (AVCC length-prefixed NAL units, AV1 temporal units without temporal
// delimiters, VP9 frames or superframes), its configuration record, and
// which frames ffprobe calls keyframes.
type testClipFrames struct {
	fourCC string
	config []byte
	frames [][]byte
	keys   []int
}

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "codec", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// codecClips reads the four clips.
func codecClips(t testing.TB) []testClipFrames {
	t.Helper()
	return []testClipFrames{
		{"avc1", readTestdata(t, "h264.avcC"), annexBToAVCC(t, readTestdata(t, "h264.264"), false), []int{0, 5}},
		{"hvc1", readTestdata(t, "h265.hvcC"), annexBToAVCC(t, readTestdata(t, "h265.265"), true), []int{0, 4}},
		{"av01", readTestdata(t, "av1.av1C"), obuTemporalUnits(t, readTestdata(t, "av1.obu")), []int{0, 5}},
		{"vp09", readTestdata(t, "vp9.vpcC"), ivfFrames(t, readTestdata(t, "vp9.ivf")), []int{0, 5}},
	}
}

// annexBToAVCC splits an Annex B stream (H.264 §B.2) into access units at
// its access unit delimiters and writes each unit's other NAL units with
// 4-byte lengths.
func annexBToAVCC(t testing.TB, b []byte, hevc bool) [][]byte {
	t.Helper()
	var nals [][]byte
	for len(b) > 0 {
		i := bytes.Index(b, []byte{0, 0, 1})
		if i < 0 {
			break
		}
		b = b[i+3:]
		end := bytes.Index(b, []byte{0, 0, 1})
		if end < 0 {
			end = len(b)
		}
		nal := bytes.TrimRight(b[:end], "\x00") // the next start code's leading zero
		nals = append(nals, nal)
		b = b[end:]
	}
	var aus [][]byte
	for _, nal := range nals {
		aud := nal[0]&0x1F == 9
		if hevc {
			aud = nal[0]>>1&0x3F == 35
		}
		if aud {
			aus = append(aus, nil)
			continue
		}
		if len(aus) == 0 {
			t.Fatal("Annex B stream does not start with an access unit delimiter")
		}
		au := &aus[len(aus)-1]
		*au = binary.BigEndian.AppendUint32(*au, uint32(len(nal)))
		*au = append(*au, nal...)
	}
	return aus
}

// obuTemporalUnits splits a low-overhead OBU stream at its temporal
// delimiters (AV1 §7.5) and drops them, as ISOBMFF and E-RTMP carry AV1.
func obuTemporalUnits(t testing.TB, b []byte) [][]byte {
	t.Helper()
	var tus [][]byte
	for len(b) > 0 {
		obu, rest, err := nextOBU(b)
		if err != nil {
			t.Fatal(err)
		}
		if obu.typ == 2 { // OBU_TEMPORAL_DELIMITER
			tus = append(tus, nil)
		} else {
			tus[len(tus)-1] = append(tus[len(tus)-1], b[:len(b)-len(rest)]...)
		}
		b = rest
	}
	return tus
}

// ivfFrames reads an IVF file: a 32-byte header, then frames with a
// 12-byte header (4-byte little-endian size, 8-byte timestamp).
func ivfFrames(t testing.TB, b []byte) [][]byte {
	t.Helper()
	if len(b) < 32 || string(b[:4]) != "DKIF" {
		t.Fatal("not an IVF file")
	}
	var frames [][]byte
	for b = b[32:]; len(b) >= 12; {
		n := int(binary.LittleEndian.Uint32(b))
		frames = append(frames, b[12:12+n])
		b = b[12+n:]
	}
	return frames
}

func isKeyIndex(keys []int, i int) bool {
	for _, k := range keys {
		if k == i {
			return true
		}
	}
	return false
}

// TestBitstreamKey: on real encoder output, the frames bitstreamKey calls
// keyframes are exactly those ffprobe does, for every codec; the VP9 clip
// has superframes and the AV1 clip temporal units that only show an
// existing frame.
func TestBitstreamKey(t *testing.T) {
	for _, c := range codecClips(t) {
		if len(c.frames) != 10 {
			t.Fatalf("%s: %d frames in the clip; want 10", c.fourCC, len(c.frames))
		}
		for i, f := range c.frames {
			if got, want := bitstreamKey(c.fourCC, f, nalLengthSize(c.fourCC, c.config)), isKeyIndex(c.keys, i); got != want {
				t.Errorf("%s frame %d (%d bytes): bitstreamKey = %v; want %v", c.fourCC, i, len(f), got, want)
			}
		}
	}
	superframes := 0
	for _, f := range codecClips(t)[3].frames {
		if len(vp9FirstFrame(f)) < len(f) {
			superframes++
		}
	}
	if superframes == 0 {
		t.Errorf("the VP9 clip has no superframe: it does not test them")
	}
}

// TestNALLengthSize: an avcC with 2-byte NAL lengths has its frames read
// with 2-byte lengths.
func TestNALLengthSize(t *testing.T) {
	idr := []byte{0, 3, 0x65, 0x88, 0x80}
	if !bitstreamKey("avc1", idr, 2) || bitstreamKey("avc1", idr, 4) {
		t.Errorf("2-byte NAL lengths not honoured")
	}
	if got := nalLengthSize("avc1", []byte{1, 0x64, 0, 0x1f, 0xFD}); got != 2 {
		t.Errorf("nalLengthSize(avcC lengthSizeMinusOne 1) = %d; want 2", got)
	}
}

// TestCodecRecords: profile, level, size and codec string from the
// configuration records ffmpeg wrote for the clips (64x64), and sizes
// that need cropping.
func TestCodecRecords(t *testing.T) {
	for _, tc := range []struct {
		got  videoParams
		want videoParams
	}{
		{parseVideoHeader(append([]byte{0x17, 0, 0, 0, 0}, readTestdata(t, "h264.avcC")...)),
			videoParams{Codec: "H264", CodecString: "avc1.4d400a", Width: 64, Height: 64, Profile: "Main", Level: 1}},
		{parseVideoHeader(exVideo(1, exSequenceStart, "hvc1", readTestdata(t, "h265.hvcC")...)),
			videoParams{Codec: "HEVC", CodecString: "hvc1.1.6.L30.90", Width: 64, Height: 64, Profile: "Main", Level: 1}},
		{parseVideoHeader(append([]byte{0x1C, 0, 0, 0, 0}, readTestdata(t, "h265.hvcC")...)),
			videoParams{Codec: "H265", CodecString: "hvc1.1.6.L30.90", Width: 64, Height: 64, Profile: "Main", Level: 1}},
		{parseVideoHeader(exVideo(1, exSequenceStart, "av01", readTestdata(t, "av1.av1C")...)),
			videoParams{Codec: "AV1", CodecString: "av01.0.00M.08", Width: 64, Height: 64, Profile: "Main", Level: 2}},
		{parseVideoHeader(exVideo(1, exSequenceStart, "vp09", readTestdata(t, "vp9.vpcC")...)),
			videoParams{Codec: "VP9", CodecString: "vp09.00.10.08", Profile: "Profile 0", Level: 1}},
		{parseVideoHeader(exVideo(1, exSequenceStart, "avc1", readTestdata(t, "h264.avcC")...)),
			videoParams{Codec: "H264", CodecString: "avc1.4d400a", Width: 64, Height: 64, Profile: "Main", Level: 1}},
	} {
		if tc.got != tc.want {
			t.Errorf("got %+v; want %+v", tc.got, tc.want)
		}
	}
	// 100x60 (one frame of libx265, libaom-av1, libx264 remuxed to MP4):
	// sizes that are no multiple of the coding block, so the SPS's
	// conformance window (cropping) and AV1's frame size bits are read.
	for _, tc := range []struct {
		file string
		p    []byte
	}{
		{"h265-100x60.hvcC", exVideo(1, exSequenceStart, "hvc1", readTestdata(t, "h265-100x60.hvcC")...)},
		{"av1-100x60.av1C", exVideo(1, exSequenceStart, "av01", readTestdata(t, "av1-100x60.av1C")...)},
		{"h264-100x60.avcC", append([]byte{0x17, 0, 0, 0, 0}, readTestdata(t, "h264-100x60.avcC")...)},
	} {
		if v := parseVideoHeader(tc.p); v.Width != 100 || v.Height != 60 {
			t.Errorf("%s: %dx%d; want 100x60", tc.file, v.Width, v.Height)
		}
	}
	if w, h := vp9KeySize(vp9FirstFrame(codecClips(t)[3].frames[0])); w != 64 || h != 64 {
		t.Errorf("vp9KeySize = %dx%d; want 64x64", w, h)
	}
}

// TestAudioRecords: the codec's name and parameters from an Enhanced RTMP
// audio SequenceStart.
func TestAudioRecords(t *testing.T) {
	opusHead := joinBytes([]byte("OpusHead"), bs(1, 2, 0x38, 0x01, 0x80, 0xBB, 0, 0, 0, 0, 0))
	// fLaC STREAMINFO: block header (last, type 0, length 34), min/max
	// block size, min/max frame size, then 44100 Hz (0x0AC44), 2 channels, 16 bits.
	streamInfo := joinBytes(bs(0x80, 0, 0, 34, 0x10, 0, 0x10, 0, 0, 0, 0, 0, 0, 0), bs(0x0A, 0xC4, 0x42, 0xF0), make([]byte, 20))
	for _, tc := range []struct {
		p    []byte
		want audioParams
	}{
		{joinBytes(bs(0x90), []byte("Opus"), opusHead), audioParams{Codec: "Opus", CodecString: "opus", SampleRate: 48000, Channels: 2}},
		{joinBytes(bs(0x90), []byte("fLaC"), streamInfo), audioParams{Codec: "FLAC", CodecString: "flac", SampleRate: 44100, Channels: 2}},
		{joinBytes(bs(0x90), []byte("mp4a"), bs(0x12, 0x10)), audioParams{Codec: "AAC", CodecString: "mp4a.40.2", Profile: "LC", SampleRate: 44100, Channels: 2}},
		{joinBytes(bs(0x90), []byte("ac-3")), audioParams{Codec: "AC-3", CodecString: "ac-3"}},
		{joinBytes(bs(0x90), []byte("ec-3")), audioParams{Codec: "E-AC-3", CodecString: "ec-3"}},
		{joinBytes(bs(0x90), []byte(".mp3")), audioParams{Codec: "MP3", CodecString: "mp3"}},
		{bs(0xAF, 0, 0x12, 0x10), audioParams{Codec: "AAC", CodecString: "mp4a.40.2", Profile: "LC", SampleRate: 44100, Channels: 2}},
	} {
		if got := parseAudioHeader(tc.p); got != tc.want {
			t.Errorf("parseAudioHeader(% x) = %+v; want %+v", tc.p[:min(len(tc.p), 8)], got, tc.want)
		}
	}
}

// FuzzCodec feeds anything to the tag and bitstream parsers, seeded with
// the real clips: they must not panic, and what parses stays inside p.
func FuzzCodec(f *testing.F) {
	for _, c := range codecClips(f) {
		f.Add(exVideo(1, exSequenceStart, c.fourCC, c.config...))
		for _, fr := range c.frames[:3] {
			f.Add(exVideo(0, exCodedFramesX, c.fourCC, fr...))
		}
	}
	f.Add(joinBytes(bs(0x80|exVideoMultitrack, 2<<4|exSequenceStart), []byte("hvc1"), bs(0, 0, 0, 1, 0xA), []byte("av01"), bs(2, 0, 0, 0)))
	f.Add(exVideo(1, exSequenceStart, "hvc1", readTestdata(f, "h265-100x60.hvcC")...))
	f.Add(exVideo(1, exSequenceStart, "av01", readTestdata(f, "av1-100x60.av1C")...))
	f.Add(joinBytes(bs(0x90|exAudioMultitrack, 1<<4|exSequenceStart), []byte("Opus"), bs(0, 0, 0, 1, 0xA)))
	f.Add(joinBytes(bs(0x80|1<<4|exModEx, 2, 0, 0x10, 0, exCodedFrames), []byte("av01"), bs(0x12, 0)))
	f.Fuzz(func(t *testing.T, p []byte) {
		var cs codecState
		cs.classifyVideo(p)
		cs.classifyAudio(p)
		parseVideoHeader(p)
		parseAudioHeader(p)
		headerSlotOf(msgVideo, p)
		headerSlotOf(msgAudio, p)
		for _, cc := range []string{"avc1", "hvc1", "av01", "vp09", "vp08"} {
			bitstreamKey(cc, p, 4)
		}
		vp9KeySize(p)
		parseHVCC(p)
		parseAV1C(p)
		parseVPCC("vp09", p)
		av1SequenceSize(p)
		hevcSPSSize(p)
	})
}

// oggPackets reads the packets of an Ogg stream (RFC 3533 §6: pages of
// lacing values; a value below 255 ends a packet). testdata/codec/opus.ogg
// is 1 s of a 440 Hz sine, mono, made with
// ffmpeg -f lavfi -i sine=frequency=440:sample_rate=48000 -t 1 -c:a libopus -b:a 12k -ac 1 -frame_duration 20:
// its packets are the OpusHead, the OpusTags, then 20 ms of audio each.
func oggPackets(t testing.TB, b []byte) [][]byte {
	t.Helper()
	var packets [][]byte
	var partial []byte
	for len(b) > 0 {
		if len(b) < 27 || string(b[:4]) != "OggS" {
			t.Fatal("bad Ogg page")
		}
		nsegs := int(b[26])
		lacing := b[27 : 27+nsegs]
		data := b[27+nsegs:]
		for _, l := range lacing {
			partial = append(partial, data[:l]...)
			data = data[l:]
			if l < 255 {
				packets = append(packets, partial)
				partial = nil
			}
		}
		b = data
	}
	return packets
}

func TestOggPackets(t *testing.T) {
	p := oggPackets(t, readTestdata(t, "opus.ogg"))
	if len(p) < 50 || string(p[0][:8]) != "OpusHead" || string(p[1][:8]) != "OpusTags" {
		t.Fatalf("%d packets; want OpusHead, OpusTags and 50 of audio", len(p))
	}
	if got := parseAudioHeader(joinBytes(bs(0x90), []byte("Opus"), p[0])); got.SampleRate != 48000 || got.Channels != 1 {
		t.Errorf("OpusHead read as %+v; want 48000 Hz mono", got)
	}
}

func TestCodecString(t *testing.T) {
	for _, tc := range []struct {
		typ  uint8
		p    []byte
		want string
	}{
		{msgVideo, append([]byte{0x17, 0, 0, 0, 0}, readTestdata(t, "h264.avcC")...), "avc1.4d400a"},
		{msgVideo, append([]byte{0x1C, 0, 0, 0, 0}, readTestdata(t, "h265.hvcC")...), "hvc1.1.6.L30.90"},
		{msgVideo, exVideo(1, exSequenceStart, "av01", readTestdata(t, "av1.av1C")...), "av01.0.00M.08"},
		{msgVideo, exVideo(1, exSequenceStart, "vp09", readTestdata(t, "vp9.vpcC")...), "vp09.00.10.08"},
		{msgAudio, testAudioHeader, "mp4a.40.2"},
		{msgAudio, joinBytes(bs(0x90), []byte("Opus"), opusHead), "opus"},
		{msgVideo, bs(0x12, 0), ""}, // Sorenson H.263
	} {
		if got := codecString(tc.typ, tc.p); got != tc.want {
			t.Errorf("codecString(% x...) = %q; want %q", tc.p[:2], got, tc.want)
		}
	}
}

// TestHugeLengths: lengths that overflow a 32-bit int (gms is built for
// 32-bit ARM too) are refused, not used.
func TestHugeLengths(t *testing.T) {
	if bitstreamKey("avc1", bs(0xFF, 0xFF, 0xFF, 0xFF, 0x65), 4) {
		t.Error("a NAL unit of 4 GiB in 5 bytes read as an IDR")
	}
	// A superframe index (marker 0xDB: 4 size bytes, 4 frames) whose first size is 0xFFFFFFFF.
	frame := append(bs(0x82, 0x49, 0x83, 0x42), bs(0xDB, 0xFF, 0xFF, 0xFF, 0xFF)...)
	frame = append(frame, make([]byte, 12)...)
	frame = append(frame, 0xDB)
	if got := vp9FirstFrame(frame); got != nil {
		t.Errorf("vp9FirstFrame of an index claiming 4 GiB = % x; want nil", got)
	}
}
