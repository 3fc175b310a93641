package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestFLVRecorder: a file starts at a video keyframe (or, without video,
// at the first audio frame) with the metadata and sequence headers kept
// until then, in their order and never later than that frame; the
// header's flags say what the file holds.
func TestFLVRecorder(t *testing.T) {
	meta := amf0AppendAll(nil, "@setDataFrame", "onMetaData", amfECMAArray{{"videocodecid", 7.0}})
	bare := amf0AppendAll(nil, "onMetaData", amfECMAArray{{"videocodecid", 7.0}})
	sampleAccess := amf0AppendAll(nil, "|RtmpSampleAccess", false, false)
	videoHdr := []byte{0x17, 0, 0, 0, 0, 1, 0x64}
	audioHdr := []byte{0xAF, 0, 0x12, 0x10}
	key := []byte{0x17, 1, 0, 0, 0, 0xAA}
	inter := []byte{0x27, 1, 0, 0, 0, 0xBB}
	audio := []byte{0xAF, 1, 0xCC}
	for _, tc := range []struct {
		name  string
		in    []flvTag
		want  []flvTag
		flags byte
	}{
		{
			name: "video and audio",
			in: []flvTag{
				{tagScript, 0, sampleAccess}, {tagScript, 0, meta}, {tagVideo, 0, videoHdr}, {tagAudio, 0, audioHdr},
				{tagAudio, 5, audio}, {tagVideo, 10, inter}, // before the keyframe: dropped
				{tagVideo, 40, key}, {tagAudio, 38, audio}, {tagVideo, 80, inter},
			},
			want: []flvTag{
				{tagScript, 0, bare}, {tagVideo, 0, videoHdr}, {tagAudio, 0, audioHdr},
				{tagVideo, 40, key}, {tagAudio, 38, audio}, {tagVideo, 80, inter},
			},
			flags: 0x05,
		},
		{
			name: "headers stamped later than the first frame",
			in:   []flvTag{{tagVideo, 900, videoHdr}, {tagVideo, 500, key}},
			want: []flvTag{{tagVideo, 500, videoHdr}, {tagVideo, 500, key}},
			// A stream without audio.
			flags: 0x01,
		},
		{
			name:  "audio only",
			in:    []flvTag{{tagAudio, 0, audioHdr}, {tagAudio, 23, audio}, {tagAudio, 46, audio}},
			want:  []flvTag{{tagAudio, 0, audioHdr}, {tagAudio, 23, audio}, {tagAudio, 46, audio}},
			flags: 0x04,
		},
		{
			name:  "a newer header replaces the kept one",
			in:    []flvTag{{tagVideo, 0, videoHdr}, {tagVideo, 0, append(videoHdr[:7:7], 1)}, {tagVideo, 0, key}},
			want:  []flvTag{{tagVideo, 0, append(videoHdr[:7:7], 1)}, {tagVideo, 0, key}},
			flags: 0x01,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "rec.flv")
			f, err := os.Create(path)
			if err != nil {
				t.Fatal(err)
			}
			rec := newFLVRecorder(f)
			for _, tag := range tc.in {
				if _, err := rec.add(tag); err != nil {
					t.Fatal(err)
				}
			}
			if err := rec.close(); err != nil {
				t.Fatal(err)
			}
			data, _ := os.ReadFile(path)
			if data[4] != tc.flags {
				t.Errorf("header flags %#x; want %#x", data[4], tc.flags)
			}
			_, got := parseFLV(t, data)
			if len(got) != len(tc.want) {
				t.Fatalf("%d tags; want %d", len(got), len(tc.want))
			}
			for i := range got {
				if !sameTag(got[i], tc.want[i]) {
					t.Errorf("tag %d = %d/%d/% x; want %d/%d/% x", i, got[i].Type, got[i].Time, got[i].Data,
						tc.want[i].Type, tc.want[i].Time, tc.want[i].Data)
				}
			}
		})
	}
	// Nothing to start at: no file.
	path := filepath.Join(t.TempDir(), "empty.flv")
	f, _ := os.Create(path)
	rec := newFLVRecorder(f)
	rec.add(flvTag{tagScript, 0, meta})
	rec.add(flvTag{tagVideo, 0, inter})
	rec.close()
	if _, err := os.Stat(path); err == nil {
		t.Errorf("a recording that never started left a file")
	}
}

// TestProgress: off a terminal one line a second at most, and a summary
// with the totals.
func TestProgress(t *testing.T) {
	var out bytes.Buffer
	p := newProgress(&out, "PUSHING")
	p.showSleep = true
	for i := range 5 {
		p.count(flvTag{tagVideo, uint32(i * 40), []byte{0x27, 1, 0, 0, 0x28, 1}})
		p.update()
	}
	p.count(flvTag{tagAudio, 170, []byte{0xAF, 1, 2}})
	p.summary("push")
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d lines; want a progress line and the summary:\n%s", len(lines), out.String())
	}
	if want := "[PUSHING] pts = 0.040s, ts = "; !strings.HasPrefix(lines[0], want) || !strings.Contains(lines[0], "frame = 1, ") {
		t.Errorf("progress %q; want %q... with frame = 1 (the pts has the composition offset)", lines[0], want)
	}
	if want := "push: 5 frames, 33 B, 0.170s of media in "; !strings.HasPrefix(lines[1], want) ||
		!strings.Contains(lines[1], "pacing lagged 0ms at worst") {
		t.Errorf("summary %q; want %q...", lines[1], want)
	}
}

// TestPullFindsUnmarkedKeyframes: a pulled stream whose publisher marks
// no keyframe (frame type 0 everywhere, as MediaMTX sends) starts its
// file at the first keyframe the bitstream shows, as the server's players
// do, for every codec.
func TestPullFindsUnmarkedKeyframes(t *testing.T) {
	for _, c := range codecClips(t) {
		t.Run(c.fourCC, func(t *testing.T) {
			if len(c.keys) < 2 {
				t.Skipf("%s clip has %d keyframes", c.fourCC, len(c.keys))
			}
			session := ertmpSession(c, exVideo(0, exSequenceStart, c.fourCC, c.config...),
				func(i int, data []byte, key bool) []byte { return exFrameBody(0, c.fourCC, data) })
			path := filepath.Join(t.TempDir(), "out.flv")
			f, err := os.Create(path)
			if err != nil {
				t.Fatal(err)
			}
			rec := newFLVRecorder(f)
			// Join after the first keyframe: the file must start at the second.
			joinAt := c.keys[0] + 1
			for _, st := range session {
				if !st.header && st.ts < uint32(joinAt*40) {
					continue
				}
				if _, err := rec.add(flvTag{Type: st.typ, Time: st.ts, Data: st.data}); err != nil {
					t.Fatal(err)
				}
			}
			if err := rec.close(); err != nil {
				t.Fatal(err)
			}
			_, tags := readFLVFile(t, path)
			var firstVideo *flvTag
			for i := range tags {
				if tags[i].Type == tagVideo && tags[i].Data[0]&0x0F != exSequenceStart {
					firstVideo = &tags[i]
					break
				}
			}
			if firstVideo == nil {
				t.Fatalf("no video frame in the file (%d tags)", len(tags))
			}
			if want := uint32(c.keys[1] * 40); firstVideo.Time != want {
				t.Errorf("file starts at video time %d ms; want the second keyframe's, %d ms", firstVideo.Time, want)
			}
		})
	}
}
