package main

import (
	"cmp"
	"encoding/binary"
	"errors"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
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
	withMeta := appendFLVTag(appendFLVHeader(nil, true, true), tagScript, 0, amf0AppendAll(nil, "onMetaData", amfECMAArray{{"duration", 0.0}}))
	withMeta = append(withMeta, b[flvHeaderLen+4:]...)
	dir := t.TempDir()
	for _, c := range []struct {
		name string
		data []byte
		want time.Duration
	}{
		{"whole", b, 3500 * time.Millisecond},
		{"metadata at 0 first", withMeta, 3500 * time.Millisecond},
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

// TestMP4RecordingEmpty: a publish that ends before its first frame
// leaves no file.
func TestMP4RecordingEmpty(t *testing.T) {
	dir := t.TempDir()
	w := &mp4Recording{r: newRecorder(dir, slog.New(slog.DiscardHandler)), key: streamKey{App: "live", Name: "cam"}}
	if err := w.open(newRecording("mp4")); err != nil {
		t.Fatal(err)
	}
	if err := w.tag(appendFLVTag(nil, tagVideo, 0, joinBytes(bs(0x17, 0, 0, 0, 0), testAVCC))); err != nil {
		t.Fatal(err)
	}
	if err := w.close(); err != nil {
		t.Fatal(err)
	}
	if files, _ := filepath.Glob(filepath.Join(dir, "live", "cam", "*")); len(files) != 0 {
		t.Errorf("files %q left; want none", files)
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

// fullDisk takes room bytes, then fails as a full disk does.
type fullDisk struct {
	data []byte
	room int
}

func (d *fullDisk) Write(p []byte) (int, error) {
	n := min(len(p), d.room-len(d.data))
	d.data = append(d.data, p[:n]...)
	if n < len(p) {
		return n, syscall.ENOSPC
	}
	return n, nil
}

func (d *fullDisk) Truncate(size int64) error {
	d.data = d.data[:size]
	return nil
}

// TestRecordWriteCutShort: a write that fails part-way (a full disk)
// leaves the file at its last whole tag, with its size and duration
// accounted for those tags only; metadata is written stamped 0.
func TestRecordWriteCutShort(t *testing.T) {
	var tags [][]byte
	tags = append(tags, appendFLVHeader(nil, true, true))
	tags = append(tags, appendFLVTag(nil, tagScript, 1000, amf0AppendAll(nil, "onMetaData", amfECMAArray{{"duration", 0.0}})))
	for i := range 5 {
		tags = append(tags, appendFLVTag(nil, tagVideo, uint32(1000+40*i), []byte{0x17, 1, 0, 0, 0, byte(i), 2, 3}))
	}
	wholeThree := 0 // header, metadata, three frames
	for _, tag := range tags[:5] {
		wholeThree += len(tag)
	}
	disk := &fullDisk{room: wholeThree + 7}
	rec := &recording{}
	rec.first.Store(-1)
	rec.last.Store(-1)
	b := net.Buffers(slices.Clone(tags))
	err := rec.writeTags(disk, &b, slices.Clone(tags))
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("err = %v; want ENOSPC", err)
	}
	if len(disk.data) != wholeThree || rec.bytes.Load() != int64(wholeThree) {
		t.Errorf("file %d bytes, %d accounted; want the %d bytes of whole tags", len(disk.data), rec.bytes.Load(), wholeThree)
	}
	if got := rec.duration(); got != 80*time.Millisecond {
		t.Errorf("duration %v; want 80ms (three frames written)", got)
	}
	if meta := disk.data[len(tags[0]):]; tagTime(meta) != 0 {
		t.Errorf("metadata written at %d; want 0", tagTime(meta))
	}
	if tagTime(tags[1]) != 1000 {
		t.Errorf("the hub's shared metadata bytes were changed")
	}
}
