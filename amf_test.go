package main

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
)

// unhex turns annotated hex into bytes: text after "//" on each line is a
// comment and whitespace is ignored.
func unhex(s string) []byte {
	var digits strings.Builder
	for line := range strings.Lines(s) {
		line, _, _ = strings.Cut(line, "//")
		digits.WriteString(strings.Join(strings.Fields(line), ""))
	}
	b, err := hex.DecodeString(digits.String())
	if err != nil {
		panic(err)
	}
	return b
}

type amfCase struct {
	name       string
	enc        []byte
	dec        any
	decodeOnly bool // the encoder writes these values differently (no refs, no long string for short text, ...)
}

var amf0Cases = []amfCase{
	{"number 0", unhex(`00 0000000000000000 // number marker, 0.0`), 0.0, false},
	{"number 1.5", unhex(`00 3ff8000000000000 // number marker, 1.5 big-endian IEEE-754`), 1.5, false},
	{"number -2", unhex(`00 c000000000000000 // number marker, -2.0`), -2.0, false},
	{"true", unhex(`01 01 // boolean marker, true`), true, false},
	{"false", unhex(`01 00 // boolean marker, false`), false, false},
	{"empty string", unhex(`02 0000 // string marker, length 0`), "", false},
	{"string", unhex(`02 0005 68656c6c6f // string marker, length 5, "hello"`), "hello", false},
	{"null", unhex(`05 // null marker`), nil, false},
	{"undefined", unhex(`06 // undefined marker`), amfUndefined{}, false},
	{"unsupported", unhex(`0d // unsupported marker, decoded as undefined`), amfUndefined{}, true},
	{"object", unhex(`
		03                            // object marker
		0001 61  00 3ff0000000000000  // "a": number 1
		0001 62  02 0001 78           // "b": string "x"
		0000 09                       // empty key, object end marker`),
		amfObject{{"a", 1.0}, {"b", "x"}}, false},
	{"empty object", unhex(`03 0000 09 // object marker, empty key, object end`), amfObject{}, false},
	{"ECMA array", unhex(`
		08 00000001                            // ECMA array marker, count 1
		0008 6475726174696f6e 00 4024000000000000 // "duration": number 10
		0000 09                                // end`),
		amfECMAArray{{"duration", 10.0}}, false},
	{"strict array", unhex(`
		0a 00000003            // strict array marker, count 3
		00 3ff0000000000000    // number 1
		02 0001 61             // string "a"
		05                     // null`),
		[]any{1.0, "a", nil}, false},
	{"empty strict array", unhex(`0a 00000000 // strict array marker, count 0`), []any{}, false},
	{"date", unhex(`
		0b                 // date marker
		426d1a94a2000000   // 1e12 ms since the epoch
		0000               // time zone 0`),
		amfDate{Millis: 1e12}, false},
	{"long string", unhex(`0c 00000004 6c6f6e67 // long string marker, u32 length 4, "long"`), "long", true},
	{"XML document", unhex(`0f 00000004 3c612f3e // XML document marker, u32 length 4, "<a/>"`), amfXMLDocument("<a/>"), false},
	{"typed object", unhex(`
		10 0003 466f6f  // typed object marker, class "Foo"
		0001 78  01 01  // "x": true
		0000 09         // end`),
		amfTypedObject{Class: "Foo", Props: amfObject{{"x", true}}}, false},
	{"nested objects", unhex(`
		03                    // object
		0005 6f75746572 03    //   "outer": object
		0005 696e6e6572 0a 00000001 //   "inner": strict array, count 1
		03 0000 09            //     empty object
		0000 09               //   end of outer
		0000 09               // end`),
		amfObject{{"outer", amfObject{{"inner", []any{amfObject{}}}}}}, false},
	{"reference", unhex(`
		0a 00000002                     // strict array, count 2 (reference index 0)
		03 0001 61 00 3ff0000000000000  // object {a: 1} (reference index 1)
		0000 09                         // end
		07 0001                         // reference marker, index 1`),
		[]any{amfObject{{"a", 1.0}}, amfObject{{"a", 1.0}}}, true},
	{"AVM+ string", unhex(`11 06 07 666f6f // AVM+ marker, AMF3 string, U29 (3<<1|1), "foo"`), "foo", true},
	{"AVM+ object", unhex(`
		11            // AVM+ marker
		0a 0b 01      // AMF3 object, traits inline+dynamic, class ""
		03 61 04 01   // "a": integer 1
		01            // empty name ends the dynamic members`),
		amfObject{{"a", 1.0}}, true},
}

