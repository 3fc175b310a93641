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

// TestTSAgainstFFprobe makes transport streams with ffmpeg and compares the
// reader's tags with ffprobe's packets: count, times and keyframes from
// the TS itself; sizes from the same streams remuxed to MP4, where they
// are length-prefixed as in the tags.
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
			remux := filepath.Join(dir, tc.name+".mp4")
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
			sized := demuxProbe(t, remux)
			for kind, ps := range sized {
				g := got[kind]
				if len(g) != len(ps) {
					t.Errorf("%s: %d packets, the MP4 remux has %d", kind, len(g), len(ps))
					continue
				}
				bad := 0
				for i := range ps {
					// ffmpeg's HEVC parser cuts access units at the next
					// one's 00 00 01, so the remux keeps the leading zero of
					// a 4-byte start code that ends the PES.
					if d := ps[i].size - g[i].size; d != 0 && !(tc.name == "h265-aac" && d == 1) {
						if bad++; bad <= 3 {
							t.Errorf("%s packet %d: %d bytes, the MP4 remux has %d", kind, i, g[i].size, ps[i].size)
						}
					}
				}
			}
			if tc.classic {
				demuxCheckFLV(t, tags, got)
			} else {
				demuxDecodeVideo(t, tags)
			}
		})
	}
}

// tsTiny builds a small transport stream by hand: PAT, PMT with one AAC
// stream, and one PES with two ADTS frames.
func tsTiny() []byte {
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
	adts := func(payload ...byte) []byte {
		n := 7 + len(payload)
		// MPEG-4, no CRC; AAC LC, 48 kHz (index 3), 2 channels.
		h := []byte{0xFF, 0xF1, 1<<6 | 3<<2, 2<<6 | byte(n>>11), byte(n >> 3), byte(n<<5) | 0x1F, 0xFC}
		return append(h, payload...)
	}
	es := append(adts(1, 2, 3), adts(4, 5)...)
	pts := int64(900000)
	pes := []byte{0, 0, 1, 0xC0, 0, byte(3 + 5 + len(es)), 0x80, 0x80, 5,
		byte(0x21 | pts>>29&0x0E), byte(pts >> 22), byte(pts>>14 | 1), byte(pts >> 7), byte(pts<<1 | 1)}
	pes = append(pes, es...)
	var b []byte
	b = append(b, packet(0, true, 0, pat)...)
	b = append(b, packet(0x1000, true, 0, pmt)...)
	b = append(b, packet(0x101, true, 0, pes)...)
	return b
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
