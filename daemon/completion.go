package daemon

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"

	"github.com/sinkd/sinkd/internal/cli"
)

// The scripts ask the binary itself (sinkd __complete WORDS…) so that
// completions follow the commands and flags of the installed version.
var completionScripts = map[string]string{
	"bash": `# bash completion for sinkd: source <(sinkd completion bash)
_sinkd() {
	local cur=${COMP_WORDS[COMP_CWORD]} IFS=$'\n'
	COMPREPLY=($(sinkd __complete "${COMP_WORDS[@]:1:COMP_CWORD}" 2>/dev/null))
	if [ ${#COMPREPLY[@]} -eq 0 ]; then COMPREPLY=($(compgen -f -- "$cur")); fi
}
complete -o filenames -F _sinkd sinkd
`,
	"zsh": `#compdef sinkd
# zsh completion for sinkd: source <(sinkd completion zsh)
_sinkd() {
	local -a c
	c=("${(@f)$(sinkd __complete "${(@)words[2,CURRENT]}" 2>/dev/null)}")
	if [[ -n ${c[1]} ]]; then compadd -a c; else _files; fi
}
compdef _sinkd sinkd
`,
	"fish": `# fish completion for sinkd: sinkd completion fish | source
complete -c sinkd -a '(sinkd __complete (commandline -opc)[2..-1] (commandline -ct) 2>/dev/null)'
`,
}

func cmdCompletion(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("sinkd completion", flag.ContinueOnError)
	fs.Usage = cli.Usage(fs, "Usage: sinkd completion bash|zsh|fish\n\nPrints a shell completion script for commands, subcommands and flags:\n  bash: source <(sinkd completion bash)\n  zsh:  source <(sinkd completion zsh)\n  fish: sinkd completion fish | source")
	if code, done := cli.Parse(fs, args, stdout, stderr); done {
		return code
	}
	script, ok := completionScripts[fs.Arg(0)]
	if fs.NArg() != 1 || !ok {
		fmt.Fprintln(stderr, "sinkd completion: give one shell: bash, zsh or fish")
		return cli.ExitUsage
	}
	fmt.Fprint(stdout, script)
	return cli.ExitOK
}

var flagLine = regexp.MustCompile(`(?m)^\s+-([A-Za-z][A-Za-z0-9-]*)`)

// complete prints, one per line, the completions of the last of words (the
// word being typed) after the words before it. Nothing printed means "a file".
func complete(words []string, stdout io.Writer) int {
	if len(words) == 0 {
		words = []string{""}
	}
	cur, before := words[len(words)-1], words[:len(words)-1]
	var candidates []string
	switch {
	case len(before) == 0 || len(before) == 1 && before[0] == "help":
		for name := range commands() {
			candidates = append(candidates, name)
		}
		candidates = append(candidates, "help")
	case before[0] == "dlq" && len(before) == 1:
		candidates = []string{"inspect", "redrive"}
	case before[0] == "completion" && len(before) == 1:
		candidates = []string{"bash", "zsh", "fish"}
	case strings.HasPrefix(cur, "-"):
		// A command's flags, read from its own help.
		var help bytes.Buffer
		Main(context.Background(), append(slices.Clone(before), "--help"), &help, io.Discard)
		for _, m := range flagLine.FindAllStringSubmatch(help.String(), -1) {
			candidates = append(candidates, "--"+m[1])
		}
	}
	slices.Sort(candidates)
	for _, c := range slices.Compact(candidates) {
		if strings.HasPrefix(c, cur) {
			fmt.Fprintln(stdout, c)
		}
	}
	return cli.ExitOK
}
