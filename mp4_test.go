package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// ---- Helpers shared by the MP4 and TS reader tests ----

// demuxPacket is one media packet, as ffprobe lists it or as a reader's
// tag carries it: times in ms.
type demuxPacket struct {
	kind     string // video, audio
	dts, pts float64
	size     int
	key      bool
}

func (p demuxPacket) String() string {
	return fmt.Sprintf("%s dts=%.1f pts=%.1f size=%d key=%v", p.kind, p.dts, p.pts, p.size, p.key)
}

// demuxProbe lists a file's packets with ffprobe, per codec type.
func demuxProbe(t testing.TB, file string) map[string][]demuxPacket {
	t.Helper()
	pkts := map[string][]demuxPacket{}
	for _, p := range ffprobeTimed(t, file) {
		dts, err1 := strconv.ParseFloat(p.DTS, 64)
		pts, err2 := strconv.ParseFloat(p.PTS, 64)
		size, err3 := strconv.Atoi(p.Size)
		if err := errors.Join(err1, err2, err3); err != nil {
			t.Fatalf("ffprobe %s: packet %+v: %v", file, p, err)
		}
		pkts[p.CodecType] = append(pkts[p.CodecType], demuxPacket{kind: p.CodecType, dts: dts * 1000, pts: pts * 1000,
			size: size, key: strings.Contains(p.Flags, "K")})
	}
	return pkts
}

// demuxReadAll drains a tag source, copying each tag.
func demuxReadAll(t testing.TB, src tagSource) []flvTag {
	t.Helper()
	var tags []flvTag
	for {
		tag, err := src.next()
		if err == io.EOF {
			return tags
		}
		if err != nil {
			t.Fatalf("tag %d: %v", len(tags), err)
		}
		tag.Data = bytes.Clone(tag.Data)
		tags = append(tags, tag)
	}
}

// demuxTagPackets turns the reader's media tags back into packets: the
// payload after the tag's codec header, times from Time and the
// composition offset. Sequence headers are counted apart.
func demuxTagPackets(t testing.TB, tags []flvTag) (pkts map[string][]demuxPacket, headers map[string]int) {
	t.Helper()
	pkts, headers = map[string][]demuxPacket{}, map[string]int{}
	for i, tag := range tags {
		d := tag.Data
		p := demuxPacket{dts: float64(tag.Time), pts: float64(tag.Time)}
		switch tag.Type {
		case tagVideo:
			p.kind = "video"
			isHeader, key := videoInfo(d)
			p.key = key
			if isHeader {
				headers["video"]++
				continue
			}
			hdr, cto := 5, int32(0)
			if d[0]&videoExHeader == 0 {
				cto = int32(be24(d[2:5])<<8) >> 8
			} else if d[0]&0x0F == exCodedFrames && string(d[1:5]) == "hvc1" {
				hdr, cto = 8, int32(be24(d[5:8])<<8)>>8
			}
			p.pts += float64(cto)
			p.size = len(d) - hdr
		case tagAudio:
			p.kind, p.key = "audio", true
			if audioIsHeader(d) {
				headers["audio"]++
				continue
			}
			p.size = len(d) - 2
			if d[0]>>4 == soundExHeader {
				p.size = len(d) - 5
			}
		default:
			t.Fatalf("tag %d: type %d", i, tag.Type)
		}
		pkts[p.kind] = append(pkts[p.kind], p)
	}
	return pkts, headers
}

// demuxShift is what a reader adds to every time so that none is
// negative: minus the earliest first decode time, if that is negative.
func demuxShift(pkts map[string][]demuxPacket) float64 {
	first := 0.0
	for _, ps := range pkts {
		if len(ps) > 0 {
			first = math.Min(first, ps[0].dts)
		}
	}
	return -first
}

