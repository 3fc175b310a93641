package main

// AMF0 and AMF3 codecs for RTMP command and data messages.
//
// Specs: Adobe "Action Message Format -- AMF 0" (cited as AMF0 §x) and
// "AMF 3 Specification" (cited as AMF3 §x). Decoding works on a []byte and
// returns the rest; objects keep their key order as slices of amfProp.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
)

// Decoded AMF values. Numbers are float64, strings are string, null is nil.
type amfProp struct {
	Key   string
	Value any
}

type amfObject []amfProp    // AMF0 §2.5, AMF3 §3.12 anonymous object
type amfECMAArray []amfProp // AMF0 §2.10, AMF3 §3.11 array with associative part
type amfUndefined struct{}  // AMF0 §2.8, AMF3 §3.2
type amfXMLDocument string  // AMF0 §2.17, AMF3 §3.9 and §3.13

// amfDate is AMF0 §2.13 / AMF3 §3.10: milliseconds since the Unix epoch (UTC).
// TimeZone is reserved by the AMF0 spec and should be 0; AMF3 has none.
type amfDate struct {
	Millis   float64
	TimeZone int16
}

// amfTypedObject is AMF0 §2.18 / AMF3 §3.12 object with a registered class name.
type amfTypedObject struct {
	Class string
	Props amfObject
}

func (o amfObject) Get(key string) (any, bool)           { return propGet(o, key) }
func (o amfObject) String(key string) string             { return propString(o, key) }
func (o amfObject) Number(key string) (float64, bool)    { return propNumber(o, key) }
func (a amfECMAArray) Get(key string) (any, bool)        { return propGet(a, key) }
func (a amfECMAArray) String(key string) string          { return propString(a, key) }
func (a amfECMAArray) Number(key string) (float64, bool) { return propNumber(a, key) }

func propGet(props []amfProp, key string) (any, bool) {
	for _, p := range props {
		if p.Key == key {
			return p.Value, true
		}
	}
	return nil, false
}

func propString(props []amfProp, key string) string {
	v, _ := propGet(props, key)
	s, _ := v.(string)
	return s
}

func propNumber(props []amfProp, key string) (float64, bool) {
	v, _ := propGet(props, key)
	n, ok := v.(float64)
	return n, ok
}

// AMF0 type markers, AMF0 §2.1.
const (
	amf0Number      = 0x00
	amf0Boolean     = 0x01
	amf0String      = 0x02
	amf0Object      = 0x03
	amf0Null        = 0x05
	amf0Undefined   = 0x06
	amf0Reference   = 0x07
	amf0ECMAArray   = 0x08
	amf0ObjectEnd   = 0x09
	amf0StrictArray = 0x0A
	amf0Date        = 0x0B
	amf0LongString  = 0x0C
	amf0Unsupported = 0x0D
	amf0XMLDocument = 0x0F
	amf0TypedObject = 0x10
	amf0AVMPlus     = 0x11 // AMF0 §3.1: the next value is AMF3
)

// AMF3 type markers, AMF3 §3.1.
const (
	amf3Undefined    = 0x00
	amf3Null         = 0x01
	amf3False        = 0x02
	amf3True         = 0x03
	amf3Integer      = 0x04
	amf3Double       = 0x05
	amf3String       = 0x06
	amf3XMLDocument  = 0x07
	amf3Date         = 0x08
	amf3Array        = 0x09
	amf3Object       = 0x0A
	amf3XML          = 0x0B
	amf3ByteArray    = 0x0C
	amf3VectorInt    = 0x0D
	amf3VectorUint   = 0x0E
	amf3VectorDouble = 0x0F
	amf3VectorObject = 0x10
	amf3Dictionary   = 0x11
)

// Decoder limits. Nesting is capped so hostile input cannot exhaust the stack.
// References (AMF0 §2.9, AMF3 §2.1) let a couple of bytes stand for a whole
// earlier value, so a message can describe a tree exponentially bigger than
// itself; every value, string byte and resolved reference is charged against
// a budget linear in the input length.
const (
	amfMaxDepth      = 64
	amfBudgetBase    = 1 << 20
	amfBudgetPerByte = 16
)