var amf3Cases = []amfCase{
	{"undefined", unhex(`00`), amfUndefined{}, false},
	{"null", unhex(`01`), nil, false},
	{"false", unhex(`02`), false, false},
	{"true", unhex(`03`), true, false},
	{"integer 0", unhex(`04 00 // integer marker, U29 0`), 0.0, false},
	{"integer 127", unhex(`04 7f // one byte, 7 bits`), 127.0, false},
	{"integer 128", unhex(`04 81 00 // 0000001 0000000`), 128.0, false},
	{"integer 16384", unhex(`04 81 80 00 // 0000001 0000000 0000000`), 16384.0, false},
	{"integer max", unhex(`04 bf ff ff ff // 2^28-1: fourth byte carries 8 bits`), float64(1<<28 - 1), false},
	{"integer -1", unhex(`04 ff ff ff ff // 29-bit two's complement`), -1.0, false},
	{"integer min", unhex(`04 c0 80 80 00 // -2^28`), float64(-(1 << 28)), false},
	{"double 1.5", unhex(`05 3ff8000000000000 // double marker`), 1.5, false},
	{"double 2^28", unhex(`05 41b0000000000000 // too big for U29`), float64(1 << 28), false},
	{"double -0", unhex(`05 8000000000000000 // negative zero stays a double`), math.Copysign(0, -1), false},
	{"empty string", unhex(`06 01 // string marker, U29 (0<<1|1)`), "", false},
	{"string", unhex(`06 07 666f6f // U29 (3<<1|1), "foo"`), "foo", false},
	{"string reference", unhex(`
		09 05 01          // array, 2 dense, no associative part
		06 07 666f6f      // "foo" (string table index 0)
		06 00             // string reference (0<<1|0)`),
		[]any{"foo", "foo"}, true},
	{"XML document", unhex(`07 09 3c612f3e // XMLDocument marker, U29 (4<<1|1), "<a/>"`), amfXMLDocument("<a/>"), true},
	{"XML", unhex(`0b 09 3c612f3e // XML marker, U29 (4<<1|1), "<a/>"`), amfXMLDocument("<a/>"), true},
	{"date", unhex(`08 01 426d1a94a2000000 // date marker, U29D value flag, 1e12 ms`), amfDate{Millis: 1e12}, true},
	{"dense array", unhex(`
		09 05 01   // array marker, U29A (2<<1|1), empty associative part
		04 01      // integer 1
		06 03 61   // string "a"`),
		[]any{1.0, "a"}, false},
	{"associative array", unhex(`
		09 01         // array marker, no dense part
		03 6b 06 03 76 // "k": "v"
		01            // empty name ends the associative part`),
		amfECMAArray{{"k", "v"}}, false},
	{"mixed array", unhex(`
		09 03           // array marker, 1 dense element
		03 6b 06 03 76  // "k": "v"
		01              // end of associative part
		03              // dense[0] = true`),
		amfECMAArray{{"k", "v"}, {"0", true}}, true},
	{"anonymous object", unhex(`
		0a 0b 01     // object marker, U29O-traits 0b1011 (inline, dynamic, 0 sealed), class ""
		03 61 04 01  // "a": integer 1
		01           // end of dynamic members`),
		amfObject{{"a", 1.0}}, false},
	{"typed sealed object", unhex(`
		0a 23         // object, U29O-traits (2<<4 | 0b0011): inline, sealed, 2 members
		07 466f6f     // class "Foo"
		03 61 03 62   // member names "a", "b"
		04 01 04 02   // a=1, b=2`),
		amfTypedObject{Class: "Foo", Props: amfObject{{"a", 1.0}, {"b", 2.0}}}, true},
	{"object and traits references", unhex(`
		09 07 01                          // array, 3 dense (object index 0)
		0a 23 07 466f6f 03 61 03 62       // Foo traits (traits index 0), object index 1
		04 01 04 02                       //   a=1, b=2
		0a 01                             // object index 2, traits reference (0<<2|0b01)
		04 03 04 04                       //   a=3, b=4
		0a 02                             // object reference (1<<1|0)`),
		[]any{
			amfTypedObject{Class: "Foo", Props: amfObject{{"a", 1.0}, {"b", 2.0}}},
			amfTypedObject{Class: "Foo", Props: amfObject{{"a", 3.0}, {"b", 4.0}}},
			amfTypedObject{Class: "Foo", Props: amfObject{{"a", 1.0}, {"b", 2.0}}},
		}, true},
	{"dynamic key by string reference", unhex(`
		09 05 01             // array, 2 dense
		0a 0b 01 03 61 04 01 01 // {a: 1}, "a" is string index 0
		0a 01                // traits reference 0 (anonymous, dynamic)
		00 04 02 01          // key by string reference 0 ("a"): 2; end`),
		[]any{amfObject{{"a", 1.0}}, amfObject{{"a", 2.0}}}, true},
	{"date reference", unhex(`
		09 05 01                // array, 2 dense (object index 0)
		08 01 0000000000000000  // date 0 (object index 1)
		08 02                   // date reference (1<<1|0)`),
		[]any{amfDate{}, amfDate{}}, true},
	{"ByteArray", unhex(`0c 07 010203 // ByteArray marker, U29B (3<<1|1), bytes`), []byte{1, 2, 3}, true},
	{"vector int", unhex(`
		0d 05 00   // vector-int marker, count 2, not fixed
		ffffffff   // -1
		00000002   // 2`),
		[]any{-1.0, 2.0}, true},
	{"vector uint", unhex(`0e 03 00 ffffffff // vector-uint, count 1, not fixed, 2^32-1`), []any{4294967295.0}, true},
	{"vector double", unhex(`0f 03 01 3ff8000000000000 // vector-double, count 1, fixed, 1.5`), []any{1.5}, true},
	{"vector object", unhex(`
		10 05 00  // vector-object, count 2, not fixed
		01        // element type name "" (any)
		06 03 61  // "a"
		01        // null`),
		[]any{"a", nil}, true},
	{"dictionary", unhex(`
		11 05 00         // dictionary, 2 entries, strong keys
		06 03 6b  04 01  // "k": 1
		04 07  06 03 76  // 7: "v"`),
		amfECMAArray{{"k", 1.0}, {"7", "v"}}, true},
}

