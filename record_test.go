package main

import (
	"cmp"
	"encoding/binary"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestFLVFileDuration reads a duration from a file's two ends, and 0 from
// files that do not say.
func TestFLVFileDuration(t *testing.T) {
	var b []byte
	b = appendFLVHeader(b, true, true)
	b = appendFLVTag(b, tagVideo, 1000, []byte{0x17, 1, 0, 0, 0})
	b = appendFLVTag(b, tagAudio, 4500, []byte{0xAF, 1})
	dir := t.TempDir()
	for _, c := range []struct {
		name string
		data []byte
		want time.Duration
	}{
		{"whole", b, 3500 * time.Millisecond},
		{"cut", b[:len(b)-3], 0},
		{"empty", nil, 0},
		{"not flv", []byte("hello world, this is not an FLV file at all"), 0},
	} {
		path := filepath.Join(dir, c.name+".flv")
		os.WriteFile(path, c.data, 0o644)
		if got := flvFileDuration(path); got != c.want {
			t.Errorf("%s: %v; want %v", c.name, got, c.want)
		}
	}
}

// TestRecorderFormats: -record-format sets every app's format; NMS trans
// tasks' apps are MP4, and with only, the others are not recorded.
func TestRecorderFormats(t *testing.T) {
	r := newRecorder(t.TempDir(), slog.New(slog.DiscardHandler))
	if got := r.formatOf("live"); got != "flv" {
		t.Errorf("default format %q; want flv", got)
	}
	r.setFormats("mp4", nil, false)
	if got := r.formatOf("live"); got != "mp4" {
		t.Errorf("-record-format mp4: %q", got)
	}
	r.setFormats("flv", []string{"rec"}, false)
	if a, b := r.formatOf("rec"), r.formatOf("live"); a != "mp4" || b != "flv" {
		t.Errorf("trans mp4 with -record: rec %q, live %q; want mp4, flv", a, b)
	}
	r.setFormats("flv", []string{"rec"}, true)
	if a, b := r.formatOf("rec"), r.formatOf("live"); a != "mp4" || b != "" {
		t.Errorf("trans mp4 alone: rec %q, live %q; want mp4 and none", a, b)
	}
}

// TestMP4FileDuration reads durations from fragments: a whole file, one
// cut mid-fragment (its whole fragments), and 0 from files that do not
// say.
func TestMP4FileDuration(t *testing.T) {
	_, tags := readFLVFile(t, testClip(t))
	data := muxFLV(t, tags)
	boxes := topBoxes(t, data)
	last := boxes[len(boxes)-1] // the last fragment's mdat
	dir := t.TempDir()
	for _, c := range []struct {
		name     string
		data     []byte
		min, max time.Duration
	}{
		{"whole", data, 3900 * time.Millisecond, 4100 * time.Millisecond},
		{"cut", data[:last.bodyOff+10], 2900 * time.Millisecond, 3100 * time.Millisecond},
		{"init only", data[:boxes[2].off], 0, 0},
		{"empty", nil, 0, 0},
		{"not mp4", []byte("hello world, this is not an MP4 file at all"), 0, 0},
		{"flv", appendFLVHeader(nil, true, true), 0, 0},
	} {
		path := filepath.Join(dir, c.name+".mp4")
		os.WriteFile(path, c.data, 0o644)
		if got := mp4FileDuration(path); got < c.min || got > c.max {
			t.Errorf("%s: %v; want %v..%v", c.name, got, c.min, c.max)
		}
	}
}

// TestMP4RecordingNewHeader: new codec parameters mid-publish (a second
// clip of another picture size) end the file, and the recording goes on
// in a new one; both read cleanly with their own clip's packets.
func TestMP4RecordingNewHeader(t *testing.T) {
	clip := testClip(t)
	clip2 := filepath.Join(t.TempDir(), "clip2.flv")
	if out, err := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error",
		"-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100",
		"-t", "2", "-c:v", "libx264", "-preset", "ultrafast", "-g", "25", "-pix_fmt", "yuv420p",
		"-c:a", "aac", "-b:a", "64k", "-f", "flv", clip2).CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg: %v\n%s", err, out)
	}
	dir := t.TempDir()
	r := newRecorder(dir, slog.New(slog.DiscardHandler))
	w := &mp4Recording{r: r, key: streamKey{App: "live", Name: "cam"}}
	if err := w.open(newRecording("mp4")); err != nil {
		t.Fatal(err)
	}
	_, tags := readFLVFile(t, clip)
	_, tags2 := readFLVFile(t, clip2)
	for i, tt := range [][]flvTag{tags, tags2} {
		for _, tag := range tt {
			if err := w.tag(appendFLVTag(nil, tag.Type, tag.Time+uint32(i*5000), tag.Data)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := w.close(); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "live", "cam", "*.mp4"))
	if len(files) != 2 {
		t.Fatalf("files %q; want 2", files)
	}
	// The second has a later time or a -1 suffix.
	slices.SortFunc(files, func(a, b string) int { return cmp.Or(len(a)-len(b), strings.Compare(a, b)) })
	for i, clipPath := range []string{clip, clip2} {
		// A recording starts at a keyframe: audio before the clip's
		// first video frame is not in it. The second file's times are
		// 5 s on: sizes and flags are compared, track by track.
		want := ffprobeTimed(t, clipPath)
		for len(want) > 0 && want[0].CodecType == "audio" {
			want = want[1:]
		}
		all := ffprobeTimed(t, files[i])
		for _, kind := range []string{"video", "audio"} {
			other := func(p timedPacket) bool { return p.CodecType != kind }
			got, want := slices.DeleteFunc(slices.Clone(all), other), slices.DeleteFunc(slices.Clone(want), other)
			if len(got) != len(want) {
				t.Errorf("file %d: %d %s packets; want %d", i, len(got), kind, len(want))
			}
			for j := range min(len(got), len(want)) {
				if g, w := got[j], want[j]; g.Size != w.Size || g.Flags != w.Flags {
					t.Errorf("file %d: %s packet %d = %+v; want %+v", i, kind, j, g, w)
					break
				}
			}
		}
		decodesCleanly(t, "new header", files[i])
	}
	if got := ffprobeStreams(t, files[1]); !strings.Contains(got, "width=640|height=360") {
		t.Errorf("second file's streams:\n%s", got)
	}
}