// demuxCompare checks got against want stream by stream: count, sizes
// (unless sizes is false), keyframe flags, and times within 1 ms once
// both are moved to start where the reader starts.
func demuxCompare(t testing.TB, got, want map[string][]demuxPacket, wantShift float64, sizes bool) {
	t.Helper()
	for kind, w := range want {
		g := got[kind]
		if len(g) != len(w) {
			t.Errorf("%s: %d packets, want %d", kind, len(g), len(w))
		}
		bad := 0
		for i := range min(len(g), len(w)) {
			gp, wp := g[i], w[i]
			wp.dts += wantShift
			wp.pts += wantShift
			if (sizes && gp.size != wp.size) || gp.key != wp.key || math.Abs(gp.dts-wp.dts) > 1.01 || math.Abs(gp.pts-wp.pts) > 1.01 {
				if bad++; bad <= 5 {
					t.Errorf("%s packet %d: got %v, want %v", kind, i, gp, wp)
				}
			}
		}
		if bad > 5 {
			t.Errorf("%s: %d packets differ", kind, bad)
		}
	}
	for kind := range got {
		if _, ok := want[kind]; !ok {
			t.Errorf("%s: %d packets, ffprobe saw none", kind, len(got[kind]))
		}
	}
}

// demuxWriteFLV writes tags as an FLV file.
func demuxWriteFLV(t testing.TB, path string, tags []flvTag) {
	t.Helper()
	hasAudio, hasVideo := false, false
	for _, tag := range tags {
		hasAudio = hasAudio || tag.Type == tagAudio
		hasVideo = hasVideo || tag.Type == tagVideo
	}
	b := appendFLVHeader(nil, hasAudio, hasVideo)
	for _, tag := range tags {
		b = appendFLVTag(b, tag.Type, tag.Time, tag.Data)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// demuxCheckFLV has ffprobe read the FLV made of the tags, without a
// complaint, and finds the same packets the reader produced.
func demuxCheckFLV(t testing.TB, tags []flvTag, mine map[string][]demuxPacket) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "out.flv")
	demuxWriteFLV(t, path, tags)
	out, err := exec.Command("ffprobe", "-v", "warning", "-show_entries", "stream=codec_name", "-of", "compact", path).CombinedOutput()
	if err != nil || strings.Contains(string(out), "rror") || strings.Contains(string(out), "arning") {
		t.Errorf("ffprobe of the FLV: %v\n%s", err, out)
	}
	demuxCompare(t, demuxProbe(t, path), mine, 0, true)
}