// connectBody is what ffmpeg (libavformat rtmpproto) sends as its connect command.
var connectBody = unhex(`
	02 0007 636f6e6e656374 // string "connect"
	00 3ff0000000000000    // number 1 (transaction id)
	03                     // object
	0003 617070        02 0004 6c697665                 // app: "live"
	0004 74797065      02 000a 6e6f6e70726976617465     // type: "nonprivate"
	0008 666c617368566572 02 0023 464d4c452f332e302028636f6d70617469626c653b204c61766636312e372e31303029 // flashVer: "FMLE/3.0 (compatible; Lavf61.7.100)"
	0005 746355726c    02 001a 72746d703a2f2f3132372e302e302e313a313933352f6c697665 // tcUrl: "rtmp://127.0.0.1:1935/live"
	0000 09                // end`)

var connectObject = amfObject{
	{"app", "live"},
	{"type", "nonprivate"},
	{"flashVer", "FMLE/3.0 (compatible; Lavf61.7.100)"},
	{"tcUrl", "rtmp://127.0.0.1:1935/live"},
}

// metadataBody is ffmpeg's @setDataFrame data message for a 640x360 H.264/AAC stream.
var metadataBody = unhex(`
	02 000d 40736574446174614672616d65 // string "@setDataFrame"
	02 000a 6f6e4d65746144617461       // string "onMetaData"
	08 0000000d                        // ECMA array, count 13
	0008 6475726174696f6e              00 0000000000000000 // duration: 0
	0005 7769647468                    00 4084000000000000 // width: 640
	0006 686569676874                  00 4076800000000000 // height: 360
	000d 766964656f6461746172617465    00 0000000000000000 // videodatarate: 0
	0009 6672616d6572617465            00 403e000000000000 // framerate: 30
	000c 766964656f636f6465636964      00 401c000000000000 // videocodecid: 7
	000d 617564696f6461746172617465    00 405f400000000000 // audiodatarate: 125
	000f 617564696f73616d706c6572617465 00 40e5888000000000 // audiosamplerate: 44100
	000f 617564696f73616d706c6573697a65 00 4030000000000000 // audiosamplesize: 16
	0006 73746572656f                  01 00               // stereo: false
	000c 617564696f636f6465636964      00 4024000000000000 // audiocodecid: 10
	0007 656e636f646572                02 000c 4c61766636312e372e313030 // encoder: "Lavf61.7.100"
	0008 66696c6573697a65              00 0000000000000000 // filesize: 0
	0000 09                            // end`)

