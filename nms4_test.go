package main

// Enhanced RTMP against a real peer: node-media-server v4 (npm), which
// reads and relays E-RTMP. gms pushes AV1 + Opus and HEVC + AAC to it and
// plays them back from it; NMS relays into gms and pulls from gms.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// nms4Script runs node-media-server v4 on the ports given, with relays to
// and from the gms at argv[4] (rtmp://HOST:PORT/live): for each stream
// live/N-src published to NMS, a push relay to gms's live/N-relayed (added
// when the publish starts); for each name N in argv[5...], a pull relay of
// gms's live/N-origin as NMS's live/N-pulled.
const nms4Script = `const NMS = require('node-media-server');
const Context = require('node-media-server/src/core/context.js');
const [rtmp, http, gms, ...names] = process.argv.slice(2);
const nms = new NMS({bind: '127.0.0.1', rtmp: {port: +rtmp}, http: {port: +http}, webadmin: {enable: false}, store: {path: './data'}});
nms.run().then(() => {
  for (const n of names) Context.relayServer.addTask({mode: 'pull', url: gms + '/' + n + '-origin', streamPath: '/live/' + n + '-pulled'});
});
Context.eventEmitter.on('postPublish', s => {
  const m = /^\/live\/(.+)-src$/.exec(s.streamPath);
  if (m) setImmediate(() => Context.relayServer.addTask({mode: 'push', url: gms + '/' + m[1] + '-relayed', streamPath: s.streamPath}));
});
`

// nms4 is a running node-media-server v4.
type nms4 struct {
	rtmp, http string // host:port
	log        *syncBuffer
}

// startNMS4 runs node-media-server v4 from GMS_NMS4_DIR (a directory
// whose node_modules holds node-media-server@4, as `npm install --prefix
// DIR node-media-server@4.4.3` makes; .ci/run sets it), relaying to and
// from gmsRTMP for names. It skips on a laptop without it, fails on CI.
func startNMS4(t *testing.T, gmsRTMP string, names ...string) *nms4 {
	t.Helper()
	node := needTool(t, "node")
	dir := os.Getenv("GMS_NMS4_DIR")
	if dir == "" {
		missingOnCI(t, "GMS_NMS4_DIR (the --prefix of `npm install node-media-server@4.4.3`) not set")
	}
	modules := filepath.Join(dir, "node_modules")
	if _, err := os.Stat(filepath.Join(modules, "node-media-server", "package.json")); err != nil {
		t.Fatalf("GMS_NMS4_DIR: %v", err)
	}
	work := t.TempDir()
	script := filepath.Join(work, "nms4.js")
	if err := os.WriteFile(script, []byte(nms4Script), 0o644); err != nil {
		t.Fatal(err)
	}
	n := &nms4{rtmp: freeLoopbackAddr(t), http: freeLoopbackAddr(t), log: &syncBuffer{}}
	_, rtmpPort, _ := net.SplitHostPort(n.rtmp)
	_, httpPort, _ := net.SplitHostPort(n.http)
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, node, append([]string{script, rtmpPort, httpPort, gmsRTMP}, names...)...)
	cmd.Dir = work // its store (./data) keeps relay tasks across runs: one of its own
	cmd.Env = append(os.Environ(), "NODE_PATH="+modules)
	cmd.Stdout, cmd.Stderr = n.log, n.log
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cancel()
		<-exited
		if t.Failed() {
			t.Logf("node-media-server log:\n%s", n.log.String())
		}
	})
	waitFor(t, "node-media-server to listen", func() bool {
		for _, addr := range []string{n.rtmp, n.http} {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				return false
			}
			c.Close()
		}
		return true
	})
	return n
}

// freeLoopbackAddr is a loopback address with a port free a moment ago.
func freeLoopbackAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// mp4MediaTags is what `gms push` sends of an MP4: its audio and video tags.
func mp4MediaTags(t *testing.T, path string) []flvTag {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	src, err := openMP4(f)
	if err != nil {
		t.Fatal(err)
	}
	var tags []flvTag
	for {
		tag, err := src.next()
		if err == io.EOF {
			return tags
		}
		if err != nil {
			t.Fatal(err)
		}
		if tag.Type == tagAudio || tag.Type == tagVideo {
			tag.Data = bytes.Clone(tag.Data)
			tags = append(tags, tag)
		}
	}
}

// playUntil plays url (RTMP or HTTP-FLV) and collects its media tags
// until one equal to last arrives (NMS v4 does not end its players when
// the publisher leaves), or 60 s pass.
func playUntil(url string, last flvTag) ([]flvTag, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	src, closer, err := openStream(ctx, url, rtmpClientOptions{})
	if err != nil {
		return nil, err
	}
	defer closer()
	var tags []flvTag
	for {
		tag, err := src.next()
		if err != nil {
			return tags, fmt.Errorf("%s: after %d media tags: %w", url, len(tags), err)
		}
		if tag.Type != tagAudio && tag.Type != tagVideo {
			continue
		}
		tag.Data = bytes.Clone(tag.Data)
		tags = append(tags, tag)
		if tag.Type == last.Type && bytes.Equal(tag.Data, last.Data) {
			return tags, nil
		}
	}
}

