package webui

import (
	"cmp"
	"context"
	"maps"
	"math"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/starforge/starforge/master/result"
	"github.com/starforge/starforge/master/store"
)

// This file implements Buildbot's query conventions for the API's
// collections, over their JSON representations:
//
//	field=a&field=b (or field=a,b)    only these fields in each item
//	name=v, name__eq=v                 equal (several values: any of them)
//	name__ne=v                         not equal (several values: none of them)
//	name__lt, __le, __gt, __ge         compare (numbers, times, strings)
//	name__contains=v                   substring of a string, element of a list
//	name__in=v&name__in=w, __notin     any of, none of
//	order=a&order=-b (or order=a,-b)   sort keys, "-" for descending
//	limit=N, offset=N                  a page of the result
//
// Small collections (builders, workers, schedulers, steps of a build...)
// are read whole and filtered, ordered and paged here. Large ones
// (builds, build requests, buildsets, changes, source stamps) are read
// from the store in id order, a keyset page at a time; their indexed
// filters go to SQL, and the others are applied here to at most a bounded
// number of rows (see scanList).

// fieldKind is how filters read a field's values and compare them.
type fieldKind uint8

const (
	kindInt     fieldKind = iota + 1
	kindID                // a positive integer
	kindNumber            // a float; times are unix seconds
	kindString            // compared byte-wise
	kindBool              // true, false, 1, 0, yes, no, on, off
	kindStrings           // a list of strings: contains only
	kindInts              // a list of integers: contains only
	kindOther             // objects and lists of objects: field= only
)

func (k fieldKind) scalar() bool { return k >= kindInt && k <= kindBool }

// apiField is one field of a resource's JSON items.
type apiField struct {
	name  string
	index int // of the struct field
	kind  fieldKind
}

// resource describes the items of one API collection: their JSON fields,
// found from the struct tags of the item type.
type resource struct {
	name   string // the collection's key ("builds")
	typ    reflect.Type
	fields map[string]*apiField
	names  []string // in declaration order, for messages
}

var resources sync.Map // reflect.Type → *resource

// resourceOf returns the resource of item type T, collection name.
func resourceOf[T any](name string) *resource {
	t := reflect.TypeFor[T]()
	if r, ok := resources.Load(t); ok {
		return r.(*resource)
	}
	r := &resource{name: name, typ: t, fields: map[string]*apiField{}}
	for i := range t.NumField() {
		sf := t.Field(i)
		tag, _, _ := strings.Cut(sf.Tag.Get("json"), ",")
		if tag == "" || tag == "-" || !sf.IsExported() {
			continue
		}
		r.fields[tag] = &apiField{name: tag, index: i, kind: kindOf(tag, sf.Type)}
		r.names = append(r.names, tag)
	}
	actual, _ := resources.LoadOrStore(t, r)
	return actual.(*resource)
}

var (
	unixTimeType   = reflect.TypeFor[unixTime]()
	resultJSONType = reflect.TypeFor[resultJSON]()
)

func kindOf(name string, t reflect.Type) fieldKind {
	switch t {
	case unixTimeType:
		return kindNumber
	case resultJSONType:
		return kindInt
	}
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int32, reflect.Int64:
		if strings.HasSuffix(name, "id") {
			return kindID
		}
		return kindInt
	case reflect.Float64:
		return kindNumber
	case reflect.String:
		return kindString
	case reflect.Bool:
		return kindBool
	case reflect.Slice:
		switch t.Elem().Kind() {
		case reflect.String:
			return kindStrings
		case reflect.Int64, reflect.Int:
			return kindInts
		}
	}
	return kindOther
}