var metadataArray = amfECMAArray{
	{"duration", 0.0}, {"width", 640.0}, {"height", 360.0}, {"videodatarate", 0.0},
	{"framerate", 30.0}, {"videocodecid", 7.0}, {"audiodatarate", 125.0},
	{"audiosamplerate", 44100.0}, {"audiosamplesize", 16.0}, {"stereo", false},
	{"audiocodecid", 10.0}, {"encoder", "Lavf61.7.100"}, {"filesize", 0.0},
}

func TestAMF0Decode(t *testing.T) {
	for _, c := range amf0Cases {
		got, rest, err := amf0Decode(c.enc)
		if err != nil || len(rest) != 0 || !reflect.DeepEqual(got, c.dec) {
			t.Errorf("%s: got %#v, rest %x, err %v; want %#v", c.name, got, rest, err, c.dec)
		}
	}
}

func TestAMF0Encode(t *testing.T) {
	for _, c := range amf0Cases {
		if c.decodeOnly {
			continue
		}
		if got := amf0Append(nil, c.dec); !bytes.Equal(got, c.enc) {
			t.Errorf("%s: got % x, want % x", c.name, got, c.enc)
		}
	}
}

func TestAMF3Decode(t *testing.T) {
	for _, c := range amf3Cases {
		got, rest, err := amf3Decode(c.enc)
		if err != nil || len(rest) != 0 || !reflect.DeepEqual(got, c.dec) {
			t.Errorf("%s: got %#v, rest %x, err %v; want %#v", c.name, got, rest, err, c.dec)
		}
		if f, ok := c.dec.(float64); ok && math.Signbit(got.(float64)) != math.Signbit(f) {
			t.Errorf("%s: got %v, want %v", c.name, got, f)
		}
	}
}

func TestAMF3Encode(t *testing.T) {
	for _, c := range amf3Cases {
		if c.decodeOnly {
			continue
		}
		if got := amf3Append(nil, c.dec); !bytes.Equal(got, c.enc) {
			t.Errorf("%s: got % x, want % x", c.name, got, c.enc)
		}
	}
}

func TestAMF0EncodeMore(t *testing.T) {
	long := strings.Repeat("x", 70000)
	cyclic := []any{nil}
	cyclic[0] = cyclic
	tests := []struct {
		name string
		v    any
		want []byte
	}{
		{"int", 7, unhex(`00 401c000000000000`)},
		{"int32", int32(7), unhex(`00 401c000000000000`)},
		{"int64", int64(7), unhex(`00 401c000000000000`)},
		{"uint32", uint32(7), unhex(`00 401c000000000000`)},
		{"map sorted", map[string]any{"b": true, "a": nil}, unhex(`03 0001 61 05 0001 62 01 01 0000 09`)},
		{"unknown type is null", struct{}{}, unhex(`05`)},
		{"byte slice is null", []byte{1}, unhex(`05`)},
		{"nil pointer is null", (*int)(nil), unhex(`05`)},
		{"long string", long, append(unhex(`0c 00011170`), long...)},
		{"cyclic slice ends in null", cyclic, append(bytes.Repeat(unhex(`0a 00000001`), amfMaxDepth), 0x05)},
	}
	for _, tt := range tests {
		if got := amf0Append(nil, tt.v); !bytes.Equal(got, tt.want) {
			t.Errorf("%s: got % x, want % x", tt.name, got[:min(len(got), 40)], tt.want[:min(len(tt.want), 40)])
		}
	}
	if got, _, err := amf0Decode(amf0Append(nil, long)); got != long || err != nil {
		t.Errorf("long string round trip: got %d bytes, err %v; want %d bytes", len(got.(string)), err, len(long))
	}
}

func TestAMF0AppendAllConnect(t *testing.T) {
	got := amf0AppendAll(nil, "connect", 1, connectObject)
	if !bytes.Equal(got, connectBody) {
		t.Errorf("got % x, want % x", got, connectBody)
	}
}

