package main

// HLS read by the real clients: ffprobe and ffmpeg play index.m3u8 of a
// stream ffmpeg publishes, and every packet must be as in the source.

import (
	"math"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestHLSFFmpeg publishes the test clip (H.264 with B-frames + AAC) over
// RTMP, starts its HLS with a first playlist request, and when the
// publisher is done has ffprobe read the playlist: the same packets as
// the clip from the first keyframe HLS had on (every one of them, in
// order, with its size, keyframe flag and times), and ffmpeg decodes it
// without an error.
func TestHLSFFmpeg(t *testing.T) {
	clip := testClip(t)
	ts := startServer(t, func(c *config) { c.HLSWindow = 20 })
	key := streamKey{"live", "hlsff"}
	wait := startPublish(t, clip, ts.rtmpURL(key.Name))
	waitFor(t, "the publisher", func() bool { return ts.live(key) })
	url := "http://" + ts.httpAddr + "/live/hlsff/index.m3u8"
	if status, _, body := hlsGet(t, url); status != 200 {
		t.Fatalf("first playlist: %d %s", status, body)
	}
	if err := wait(); err != nil {
		t.Fatal(err)
	}
	// The publisher has left: the last segment is complete.
	pl := waitPlaylist(t, url, func(pl *m3u8) bool { return len(pl.openParts) == 0 && len(pl.segments) > 0 })
	t.Logf("%d segments, media sequence %d", len(pl.segments), pl.mediaSequence)
	if got := ffprobeStreams(t, url); !strings.Contains(got, "codec_name=h264|codec_type=video|width=320|height=240") ||
		!strings.Contains(got, "codec_name=aac|codec_type=audio") {
		t.Errorf("streams: %s", got)
	}
	// -m3u8_hold_counters: the stream has no EXT-X-ENDLIST (a publisher may
	// come back), so stop after two reloads that bring nothing new (one stops before the first segment).
	got := ffprobeTimed(t, url, "-live_start_index", "0", "-m3u8_hold_counters", "2")
	want := ffprobeTimed(t, clip)
	tail := alignTail(t, got, want)
	t.Logf("%d packets from HLS; the source has %d, %d of them from HLS's first keyframe on", len(got), len(want), len(tail))
	comparePacketsTimed(t, "hls", got, tail, 0.0011)
	if msg, err := exec.Command("ffmpeg", "-v", "error", "-live_start_index", "0", "-m3u8_hold_counters", "2",
		"-i", url, "-f", "null", "-").CombinedOutput(); err != nil || len(msg) > 0 {
		t.Errorf("decoding the HLS: %v\n%s", err, msg)
	}
}

// alignTail returns the source packets from the first of each kind that
// got starts with (HLS starts at the GOP cache's keyframe), with their
// times moved by got's offset from the source (the HLS reader may start
// its clock elsewhere).
func alignTail(t *testing.T, got, want []timedPacket) []timedPacket {
	t.Helper()
	first := func(ps []timedPacket, kind string) int {
		for i, p := range ps {
			if p.CodecType == kind {
				return i
			}
		}
		return -1
	}
	gv, wv := first(got, "video"), -1
	if gv < 0 {
		t.Fatal("no video packets from HLS")
	}
	// The source's video packet with the same size, a keyframe.
	for i, p := range want {
		if p.CodecType == "video" && p.Size == got[gv].Size && p.Flags == got[gv].Flags {
			wv = i
			break
		}
	}
	if wv < 0 {
		t.Fatalf("HLS starts with a video packet the source does not have: %+v", got[gv])
	}
	offset := seconds(got[gv].DTS) - seconds(want[wv].DTS)
	ga := first(got, "audio")
	var out []timedPacket
	for _, p := range want {
		moved := p
		moved.PTS = formatSeconds(seconds(p.PTS) + offset)
		moved.DTS = formatSeconds(seconds(p.DTS) + offset)
		switch {
		case p.CodecType == "video" && seconds(p.DTS) >= seconds(want[wv].DTS):
			out = append(out, moved)
		case p.CodecType == "audio" && ga >= 0 && seconds(moved.DTS) > seconds(got[ga].DTS)-0.0015:
			out = append(out, moved)
		}
	}
	if offset != 0 {
		t.Logf("HLS times are the source's %+.3f s", offset)
	}
	return out
}

func formatSeconds(v float64) string {
	return strings.TrimRight(strings.TrimRight(strconvFormat(math.Round(v*1e6)/1e6), "0"), ".")
}

func strconvFormat(v float64) string { return strconv.FormatFloat(v, 'f', 6, 64) }

// TestDASHFFmpeg: ffmpeg reads index.mpd of a live stream (a track an
// AdaptationSet, the HLS muxer's segments): both tracks, a keyframe
// first, as many frames as the time it was asked for, in order.
func TestDASHFFmpeg(t *testing.T) {
	needFFmpeg(t)
	ts := startServer(t, func(c *config) { c.HLSWindow = 20 })
	key := streamKey{"live", "dashff"}
	longPublish(t, ts.rtmpURL(key.Name))
	waitFor(t, "the publisher", func() bool { return ts.live(key) })
	url := "http://" + ts.httpAddr + "/live/dashff/index.mpd"
	waitFor(t, "three DASH segments", func() bool {
		status, _, body := hlsGet(t, url)
		return status == 200 && strings.Count(string(body), "<S ") >= 2*3
	})
	out := t.TempDir() + "/dash.mp4"
	if msg, err := exec.Command("ffmpeg", "-v", "error", "-i", url, "-t", "3", "-c", "copy", out).CombinedOutput(); err != nil || len(msg) > 0 {
		t.Fatalf("ffmpeg reading the MPD: %v\n%s", err, msg)
	}
	if got := ffprobeStreams(t, out); !strings.Contains(got, "codec_name=h264|codec_type=video|width=320|height=240") ||
		!strings.Contains(got, "codec_name=aac|codec_type=audio") {
		t.Errorf("streams: %s", got)
	}
	var video, audio []timedPacket
	for _, p := range ffprobeTimed(t, out) {
		if p.CodecType == "video" {
			video = append(video, p)
		} else {
			audio = append(audio, p)
		}
	}
	// 3 s: 75 frames at 25 fps (and the B-frames' reorder), 129 AAC frames at 44.1 kHz.
	if len(video) < 75 || len(video) > 80 || len(audio) < 128 || len(audio) > 132 || !strings.HasPrefix(video[0].Flags, "K") {
		t.Errorf("%d video packets (first %+v), %d audio; want 75-80 from a keyframe, 128-132", len(video), video[0], len(audio))
	}
	for _, ps := range [][]timedPacket{video, audio} {
		for i := 1; i < len(ps); i++ {
			if seconds(ps[i].DTS) <= seconds(ps[i-1].DTS) {
				t.Errorf("%s packet %d at %s after %s", ps[i].CodecType, i, ps[i].DTS, ps[i-1].DTS)
				break
			}
		}
	}
}

// TestHLSFFmpegMP3: H.264 + MP3, what FFmpeg's FLV muxer sends when told
// only the video codec, and MP3 alone, published by ffmpeg: DASH and the
// MP4 recording carry the MP3 track (the recording every packet as in the
// source from its first keyframe), HLS too when there is no video. Before,
// gms dropped the audio without a word, and made nothing of MP3 alone:
// 404 and no recording.
func TestHLSFFmpegMP3(t *testing.T) {
	needFFmpeg(t)
	dir := t.TempDir()
	ts := startServer(t, func(c *config) {
		c.HLSWindow, c.HLSAlways = 20, "live"
		c.RecordDir, c.RecordFormat = dir, "mp4"
	})
	for _, c := range []struct {
		name string
		args []string
	}{
		{"h264mp3", []string{"-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25", "-f", "lavfi", "-i", "sine=sample_rate=44100",
			"-c:v", "libx264", "-preset", "ultrafast", "-g", "25", "-pix_fmt", "yuv420p", "-c:a", "libmp3lame"}},
		{"mp3", []string{"-f", "lavfi", "-i", "sine=sample_rate=48000", "-c:a", "libmp3lame"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			clip := filepath.Join(dir, c.name+".flv")
			args := append(append([]string{"-hide_banner", "-loglevel", "error"}, c.args...), "-t", "8", "-f", "flv", clip)
			if out, err := exec.Command("ffmpeg", args...).CombinedOutput(); err != nil {
				t.Fatalf("making the clip: %v\n%s", err, out)
			}
			wait := startPublish(t, clip, ts.rtmpURL(c.name))
			url := "http://" + ts.httpAddr + "/live/" + c.name
			waitFor(t, "two HLS segments", func() bool {
				status, _, body := hlsGet(t, url+"/index.m3u8")
				return status == 200 && strings.Count(string(body), "#EXTINF") >= 2
			})
			if status, _, body := hlsGet(t, url+"/index.mpd"); !strings.Contains(string(body), `codecs="mp4a.6B"`) {
				t.Errorf("MPD (%d) has no codecs=\"mp4a.6B\":\n%s", status, body)
			}
			// With video, HLS leaves the MP3 out (hls.js cannot play it, fmp4.go's leaveOutMP3).
			if got := ffprobeStreams(t, url+"/index.mpd"); !strings.Contains(got, "codec_name=mp3|codec_type=audio") {
				t.Errorf("DASH: streams %s; want an MP3 track", got)
			}
			streams := ffprobeStreams(t, url+"/index.m3u8")
			if hasMP3 := strings.Contains(streams, "codec_name=mp3|codec_type=audio"); hasMP3 != (c.name == "mp3") {
				t.Errorf("HLS: streams %s; want an MP3 track %v", streams, c.name == "mp3")
			}
			if err := wait(); err != nil {
				t.Fatal(err)
			}
			var rec *recordingInfo
			waitFor(t, "the recording", func() bool {
				for _, r := range recordings(t, ts) {
					if r.Stream == c.name && !r.Recording {
						rec = &r
						return true
					}
				}
				return false
			})
			path := filepath.Join(dir, filepath.FromSlash(rec.File))
			got, want := ffprobeTimed(t, path), ffprobeTimed(t, clip)
			if c.name != "mp3" { // with video, the recording starts at a keyframe; MP3 alone, at once
				want = alignTail(t, got, want)
			}
			comparePacketsTimed(t, "MP4 recording", got, want, 0.0011)
			decodesCleanly(t, "MP4 recording", path)
		})
	}
}