var (
	errAMFTruncated = errors.New("amf: truncated")
	errAMFDepth     = errors.New("amf: nesting too deep")
	errAMFMarker    = errors.New("amf: unknown or unsupported marker")
	errAMFReference = errors.New("amf: reference out of range")
	errAMFCircular  = errors.New("amf: reference to a value still being decoded")
	errAMFTooLarge  = errors.New("amf: references expand beyond the size budget")
	errAMFCommand   = errors.New("amf: command needs a name string then a transaction number")
	errAMF3External = errors.New("amf3: externalizable object not supported")
)

// amfError is a decode error at a byte offset from the start of the buffer.
type amfError struct {
	Offset int
	Err    error
}

func (e *amfError) Error() string { return fmt.Sprintf("%v at offset %d", e.Err, e.Offset) }
func (e *amfError) Unwrap() error { return e.Err }

// amfRef is a reference-table slot. It is reserved when a complex value
// starts (indexes count values in the order they begin) and filled when it
// ends; a reference to an unfilled slot would be a cycle we cannot represent.
type amfRef struct {
	value any
	size  int // budget units the value cost, charged again on every reference
	done  bool
}

// amf3Traits is AMF3 §3.12 class description, shared by reference.
type amf3Traits struct {
	class   string
	sealed  []string
	dynamic bool
}

// amfDecoder holds the state of one message: position, nesting depth, size
// budget and the reference tables (AMF0 objects; AMF3 strings, objects,
// traits). The first error sticks: later reads return zero values, so the
// decoding code reads straight through and checks err where it loops.
type amfDecoder struct {
	buf     []byte
	pos     int
	err     error
	depth   int
	budget  int
	refs0   []amfRef
	strs3   []string
	objs3   []amfRef
	traits3 []amf3Traits
}

func newAMFDecoder(buf []byte) *amfDecoder {
	return &amfDecoder{buf: buf, budget: amfBudgetBase + amfBudgetPerByte*len(buf)}
}

// amf0Decode decodes one AMF0 value and returns the input after it.
func amf0Decode(buf []byte) (v any, rest []byte, err error) {
	d := newAMFDecoder(buf)
	if v = d.amf0Value(); d.err != nil {
		return nil, nil, d.err
	}
	return v, buf[d.pos:], nil
}

// amf0DecodeAll decodes values until buf is empty, sharing reference tables
// across them as in an RTMP command or data message body.
func amf0DecodeAll(buf []byte) ([]any, error) {
	d := newAMFDecoder(buf)
	var vs []any
	for d.pos < len(buf) && d.err == nil {
		vs = append(vs, d.amf0Value())
	}
	if d.err != nil {
		return nil, d.err
	}
	return vs, nil
}

// rtmpCommand is a decoded command message (AMF0 command body): name,
// transaction id, command object, then arguments.
type rtmpCommand struct {
	Name   string
	TxnID  float64
	Object any
	Args   []any
}

// decodeCommand decodes an RTMP AMF0 command body: a name string, an optional
// transaction number (0 if absent), an optional command object, then arguments.
func decodeCommand(body []byte) (rtmpCommand, error) {
	d := newAMFDecoder(body)
	if len(body) == 0 {
		d.fail(0, errAMFCommand)
	}
	var cmd rtmpCommand
	for i := 0; d.pos < len(body) && d.err == nil; i++ {
		start := d.pos
		v, ok := d.amf0Value(), true
		switch i {
		case 0:
			cmd.Name, ok = v.(string)
		case 1:
			cmd.TxnID, ok = v.(float64)
		case 2:
			cmd.Object = v
		default:
			cmd.Args = append(cmd.Args, v)
		}
		if !ok {
			d.fail(start, errAMFCommand)
		}
	}
	if d.err != nil {
		return rtmpCommand{}, d.err
	}
	return cmd, nil
}

// ---- reading ----

func (d *amfDecoder) fail(offset int, err error) {
	if d.err == nil {
		d.err = &amfError{Offset: offset, Err: err}
	}
}

func (d *amfDecoder) take(n uint64) []byte {
	if d.err == nil && n > uint64(len(d.buf)-d.pos) {
		d.fail(d.pos, errAMFTruncated)
	}
	if d.err != nil {
		return nil
	}
	d.pos += int(n)
	return d.buf[d.pos-int(n) : d.pos]
}