// value is field f of item v (a struct of the resource's type) as filters
// and orders see it: nil (JSON null), int64, float64, string, bool,
// []string, []int64, or for kindOther the field itself.
func (f *apiField) value(v reflect.Value) any {
	fv := v.Field(f.index)
	switch x := fv.Interface().(type) {
	case unixTime:
		t := time.Time(x)
		if t.IsZero() {
			return nil
		}
		return float64(t.UnixMilli()) / 1000
	case resultJSON:
		if result.Result(x) == result.None {
			return nil
		}
		return int64(x)
	}
	if fv.Kind() == reflect.Pointer {
		if fv.IsNil() {
			return nil
		}
		fv = fv.Elem()
	}
	switch fv.Kind() {
	case reflect.Int, reflect.Int32, reflect.Int64:
		return fv.Int()
	case reflect.Float64:
		return fv.Float()
	case reflect.String:
		return fv.String()
	case reflect.Bool:
		return fv.Bool()
	}
	return fv.Interface()
}

// Filter operators; for lists of values, eq means in and ne means notin.
var filterOps = []string{"eq", "ne", "lt", "le", "gt", "ge", "contains", "in", "notin"}

// filter is one condition of a query on one field.
type filter struct {
	param string // as the client wrote it, for messages
	f     *apiField
	op    string
	vals  []any // parsed for f's kind
	// inSQL is set when the store applies the filter; it is checked here
	// again all the same, which costs little and keeps the two in step.
	inSQL bool
}

// match reports whether the field value v passes the filter.
func (fl *filter) match(v any) bool {
	switch fl.op {
	case "eq", "in":
		return slices.ContainsFunc(fl.vals, func(x any) bool { return equal(v, x) })
	case "ne", "notin":
		return !slices.ContainsFunc(fl.vals, func(x any) bool { return equal(v, x) })
	case "contains":
		switch v := v.(type) {
		case string:
			return slices.ContainsFunc(fl.vals, func(x any) bool { return strings.Contains(v, x.(string)) })
		case []string:
			return slices.ContainsFunc(fl.vals, func(x any) bool { return slices.Contains(v, x.(string)) })
		case []int64:
			return slices.ContainsFunc(fl.vals, func(x any) bool { return slices.Contains(v, x.(int64)) })
		}
		return false
	}
	c, ok := compare(v, fl.vals[0])
	if !ok {
		return false // null is neither above nor below anything
	}
	switch fl.op {
	case "lt":
		return c < 0
	case "le":
		return c <= 0
	case "gt":
		return c > 0
	case "ge":
		return c >= 0
	}
	return false
}

func equal(a, b any) bool {
	c, ok := compare(a, b)
	return ok && c == 0
}

// compare orders two values of one kind; ok is false if either is null or
// their kinds differ.
func compare(a, b any) (int, bool) {
	switch a := a.(type) {
	case int64:
		switch b := b.(type) {
		case int64:
			return cmp.Compare(a, b), true
		case float64:
			return cmp.Compare(float64(a), b), true
		}
	case float64:
		switch b := b.(type) {
		case float64:
			return cmp.Compare(a, b), true
		case int64:
			return cmp.Compare(a, float64(b)), true
		}
	case string:
		if b, ok := b.(string); ok {
			return strings.Compare(a, b), true
		}
	case bool:
		if b, ok := b.(bool); ok {
			switch {
			case a == b:
				return 0, true
			case !a:
				return -1, true
			}
			return 1, true
		}
	}
	return 0, false
}

// orderKey is one key of order=.
type orderKey struct {
	f    *apiField
	desc bool
}

// listQuery is a parsed query of one collection.
type listQuery struct {
	res     *resource
	fields  []*apiField // field=; nil: every field
	filters []*filter
	order   []orderKey
	limit   int // 0: none given
	offset  int
	extra   url.Values // the endpoint's own parameters
}

// maxOffset bounds offset= on the large collections: deeper pages are
// reached with keyset bounds (before=, or id__lt / id__gt).
const maxOffset = 10_000

