package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func openTSFile(t testing.TB, path string) tagSource {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	src, err := openTS(f)
	if err != nil {
		t.Fatalf("openTS %s: %v", path, err)
	}
	return src
}

// TestTSAgainstFFprobe makes transport streams with ffmpeg and checks the
// reader's tags against ffprobe (demuxCheckTS).
func TestTSAgainstFFprobe(t *testing.T) {
	needFFmpeg(t)
	dir := t.TempDir()
	cases := []struct {
		name, encoder string
		classic       bool
		args          []string
	}{
		{"h264-aac", "libx264", true, []string{"-c:v", "libx264", "-bf", "2", "-g", "25", "-c:a", "aac"}},
		{"h264-aac-44100", "libx264", true, []string{"-c:v", "libx264", "-g", "50", "-c:a", "aac", "-ar", "44100"}},
		{"h265-aac", "libx265", false, []string{"-c:v", "libx265", "-x265-params", "log-level=error:bframes=2:keyint=25", "-c:a", "aac"}},
		// Clocks close to 2^33: the PTS/DTS wrap around 1.3 s in.
		{"h264-aac-wrap", "libx264", true, []string{"-c:v", "libx264", "-g", "25", "-c:a", "aac", "-output_ts_offset", "95441"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			demuxNeedEncoder(t, tc.encoder)
			path := filepath.Join(dir, tc.name+".ts")
			demuxFFmpeg(t, append(append(append([]string{}, demuxSource...), tc.args...), path)...)
			demuxCheckTS(t, path, tc.classic, strings.HasPrefix(tc.name, "h265"))
		})
	}
}

// TestTSJoinedSegments reads HLS-like segments joined with cat: each one
// starts again with a PAT, a PMT and continuity counters at 0, and no
// frame is lost at the joins.
func TestTSJoinedSegments(t *testing.T) {
	needFFmpeg(t)
	dir := t.TempDir()
	demuxFFmpeg(t, append(append([]string{}, demuxSource...), "-c:v", "libx264", "-g", "25", "-c:a", "aac",
		"-f", "segment", "-segment_time", "1", "-segment_format", "mpegts", filepath.Join(dir, "seg%d.ts"))...)
	segs, _ := filepath.Glob(filepath.Join(dir, "seg*.ts"))
	if len(segs) < 2 {
		t.Fatalf("%d segments", len(segs))
	}
	var joined []byte
	for i := range segs {
		b, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("seg%d.ts", i)))
		if err != nil {
			t.Fatal(err)
		}
		joined = append(joined, b...)
	}
	path := filepath.Join(dir, "joined.ts")
	if err := os.WriteFile(path, joined, 0o644); err != nil {
		t.Fatal(err)
	}
	demuxCheckTS(t, path, true, false)
}

// demuxCheckTS compares the reader's tags for a transport stream with
// ffprobe's packets: count, times and keyframes from the TS itself; sizes
// from the same streams remuxed to MP4, where they are length-prefixed as
// in the tags. Then ffprobe reads the tags as FLV (classic codecs), or
// ffmpeg decodes the Enhanced RTMP video.
func demuxCheckTS(t *testing.T, path string, classic, hevc bool) {
	t.Helper()
	remux := strings.TrimSuffix(path, ".ts") + "-remux.mp4"
	demuxFFmpeg(t, "-i", path, "-c", "copy", remux)

	tags := demuxReadAll(t, openTSFile(t, path))
	got, headers := demuxTagPackets(t, tags)
	want := demuxProbe(t, path)
	for kind := range want {
		if headers[kind] != 1 {
			t.Errorf("%s: %d sequence headers, want 1", kind, headers[kind])
		}
	}
	// Times: relative to the earliest first decode time, unwrapped.
	first := math.Inf(1)
	for kind, ps := range want {
		for i := 1; i < len(ps); i++ {
			for ps[i].dts < ps[i-1].dts-1e6 { // ffprobe shows the 33-bit wrap
				ps[i].dts += float64(tsWrap) / 90
				ps[i].pts += float64(tsWrap) / 90
			}
			for ps[i].pts < ps[i].dts-1e6 {
				ps[i].pts += float64(tsWrap) / 90
			}
		}
		want[kind] = ps
		if len(ps) > 0 {
			first = math.Min(first, ps[0].dts)
		}
	}
	demuxCompare(t, got, want, -first, false)
	// Sizes, from the MP4 remux.
	for kind, ps := range demuxProbe(t, remux) {
		g := got[kind]
		if len(g) != len(ps) {
			t.Errorf("%s: %d packets, the MP4 remux has %d", kind, len(g), len(ps))
			continue
		}
		bad := 0
		for i := range ps {
			// ffmpeg's HEVC parser cuts access units at the next one's
			// 00 00 01, so the remux keeps the leading zero of a 4-byte
			// start code that ends the PES.
			if d := ps[i].size - g[i].size; d != 0 && !(hevc && d == 1) {
				if bad++; bad <= 3 {
					t.Errorf("%s packet %d: %d bytes, the MP4 remux has %d", kind, i, g[i].size, ps[i].size)
				}
			}
		}
	}
	if classic {
		demuxCheckFLV(t, tags, got)
	} else {
		demuxDecodeVideo(t, tags)
	}
}

