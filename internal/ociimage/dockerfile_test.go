package ociimage_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tenancy-dev/tenancy/internal/ociimage"
)

// The Dockerfile cannot be built here (no Docker), so these tests read it and check that each
// target says what internal/ociimage builds.

// instruction is one Dockerfile instruction: its keyword, its arguments (continuation lines
// joined) and the bodies of its here-documents.
type instruction struct {
	cmd      string
	args     string
	heredocs []string
}

// stage is a FROM and what follows it.
type stage struct {
	name, from   string
	instructions []instruction
}

var heredocStart = regexp.MustCompile(`<<-?["']?([A-Za-z_][A-Za-z0-9_]*)["']?`)

// parseDockerfile reads the stages of a Dockerfile: comments dropped, continuation lines
// joined, here-documents collected. Global ARGs before the first FROM are dropped.
func parseDockerfile(t *testing.T, path string) []stage {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var stages []stage
	sc := bufio.NewScanner(strings.NewReader(string(data)))
	var pending string
	for sc.Scan() {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || strings.HasPrefix(trimmed, "#") {
			continue
		}
		if strings.HasSuffix(trimmed, `\`) {
			pending += strings.TrimSuffix(trimmed, `\`) + " "
			continue
		}
		line, pending = pending+trimmed, ""
		cmd, args, _ := strings.Cut(line, " ")
		in := instruction{cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args)}
		for _, m := range heredocStart.FindAllStringSubmatch(in.args, -1) {
			var body strings.Builder
			for sc.Scan() && sc.Text() != m[1] {
				body.WriteString(sc.Text() + "\n")
			}
			in.heredocs = append(in.heredocs, body.String())
		}
		if in.cmd == "FROM" {
			words := slices.DeleteFunc(shellWords(t, in.args), func(w string) bool { return strings.HasPrefix(w, "--") })
			s := stage{from: words[0]}
			if len(words) == 3 && strings.EqualFold(words[1], "AS") {
				s.name = words[2]
			}
			stages = append(stages, s)
			continue
		}
		if len(stages) > 0 {
			stages[len(stages)-1].instructions = append(stages[len(stages)-1].instructions, in)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return stages
}

// shellWords splits s as a shell would: blanks separate words, quotes group them, a backslash
// escapes the next character (within double quotes, only \, " and $).
func shellWords(t *testing.T, s string) []string {
	t.Helper()
	var words []string
	var word strings.Builder
	inWord := false
	var quote rune
	runes := []rune(s)
	for i := 0; i < len(runes); i++ {
		r := runes[i]
		switch {
		case quote == '\'':
			if r == '\'' {
				quote = 0
			} else {
				word.WriteRune(r)
			}
		case quote == '"':
			switch {
			case r == '"':
				quote = 0
			case r == '\\' && i+1 < len(runes) && strings.ContainsRune(`\"$`, runes[i+1]):
				i++
				word.WriteRune(runes[i])
			default:
				word.WriteRune(r)
			}
		case r == '\'' || r == '"':
			quote, inWord = r, true
		case r == '\\' && i+1 < len(runes):
			i++
			word.WriteRune(runes[i])
			inWord = true
		case r == ' ' || r == '\t':
			if inWord {
				words = append(words, word.String())
				word.Reset()
				inWord = false
			}
		default:
			word.WriteRune(r)
			inWord = true
		}
	}
	if quote != 0 {
		t.Fatalf("unterminated quote in %q", s)
	}
	if inWord {
		words = append(words, word.String())
	}
	return words
}