// parseList parses r's query for res. extra names the parameters the
// endpoint reads itself (before, running, ...): they are kept in
// listQuery.extra unchecked.
func parseList(r *http.Request, res *resource, extra ...string) (*listQuery, error) {
	q := &listQuery{res: res, extra: url.Values{}}
	query := r.URL.Query()
	// Sorted, so that the first bad parameter reported is always the same.
	for _, key := range slices.Sorted(maps.Keys(query)) {
		if err := q.parseParam(key, query[key], extra); err != nil {
			return nil, err
		}
	}
	return q, nil
}

func (q *listQuery) parseParam(key string, vals []string, extra []string) error {
	res := q.res
	switch key {
	case "field":
		for _, name := range splitList(vals) {
			f, ok := res.fields[name]
			if !ok {
				return errorf(http.StatusBadRequest, "field: %s have no field %q (fields: %s)", res.name, name, strings.Join(res.names, ", "))
			}
			if !slices.Contains(q.fields, f) {
				q.fields = append(q.fields, f)
			}
		}
		return nil
	case "order":
		for _, name := range splitList(vals) {
			desc := strings.HasPrefix(name, "-")
			f, ok := res.fields[strings.TrimPrefix(name, "-")]
			if !ok {
				return errorf(http.StatusBadRequest, "order: %s have no field %q (fields: %s)", res.name, strings.TrimPrefix(name, "-"), strings.Join(res.names, ", "))
			}
			if !f.kind.scalar() {
				return errorf(http.StatusBadRequest, "order: %s cannot be ordered by (it is a list or an object)", f.name)
			}
			q.order = append(q.order, orderKey{f: f, desc: desc})
		}
		return nil
	case "limit":
		p := &params{q: url.Values{"limit": vals}}
		if len(vals) > 1 {
			return errorf(http.StatusBadRequest, "limit: given %d times", len(vals))
		}
		q.limit = p.limit()
		return p.Err()
	case "offset":
		if len(vals) > 1 {
			return errorf(http.StatusBadRequest, "offset: given %d times", len(vals))
		}
		p := &params{q: url.Values{"offset": vals}}
		q.offset = int(p.intIn("offset", 0, math.MaxInt32, 0))
		return p.Err()
	}
	if slices.Contains(extra, key) {
		q.extra[key] = vals
		return nil
	}
	name, op := key, "eq"
	if f, ok := res.fields[key]; ok {
		return q.addFilter(key, f, op, vals)
	}
	if i := strings.LastIndex(key, "__"); i > 0 {
		name, op = key[:i], key[i+2:]
		f, ok := res.fields[name]
		if !ok {
			return errorf(http.StatusBadRequest, "%s: %s have no field %q (fields: %s)", key, res.name, name, strings.Join(res.names, ", "))
		}
		if !slices.Contains(filterOps, op) {
			return errorf(http.StatusBadRequest, "%s: unknown operator %q (operators: %s)", key, op, strings.Join(filterOps, ", "))
		}
		return q.addFilter(key, f, op, vals)
	}
	known := append([]string{"field", "order", "limit", "offset"}, extra...)
	return errorf(http.StatusBadRequest, "%s: unknown query parameter: %s have no field %q (fields: %s; other parameters: %s)",
		key, res.name, name, strings.Join(res.names, ", "), strings.Join(known, ", "))
}