func TestDecodeCommand(t *testing.T) {
	got, err := decodeCommand(connectBody)
	want := rtmpCommand{Name: "connect", TxnID: 1, Object: connectObject}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("connect: got %#v, %v; want %#v", got, err, want)
	}
	if app := got.Object.(amfObject).String("app"); app != "live" {
		t.Errorf("app: got %q, want %q", app, "live")
	}

	createStream := unhex(`02 000c 63726561746553747265616d  00 4000000000000000  05  00 4014000000000000`)
	got, err = decodeCommand(createStream)
	want = rtmpCommand{Name: "createStream", TxnID: 2, Args: []any{5.0}}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("createStream: got %#v, %v; want %#v", got, err, want)
	}

	got, err = decodeCommand(unhex(`02 0004 74657374`))
	if want := (rtmpCommand{Name: "test"}); err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("name only: got %#v, %v; want %#v", got, err, want)
	}

	// A data message is not a command: its second value is a string.
	_, err = decodeCommand(metadataBody)
	var ae *amfError
	if !errors.As(err, &ae) || !errors.Is(err, errAMFCommand) || ae.Offset != 16 {
		t.Errorf("metadata as command: got %v, want %v at offset 16", err, errAMFCommand)
	}
	for _, body := range [][]byte{nil, unhex(`05`), unhex(`00 3ff0000000000000`)} {
		if _, err := decodeCommand(body); !errors.Is(err, errAMFCommand) {
			t.Errorf("% x: got %v, want %v", body, err, errAMFCommand)
		}
	}
	if _, err := decodeCommand(connectBody[:len(connectBody)-1]); !errors.Is(err, errAMFTruncated) {
		t.Errorf("truncated connect: got %v, want %v", err, errAMFTruncated)
	}
}

func TestAMF0DecodeAllMetadata(t *testing.T) {
	got, err := amf0DecodeAll(metadataBody)
	want := []any{"@setDataFrame", "onMetaData", metadataArray}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("got %#v, %v; want %#v", got, err, want)
	}
	meta := got[2].(amfECMAArray)
	if w, ok := meta.Number("width"); w != 640 || !ok {
		t.Errorf("width: got %v, %v; want 640, true", w, ok)
	}
	if enc := meta.String("encoder"); enc != "Lavf61.7.100" {
		t.Errorf("encoder: got %q, want %q", enc, "Lavf61.7.100")
	}
	if s := meta.String("width"); s != "" {
		t.Errorf("String of a number: got %q, want empty", s)
	}
	if _, ok := meta.Get("missing"); ok {
		t.Errorf("Get missing: got ok, want !ok")
	}
	if _, ok := connectObject.Number("app"); ok {
		t.Errorf("Number of a string: got ok, want !ok")
	}
	if v, ok := connectObject.Get("type"); v != "nonprivate" || !ok {
		t.Errorf("Get type: got %v, %v; want nonprivate, true", v, ok)
	}
	if got := amf0AppendAll(nil, want...); !bytes.Equal(got, metadataBody) {
		t.Errorf("encode metadata: got % x, want % x", got, metadataBody)
	}
}

func TestTruncatedPrefixes(t *testing.T) {
	check := func(format string, decode func([]byte) (any, []byte, error), cases []amfCase) {
		for _, c := range cases {
			for n := range len(c.enc) {
				_, _, err := decode(c.enc[:n])
				if !errors.Is(err, errAMFTruncated) {
					t.Errorf("%s %s[:%d]: got %v, want %v", format, c.name, n, err, errAMFTruncated)
				}
			}
		}
	}
	check("AMF0", amf0Decode, amf0Cases)
	check("AMF3", amf3Decode, amf3Cases)
}

func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		name   string
		amf3   bool
		in     []byte
		want   error
		offset int
	}{
		{"number cut", false, unhex(`00 01`), errAMFTruncated, 1},
		{"object end as value", false, unhex(`09`), errAMFMarker, 0},
		{"movieclip", false, unhex(`04`), errAMFMarker, 0},
		{"recordset", false, unhex(`0e`), errAMFMarker, 0},
		{"unknown marker in object", false, unhex(`03 0001 61 12`), errAMFMarker, 4},
		{"reference out of range", false, unhex(`07 0000`), errAMFReference, 0},
		{"circular reference", false, unhex(`03 0001 61 07 0000 0000 09`), errAMFCircular, 4},
		{"amf3 unknown marker", true, unhex(`12`), errAMFMarker, 0},
		{"amf3 string reference out of range", true, unhex(`06 02`), errAMFReference, 1},
		{"amf3 object reference out of range", true, unhex(`0a 02`), errAMFReference, 0},
		{"amf3 traits reference out of range", true, unhex(`0a 05`), errAMFReference, 0},
		{"amf3 externalizable", true, unhex(`0a 07 07 466f6f`), errAMF3External, 0},
		{"amf3 circular", true, unhex(`09 03 01 0a 00`), errAMFCircular, 3},
	}
	for _, tt := range tests {
		var err error
		if tt.amf3 {
			_, _, err = amf3Decode(tt.in)
		} else {
			_, _, err = amf0Decode(tt.in)
		}
		var ae *amfError
		if !errors.Is(err, tt.want) || !errors.As(err, &ae) || ae.Offset != tt.offset {
			t.Errorf("%s: got %v, want %v at offset %d", tt.name, err, tt.want, tt.offset)
		}
	}
	_, _, err := amf0Decode(unhex(`00 0102`))
	if got, want := err.Error(), "amf: truncated at offset 1"; got != want {
		t.Errorf("message: got %q, want %q", got, want)
	}
	_, _, err = amf3Decode(unhex(`0a 07 07 466f6f`))
	if got, want := err.Error(), "amf3: externalizable object not supported at offset 0"; got != want {
		t.Errorf("message: got %q, want %q", got, want)
	}
}

