package main

// Enhanced RTMP against FFmpeg 8.1 itself: Debian 12's ffmpeg (5.1) neither
// reads nor writes E-RTMP, but the npm package node-av ships FFmpeg 8.1's
// libraries (a prebuilt binding, no CLI), whose FLV muxer and demuxer do,
// Opus included. A small node script plays or publishes with them.

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// ffmpeg8Script lists the packets FFmpeg reads from argv[2] (a file or an
// rtmp:// or http:// URL), one line each: "CODEC PTS_MS SIZE MD5". With
// argv[3], it also copies them there as FLV (publishing, for rtmp://),
// as `ffmpeg -i IN -c copy -f flv OUT` would.
const ffmpeg8Script = `if (!Promise.withResolvers) Promise.withResolvers = () => { let resolve, reject; const promise = new Promise((a, b) => { resolve = a; reject = b; }); return {promise, resolve, reject}; }; // node 20
const av = require('node-av');
const {Demuxer, Muxer} = require('node-av/api');
const crypto = require('crypto');
(async () => {
  const [from, to] = process.argv.slice(2);
  const input = await Demuxer.open(from);
  let output; const index = new Map();
  if (to) {
    output = await Muxer.open(to, {format: 'flv', input});
    for (const s of input.streams) { s.codecpar.codecTag = 0; index.set(s.index, output.addStream(s)); }
  }
  for await (const p of input.packets()) {
    if (!p) continue;
    const s = input.streams[p.streamIndex], tb = s.timeBase;
    console.log(av.avGetCodecName(s.codecpar.codecId), Math.round(Number(p.pts) * 1000 * tb.num / tb.den), p.data.length, crypto.createHash('md5').update(p.data).digest('hex'));
    if (output) await output.writePacket(p, index.get(p.streamIndex));
  }
  if (output) await output.close();
  await input.close();
})().catch(e => { console.error(e); process.exit(1); });
`

// ffmpeg8 runs the script with node-av from GMS_NODE_AV_DIR (a directory
// whose node_modules holds node-av, as `npm install --prefix DIR
// node-av@6.1.1` makes; .ci/run sets it). It skips on a laptop without
// it and fails on CI.
type ffmpeg8 struct{ node, script, modules string }

func needFFmpeg8(t *testing.T) *ffmpeg8 {
	t.Helper()
	node := needTool(t, "node")
	dir := os.Getenv("GMS_NODE_AV_DIR")
	if dir == "" {
		missingOnCI(t, "GMS_NODE_AV_DIR (the --prefix of `npm install node-av@6.1.1`) not set")
	}
	modules := filepath.Join(dir, "node_modules")
	if _, err := os.Stat(filepath.Join(modules, "node-av", "package.json")); err != nil {
		t.Fatalf("GMS_NODE_AV_DIR: %v", err)
	}
	script := filepath.Join(t.TempDir(), "ffmpeg8.js")
	if err := os.WriteFile(script, []byte(ffmpeg8Script), 0o644); err != nil {
		t.Fatal(err)
	}
	return &ffmpeg8{node, script, modules}
}

// packets runs the script (args: FROM [TO]) and returns its lines.
func (f *ffmpeg8) packets(args ...string) ([]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, f.node, append([]string{f.script}, args...)...)
	cmd.Env = append(os.Environ(), "NODE_PATH="+f.modules)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("FFmpeg 8 (node-av) %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return strings.Split(strings.TrimSpace(string(out)), "\n"), nil
}

// compareFFmpegPackets checks that got has want's packets: per codec, the
// same sizes and bytes (MD5) in the same order, and timestamps moved by
// one constant (gms push and FFmpeg's FLV muxer each start the timeline
// at 0; FLV has milliseconds, so ±1 ms of rounding).
func compareFFmpegPackets(t *testing.T, who string, got, want []string) {
	t.Helper()
	type packet struct {
		pts       int
		size, md5 string
	}
	byCodec := func(lines []string) map[string][]packet {
		m := map[string][]packet{}
		for _, l := range lines {
			var codec string
			var p packet
			if _, err := fmt.Sscan(l, &codec, &p.pts, &p.size, &p.md5); err != nil {
				t.Fatalf("%s: packet line %q: %v", who, l, err)
			}
			m[codec] = append(m[codec], p)
		}
		return m
	}
	g, w := byCodec(got), byCodec(want)
	if len(g) != len(w) {
		t.Errorf("%s: %d streams; want %d", who, len(g), len(w))
	}
	shift, shiftSet := 0, false
	for codec, wp := range w {
		gp := g[codec]
		if len(gp) != len(wp) {
			t.Errorf("%s: %d %s packets; want %d", who, len(gp), codec, len(wp))
			continue
		}
		for i := range wp {
			if gp[i].size != wp[i].size || gp[i].md5 != wp[i].md5 {
				t.Errorf("%s: %s packet %d: %s bytes md5 %s; want %s bytes md5 %s", who, codec, i, gp[i].size, gp[i].md5, wp[i].size, wp[i].md5)
				break
			}
			d := gp[i].pts - wp[i].pts
			if !shiftSet {
				shift, shiftSet = d, true
			}
			if d < shift-1 || d > shift+1 {
				t.Errorf("%s: %s packet %d at %d ms; want %d ms (+%d)", who, codec, i, gp[i].pts, wp[i].pts, shift)
				break
			}
		}
	}
}