// uint reads a big-endian unsigned integer of size bytes.
func (d *amfDecoder) uint(size int) uint64 {
	var v uint64
	for _, b := range d.take(uint64(size)) {
		v = v<<8 | uint64(b)
	}
	return v
}

func (d *amfDecoder) f64() float64 { return math.Float64frombits(d.uint(8)) }

func (d *amfDecoder) str(n uint64) string {
	b := d.take(n)
	d.charge(len(b))
	return string(b)
}

// u29 reads AMF3 §1.3.1 variable-length integer: up to three bytes of 7 bits
// with a continuation flag, then a fourth byte of 8 bits.
func (d *amfDecoder) u29() uint64 {
	var v uint64
	for range 3 {
		b := d.uint(1)
		if v = v<<7 | b&0x7f; b&0x80 == 0 {
			return v
		}
	}
	return v<<8 | d.uint(1)
}

// need fails fast when count items of at least size bytes each cannot fit in
// the remaining input, so counts read off the wire never drive allocation.
func (d *amfDecoder) need(count, size uint64) bool {
	if d.err == nil && count*size > uint64(len(d.buf)-d.pos) {
		d.fail(d.pos, errAMFTruncated)
	}
	return d.err == nil
}

func (d *amfDecoder) charge(units int) {
	if d.budget -= units; d.budget < 0 {
		d.fail(d.pos, errAMFTooLarge)
	}
}

// enter starts a nested container; callers defer d.leave().
func (d *amfDecoder) enter() bool {
	if d.depth++; d.depth > amfMaxDepth {
		d.fail(d.pos, errAMFDepth)
	}
	return d.err == nil
}

func (d *amfDecoder) leave() { d.depth-- }

func (d *amfDecoder) inRange(index uint64, length int, at int) bool {
	if d.err == nil && index >= uint64(length) {
		d.fail(at, errAMFReference)
	}
	return d.err == nil
}

// remember decodes a complex value with body, recording it in table.
func (d *amfDecoder) remember(table *[]amfRef, body func() any) any {
	i := len(*table)
	*table = append(*table, amfRef{})
	before := d.budget
	v := body()
	(*table)[i] = amfRef{value: v, size: before - d.budget, done: true}
	return v
}

func (d *amfDecoder) deref(table []amfRef, index uint64, at int) any {
	if !d.inRange(index, len(table), at) {
		return nil
	}
	if !table[index].done {
		d.fail(at, errAMFCircular)
		return nil
	}
	d.charge(table[index].size)
	return table[index].value
}

// ---- AMF0 decoding ----

func (d *amfDecoder) amf0Value() any {
	start := d.pos
	marker := byte(d.uint(1))
	if d.charge(1); d.err != nil {
		return nil
	}
	switch marker {
	case amf0Number: // AMF0 §2.2: big-endian IEEE-754 double
		return d.f64()
	case amf0Boolean: // AMF0 §2.3: one byte, non-zero is true
		return d.uint(1) != 0
	case amf0String: // AMF0 §2.4: u16 length, UTF-8
		return d.str(d.uint(2))
	case amf0LongString: // AMF0 §2.14: u32 length, UTF-8
		return d.str(d.uint(4))
	case amf0Null: // AMF0 §2.7
		return nil
	case amf0Undefined, amf0Unsupported: // AMF0 §2.8; §2.15 has no better Go value
		return amfUndefined{}
	case amf0Reference: // AMF0 §2.9: u16 index into the complex-object table
		return d.deref(d.refs0, d.uint(2), start)
	case amf0Date: // AMF0 §2.13: double millis, s16 time zone
		return amfDate{Millis: d.f64(), TimeZone: int16(d.uint(2))}
	case amf0XMLDocument: // AMF0 §2.17: u32 length, UTF-8
		return amfXMLDocument(d.str(d.uint(4)))
	case amf0AVMPlus: // AMF0 §3.1: switch to AMF3 for one value
		return d.amf3Value()
	case amf0Object, amf0ECMAArray, amf0StrictArray, amf0TypedObject:
		// AMF0 §2.9: these take the next reference-table slot.
		return d.remember(&d.refs0, func() any { return d.amf0Complex(marker) })
	}
	d.fail(start, errAMFMarker)
	return nil
}