func TestDepthLimit(t *testing.T) {
	nest := func(open, leaf, end string, n int) []byte {
		return unhex(strings.Repeat(open, n) + leaf + strings.Repeat(end, n))
	}
	tests := []struct {
		name string
		amf3 bool
		in   func(n int) []byte
	}{
		{"AMF0 objects", false, func(n int) []byte { return nest("03 0001 61 ", "05", " 0000 09", n) }},
		{"AMF0 strict arrays", false, func(n int) []byte { return nest("0a 00000001 ", "05", "", n) }},
		{"AMF0 typed objects", false, func(n int) []byte { return nest("10 0000 0001 61 ", "05", " 0000 09", n) }},
		{"AMF0 ECMA arrays", false, func(n int) []byte { return nest("08 00000001 0001 61 ", "05", " 0000 09", n) }},
		{"AMF0 then AMF3 via AVM+", false, func(n int) []byte { return nest("0a 00000001 ", "11"+strings.Repeat("09 03 01 ", n)+"01", "", n) }},
		{"AMF3 arrays", true, func(n int) []byte { return nest("09 03 01 ", "01", "", n) }},
		{"AMF3 objects", true, func(n int) []byte { return nest("0a 0b 01 03 61 ", "01", " 01", n) }},
		{"AMF3 vectors", true, func(n int) []byte { return nest("10 03 00 01 ", "01", "", n) }},
		{"AMF3 dictionaries", true, func(n int) []byte { return nest("11 03 00 01 ", "01", "", n) }},
	}
	for _, tt := range tests {
		decode := amf0Decode
		if tt.amf3 {
			decode = amf3Decode
		}
		if _, _, err := decode(tt.in(amfMaxDepth / 2)); err != nil {
			t.Errorf("%s, depth %d: got %v, want no error", tt.name, amfMaxDepth/2, err)
		}
		if _, _, err := decode(tt.in(100)); !errors.Is(err, errAMFDepth) {
			t.Errorf("%s, depth 100: got %v, want %v", tt.name, err, errAMFDepth)
		}
	}
	if _, _, err := amf0Decode(nest("0a 00000001 ", "05", "", amfMaxDepth)); err != nil {
		t.Errorf("depth %d: got %v, want no error", amfMaxDepth, err)
	}
	if _, _, err := amf0Decode(nest("0a 00000001 ", "05", "", amfMaxDepth+1)); !errors.Is(err, errAMFDepth) {
		t.Errorf("depth %d: got %v, want %v", amfMaxDepth+1, err, errAMFDepth)
	}
}

func TestHugeCountsFailFast(t *testing.T) {
	tests := []struct {
		name string
		amf3 bool
		in   []byte
	}{
		{"strict array 2^32-1", false, unhex(`0a ffffffff 05 05 05`)},
		{"ECMA array 2^32-1", false, unhex(`08 ffffffff 05 05 05`)},
		{"long string 2^32-1", false, unhex(`0c ffffffff 61 62 63`)},
		{"XML 2^32-1", false, unhex(`0f ffffffff 61 62 63`)},
		{"amf3 array 2^28-1", true, unhex(`09 bf ff ff ff 01 01 01`)},
		{"amf3 string 2^28-1", true, unhex(`06 bf ff ff ff 61 62 63`)},
		{"amf3 byte array", true, unhex(`0c bf ff ff ff 61 62 63`)},
		{"amf3 sealed members", true, unhex(`0a bf ff ff f3 01 01 01`)},
		{"amf3 vector double", true, unhex(`0f bf ff ff ff 00 01 01`)},
		{"amf3 vector object", true, unhex(`10 bf ff ff ff 00 01 01`)},
		{"amf3 dictionary", true, unhex(`11 bf ff ff ff 00 01 01`)},
	}
	for _, tt := range tests {
		decode := amf0Decode
		if tt.amf3 {
			decode = amf3Decode
		}
		var err error
		allocs := testing.AllocsPerRun(10, func() { _, _, err = decode(tt.in) })
		if !errors.Is(err, errAMFTruncated) {
			t.Errorf("%s: got %v, want %v", tt.name, err, errAMFTruncated)
		}
		if allocs > 10 {
			t.Errorf("%s: got %v allocations, want at most 10", tt.name, allocs)
		}
	}
}