// FuzzMP4FragmentTimes: no moov or moof body panics the duration readers.
func FuzzMP4FragmentTimes(f *testing.F) {
	m, err := newFMP4Muxer(joinBytes(bs(0x17, 0, 0, 0, 0), testAVCC), joinBytes(bs(0xAF, 0), testASC), 0, 0)
	if err != nil {
		f.Fatal(err)
	}
	init := m.init()
	for i := range 3 {
		fm, _ := m.parse(msgVideo, bs(0x17, 1, 0, 0, 0, 0, 0, 0, 1, 0x65))
		m.add(msgVideo, uint32(i*40), fm)
		fa, _ := m.parse(msgAudio, bs(0xAF, 1, 0x21))
		m.add(msgAudio, uint32(i*23), fa)
	}
	frag := m.fragment(nil, 0, 0)
	f.Add(init[28+8:], frag[8:binary.BigEndian.Uint32(frag)])
	f.Fuzz(func(t *testing.T, moov, moof []byte) {
		mp4Timescales(mp4Box{typ: "moov", path: "moov", body: moov})
		mp4FragmentTimes(mp4Box{typ: "moof", path: "moof", body: moof})
	})
}

// TestDurationCache measures a file once while its size and time stay,
// again when they change, and forgets files a listing no longer sees.
func TestDurationCache(t *testing.T) {
	_, tags := readFLVFile(t, testClip(t))
	data := muxFLV(t, tags)
	path := filepath.Join(t.TempDir(), "a.mp4")
	os.WriteFile(path, data, 0o644)
	var c durationCache
	info, _ := os.Stat(path)
	first := c.get(path, info)
	c.entries[path] = durationEntry{size: info.Size(), modified: info.ModTime(), duration: time.Hour}
	if got := c.get(path, info); got != time.Hour || first < 3*time.Second {
		t.Errorf("cached %v (first %v); want the cached hour", got, first)
	}
	os.WriteFile(path, data[:len(data)/2], 0o644)
	info, _ = os.Stat(path)
	if got := c.get(path, info); got == time.Hour || got >= first {
		t.Errorf("after a change: %v; want a new, shorter measure than %v", got, first)
	}
	c.sweep()
	c.sweep() // a listing that did not see it
	if len(c.entries) != 0 {
		t.Errorf("entries %v after a listing without the file", c.entries)
	}
}