// compareRelayed checks what a player got against what push sent: the
// two sequence headers first (any time, any order), then the sent frames
// from the first video keyframe on (or earlier: a player that came first
// also gets the audio before it), byte for byte with their timestamps.
func compareRelayed(t *testing.T, who string, got, sent []flvTag) {
	t.Helper()
	headers, frames := sent[:0:0], sent[:0:0]
	for _, tag := range sent {
		if len(headers) < 2 && isSequenceStart(tag) {
			headers = append(headers, tag)
		} else {
			frames = append(frames, tag)
		}
	}
	seen := 0
	for seen < len(got) && seen < 2 && isSequenceStart(got[seen]) {
		if !bytes.Equal(got[seen].Data, headers[0].Data) && !bytes.Equal(got[seen].Data, headers[1].Data) {
			t.Errorf("%s: header %d (type %d, % x...) is not one push sent", who, seen, got[seen].Type, got[seen].Data[:min(8, len(got[seen].Data))])
		}
		seen++
	}
	if seen != 2 {
		t.Errorf("%s: got %d sequence headers before the frames; want 2", who, seen)
		return
	}
	got = got[2:]
	firstKey := 0
	for firstKey < len(frames) && frames[firstKey].Type != tagVideo {
		firstKey++
	}
	start := len(frames) - len(got)
	if start < 0 || start > firstKey {
		t.Errorf("%s: got %d frames; want the %d sent from the first keyframe on, or up to %d audio frames more", who, len(got), len(frames)-firstKey, firstKey)
		return
	}
	compareSentTags(t, who, got, frames[start:])
}

// isSequenceStart: an E-RTMP SequenceStart, an AVC/HEVC(12) sequence
// header or an AAC AudioSpecificConfig.
func isSequenceStart(tag flvTag) bool {
	d := tag.Data
	if len(d) < 2 {
		return false
	}
	switch tag.Type {
	case tagVideo:
		if d[0]&0x80 != 0 {
			return d[0]&0x0F == exSequenceStart
		}
		return d[1] == 0
	case tagAudio:
		if d[0]>>4 == 9 {
			return d[0]&0x0F == exSequenceStart
		}
		return d[0]>>4 == 10 && d[1] == 0
	}
	return false
}

// TestNMS4EnhancedRTMP runs node-media-server v4 beside gms, for AV1 +
// Opus (libaom-av1, libopus), VP9 + Opus (libvpx-vp9) and HEVC + AAC
// (libx265) in MP4s that `gms push` sends as E-RTMP. Each way, every player gets the sequence headers
// and the frames push sent, byte for byte with their timestamps:
//   - gms push to NMS; gms players on NMS's RTMP and HTTP-FLV;
//   - NMS relays that stream (push relay) into gms; a gms player there;
//   - gms push to gms; NMS pulls it (pull relay); gms players on NMS.
func TestNMS4EnhancedRTMP(t *testing.T) {
	needFFmpeg(t)
	ts := startServer(t, nil)
	// One key frame per clip (-g 250): NMS's push relay starts when the
	// publish does, but a slow start still gets the whole clip from NMS's
	// GOP cache.
	clips := []struct {
		name string
		args []string
	}{
		{"av1opus", []string{"-c:v", "libaom-av1", "-usage", "realtime", "-cpu-used", "8", "-g", "250", "-c:a", "libopus", "-b:a", "64k", "-ac", "2"}},
		{"vp9opus", []string{"-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-g", "250", "-c:a", "libopus", "-b:a", "64k", "-ac", "2"}},
		{"hevcaac", []string{"-c:v", "libx265", "-preset", "ultrafast", "-g", "250", "-x265-params", "log-level=error", "-tag:v", "hvc1", "-c:a", "aac", "-b:a", "64k"}},
	}
	names := make([]string, len(clips))
	for i, c := range clips {
		names[i] = c.name
	}
	nms := startNMS4(t, "rtmp://"+ts.rtmpAddr+"/live", names...)
	for _, c := range clips {
		t.Run(c.name, func(t *testing.T) {
			clip := modernClip(t, c.name, c.args...)
			sent := mp4MediaTags(t, clip)
			last := sent[len(sent)-1]
			players := map[string]string{
				"NMS RTMP":                  "rtmp://" + nms.rtmp + "/live/" + c.name + "-src",
				"NMS HTTP-FLV":              "http://" + nms.http + "/live/" + c.name + "-src.flv",
				"gms HTTP-FLV, NMS relayed": ts.httpURL(c.name + "-relayed"),
				"NMS RTMP, NMS pulled":      "rtmp://" + nms.rtmp + "/live/" + c.name + "-pulled",
				"NMS HTTP-FLV, NMS pulled":  "http://" + nms.http + "/live/" + c.name + "-pulled.flv",
			}
			type result struct {
				who  string
				tags []flvTag
				err  error
			}
			results := make(chan result, len(players))
			for who, url := range players {
				go func() { tags, err := playUntil(url, last); results <- result{who, tags, err} }()
			}
			// Everyone in place before the pushes: NMS logs its players,
			// gms counts its own and NMS's pull relay.
			waitFor(t, "the players and NMS's pull relay", func() bool {
				return strings.Count(nms.log.String(), "start play /live/"+c.name+"-src") == 2 &&
					strings.Count(nms.log.String(), "start play /live/"+c.name+"-pulled") == 2 &&
					ts.viewers(streamKey{"live", c.name + "-relayed"}) == 1 &&
					ts.viewers(streamKey{"live", c.name + "-origin"}) == 1
			})
			pushed := make(chan error, 2)
			for _, url := range []string{"rtmp://" + nms.rtmp + "/live/" + c.name + "-src", ts.rtmpURL(c.name + "-origin")} {
				go func() {
					out, err := runCmd(context.Background(), "push", clip, url)
					if err != nil {
						err = fmt.Errorf("push to %s: %v\n%s", url, err, out)
					}
					pushed <- err
				}()
			}
			for range players {
				r := <-results
				if r.err != nil {
					t.Errorf("%s: %v", r.who, r.err)
				}
				compareRelayed(t, r.who, r.tags, sent)
			}
			for range 2 {
				if err := <-pushed; err != nil {
					t.Error(err)
				}
			}
		})
	}
}