func TestReferenceBombs(t *testing.T) {
	// AMF0: element k is a two-element strict array referencing element k-1
	// twice, so 40 levels describe 2^40 values in about 300 bytes.
	bomb0 := unhex(`0a 00000028  0a 00000002 05 05`)
	for k := 2; k <= 40; k++ {
		bomb0 = append(bomb0, 0x0a, 0, 0, 0, 2, 0x07, 0, byte(k-1), 0x07, 0, byte(k-1))
	}
	// AMF3: one 60 kB string, then 100000 one-byte references to it.
	bomb3 := appendU29([]byte{amf3Array}, 100000<<1|1) // 100000 dense elements
	bomb3 = appendU29(append(bomb3, 0x01, amf3String), 60000<<1|1)
	bomb3 = append(bomb3, strings.Repeat("x", 60000)...)
	bomb3 = append(bomb3, bytes.Repeat([]byte{0x06, 0x00}, 99999)...)
	for name, run := range map[string]func() error{
		"AMF0": func() error { _, _, err := amf0Decode(bomb0); return err },
		"AMF3": func() error { _, _, err := amf3Decode(bomb3); return err },
	} {
		if err := run(); !errors.Is(err, errAMFTooLarge) {
			t.Errorf("%s: got %v, want %v", name, err, errAMFTooLarge)
		}
	}
	// A few references are fine.
	if _, _, err := amf0Decode(bomb0[:5+7+11*5]); err == nil || errors.Is(err, errAMFTooLarge) {
		t.Errorf("short AMF0 chain: got %v, want truncation only", err)
	}
}

// amf0Comparable reports whether v survives AMF0 encoding unchanged: no NaN
// (which never equals itself) and nothing the encoder turns into null or drops.
func amf0Comparable(v any) bool {
	props := func(ps []amfProp) bool {
		for _, p := range ps {
			if len(p.Key) > math.MaxUint16 || !amf0Comparable(p.Value) {
				return false
			}
		}
		return true
	}
	switch v := v.(type) {
	case float64:
		return !math.IsNaN(v)
	case amfDate:
		return !math.IsNaN(v.Millis)
	case []byte:
		return false
	case amfObject:
		return props(v)
	case amfECMAArray:
		return props(v)
	case amfTypedObject:
		return len(v.Class) <= math.MaxUint16 && props(v.Props)
	case []any:
		for _, item := range v {
			if !amf0Comparable(item) {
				return false
			}
		}
	}
	return true
}

func addSeeds(f *testing.F, cases []amfCase, extra ...[]byte) {
	for _, c := range cases {
		f.Add(c.enc)
	}
	for _, e := range extra {
		f.Add(e)
	}
}

func FuzzAMF0Decode(f *testing.F) {
	addSeeds(f, amf0Cases, connectBody, metadataBody)
	for _, c := range amf3Cases {
		f.Add(append([]byte{amf0AVMPlus}, c.enc...))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		v1, _, err := amf0Decode(data)
		if err != nil {
			return
		}
		enc1 := amf0Append(nil, v1)
		v2, rest, err := amf0Decode(enc1)
		if err != nil || len(rest) != 0 {
			t.Fatalf("re-decode: got err %v, rest %d bytes; want a full decode of % x", err, len(rest), enc1)
		}
		if amf0Comparable(v1) && !reflect.DeepEqual(v1, v2) {
			t.Fatalf("round trip: got %#v, want %#v", v2, v1)
		}
		// After one normalising round the encoding is a fixed point.
		if enc2 := amf0Append(nil, v2); !bytes.Equal(enc2, enc1) {
			t.Fatalf("second encoding: got % x, want % x", enc2, enc1)
		}
	})
}

func FuzzAMF3Decode(f *testing.F) {
	addSeeds(f, amf3Cases)
	f.Fuzz(func(t *testing.T, data []byte) {
		v, _, err := amf3Decode(data)
		if err != nil {
			return
		}
		if _, _, err := amf0Decode(amf0Append(nil, v)); err != nil {
			t.Fatalf("AMF0 re-encoding does not decode: %v", err)
		}
	})
}

