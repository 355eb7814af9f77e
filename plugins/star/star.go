// Package star holds the Starlark library that master.star files load with
// load("@starforge//NAME.star", ...). The files are embedded in the
// binary, so a config that uses them needs nothing beside it.
package star

import (
	"embed"
	"io/fs"
)

//go:embed *.star
var files embed.FS

// Library is the library's file tree, for config.Options.Library.
var Library fs.FS = files