func (d *amfDecoder) amf0Complex(marker byte) any {
	if !d.enter() {
		return nil
	}
	defer d.leave()
	switch marker {
	case amf0ECMAArray: // AMF0 §2.10: u32 count (a hint only), then properties
		d.uint(4)
		return amfECMAArray(d.amf0Props())
	case amf0StrictArray: // AMF0 §2.12: u32 count, then that many values
		count := d.uint(4)
		if !d.need(count, 1) {
			return nil
		}
		values := []any{}
		for ; count > 0 && d.err == nil; count-- {
			values = append(values, d.amf0Value())
		}
		return values
	case amf0TypedObject: // AMF0 §2.18: class name, then properties
		return amfTypedObject{Class: d.str(d.uint(2)), Props: d.amf0Props()}
	}
	return d.amf0Props() // AMF0 §2.5 anonymous object
}

// amf0Props reads key/value pairs up to the empty key followed by the
// object-end marker (AMF0 §2.11).
func (d *amfDecoder) amf0Props() amfObject {
	props := amfObject{}
	for d.err == nil {
		if rest := d.buf[d.pos:]; len(rest) >= 3 && rest[0] == 0 && rest[1] == 0 && rest[2] == amf0ObjectEnd {
			d.pos += 3
			return props
		}
		key := d.str(d.uint(2))
		props = append(props, amfProp{Key: key, Value: d.amf0Value()})
	}
	return nil
}

// ---- AMF3 decoding ----

func (d *amfDecoder) amf3Value() any {
	start := d.pos
	marker := byte(d.uint(1))
	if d.charge(1); d.err != nil {
		return nil
	}
	switch marker {
	case amf3Undefined: // AMF3 §3.2
		return amfUndefined{}
	case amf3Null: // AMF3 §3.3
		return nil
	case amf3False, amf3True: // AMF3 §3.4, §3.5
		return marker == amf3True
	case amf3Integer: // AMF3 §3.6: U29 holding a 29-bit two's complement integer
		n := int64(d.u29())
		if n >= 1<<28 {
			n -= 1 << 29
		}
		return float64(n)
	case amf3Double: // AMF3 §3.7
		return d.f64()
	case amf3String: // AMF3 §3.8
		return d.amf3String()
	case amf3XMLDocument, amf3XML, amf3Date, amf3Array, amf3Object, amf3ByteArray,
		amf3VectorInt, amf3VectorUint, amf3VectorDouble, amf3VectorObject, amf3Dictionary:
		// AMF3 §2.1: these share the object table; a U29 header with low bit 0
		// is a reference, otherwise the other 28 bits are a length or count.
		header := d.u29()
		if header&1 == 0 {
			return d.deref(d.objs3, header>>1, start)
		}
		return d.remember(&d.objs3, func() any { return d.amf3Complex(marker, header>>1, start) })
	}
	d.fail(start, errAMFMarker)
	return nil
}

func (d *amfDecoder) amf3Complex(marker byte, n uint64, start int) any {
	switch marker {
	case amf3XMLDocument, amf3XML: // AMF3 §3.9, §3.13: n is the byte length
		return amfXMLDocument(d.str(n))
	case amf3ByteArray: // AMF3 §3.14: n is the byte length
		b := d.take(n)
		d.charge(len(b))
		return append([]byte{}, b...)
	case amf3Date: // AMF3 §3.10: n unused, then double millis (UTC)
		return amfDate{Millis: d.f64()}
	}
	if !d.enter() {
		return nil
	}
	defer d.leave()
	switch marker {
	case amf3Array:
		return d.amf3Array(n)
	case amf3Object:
		return d.amf3Object(n, start)
	case amf3Dictionary:
		return d.amf3Dictionary(n)
	}
	return d.amf3Vector(marker, n)
}