func FuzzDecodeCommand(f *testing.F) {
	addSeeds(f, amf0Cases, connectBody, metadataBody)
	f.Fuzz(func(t *testing.T, body []byte) {
		cmd, err := decodeCommand(body)
		if err != nil {
			return
		}
		if first, _, _ := amf0Decode(body); first != cmd.Name {
			t.Fatalf("name: got %q, want %q", cmd.Name, first)
		}
	})
}

func BenchmarkAMF0DecodeCommand(b *testing.B) {
	b.SetBytes(int64(len(connectBody)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := decodeCommand(connectBody); err != nil {
			b.Fatal(err)
		}
	}
}

// ---- AMF3 encoding: the server never sends AMF3; tests and fuzz seeds do ----

// amf3Append appends the AMF3 encoding of v without references: undefined,
// null, bool, numbers (U29 integer when integral and in range, else double),
// string, []any (dense array), amfECMAArray (associative array) and amfObject
// (anonymous dynamic object). Anything else, strings of 2^28 bytes or more and
// values nested deeper than amfMaxDepth encode as null; empty keys are skipped
// because the empty string ends a member list.
func amf3Append(dst []byte, v any) []byte { return amf3AppendValue(dst, v, 0) }

func amf3AppendValue(dst []byte, v any, depth int) []byte {
	switch v.(type) {
	case amfObject, amfECMAArray, []any:
		if depth >= amfMaxDepth {
			return append(dst, amf3Null)
		}
	}
	switch v := v.(type) {
	case amfUndefined:
		return append(dst, amf3Undefined)
	case bool:
		if v {
			return append(dst, amf3True)
		}
		return append(dst, amf3False)
	case int:
		return amf3AppendValue(dst, float64(v), depth)
	case float64:
		if v == math.Trunc(v) && v >= -(1<<28) && v < 1<<28 && !(v == 0 && math.Signbit(v)) {
			return appendU29(append(dst, amf3Integer), uint32(int32(v)))
		}
		return binary.BigEndian.AppendUint64(append(dst, amf3Double), math.Float64bits(v))
	case string:
		if len(v) < 1<<28 {
			return amf3AppendString(append(dst, amf3String), v)
		}
	case []any:
		dst = appendU29(append(dst, amf3Array), uint32(len(v))<<1|1)
		dst = append(dst, 0x01) // empty associative part
		for _, item := range v {
			dst = amf3AppendValue(dst, item, depth+1)
		}
		return dst
	case amfECMAArray:
		dst = append(dst, amf3Array, 0x01) // U29A: no dense part
		return amf3AppendProps(dst, v, depth)
	case amfObject:
		// U29O-traits 0b1011: inline traits, dynamic, not externalizable,
		// no sealed members; then the empty class name.
		return amf3AppendProps(append(dst, amf3Object, 0x0B, 0x01), v, depth)
	}
	return append(dst, amf3Null)
}

func amf3AppendProps(dst []byte, props []amfProp, depth int) []byte {
	for _, p := range props {
		if p.Key == "" || len(p.Key) >= 1<<28 {
			continue
		}
		dst = amf3AppendString(dst, p.Key)
		dst = amf3AppendValue(dst, p.Value, depth+1)
	}
	return append(dst, 0x01) // the empty string ends the members
}

func amf3AppendString(dst []byte, s string) []byte {
	return append(appendU29(dst, uint32(len(s))<<1|1), s...)
}

// appendU29 writes AMF3 §1.3.1 variable-length integer (low 29 bits of v).
func appendU29(dst []byte, v uint32) []byte {
	v &= 1<<29 - 1
	switch {
	case v < 1<<7:
		return append(dst, byte(v))
	case v < 1<<14:
		return append(dst, byte(v>>7)|0x80, byte(v)&0x7f)
	case v < 1<<21:
		return append(dst, byte(v>>14)|0x80, byte(v>>7)|0x80, byte(v)&0x7f)
	}
	return append(dst, byte(v>>22)|0x80, byte(v>>15)|0x80, byte(v>>8)|0x80, byte(v))
}

// amf3Decode decodes one AMF3 value, with fresh reference tables (the
// server only meets AMF3 inside AMF0, through the AVM+ marker), and returns
// the input after it. (Inside AMF0, AVM+ values share one set of AMF3 tables
// per message.)
func amf3Decode(buf []byte) (v any, rest []byte, err error) {
	d := newAMFDecoder(buf)
	if v = d.amf3Value(); d.err != nil {
		return nil, nil, d.err
	}
	return v, buf[d.pos:], nil
}
