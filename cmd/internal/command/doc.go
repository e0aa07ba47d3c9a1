// Package command holds what the persist commands share around their own
// work: how a command line and the environment become flag values, how
// --help lists them, and how the result of a run becomes a message and an
// exit status.
//
// A command's main is one line, [Main] with the command's name and its run
// function; tests call run directly. The run function builds a
// [flag.FlagSet], hands it to [Parse] with the command's environment prefix,
// and on [ErrHelp] writes the help with [PrintUsage]. Every flag can be set
// by the variable [EnvName] names, and a flag on the command line wins over
// it. A bad flag, value or variable is a [UsageError], made with [Usagef],
// which [ExitCode] maps to status 2 and [Main] follows with a pointer to
// --help; a bad duration, number or boolean says what a valid one looks
// like.
//
// [Version] describes a binary's build, the same way for the worker's start
// line (its own build) and the bench's report (the worker it measures).
// Every command answers --version (no flag of its own, so no variable sets
// it): [Parse] returns [ErrVersion], and [PrintVersion] writes the line,
// from the run function or from [Main].
package command