var argReference = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)`)

// expand replaces $NAME and ${NAME} with the build arguments' values (empty when not given).
func expand(s string, args map[string]string) string {
	return argReference.ReplaceAllStringFunc(s, func(ref string) string {
		m := argReference.FindStringSubmatch(ref)
		return args[m[1]+m[2]]
	})
}

// flagValue is the value of --name=value among words, and the words that are not flags.
func flagValue(words []string, name string) (string, []string) {
	var value string
	var rest []string
	for _, w := range words {
		if v, ok := strings.CutPrefix(w, "--"+name+"="); ok {
			value = v
		} else if !strings.HasPrefix(w, "--") {
			rest = append(rest, w)
		}
	}
	return value, rest
}

// target is what a Dockerfile target amounts to: its stages from the root down, and what they
// set, with the build arguments expanded.
type target struct {
	chain      []stage
	user       string
	workdir    string
	entrypoint []string
	env        []string
	labels     map[string]string
	// files are the here-document files the chain copies from other stages, by their path in
	// the image.
	files map[string]string
	// copies are the image paths copied from each stage: copies["build"] = ["/manager"].
	copies map[string][]string
}

func resolve(t *testing.T, stages []stage, name string, args map[string]string) target {
	t.Helper()
	byName := map[string]stage{}
	for _, s := range stages {
		byName[s.name] = s
	}
	s, ok := byName[name]
	if !ok {
		t.Fatalf("the Dockerfile has no stage %q (docker build --target %s)", name, name)
	}
	chain := []stage{s}
	for {
		parent, ok := byName[chain[0].from]
		if !ok {
			break
		}
		chain = append([]stage{parent}, chain...)
	}
	tg := target{chain: chain, labels: map[string]string{}, files: map[string]string{}, copies: map[string][]string{}}
	for _, s := range chain {
		for _, in := range s.instructions {
			switch in.cmd {
			case "USER":
				tg.user = expand(in.args, args)
			case "WORKDIR":
				tg.workdir = expand(in.args, args)
			case "ENTRYPOINT":
				if err := json.Unmarshal([]byte(in.args), &tg.entrypoint); err != nil {
					t.Fatalf("stage %s: ENTRYPOINT %s is not the exec (JSON) form: %v", s.name, in.args, err)
				}
			case "ENV":
				for _, w := range shellWords(t, in.args) {
					tg.env = append(tg.env, expand(w, args))
				}
			case "LABEL":
				for _, w := range shellWords(t, in.args) {
					key, value, _ := strings.Cut(w, "=")
					tg.labels[key] = expand(value, args)
				}
			case "COPY":
				from, paths := flagValue(shellWords(t, in.args), "from")
				if from == "" || len(paths) != 2 {
					continue
				}
				src, dst := paths[0], paths[1]
				tg.copies[from] = append(tg.copies[from], dst)
				for _, other := range byName[from].instructions {
					if other.cmd != "COPY" || len(other.heredocs) != 1 {
						continue
					}
					_, words := flagValue(shellWords(t, other.args), "chmod")
					if rel, ok := strings.CutPrefix(words[len(words)-1], src); ok {
						tg.files[path.Join(dst, rel)] = other.heredocs[0]
					}
				}
			}
		}
	}
	if tg.labels["org.opencontainers.image.revision"] == "" {
		delete(tg.labels, "org.opencontainers.image.revision") // as ociimage leaves it out
	}
	return tg
}

func TestDockerfileMatchesImages(t *testing.T) {
	stages := parseDockerfile(t, filepath.Join("..", "..", "Dockerfile"))
	m := ociimage.Metadata{Version: "v1.2.3", Revision: "0123456789abcdef0123456789abcdef01234567"}
	args := map[string]string{"VERSION": m.Version, "REVISION": m.Revision, "TARGETOS": "linux", "TARGETARCH": "amd64"}
	for _, c := range ociimage.Components {
		t.Run(c.Binary, func(t *testing.T) {
			tg := resolve(t, stages, c.Binary, args)
			if root := tg.chain[0].from; root != "scratch" {
				t.Errorf("target %s starts FROM %s, want scratch", c.Binary, root)
			}
			if tg.user != ociimage.User {
				t.Errorf("target %s: USER %q, want %q", c.Binary, tg.user, ociimage.User)
			}
			if tg.workdir != "/" {
				t.Errorf("target %s: WORKDIR %q, want /", c.Binary, tg.workdir)
			}
			if diff := cmp.Diff(c.Entrypoint(), tg.entrypoint); diff != "" {
				t.Errorf("target %s: ENTRYPOINT (-ociimage +Dockerfile):\n%s", c.Binary, diff)
			}
			if diff := cmp.Diff(ociimage.Env, tg.env); diff != "" {
				t.Errorf("target %s: ENV (-ociimage +Dockerfile):\n%s", c.Binary, diff)
			}
			if diff := cmp.Diff(ociimage.Labels(c, m), tg.labels); diff != "" {
				t.Errorf("target %s: LABELs with VERSION=%s REVISION=%s (-ociimage +Dockerfile):\n%s", c.Binary, m.Version, m.Revision, diff)
			}
			for file, want := range map[string]string{"/etc/passwd": ociimage.Passwd, "/etc/group": ociimage.Group} {
				if got, ok := tg.files[file]; !ok || got != want {
					t.Errorf("target %s: %s is %q (copied: %t), want %q", c.Binary, file, got, ok, want)
				}
			}
			checkBuildStage(t, stages, tg, c, args)
		})
	}
}

// checkBuildStage checks that the target copies its binary to /<binary> from a stage that
// compiles it statically with the images' version stamp.
func checkBuildStage(t *testing.T, stages []stage, tg target, c ociimage.Component, args map[string]string) {
	t.Helper()
	var from string
	for s, dsts := range tg.copies {
		if slices.Contains(dsts, "/"+c.Binary) {
			from = s
		}
	}
	if from == "" {
		t.Fatalf("target %s copies nothing to /%s (copies %v)", c.Binary, c.Binary, tg.copies)
	}
	for _, s := range stages {
		if s.name != from {
			continue
		}
		for _, in := range s.instructions {
			if in.cmd != "RUN" || !strings.Contains(in.args, "go build") {
				continue
			}
			words := shellWords(t, in.args)
			ldflags := ""
			if i := slices.Index(words, "-ldflags"); i >= 0 && i+1 < len(words) {
				ldflags = expand(words[i+1], args)
			}
			if want := ociimage.LDFlags(args["VERSION"]); ldflags != want {
				t.Errorf("target %s: stage %s builds with -ldflags %q, want %q", c.Binary, from, ldflags, want)
			}
			for _, want := range []string{"CGO_ENABLED=0", "-trimpath", c.Package()} {
				if !slices.Contains(words, want) {
					t.Errorf("target %s: stage %s runs go build without %s: %s", c.Binary, from, want, in.args)
				}
			}
			return
		}
	}
	t.Errorf("stage %s, which target %s copies /%s from, runs no go build", from, c.Binary, c.Binary)
}

func TestDockerfileDefaultTargetIsTheManager(t *testing.T) {
	stages := parseDockerfile(t, filepath.Join("..", "..", "Dockerfile"))
	if last := stages[len(stages)-1].name; last != "manager" {
		t.Errorf("the last stage is %q: a plain docker build . would not build the manager", last)
	}
}

// TestDockerignoreKeepsWhatTheBinariesNeed checks that .dockerignore leaves out no Go file or
// embedded file of a package the commands import.
func TestDockerignoreKeepsWhatTheBinariesNeed(t *testing.T) {
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(root, ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	var patterns []*regexp.Regexp
	for line := range strings.SplitSeq(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasPrefix(line, "!") {
			t.Fatalf(".dockerignore: this test does not understand exceptions (%s)", line)
		}
		patterns = append(patterns, dockerignorePattern(line))
	}
	ignored := func(rel string) string {
		for p := rel; p != "."; p = path.Dir(p) {
			for _, re := range patterns {
				if re.MatchString(p) {
					return re.String()
				}
			}
		}
		return ""
	}
	if ignored("go.mod") != "" || ignored("go.sum") != "" {
		t.Error(".dockerignore leaves out go.mod or go.sum")
	}
	args := []string{"list", "-deps", "-f", `{{if .Module}}{{if .Module.Main}}{{.Dir}}{{range .GoFiles}} {{.}}{{end}}{{range .EmbedFiles}} {{.}}{{end}}{{end}}{{end}}`}
	for _, c := range ociimage.Components {
		args = append(args, c.Package())
	}
	cmd := exec.Command("go", args...)
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	checked := 0
	for line := range strings.SplitSeq(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		dir, err := filepath.Rel(root, fields[0])
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range fields[1:] {
			rel := filepath.ToSlash(filepath.Join(dir, f))
			if p := ignored(rel); p != "" {
				t.Errorf(".dockerignore leaves out %s (pattern %s), which %s build from", rel, p, strings.Join(args[4:], " and "))
			}
			checked++
		}
	}
	if checked == 0 {
		t.Fatal("go list named no file of the commands")
	}
}

// dockerignorePattern is a .dockerignore line as a regular expression over slash-separated paths
// relative to the context: * and ? within a path element, ** across elements.
func dockerignorePattern(line string) *regexp.Regexp {
	line = strings.TrimPrefix(path.Clean(line), "/")
	var re strings.Builder
	for i := 0; i < len(line); i++ {
		switch {
		case strings.HasPrefix(line[i:], "**/"):
			re.WriteString("(.*/)?")
			i += 2
		case strings.HasPrefix(line[i:], "**"):
			re.WriteString(".*")
			i++
		case line[i] == '*':
			re.WriteString("[^/]*")
		case line[i] == '?':
			re.WriteString("[^/]")
		default:
			re.WriteString(regexp.QuoteMeta(line[i : i+1]))
		}
	}
	return regexp.MustCompile(fmt.Sprintf("^%s$", re.String()))
}