// splitList reads the values of a list parameter, repeated or
// comma-separated.
func splitList(vals []string) []string {
	var out []string
	for _, v := range vals {
		for p := range strings.SplitSeq(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}

func (q *listQuery) addFilter(param string, f *apiField, op string, raw []string) error {
	switch {
	case f.kind == kindOther:
		return errorf(http.StatusBadRequest, "%s: %s cannot be filtered on (it is an object or a list of objects)", param, f.name)
	case f.kind == kindStrings || f.kind == kindInts:
		if op != "contains" {
			return errorf(http.StatusBadRequest, "%s: %s is a list: the only operator for it is contains", param, f.name)
		}
	case op == "contains" && f.kind != kindString:
		return errorf(http.StatusBadRequest, "%s: contains needs a string or list field; %s is not one", param, f.name)
	case f.kind == kindBool && op != "eq" && op != "ne" && op != "in" && op != "notin":
		return errorf(http.StatusBadRequest, "%s: %s is true or false: use eq or ne", param, f.name)
	}
	switch op {
	case "lt", "le", "gt", "ge":
		if len(raw) != 1 {
			return errorf(http.StatusBadRequest, "%s: given %d times; %s takes one value", param, len(raw), op)
		}
	}
	fl := &filter{param: param, f: f, op: op}
	for _, s := range raw {
		v, err := parseValue(f.kind, s)
		if err != nil {
			return errorf(http.StatusBadRequest, "%s: want %s, got %q", param, err.Error(), s)
		}
		fl.vals = append(fl.vals, v)
	}
	q.filters = append(q.filters, fl)
	return nil
}

// valueError names what a value should have been.
type valueError string

func (e valueError) Error() string { return string(e) }

// parseValue reads a filter value for a field of kind k (the element kind
// for lists).
func parseValue(k fieldKind, s string) (any, error) {
	switch k {
	case kindID:
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil || v < 1 {
			return nil, valueError("a positive integer")
		}
		return v, nil
	case kindInt, kindInts:
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return nil, valueError("an integer")
		}
		return v, nil
	case kindNumber:
		v, err := strconv.ParseFloat(s, 64)
		if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, valueError("a number")
		}
		return v, nil
	case kindBool:
		switch strings.ToLower(s) {
		case "1", "true", "yes", "on":
			return true, nil
		case "0", "false", "no", "off":
			return false, nil
		}
		return nil, valueError("true or false")
	}
	return s, nil
}

// goFilters reports whether some filter is left for Go to apply.
func (q *listQuery) goFilters() bool {
	return slices.ContainsFunc(q.filters, func(f *filter) bool { return !f.inSQL })
}

// match reports whether item v passes every filter.
func (q *listQuery) match(v reflect.Value) bool {
	for _, fl := range q.filters {
		if !fl.match(fl.f.value(v)) {
			return false
		}
	}
	return true
}

// sort orders items by q's order keys; stable, so items equal on every
// key keep their order. Nulls come first, as in SQL's ascending order.
func sortItems[T any](q *listQuery, items []T) {
	if len(q.order) == 0 {
		return
	}
	slices.SortStableFunc(items, func(a, b T) int {
		va, vb := reflect.ValueOf(a), reflect.ValueOf(b)
		for _, k := range q.order {
			x, y := k.f.value(va), k.f.value(vb)
			c, ok := compare(x, y)
			if !ok {
				switch {
				case x == nil && y == nil:
					c = 0
				case x == nil:
					c = -1
				default:
					c = 1
				}
			}
			if k.desc {
				c = -c
			}
			if c != 0 {
				return c
			}
		}
		return 0
	})
}

// listMeta is the "meta" of a list reply.
type listMeta struct {
	Total int `json:"total"` // number of items in this reply
	// Truncated is set when a large collection's filters were applied to
	// as many rows as they may be and the reply may lack items further
	// on; Resume is the id to continue from (before= or id__lt= newest
	// first, id__gt= oldest first).
	Truncated bool  `json:"truncated,omitempty"`
	Resume    int64 `json:"resume,omitempty"`
}

// writeItems writes items, already filtered and paged, projected on q's
// fields.
func writeItems[T any](w http.ResponseWriter, q *listQuery, items []T, m listMeta) {
	m.Total = len(items)
	if q == nil || q.fields == nil {
		if items == nil {
			items = []T{}
		}
		writeJSON(w, http.StatusOK, map[string]any{q.res.name: items, "meta": m})
		return
	}
	out := make([]map[string]any, len(items))
	for i, it := range items {
		v := reflect.ValueOf(it)
		obj := make(map[string]any, len(q.fields))
		for _, f := range q.fields {
			obj[f.name] = v.Field(f.index).Interface()
		}
		out[i] = obj
	}
	writeJSON(w, http.StatusOK, map[string]any{q.res.name: out, "meta": m})
}