// demuxFFmpeg runs ffmpeg to make a test input.
func demuxFFmpeg(t testing.TB, args ...string) {
	t.Helper()
	args = append([]string{"-v", "error", "-y"}, args...)
	if out, err := exec.Command("ffmpeg", args...).CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

var demuxEncoders = sync.OnceValue(func() string {
	out, _ := exec.Command("ffmpeg", "-hide_banner", "-encoders").Output()
	return string(out)
})

// demuxNeedEncoder skips when this ffmpeg lacks an encoder (fails on CI).
func demuxNeedEncoder(t testing.TB, name string) {
	t.Helper()
	if !strings.Contains(demuxEncoders(), " "+name+" ") {
		missingOnCI(t, "ffmpeg encoder "+name+" not found")
	}
}

// demuxSource is a few seconds of test picture and tone.
var demuxSource = []string{"-f", "lavfi", "-i", "testsrc=size=320x240:rate=25", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", "3"}

// ---- MP4 ----

func openMP4File(t testing.TB, path string) tagSource {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	src, err := openMP4(f)
	if err != nil {
		t.Fatalf("openMP4 %s: %v", path, err)
	}
	return src
}

// TestMP4AgainstFFprobe makes MP4 files with ffmpeg and compares what the
// reader produces with ffprobe's packets of the same file.
func TestMP4AgainstFFprobe(t *testing.T) {
	needFFmpeg(t)
	dir := t.TempDir()
	h264 := filepath.Join(dir, "h264.mp4")
	demuxFFmpeg(t, append(demuxSource, "-c:v", "libx264", "-bf", "2", "-g", "25", "-c:a", "aac", "-b:a", "64k", h264)...)
	cases := []struct {
		name    string
		encoder string
		classic bool     // ffprobe 5.1 reads the codecs in FLV
		args    []string // after -i SOURCE (or the lavfi source when src is "")
		src     string
		pre     []string // before -i SOURCE
	}{
		{name: "h264-aac-moov-last", classic: true, src: h264},
		{name: "h264-aac-faststart", classic: true, src: h264, args: []string{"-c", "copy", "-movflags", "+faststart"}},
		{name: "h264-aac-fragmented", classic: true, src: h264, args: []string{"-c", "copy", "-movflags", "frag_keyframe+empty_moov"}},
		{name: "h264-aac-fragmented-default-base", classic: true, src: h264, args: []string{"-c", "copy", "-movflags", "frag_keyframe+empty_moov+default_base_moof"}},
		// QuickTime: the AAC sample entry is a sound description of
		// version 1 with its esds inside a 'wave' atom (iPhone and OBS .mov).
		{name: "h264-aac-quicktime-mov", classic: true, src: h264, args: []string{"-c", "copy", "-f", "mov"}},
		// An edit list: audio delayed by half a second (an empty edit),
		// video cut from 1.3 s without re-encoding (a media_time).
		{name: "edit-list", classic: true, src: h264, args: []string{"-ss", "1.3", "-c", "copy", "-output_ts_offset", "0.5"}},
		// A stream copy cut at 1.3 s starts at the keyframe before it: the
		// edit lists' media_times skip 0.3 s (and the audio priming).
		{name: "edit-list-cut", classic: true, src: h264, pre: []string{"-ss", "1.3"}, args: []string{"-c", "copy"}},
		{name: "h265", encoder: "libx265", args: []string{"-c:v", "libx265", "-x265-params", "log-level=error:bframes=2:keyint=25", "-tag:v", "hvc1", "-c:a", "aac"}},
		{name: "h265-fragmented", encoder: "libx265", args: []string{"-c:v", "libx265", "-x265-params", "log-level=error:keyint=25", "-c:a", "aac", "-movflags", "frag_keyframe+empty_moov"}},
		{name: "av1-opus", encoder: "libaom-av1", args: []string{"-c:v", "libaom-av1", "-cpu-used", "8", "-g", "25", "-c:a", "libopus"}},
		{name: "vp9-opus", encoder: "libvpx-vp9", args: []string{"-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-g", "25", "-c:a", "libopus"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.encoder != "" {
				demuxNeedEncoder(t, tc.encoder)
			}
			path := filepath.Join(dir, tc.name+".mp4")
			if tc.src == "" {
				demuxFFmpeg(t, append(append(append([]string{}, demuxSource...), tc.args...), path)...)
			} else if tc.args == nil {
				path = tc.src
			} else {
				demuxFFmpeg(t, append(append(append(tc.pre, "-i", tc.src), tc.args...), path)...)
			}
			tags := demuxReadAll(t, openMP4File(t, path))
			got, headers := demuxTagPackets(t, tags)
			want := demuxProbe(t, path)
			for kind := range want {
				if headers[kind] != 1 {
					t.Errorf("%s: %d sequence headers, want 1", kind, headers[kind])
				}
			}
			demuxCompare(t, got, want, demuxShift(want), true)
			if tc.classic {
				demuxCheckFLV(t, tags, got)
			} else {
				demuxDecodeVideo(t, tags)
			}
			if strings.Contains(tc.name, "opus") {
				demuxCheckOpusHead(t, path, tags)
			}
		})
	}
}

// demuxCheckOpusHead compares the Opus SequenceStart with the OpusHead
// ffmpeg builds from the same dOps when it copies the track to Ogg.
func demuxCheckOpusHead(t testing.TB, path string, tags []flvTag) {
	t.Helper()
	ogg := filepath.Join(t.TempDir(), "audio.ogg")
	demuxFFmpeg(t, "-i", path, "-vn", "-c:a", "copy", ogg)
	b, err := os.ReadFile(ogg)
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(b, []byte("OpusHead"))
	for _, tag := range tags {
		if tag.Type == tagAudio && audioIsHeader(tag.Data) {
			head := tag.Data[5:]
			if i < 0 || !bytes.HasPrefix(b[i:], head) {
				t.Errorf("OpusHead %x, ffmpeg's Ogg has %x", head, b[max(i, 0):max(i, 0)+len(head)])
			}
			return
		}
	}
	t.Error("no Opus sequence header")
}

// TestMP4Headers checks the sequence headers' bytes for each codec.
func TestMP4Headers(t *testing.T) {
	needFFmpeg(t)
	dir := t.TempDir()
	cases := []struct {
		encoder string
		args    []string
		video   string // hex prefix of the video header
		audio   string
	}{
		{"libx264", []string{"-c:v", "libx264", "-c:a", "aac"}, "1700000000" + "01", "af00"},
		{"libx265", []string{"-c:v", "libx265", "-x265-params", "log-level=error", "-c:a", "aac"}, "90" + "68766331" + "01", "af00"},
		{"libaom-av1", []string{"-c:v", "libaom-av1", "-cpu-used", "8", "-c:a", "libopus"}, "90" + "61763031" + "81", "90" + "4f707573" + "4f70757348656164" + "01"},
		{"libvpx-vp9", []string{"-c:v", "libvpx-vp9", "-deadline", "realtime", "-c:a", "libopus"}, "90" + "76703039", "90" + "4f707573" + "4f70757348656164" + "01"},
	}
	for _, tc := range cases {
		t.Run(tc.encoder, func(t *testing.T) {
			demuxNeedEncoder(t, tc.encoder)
			path := filepath.Join(dir, tc.encoder+".mp4")
			demuxFFmpeg(t, append(append([]string{"-f", "lavfi", "-i", "testsrc=size=160x120:rate=10", "-f", "lavfi", "-i", "sine", "-t", "1"}, tc.args...), path)...)
			src := openMP4File(t, path)
			seen := map[uint8]string{}
			for range 2 {
				tag, err := src.next()
				if err != nil {
					t.Fatal(err)
				}
				seen[tag.Type] = fmt.Sprintf("%x", tag.Data)
			}
			if v := seen[tagVideo]; !strings.HasPrefix(v, tc.video) {
				t.Errorf("video header %.40s..., want %s...", v, tc.video)
			}
			if a := seen[tagAudio]; !strings.HasPrefix(a, tc.audio) {
				t.Errorf("audio header %.60s..., want %s...", a, tc.audio)
			}
		})
	}
}

// A tiny MP4 built by hand: one H.264 track, two samples, moov first.
func demuxTinyMP4(fragmented bool) []byte {
	box := func(typ string, parts ...[]byte) []byte {
		b := binary.BigEndian.AppendUint32(nil, 0)
		b = append(b, typ...)
		for _, p := range parts {
			b = append(b, p...)
		}
		binary.BigEndian.PutUint32(b, uint32(len(b)))
		return b
	}
	u32 := func(vs ...uint32) []byte {
		var b []byte
		for _, v := range vs {
			b = binary.BigEndian.AppendUint32(b, v)
		}
		return b
	}
	full := func(v byte, flags uint32) []byte { return u32(uint32(v)<<24 | flags) }
	avcC := box("avcC", []byte{1, 0x42, 0, 0x1e, 0xff, 0xe1, 0, 4, 0x67, 0x42, 0, 0x1e, 1, 0, 2, 0x68, 0xce})
	entry := box("avc1", make([]byte, 6), []byte{0, 1}, make([]byte, 70), avcC)
	samples := [][]byte{{0, 0, 0, 2, 0x65, 0x88}, {0, 0, 0, 2, 0x41, 0x9a}}
	stbl := box("stbl",
		box("stsd", full(0, 0), u32(1), entry),
		box("stts", full(0, 0), u32(1, 2, 512)),
		box("stss", full(0, 0), u32(1, 1)),
		box("stsc", full(0, 0), u32(1, 1, 2, 1)),
		box("stsz", full(0, 0), u32(0, 2, 6, 6)),
		box("stco", full(0, 0), u32(1, 0)), // patched below
	)
	if fragmented {
		stbl = box("stbl", box("stsd", full(0, 0), u32(1), entry), box("stts", full(0, 0), u32(0)),
			box("stsc", full(0, 0), u32(0)), box("stsz", full(0, 0), u32(0, 0)), box("stco", full(0, 0), u32(0)))
	}
	trak := box("trak",
		box("tkhd", full(0, 3), u32(0, 0, 1, 0, 0)),
		box("mdia",
			box("mdhd", full(0, 0), u32(0, 0, 12800, 1024, 0)),
			box("hdlr", full(0, 0), u32(0), []byte("vide"), make([]byte, 13)),
			box("minf", stbl)))
	ftyp := box("ftyp", []byte("isom"), u32(512), []byte("isomavc1"))
	if !fragmented {
		moov := box("moov", box("mvhd", full(0, 0), u32(0, 0, 1000, 80), make([]byte, 80)), trak)
		b := append(ftyp, moov...)
		binary.BigEndian.PutUint32(b[len(b)-4:], uint32(len(b)+8)) // stco is moov's last field
		return append(b, box("mdat", samples[0], samples[1])...)
	}
	moov := box("moov", box("mvhd", full(0, 0), u32(0, 0, 1000, 0), make([]byte, 80)), trak,
		box("mvex", box("trex", full(0, 0), u32(1, 1, 512, 0, 0x00010000))))
	traf := box("traf", box("tfhd", full(0, mp4BaseIsMoof), u32(1)), box("tfdt", full(0, 0), u32(0)),
		box("trun", full(0, 0x01|0x04|0x200), u32(2, 0, 0x02000000, 6, 6)))
	moof := box("moof", box("mfhd", full(0, 0), u32(1)), traf)
	// trun's data_offset: from the moof to mdat's body.
	binary.BigEndian.PutUint32(moof[len(moof)-16:], uint32(len(moof)+8))
	b := append(append(ftyp, moov...), moof...)
	return append(b, box("mdat", samples[0], samples[1])...)
}

func TestMP4Tiny(t *testing.T) {
	for _, frag := range []bool{false, true} {
		t.Run(fmt.Sprint("fragmented=", frag), func(t *testing.T) {
			src, err := openMP4(bytes.NewReader(demuxTinyMP4(frag)))
			if err != nil {
				t.Fatal(err)
			}
			tags := demuxReadAll(t, src)
			want := []string{"1700000000" + "0142001eff", "1701000000" + "000000026588", "2701000000" + "00000002419a"}
			if len(tags) != len(want) {
				t.Fatalf("%d tags, want %d", len(tags), len(want))
			}
			for i, w := range want {
				if got := fmt.Sprintf("%x", tags[i].Data); !strings.HasPrefix(got, w) {
					t.Errorf("tag %d: %s, want %s...", i, got, w)
				}
			}
			if tags[2].Time != 40 {
				t.Errorf("second frame at %d ms, want 40", tags[2].Time)
			}
		})
	}
}

// TestMP4BadInput: sizes and counts from the file are bounded and named.
func TestMP4BadInput(t *testing.T) {
	good := demuxTinyMP4(false)
	patch := func(find []byte, replace []byte) []byte {
		i := bytes.Index(good, find)
		if i < 0 {
			t.Fatalf("%q not in the sample", find)
		}
		b := bytes.Clone(good)
		copy(b[i:], replace)
		return b
	}
	cases := []struct {
		name string
		file []byte
		want string
	}{
		{"empty", nil, "no moov"},
		{"not mp4", []byte("hello world, not an mp4 at all"), "not an MP4"},
		{"moov 4 GB", func() []byte {
			b := bytes.Clone(good)
			i := bytes.Index(b, []byte("moov"))
			copy(b[i-4:], "\xff\xff\xff\xff")
			return b
		}(), "moov at offset 24: box size 4294967295 runs past the end"},
		{"stsz count 1e9", patch([]byte("stsz\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02"), []byte("stsz\x00\x00\x00\x00\x00\x00\x00\x01\x3b\x9a\xca\x00")), "moov/trak/mdia/minf/stbl/stsz at offset"},
		{"stts count huge", patch([]byte("stts\x00\x00\x00\x00\x00\x00\x00\x01"), []byte("stts\x00\x00\x00\x00\xff\xff\xff\xff")), "stts at offset"},
		{"mdat cut short", good[:len(good)-3], "sample 1 at offset"},
		{"no stco", patch([]byte("stco"), []byte("xxxx")), "no stco"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			src, err := openMP4(bytes.NewReader(tc.file))
			if err == nil {
				_, err = demuxDrain(src)
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one with %q", err, tc.want)
			}
			t.Log(err)
		})
	}
}

// demuxDrain reads a source to its end without the testing helpers, for
// fuzzing; io.EOF is not an error.
func demuxDrain(src tagSource) (int, error) {
	for n := 0; ; n++ {
		_, err := src.next()
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// demuxCutPercents are where demuxDamage cuts its first copies.
var demuxCutPercents = []int{1, 10, 25, 50, 75, 90, 99}

// demuxDamage yields truncated copies of b (first, one per
// demuxCutPercents) and copies with random bytes flipped.
func demuxDamage(b []byte, seed uint64) [][]byte {
	var out [][]byte
	for _, frac := range demuxCutPercents {
		out = append(out, b[:len(b)*frac/100])
	}
	r := rand.New(rand.NewPCG(seed, 1))
	for range 40 {
		c := bytes.Clone(b)
		for range 1 + r.IntN(20) {
			c[r.IntN(len(c))] ^= byte(1 + r.IntN(255))
		}
		out = append(out, c)
	}
	return out
}

// TestMP4Damaged cuts and corrupts real files: errors, never a panic.
func TestMP4Damaged(t *testing.T) {
	needFFmpeg(t)
	dir := t.TempDir()
	for _, flags := range []string{"+faststart", "frag_keyframe+empty_moov"} {
		path := filepath.Join(dir, "in.mp4")
		demuxFFmpeg(t, "-f", "lavfi", "-i", "testsrc=size=64x48:rate=10", "-f", "lavfi", "-i", "sine", "-t", "2",
			"-c:v", "libx264", "-c:a", "aac", "-movflags", flags, path)
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		errs := 0
		for i, bad := range demuxDamage(b, 7) {
			src, err := openMP4(bytes.NewReader(bad))
			if err == nil {
				_, err = demuxDrain(src)
			}
			if err != nil {
				errs++
			} else if i < len(demuxCutPercents) {
				// Every cut loses the end of the last mdat.
				t.Errorf("%s cut to %d of %d bytes: no error", flags, len(bad), len(b))
			}
		}
		if errs == len(demuxCutPercents) {
			t.Errorf("%s: no copy with flipped bytes gave an error", flags)
		}
	}
}

func FuzzMP4(f *testing.F) {
	f.Add(demuxTinyMP4(false))
	f.Add(demuxTinyMP4(true))
	if seeds, _ := filepath.Glob("testdata/*.mp4"); seeds != nil {
		for _, s := range seeds {
			if b, err := os.ReadFile(s); err == nil {
				f.Add(b)
			}
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		src, err := openMP4(bytes.NewReader(b))
		if err != nil {
			return
		}
		for range 10000 {
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

// demuxDecodeVideo writes the Enhanced RTMP video tags' payloads back as an
// elementary stream (H.265 Annex B from hvcC and length-prefixed NAL
// units, AV1 low-overhead OBUs, VP9 in IVF) and has ffmpeg decode every
// frame, so that the sequence header and the frames are checked by a real
// decoder even where this ffmpeg cannot read Enhanced RTMP FLV.
func demuxDecodeVideo(t testing.TB, tags []flvTag) {
	t.Helper()
	var out []byte
	var format, ext string
	frames := 0
	for _, tag := range tags {
		d := tag.Data
		if tag.Type != tagVideo || len(d) < 5 || d[0]&videoExHeader == 0 {
			continue
		}
		packetType, fourCC, body := d[0]&0x0F, string(d[1:5]), d[5:]
		if packetType == exCodedFrames && fourCC == "hvc1" {
			body = body[3:] // composition time
		}
		switch {
		case fourCC == "hvc1" && packetType == exSequenceStart:
			format, ext = "hevc", "hevc"
			if len(body) < 23 {
				t.Fatalf("hvcC of %d bytes", len(body))
			}
			arrays, p := int(body[22]), body[23:]
			for range arrays {
				n := int(binary.BigEndian.Uint16(p[1:]))
				p = p[3:]
				for range n {
					l := int(binary.BigEndian.Uint16(p))
					out = append(append(out, 0, 0, 0, 1), p[2:2+l]...)
					p = p[2+l:]
				}
			}
		case fourCC == "hvc1":
			frames++
			for p := body; len(p) >= 4; {
				l := int(binary.BigEndian.Uint32(p))
				// Leave out in-band VPS, SPS, PPS: the decoder must get
				// them from the sequence header.
				if typ := p[4] >> 1 & 0x3F; typ < 32 || typ > 34 {
					out = append(append(out, 0, 0, 0, 1), p[4:4+l]...)
				}
				p = p[4+l:]
			}
		case fourCC == "av01" && packetType == exSequenceStart:
			format, ext = "obu", "obu"
			out = append(out, 0x12, 0) // temporal delimiter
			out = append(out, body[4:]...)
		case fourCC == "av01":
			if frames > 0 {
				out = append(out, 0x12, 0)
			}
			frames++
			// OBUs (AV1 §5.3), without sequence headers and temporal
			// delimiters: those come from av1C and from here.
			for p := body; len(p) > 0; {
				typ, ext := p[0]>>3&0x0F, int(p[0]>>2&1)
				if p[0]&2 == 0 {
					t.Fatal("an AV1 OBU without obu_size")
				}
				size, n := uint64(0), 0
				for i := 0; i < 8; i++ {
					b := p[1+ext+i]
					size |= uint64(b&0x7F) << (7 * i)
					if n = i + 1; b&0x80 == 0 {
						break
					}
				}
				end := 1 + ext + n + int(size)
				if typ != 1 && typ != 2 {
					out = append(out, p[:end]...)
				}
				p = p[end:]
			}
		case fourCC == "vp09" && packetType == exSequenceStart:
			format, ext = "ivf", "ivf"
			out = append([]byte("DKIF\x00\x00\x20\x00VP90"), 0x40, 1, 0xF0, 0)               // width, height
			out = binary.LittleEndian.AppendUint32(append(out, 1000&0xFF, 1000>>8, 0, 0), 1) // timebase 1/1000
			out = append(out, make([]byte, 8)...)                                            // frame count, unused
		case fourCC == "vp09":
			frames++
			out = binary.LittleEndian.AppendUint32(out, uint32(len(body)))
			out = binary.LittleEndian.AppendUint64(out, uint64(tag.Time))
			out = append(out, body...)
		}
	}
	if format == "" {
		t.Fatal("no Enhanced RTMP video sequence header")
	}
	path := filepath.Join(t.TempDir(), "video."+ext)
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ffprobe", "-v", "error", "-f", format, "-count_frames", "-show_entries", "stream=nb_read_frames", "-of", "csv=p=0", path)
	got, err := cmd.Output()
	var stderr string
	if ee, ok := err.(*exec.ExitError); ok {
		stderr = string(ee.Stderr)
	}
	if err != nil || strings.TrimSpace(string(got)) != strconv.Itoa(frames) {
		t.Errorf("ffprobe decoded %q frames of %d from the tags' %s: %v %s", strings.TrimSpace(string(got)), frames, format, err, stderr)
	}
}
