package main

import (
	"bytes"
	"testing"
)

// TestClassifyUnmarked: wrapped in Enhanced RTMP tags with frame type 0
// everywhere (as MediaMTX's RTMP client sends them), and in legacy AVC
// tags whose flag says inter frame, the keyframes are still found, and a
// SequenceStart sets the NAL length size the frames are read with.
func TestClassifyUnmarked(t *testing.T) {
	for _, c := range codecClips(t) {
		var cs codecState
		if h := cs.classifyVideo(exVideo(0, exSequenceStart, c.fourCC, c.config...)); !h.header || h.key {
			t.Errorf("%s SequenceStart: %+v; want a header", c.fourCC, h)
		}
		for i, f := range c.frames {
			body := exVideo(0, exCodedFramesX, c.fourCC, f...)
			if c.fourCC == "avc1" || c.fourCC == "hvc1" {
				body = exVideo(0, exCodedFrames, c.fourCC, append([]byte{0, 0, 40}, f...)...)
			}
			if got := cs.classifyVideo(body); got.header || got.key != isKeyIndex(c.keys, i) {
				t.Errorf("%s frame %d: %+v; want key %v", c.fourCC, i, got, isKeyIndex(c.keys, i))
			}
		}
	}
	h264 := codecClips(t)[0]
	var cs codecState
	cs.classifyVideo(append([]byte{0x17, 0, 0, 0, 0}, h264.config...))
	cs.classifyVideo(append([]byte{0x1C, 0, 0, 0, 0}, codecClips(t)[1].config...))
	if cs.nalLen["avc1"] != 4 || cs.nalLen["hvc1"] != 4 {
		t.Fatalf("NAL length sizes from legacy sequence headers %v; want 4 (lengthSizeMinusOne 3 in both records)", cs.nalLen)
	}
	for i, f := range h264.frames {
		legacy := append([]byte{0x27, 1, 0, 0, 0}, f...) // every frame flagged inter
		if got := cs.classifyVideo(legacy); got.key != isKeyIndex(h264.keys, i) {
			t.Errorf("legacy AVC frame %d flagged inter: key %v; want %v", i, got.key, isKeyIndex(h264.keys, i))
		}
		hevcLegacy := append([]byte{0x2C, 1, 0, 0, 0}, codecClips(t)[1].frames[i]...)
		if got := cs.classifyVideo(hevcLegacy); got.key != isKeyIndex([]int{0, 4}, i) {
			t.Errorf("legacy HEVC (id 12) frame %d flagged inter: key %v", i, got.key)
		}
	}
}