// writeSmallList answers a query of a small collection: all its items are
// in items, in their natural order; they are filtered, ordered and paged
// here.
func writeSmallList[T any](w http.ResponseWriter, q *listQuery, items []T) {
	kept := items[:0:0]
	for _, it := range items {
		if q.match(reflect.ValueOf(it)) {
			kept = append(kept, it)
		}
	}
	sortItems(q, kept)
	kept = kept[min(q.offset, len(kept)):]
	if q.limit > 0 && len(kept) > q.limit {
		kept = kept[:q.limit]
	}
	writeItems(w, q, kept, listMeta{})
}

// parseOne parses the query of a single item's endpoint: field= only.
func parseOne(r *http.Request, res *resource) (*listQuery, error) {
	q, err := parseList(r, res)
	if err != nil {
		return nil, err
	}
	if len(q.filters) > 0 || q.order != nil || q.limit != 0 || q.offset != 0 {
		return nil, errorf(http.StatusBadRequest, "%s: a single item takes field= only", firstParam(r, "field"))
	}
	return q, nil
}

// firstParam is the first query parameter of r other than skip, in name
// order, for messages.
func firstParam(r *http.Request, skip string) string {
	var names []string
	for k := range r.URL.Query() {
		if k != skip {
			names = append(names, k)
		}
	}
	slices.Sort(names)
	if len(names) == 0 {
		return "query"
	}
	return names[0]
}

// writeOne writes one item as a one-element collection, projected on q's
// fields.
func writeOne[T any](w http.ResponseWriter, q *listQuery, item T) {
	writeItems(w, q, []T{item}, listMeta{})
}

// largeList says how to read a large collection from the store.
type largeList[T any] struct {
	// idField is the field holding the store's id, which orders the
	// collection and bounds its keyset pages.
	idField string
	// sameOrder are fields whose order is the id's for this query (the
	// number of one builder's builds): order= may name them too.
	sameOrder []string
	// scanCap bounds the rows one request reads when filters are left for
	// Go to apply.
	scanCap int
	// fetch reads one keyset page with the SQL filters applied.
	fetch func(ctx context.Context, p store.Page) ([]T, error)
	id    func(T) int64
	// decorate, if set, completes the items of the reply before they are
	// written (with what filters do not need, such as properties).
	decorate func(ctx context.Context, items []T) error
}

// testScanCap, when positive, replaces every collection's scan cap, so
// that tests reach it with a few rows.
var testScanCap int

// defaultLimit is the page of a large collection when limit= is absent,
// as the store's.
const defaultLimit = 100

// keyset turns q's filters on idField (and before=) into a keyset page in
// the order q asks for, marking them as done by SQL. It refuses an order
// the store cannot give: a large collection is never sorted whole.
func (q *listQuery) keyset(idField string, sameOrder []string) (store.Page, error) {
	var p store.Page
	switch {
	case len(q.order) > 1:
		return p, errorf(http.StatusBadRequest, "order: %s can be ordered by one key only, %s or -%s (history is too long to sort)", q.res.name, idField, idField)
	case len(q.order) == 1:
		k := q.order[0]
		if k.f.name != idField && !slices.Contains(sameOrder, k.f.name) {
			return p, errorf(http.StatusBadRequest, "order: %s can be ordered by %s or -%s only, not %s (history is too long to sort)", q.res.name, idField, idField, k.f.name)
		}
		p.Ascending = !k.desc
	}
	tighten := func(before, after int64) {
		if before > 0 && (p.Before == 0 || before < p.Before) {
			p.Before = before
		}
		if after > p.After {
			p.After = after
		}
	}
	for _, fl := range q.filters {
		if fl.f.name != idField {
			continue
		}
		v, _ := fl.vals[0].(int64)
		switch {
		case fl.op == "lt":
			tighten(v, 0)
		case fl.op == "le":
			tighten(v+1, 0)
		case fl.op == "gt":
			tighten(0, v)
		case fl.op == "ge":
			tighten(0, v-1)
		case (fl.op == "eq" || fl.op == "in") && len(fl.vals) == 1:
			tighten(v+1, v-1)
		default:
			continue
		}
		fl.inSQL = true
	}
	if b := q.extra.Get("before"); b != "" {
		pp := &params{q: q.extra}
		tighten(pp.id("before"), 0)
		if err := pp.Err(); err != nil {
			return p, err
		}
	}
	return p, nil
}