// TestFFmpeg8EnhancedRTMP: FFmpeg 8.1 is the reference reader and writer
// of E-RTMP. For AV1 + Opus, VP9 + Opus and HEVC + AAC, FFmpeg plays what
// `gms push` publishes from an MP4, over RTMP and HTTP-FLV, and publishes
// the MP4 itself while FFmpeg plays it back over RTMP: each player reads
// every packet of the MP4 (as FFmpeg reads it) with the same bytes.
func TestFFmpeg8EnhancedRTMP(t *testing.T) {
	ff := needFFmpeg8(t)
	needFFmpeg(t)
	dir := t.TempDir()
	ts := startServer(t, func(c *config) { c.RecordDir, c.RecordFormat = dir, "mp4" })
	for _, c := range []struct {
		name string
		args []string
	}{
		{"av1opus", []string{"-c:v", "libaom-av1", "-usage", "realtime", "-cpu-used", "8", "-c:a", "libopus", "-b:a", "64k", "-ac", "2"}},
		{"vp9opus", []string{"-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-c:a", "libopus", "-b:a", "64k", "-ac", "2"}},
		{"hevcaac", []string{"-c:v", "libx265", "-preset", "ultrafast", "-x265-params", "log-level=error", "-tag:v", "hvc1", "-c:a", "aac", "-b:a", "64k"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			clip := modernClip(t, c.name, c.args...)
			want, err := ff.packets(clip)
			if err != nil {
				t.Fatal(err)
			}
			type result struct {
				who string
				got []string
				err error
			}
			play := func(who, url string, results chan<- result) {
				go func() { got, err := ff.packets(url); results <- result{who, got, err} }()
			}
			// gms push publishes; FFmpeg plays over RTMP and HTTP-FLV.
			results := make(chan result, 3)
			name := c.name + "-push"
			play("FFmpeg 8 on RTMP", ts.rtmpURL(name), results)
			play("FFmpeg 8 on HTTP-FLV", ts.httpURL(name), results)
			waitFor(t, "FFmpeg's players", func() bool { return ts.viewers(streamKey{"live", name}) == 2 })
			if out, err := runCmd(context.Background(), "push", "-speed", "0", clip, ts.rtmpURL(name)); err != nil {
				t.Fatalf("push: %v\n%s", err, out)
			}
			// FFmpeg publishes; FFmpeg plays over RTMP.
			name = c.name + "-ffmpeg"
			play("FFmpeg 8 on RTMP, FFmpeg 8 publishing", ts.rtmpURL(name), results)
			waitFor(t, "FFmpeg's player", func() bool { return ts.viewers(streamKey{"live", name}) == 1 })
			if _, err := ff.packets(clip, ts.rtmpURL(name)); err != nil {
				t.Fatal(err)
			}
			for range 3 {
				r := <-results
				if r.err != nil {
					t.Error(r.err)
					continue
				}
				compareFFmpegPackets(t, r.who, r.got, want)
			}
			// The MP4 recording of FFmpeg's publish (fmp4.go, which HLS
			// and DASH use too) holds FFmpeg's own sequence headers.
			var rec *recordingInfo
			waitFor(t, "the recording of FFmpeg's publish", func() bool {
				for _, r := range recordings(t, ts) {
					if r.Stream == name && !r.Recording {
						rec = &r
						return true
					}
				}
				return false
			})
			got, err := ff.packets(filepath.Join(dir, filepath.FromSlash(rec.File)))
			if err != nil {
				t.Fatal(err)
			}
			// It starts at the first keyframe: the Opus packet before it
			// (at -6 ms in the MP4, its pre-skip) is not in it.
			fromKeyframe := slices.DeleteFunc(slices.Clone(want), func(l string) bool { return strings.HasPrefix(l, "opus -") })
			compareFFmpegPackets(t, "FFmpeg 8 reading the MP4 recording", got, fromKeyframe)
		})
	}
}