// amf3String reads AMF3 §1.3.2 UTF-8-vr: a U29 whose low bit 0 means a
// string-table reference; non-empty inline strings join the table.
func (d *amfDecoder) amf3String() string {
	start := d.pos
	header := d.u29()
	if header&1 == 0 {
		if !d.inRange(header>>1, len(d.strs3), start) {
			return ""
		}
		s := d.strs3[header>>1]
		d.charge(len(s))
		return s
	}
	s := d.str(header >> 1)
	if s != "" {
		d.strs3 = append(d.strs3, s)
	}
	return s
}

// amf3Array is AMF3 §3.11: an associative part ending with the empty string,
// then n dense elements.
func (d *amfDecoder) amf3Array(n uint64) any {
	assoc := d.amf3DynamicProps(nil)
	if !d.need(n, 1) {
		return nil
	}
	dense := []any{}
	for ; n > 0 && d.err == nil; n-- {
		dense = append(dense, d.amf3Value())
	}
	if len(assoc) == 0 {
		return dense
	}
	for i, v := range dense {
		assoc = append(assoc, amfProp{Key: strconv.Itoa(i), Value: v})
	}
	return amfECMAArray(assoc)
}

// amf3DynamicProps appends name/value pairs until the empty name.
func (d *amfDecoder) amf3DynamicProps(props []amfProp) []amfProp {
	for d.err == nil {
		key := d.amf3String()
		if key == "" {
			break
		}
		props = append(props, amfProp{Key: key, Value: d.amf3Value()})
	}
	return props
}

// amf3Object is AMF3 §3.12. After the object-reference bit, n's low bit 0
// means a traits reference (index n>>1); otherwise bit 1 flags externalizable,
// bit 2 dynamic, and n>>3 counts the sealed member names after the class name.
func (d *amfDecoder) amf3Object(n uint64, start int) any {
	var traits amf3Traits
	switch {
	case n&1 == 0:
		if !d.inRange(n>>1, len(d.traits3), start) {
			return nil
		}
		traits = d.traits3[n>>1]
	case n&2 != 0:
		d.fail(start, errAMF3External)
		return nil
	default:
		traits = amf3Traits{class: d.amf3String(), dynamic: n&4 != 0}
		count := n >> 3
		if !d.need(count, 1) {
			return nil
		}
		for ; count > 0 && d.err == nil; count-- {
			traits.sealed = append(traits.sealed, d.amf3String())
		}
		d.traits3 = append(d.traits3, traits)
	}
	d.charge(len(traits.class))
	props := amfObject{}
	for _, name := range traits.sealed {
		d.charge(len(name)) // the name is repeated in every decoded object
		props = append(props, amfProp{Key: name, Value: d.amf3Value()})
	}
	if traits.dynamic {
		props = d.amf3DynamicProps(props)
	}
	if traits.class == "" {
		return props
	}
	return amfTypedObject{Class: traits.class, Props: props}
}

// amf3Vector is AMF3 §3.15: n items after a fixed-length flag byte; object
// vectors also carry an element type name. Items become float64 or any.
func (d *amfDecoder) amf3Vector(marker byte, n uint64) any {
	d.uint(1) // fixed-length flag
	size := uint64(4)
	switch marker {
	case amf3VectorDouble:
		size = 8
	case amf3VectorObject:
		size = 1
		d.amf3String() // element type name
	}
	if !d.need(n, size) {
		return nil
	}
	items := []any{}
	for ; n > 0 && d.err == nil; n-- {
		switch marker {
		case amf3VectorInt:
			items = append(items, float64(int32(d.uint(4))))
		case amf3VectorUint:
			items = append(items, float64(d.uint(4)))
		case amf3VectorDouble:
			items = append(items, d.f64())
		default:
			items = append(items, d.amf3Value())
		}
		d.charge(1)
	}
	return items
}

// amf3Dictionary is AMF3 §3.16: a weak-keys flag byte, then n key/value pairs
// whose keys may be any value; they are stringified to fit amfECMAArray.
func (d *amfDecoder) amf3Dictionary(n uint64) any {
	d.uint(1) // weak-keys flag
	if !d.need(n, 2) {
		return nil
	}
	entries := amfECMAArray{}
	for ; n > 0 && d.err == nil; n-- {
		key := d.amf3Value()
		entries = append(entries, amfProp{Key: fmt.Sprint(key), Value: d.amf3Value()})
	}
	return entries
}