// sqlEq returns the single value of an eq filter on field name, marking
// it as done by SQL, or 0 if there is none.
func (q *listQuery) sqlEq(name string) int64 {
	for _, fl := range q.filters {
		if fl.f.name == name && (fl.op == "eq" || fl.op == "in") && len(fl.vals) == 1 {
			if v, ok := fl.vals[0].(int64); ok {
				fl.inSQL = true
				return v
			}
		}
	}
	return 0
}

// sqlBool returns the value of an eq filter on a boolean field name with
// one value, marking it as done by SQL if want says the store can apply
// that value.
func (q *listQuery) sqlBool(name string, want bool) bool {
	for _, fl := range q.filters {
		if fl.f.name == name && (fl.op == "eq" || fl.op == "in") && len(fl.vals) == 1 && fl.vals[0] == want {
			fl.inSQL = true
			return true
		}
	}
	return false
}

// scanList answers a query of a large collection. It reads keyset pages
// in id order with the SQL filters applied and keeps the rows the other
// filters accept, until it has offset+limit of them or the store has no
// more. With filters left for Go, it reads at most scanCap rows (or
// offset+limit, if more); if that is not enough, the reply says so in
// meta.truncated, with meta.resume the id to continue from.
func scanList[T any](ctx context.Context, w http.ResponseWriter, q *listQuery, l largeList[T]) error {
	page, err := q.keyset(l.idField, l.sameOrder)
	if err != nil {
		return err
	}
	if q.offset > maxOffset {
		return errorf(http.StatusBadRequest, "offset: want at most %d on %s, got %d (continue with before= or %s__lt= instead)", maxOffset, q.res.name, q.offset, l.idField)
	}
	limit := q.limit
	if limit == 0 {
		limit = defaultLimit
	}
	needed := q.offset + limit
	budget := needed
	if q.goFilters() {
		scanCap := l.scanCap
		if testScanCap > 0 {
			scanCap = testScanCap
		}
		budget = max(scanCap, needed)
	}
	// Each read asks for one row more than it examines, to know whether
	// the store has more: the store's pages hold at most maxLimit rows.
	maxBatch := maxLimit - 1
	batch := min(max(needed, 50), maxBatch)
	var out []T
	skipped, read := 0, 0
	var last int64
	for read < budget {
		n := min(batch, budget-read)
		p := page
		p.Limit = n + 1
		rows, err := l.fetch(ctx, p)
		if err != nil {
			return err
		}
		more := len(rows) > n
		if more {
			rows = rows[:n]
		}
		read += len(rows)
		for _, row := range rows {
			if !q.match(reflect.ValueOf(row)) {
				continue
			}
			if skipped < q.offset {
				skipped++
				continue
			}
			out = append(out, row)
			if len(out) == limit {
				return l.write(ctx, w, q, out, listMeta{})
			}
		}
		if !more {
			return l.write(ctx, w, q, out, listMeta{})
		}
		last = l.id(rows[len(rows)-1])
		if page.Ascending {
			page.After = last
		} else {
			page.Before = last
		}
		batch = min(batch*2, maxBatch)
	}
	return l.write(ctx, w, q, out, listMeta{Truncated: true, Resume: last})
}

func (l *largeList[T]) write(ctx context.Context, w http.ResponseWriter, q *listQuery, items []T, m listMeta) error {
	if l.decorate != nil {
		if err := l.decorate(ctx, items); err != nil {
			return err
		}
	}
	writeItems(w, q, items, m)
	return nil
}
