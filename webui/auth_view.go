package webui

import (
	"net/http"
	"reflect"
)

// The pages learn who reads them without every handler passing it
// along: page() wraps the ResponseWriter with the reader's viewer, and
// render() sets the Viewer field that the page data's layout carries.

// viewerWriter is a page's ResponseWriter with its reader.
type viewerWriter struct {
	http.ResponseWriter
	v viewer
}

// Unwrap lets http.ResponseController reach the connection.
func (w *viewerWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func withViewer(w http.ResponseWriter, r *http.Request) http.ResponseWriter {
	if _, ok := w.(*viewerWriter); ok {
		return w
	}
	return &viewerWriter{ResponseWriter: w, v: viewerOf(r)}
}

var layoutType = reflect.TypeFor[layout]()

// setViewer returns data with its layout's Viewer set from w's reader.
// data is a page's data: a struct (or pointer to one) that embeds
// layout; anything else is returned as it is.
func setViewer(w http.ResponseWriter, data any) any {
	vw, ok := w.(*viewerWriter)
	if !ok {
		return data
	}
	v := reflect.ValueOf(data)
	if v.Kind() == reflect.Pointer && !v.IsNil() && v.Elem().Kind() == reflect.Struct {
		if f := v.Elem().FieldByName("layout"); f.IsValid() && f.Type() == layoutType {
			f.FieldByName("Viewer").Set(reflect.ValueOf(vw.v))
		}
		return data
	}
	if v.Kind() != reflect.Struct {
		return data
	}
	if l, ok := data.(layout); ok {
		l.Viewer = vw.v
		return l
	}
	sf, ok := v.Type().FieldByName("layout")
	if !ok || sf.Type != layoutType || len(sf.Index) != 1 {
		return data
	}
	cp := reflect.New(v.Type()).Elem()
	cp.Set(v)
	cp.Field(sf.Index[0]).FieldByName("Viewer").Set(reflect.ValueOf(vw.v))
	return cp.Interface()
}
