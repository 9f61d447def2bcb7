package testenv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/tenancy-dev/tenancy/internal/version"
)

// BuildBinaries builds the repository's commands (e.g. "./cmd/manager") into dir, stamped with
// ReleaseVersion as `make build` does, with the race detector when race is set.
func BuildBinaries(ctx context.Context, dir string, race bool, packages ...string) error {
	release, err := ReleaseVersion()
	if err != nil {
		return err
	}
	args := []string{"build", "-o", dir + string(filepath.Separator),
		"-ldflags=" + version.LinkerFlag(release)}
	if race {
		args = append(args, "-race")
	}
	cmd := exec.CommandContext(ctx, "go", append(args, packages...)...)
	cmd.Dir = RepoRoot()
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %v: %w\n%s", packages, err, out)
	}
	return nil
}

// ReleaseVersion is the version the VERSION file names, as the images are tagged (v0.1.0).
func ReleaseVersion() (string, error) {
	data, err := os.ReadFile(filepath.Join(RepoRoot(), "VERSION"))
	if err != nil {
		return "", err
	}
	return "v" + strings.TrimSpace(string(data)), nil
}

// Process is a long-running binary that a test started, with its output in a log file. A test
// may kill it as a crash would, or stop it as Kubernetes would.
type Process struct {
	// Name says what the process is, in errors.
	Name string
	// LogPath holds the process' standard output and error.
	LogPath string
	cmd     *exec.Cmd
	done    chan struct{}
	waitErr error
}

// StartProcess runs bin with args, appending its output to logPath.
func StartProcess(name, logPath, bin string, args ...string) (*Process, error) {
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		_ = logFile.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &Process{Name: name, LogPath: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		_ = logFile.Close()
		close(p.done)
	}()
	return p, nil
}

// Pid is the process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Exited reports whether the process has ended, and how.
func (p *Process) Exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.waitErr
	default:
		return false, nil
	}
}

// Kill ends the process with SIGKILL, as a crash or an evicted pod would end, and waits for it.
func (p *Process) Kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// Stop asks the process to end with SIGTERM and kills it if it has not ended within grace. It
// returns the process' exit error, if any, unless the process had to be killed.
func (p *Process) Stop(grace time.Duration) error {
	if exited, err := p.Exited(); exited {
		return err
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return p.waitErr
	case <-time.After(grace):
		p.Kill()
		return fmt.Errorf("%s did not stop within %s of SIGTERM and was killed", p.Name, grace)
	}
}

// Log returns what the process has written so far.
func (p *Process) Log() string {
	data, err := os.ReadFile(p.LogPath)
	if err != nil {
		return fmt.Sprintf("(reading %s: %v)", p.LogPath, err)
	}
	return string(data)
}

// FreePort returns a TCP port that is free on loopback now.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// StartControllerManager runs kube-controller-manager against env with only the garbage
// collector and the namespace controller, so that deleting a namespace deletes what it holds (and
// waits for their finalizers) as in a cluster. kubeconfig must be a cluster admin's.
func StartControllerManager(env *envtest.Environment, kubeconfig, logPath string) (*Process, error) {
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	bin := filepath.Join(env.BinaryAssetsDirectory, "kube-controller-manager")
	if _, err := os.Stat(bin); err != nil {
		return nil, errors.Join(errors.New("kube-controller-manager is missing: run hack/setup-envtest.sh"), err)
	}
	return StartProcess("kube-controller-manager", logPath, bin,
		"--kubeconfig="+kubeconfig, "--controllers=garbagecollector,namespace", "--leader-elect=false",
		"--bind-address=127.0.0.1", "--secure-port="+strconv.Itoa(port))
}
