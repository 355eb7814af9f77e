// Package config turns a master.star file into a typed, validated Config.
//
// master.star is Starlark (https://github.com/google/starlark-go) with a set
// of predeclared functions that declare the master's settings, workers,
// builders, steps and schedulers:
//
//	worker("linux-1", "secret", max_builds=2)
//	builder("proj", workers=["linux-1"], steps=[
//	    shell("make -j4", name="build"),
//	    shell(["make", "test"], name="test", halt_on_failure=True, timeout="20m"),
//	])
//	force_scheduler("force", builders=["proj"])
//
// Evaluation is hermetic: there is no clock, no file or network access
// except load() of other configuration files, and print() goes to
// Options.Print. docs/config.md is the user reference.
//
// # Structure
//
// The loader is built to grow:
//
//   - builtins.go holds the table of predeclared functions; each is a small
//     function of a *call, which binds arguments by a signature and converts
//     them (args.go), reporting problems instead of stopping.
//   - steps.go holds the registry of step kinds and the parser of the
//     options common to all steps.
//   - validate.go checks what needs the whole configuration: unique names
//     and references between declarations.
//   - load.go runs files, resolves load() and turns Starlark errors into
//     positioned Errors (errors.go).
//
// Problems in the arguments of a builtin do not stop execution: as in
// Buildbot's checkconfig, the user gets every mistake in one run. A Starlark
// runtime error (such as 1 + "a", or fail()) does stop it.
package config