// tsADTS is one ADTS frame: MPEG-4, no CRC, AAC LC, 48 kHz (index 3),
// 2 channels, one raw data block.
func tsADTS(payload ...byte) []byte {
	n := 7 + len(payload)
	h := []byte{0xFF, 0xF1, 1<<6 | 3<<2, 2<<6 | byte(n>>11), byte(n >> 3), byte(n<<5) | 0x1F, 0xFC}
	return append(h, payload...)
}

// tsTestPES is an audio PES: its PTS (90 kHz) and its ADTS bytes.
type tsTestPES struct {
	pts int64
	es  []byte
}

// tsTinyPES builds a small transport stream by hand: PAT, PMT with one
// AAC stream, and the PES packets given, one transport packet each.
func tsTinyPES(pes ...tsTestPES) []byte {
	packet := func(pid uint16, pusi bool, cc byte, payload []byte) []byte {
		p := []byte{tsSyncByte, byte(pid >> 8), byte(pid), 0x10 | cc}
		if pusi {
			p[1] |= 0x40
		}
		if stuff := tsPacketLen - 4 - len(payload); stuff > 0 {
			p[3] |= 0x20 // adaptation field of stuffing
			af := []byte{byte(stuff - 1)}
			if stuff > 1 {
				af = append(af, 0)
				af = append(af, bytes.Repeat([]byte{0xFF}, stuff-2)...)
			}
			p = append(p, af...)
		}
		return append(p, payload...)
	}
	section := func(tableID byte, body []byte) []byte {
		s := []byte{0, tableID, 0xB0, 0, 0, 1, 0xC1, 0, 0}
		s = append(s, body...)
		binary.BigEndian.PutUint16(s[2:], 0xB000|uint16(len(s)))
		return binary.BigEndian.AppendUint32(s, tsCRC32(s[1:]))
	}
	pat := section(0, []byte{0, 1, 0xF0, 0x00})                                            // program 1 → PMT PID 0x1000
	pmt := section(2, []byte{0xE1, 0x01, 0xF0, 0x00, tsStreamAAC, 0xE1, 0x01, 0xF0, 0x00}) // PCR PID, AAC on 0x101
	var b []byte
	b = append(b, packet(0, true, 0, pat)...)
	b = append(b, packet(0x1000, true, 0, pmt)...)
	for i, p := range pes {
		pts := p.pts
		h := []byte{0, 0, 1, 0xC0, 0, byte(3 + 5 + len(p.es)), 0x80, 0x80, 5,
			byte(0x21 | pts>>29&0x0E), byte(pts >> 22), byte(pts>>14 | 1), byte(pts >> 7), byte(pts<<1 | 1)}
		b = append(b, packet(0x101, true, byte(i), append(h, p.es...))...)
	}
	return b
}

func tsTiny() []byte {
	return tsTinyPES(tsTestPES{900000, append(tsADTS(1, 2, 3), tsADTS(4, 5)...)})
}

func TestTSTiny(t *testing.T) {
	src, err := openTS(bytes.NewReader(tsTiny()))
	if err != nil {
		t.Fatal(err)
	}
	tags := demuxReadAll(t, src)
	want := []struct {
		time uint32
		data string
	}{{0, "af001190"}, {0, "af01010203"}, {21, "af010405"}}
	if len(tags) != len(want) {
		t.Fatalf("%d tags, want %d", len(tags), len(want))
	}
	for i, w := range want {
		if got := fmt.Sprintf("%x", tags[i].Data); got != w.data || tags[i].Time != w.time {
			t.Errorf("tag %d: %d %s, want %d %s", i, tags[i].Time, got, w.time, w.data)
		}
	}
	// Garbage before the stream and between packets is skipped.
	noisy := append([]byte("garbage\x47garbage"), tsTiny()...)
	src, err = openTS(bytes.NewReader(noisy))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(demuxReadAll(t, src)); n != len(want) {
		t.Errorf("after garbage: %d tags, want %d", n, len(want))
	}
	// A PAT packet whose adaptation field fills it: no payload to read.
	full := append([]byte{tsSyncByte, 0x40, 0, 0x30, tsMaxAFLen}, bytes.Repeat([]byte{0xFF}, tsMaxAFLen)...)
	src, err = openTS(bytes.NewReader(append(full, tsTiny()...)))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(demuxReadAll(t, src)); n != len(want) {
		t.Errorf("after an empty packet: %d tags, want %d", n, len(want))
	}
}