// TestParseExTag: ModEx prefixes and the three multitrack forms, built as
// enhanced-rtmp-v2 lays them out, and truncated or malformed ones refused
// with an error.
func TestParseExTag(t *testing.T) {
	hvcFrame := []byte{0, 0, 0, 0, 0, 0, 2, 0x26, 0x01}
	for _, tc := range []struct {
		name       string
		p          []byte
		packetType byte
		tracks     []exTrack
		err        bool
	}{
		{"one track", exVideo(1, exCodedFrames, "hvc1", hvcFrame...), exCodedFrames,
			[]exTrack{{fourCC: "hvc1", body: hvcFrame}}, false},
		// ModEx: size-1 (2 → 3 bytes of TimestampOffsetNano), then
		// ModExType 0 << 4 | packet type.
		{"ModEx nano offset", joinBytes(bs(0x80|1<<4|exModEx, 2, 0, 0x10, 0, exCodedFrames), []byte("av01"), bs(0x12, 0)), exCodedFrames,
			[]exTrack{{fourCC: "av01", body: bs(0x12, 0)}}, false},
		{"ModEx with 16-bit size", joinBytes(bs(0x80|exModEx, 255, 0, 2), make([]byte, 3), bs(exCodedFramesX), []byte("vp09"), bs(0x82)), exCodedFramesX,
			[]exTrack{{fourCC: "vp09", body: bs(0x82)}}, false},
		// Multitrack OneTrack: type 0 << 4 | packet type, FourCC, track id, body to the end.
		{"multitrack one track", joinBytes(bs(0x80|1<<4|exVideoMultitrack, 0<<4|exSequenceStart), []byte("hvc1"), bs(1), bs(1, 2, 3)), exSequenceStart,
			[]exTrack{{fourCC: "hvc1", id: 1, body: bs(1, 2, 3)}}, false},
		// ManyTracks: shared FourCC, then per track id and UI24 size.
		{"multitrack many tracks", joinBytes(bs(0x80|exVideoMultitrack, 1<<4|exCodedFramesX), []byte("av01"), bs(0, 0, 0, 2, 0xA, 0xB), bs(1, 0, 0, 1, 0xC)), exCodedFramesX,
			[]exTrack{{fourCC: "av01", id: 0, body: bs(0xA, 0xB)}, {fourCC: "av01", id: 1, body: bs(0xC)}}, false},
		// ManyTracksManyCodecs: per track FourCC, id, size.
		{"multitrack many codecs", joinBytes(bs(0x80|exVideoMultitrack, 2<<4|exSequenceStart), []byte("hvc1"), bs(0, 0, 0, 1, 0xA), []byte("av01"), bs(2, 0, 0, 0)), exSequenceStart,
			[]exTrack{{fourCC: "hvc1", id: 0, body: bs(0xA)}, {fourCC: "av01", id: 2, body: bs()}}, false},
		{"track size past the end", joinBytes(bs(0x80|exVideoMultitrack, 1<<4|exCodedFramesX), []byte("av01"), bs(0, 0, 0, 9, 1)), 0, nil, true},
		{"multitrack in multitrack", joinBytes(bs(0x80|exVideoMultitrack, 1<<4|exVideoMultitrack), []byte("av01")), 0, nil, true},
		{"multitrack type 3", joinBytes(bs(0x80|exVideoMultitrack, 3<<4|exCodedFramesX), []byte("av01")), 0, nil, true},
		{"ModEx cut short", bs(0x80|exModEx, 5, 0), 0, nil, true},
		{"FourCC cut short", bs(0x80|exCodedFrames, 'h', 'v'), 0, nil, true},
	} {
		var tag exTag
		_, err := parseExVideo(tc.p, &tag)
		if (err != nil) != tc.err {
			t.Errorf("%s: err %v; want error %v", tc.name, err, tc.err)
			continue
		}
		if tc.err {
			continue
		}
		if tag.packetType != tc.packetType || tag.n != len(tc.tracks) {
			t.Errorf("%s: packet type %d, %d tracks; want %d, %d", tc.name, tag.packetType, tag.n, tc.packetType, len(tc.tracks))
			continue
		}
		for i, want := range tc.tracks {
			if got := tag.tracks[i]; got.fourCC != want.fourCC || got.id != want.id || !bytes.Equal(got.body, want.body) {
				t.Errorf("%s: track %d = %+v; want %+v", tc.name, i, got, want)
			}
		}
	}
	// Audio: SoundFormat 9, Multitrack (5), ManyTracks of Opus.
	var tag exTag
	p := joinBytes(bs(0x90|exAudioMultitrack, 1<<4|exSequenceStart), []byte("Opus"), bs(0, 0, 0, 1, 0xA), bs(3, 0, 0, 1, 0xB))
	if ok, err := parseExAudio(p, &tag); !ok || err != nil || tag.n != 2 || tag.tracks[1].id != 3 {
		t.Errorf("audio multitrack: %v %v %+v", ok, err, tag)
	}
}

// TestKeyTrack: in a multitrack stream whose track 1 sends first, GOPs
// start at track 1's keyframes until track 0 shows up, then at track 0's.
func TestKeyTrack(t *testing.T) {
	oneTrack := func(id, frameType byte) []byte {
		return joinBytes(bs(0x80|frameType<<4|exVideoMultitrack, multitrackOneTrack<<4|exCodedFramesX), []byte("av01"), bs(id, 0x12, 0))
	}
	var cs codecState
	for i, step := range []struct {
		p   []byte
		key bool
	}{
		{oneTrack(1, 1), true},
		{oneTrack(1, 2), false},
		{exVideo(2, exCodedFramesX, "av01", 0x12, 0), false}, // track 0 arrives, an inter frame
		{oneTrack(1, 1), false},                              // track 1's keyframes no longer start GOPs
		{exVideo(1, exCodedFramesX, "av01", 0x12, 0), true},
	} {
		if got := cs.classifyVideo(step.p).key; got != step.key {
			t.Errorf("step %d: key %v; want %v", i, got, step.key)
		}
	}
	for _, inter := range [][]byte{exVideo(2, exCodedFramesX, "av01", 0x12, 0), testVideo(false, 100), bs(0x2C, 1, 0, 0, 0, 0, 0, 0, 1, 2)} {
		if allocs := testing.AllocsPerRun(100, func() { cs.classifyVideo(inter) }); allocs != 0 {
			t.Errorf("classifyVideo(% x) allocates %.0f times a message", inter[:5], allocs)
		}
	}
}