// ---- AMF0 encoding ----

// amf0Append appends the AMF0 encoding of v. Supported: nil, bool, float64,
// int, int32, int64, uint32, string, amfUndefined, amfObject, amfECMAArray,
// []any, amfDate, amfXMLDocument, amfTypedObject, map[string]any (keys
// sorted). Anything else, values nested deeper than amfMaxDepth, and strings
// too long for their length field encode as null; object keys longer than
// 65535 bytes are skipped. It never emits references.
func amf0Append(dst []byte, v any) []byte { return amf0AppendValue(dst, v, 0) }

func amf0AppendAll(dst []byte, vs ...any) []byte {
	for _, v := range vs {
		dst = amf0Append(dst, v)
	}
	return dst
}

func amf0AppendValue(dst []byte, v any, depth int) []byte {
	switch v.(type) {
	case amfObject, amfECMAArray, []any, amfTypedObject, map[string]any:
		if depth >= amfMaxDepth {
			return append(dst, amf0Null)
		}
	}
	switch v := v.(type) {
	case float64:
		return binary.BigEndian.AppendUint64(append(dst, amf0Number), math.Float64bits(v))
	case int:
		return amf0AppendValue(dst, float64(v), depth)
	case int32:
		return amf0AppendValue(dst, float64(v), depth)
	case int64:
		return amf0AppendValue(dst, float64(v), depth)
	case uint32:
		return amf0AppendValue(dst, float64(v), depth)
	case bool:
		if v {
			return append(dst, amf0Boolean, 1)
		}
		return append(dst, amf0Boolean, 0)
	case string:
		if len(v) <= math.MaxUint16 {
			return append(binary.BigEndian.AppendUint16(append(dst, amf0String), uint16(len(v))), v...)
		}
		if uint64(len(v)) <= math.MaxUint32 {
			return append(binary.BigEndian.AppendUint32(append(dst, amf0LongString), uint32(len(v))), v...)
		}
	case amfUndefined:
		return append(dst, amf0Undefined)
	case amfObject:
		return amf0AppendProps(append(dst, amf0Object), v, depth)
	case amfECMAArray:
		dst = binary.BigEndian.AppendUint32(append(dst, amf0ECMAArray), uint32(len(v)))
		return amf0AppendProps(dst, v, depth)
	case []any:
		dst = binary.BigEndian.AppendUint32(append(dst, amf0StrictArray), uint32(len(v)))
		for _, item := range v {
			dst = amf0AppendValue(dst, item, depth+1)
		}
		return dst
	case amfDate:
		dst = binary.BigEndian.AppendUint64(append(dst, amf0Date), math.Float64bits(v.Millis))
		return binary.BigEndian.AppendUint16(dst, uint16(v.TimeZone))
	case amfXMLDocument:
		if uint64(len(v)) <= math.MaxUint32 {
			return append(binary.BigEndian.AppendUint32(append(dst, amf0XMLDocument), uint32(len(v))), v...)
		}
	case amfTypedObject:
		if len(v.Class) <= math.MaxUint16 {
			dst = binary.BigEndian.AppendUint16(append(dst, amf0TypedObject), uint16(len(v.Class)))
			return amf0AppendProps(append(dst, v.Class...), v.Props, depth)
		}
	case map[string]any:
		var props []amfProp
		for _, k := range slices.Sorted(maps.Keys(v)) {
			props = append(props, amfProp{Key: k, Value: v[k]})
		}
		return amf0AppendProps(append(dst, amf0Object), props, depth)
	}
	return append(dst, amf0Null)
}

// amf0AppendProps writes AMF0 §2.5 properties and the end marker (§2.11).
func amf0AppendProps(dst []byte, props []amfProp, depth int) []byte {
	for _, p := range props {
		if len(p.Key) > math.MaxUint16 {
			continue
		}
		dst = append(binary.BigEndian.AppendUint16(dst, uint16(len(p.Key))), p.Key...)
		dst = amf0AppendValue(dst, p.Value, depth+1)
	}
	return append(dst, 0, 0, amf0ObjectEnd)
}