// TestTSADTSAcrossPES: an ADTS frame that begins in one PES and ends in
// the next keeps its own time; the next PES's PTS is its next frame's.
func TestTSADTSAcrossPES(t *testing.T) {
	a, b, c := tsADTS(1, 2, 3), tsADTS(4, 5, 6, 7), tsADTS(8)
	for _, cut := range []int{3, 9} { // in B's header; in B's payload
		in := tsTinyPES(tsTestPES{0, append(bytes.Clone(a), b[:cut]...)}, tsTestPES{2 * 1920, append(bytes.Clone(b[cut:]), c...)})
		src, err := openTS(bytes.NewReader(in))
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, tag := range demuxReadAll(t, src)[1:] {
			got = append(got, fmt.Sprintf("%d:%x", tag.Time, tag.Data[2:]))
		}
		want := "0:010203 21:04050607 43:08" // 1024 samples at 48 kHz: 21.3 ms
		if strings.Join(got, " ") != want {
			t.Errorf("cut at %d: %s, want %s", cut, strings.Join(got, " "), want)
		}
	}
}

func TestTSBadInput(t *testing.T) {
	cases := []struct {
		name string
		in   []byte
		want string
	}{
		{"empty", nil, "not an MPEG transport stream"},
		{"text", bytes.Repeat([]byte("not a transport stream "), 100), "not an MPEG transport stream"},
		{"megabytes of garbage", bytes.Repeat([]byte{0x11}, 2<<20), "no sync byte in 1048576 bytes"},
		{"no PMT", tsTiny()[:tsPacketLen], "no program map table"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := openTS(bytes.NewReader(tc.in))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one with %q", err, tc.want)
			}
		})
	}
}

// TestTSDamaged cuts and corrupts a real stream: the reader skips what is
// damaged and never panics; what it gives stays in decode order per stream.
func TestTSDamaged(t *testing.T) {
	needFFmpeg(t)
	path := filepath.Join(t.TempDir(), "in.ts")
	demuxFFmpeg(t, "-f", "lavfi", "-i", "testsrc=size=64x48:rate=10", "-f", "lavfi", "-i", "sine", "-t", "2",
		"-c:v", "libx264", "-c:a", "aac", path)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	full := len(demuxReadAll(t, openTSFile(t, path)))
	quiet := slog.Default()
	slog.SetDefault(slog.New(slog.DiscardHandler)) // each copy would log what it skipped
	defer slog.SetDefault(quiet)
	for i, bad := range demuxDamage(b, 11) {
		src, err := openTS(bytes.NewReader(bad))
		if err != nil {
			continue
		}
		n, err := demuxDrain(src)
		if err != nil {
			t.Errorf("copy %d: %v", i, err)
		}
		if n > full+4 {
			t.Errorf("copy %d: %d tags from a damaged copy, %d from the whole file", i, n, full)
		}
	}
}

func FuzzTS(f *testing.F) {
	f.Add(tsTiny())
	if seeds, _ := filepath.Glob("testdata/*.ts"); seeds != nil {
		for _, s := range seeds {
			if b, err := os.ReadFile(s); err == nil {
				f.Add(b)
			}
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		src, err := openTS(bytes.NewReader(b))
		if err != nil {
			return
		}
		for range 100000 {
			tag, err := src.next()
			if err != nil {
				return
			}
			if len(tag.Data) > maxFLVTagData {
				t.Fatalf("tag of %d bytes", len(tag.Data))
			}
		}
	})
}

// TestTSCutLastPacket: a file that ends inside a packet (a download or a
// recording cut short) is read to its end and says so in a warning,
// instead of ending as if it were whole.
func TestTSCutLastPacket(t *testing.T) {
	whole := tsTiny()
	var logs bytes.Buffer
	quiet := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&logs, nil)))
	defer slog.SetDefault(quiet)
	src, err := openTS(bytes.NewReader(whole[:len(whole)-50]))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := demuxDrain(src); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), tsDamagedLog) {
		t.Errorf("no warning for a cut last packet; log: %q", logs.String())
	}
	logs.Reset()
	src, err = openTS(bytes.NewReader(whole))
	if err != nil {
		t.Fatal(err)
	}
	demuxDrain(src)
	if logs.Len() != 0 {
		t.Errorf("a whole file warns: %q", logs.String())
	}
}

// TestTSSkippedStreamWarns: a file whose audio push cannot send (MP3) is
// pushed without it, and says so once, not at every program map table.
func TestTSSkippedStreamWarns(t *testing.T) {
	needFFmpeg(t)
	demuxNeedEncoder(t, "libmp3lame")
	path := filepath.Join(t.TempDir(), "mp3.ts")
	demuxFFmpeg(t, "-f", "lavfi", "-i", "testsrc=size=64x48:rate=10", "-f", "lavfi", "-i", "sine", "-t", "2",
		"-c:v", "libx264", "-c:a", "libmp3lame", "-f", "mpegts", path)
	var logs bytes.Buffer
	quiet := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&logs, nil)))
	defer slog.SetDefault(quiet)
	tags := demuxReadAll(t, openTSFile(t, path))
	if len(tags) < 20 {
		t.Errorf("%d tags; want the video's", len(tags))
	}
	if n := strings.Count(logs.String(), "stream skipped"); n != 1 || !strings.Contains(logs.String(), "MP3") {
		t.Errorf("want one warning naming MP3; log:\n%s", logs.String())
	}
}
