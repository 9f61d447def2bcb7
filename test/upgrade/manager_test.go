package upgrade_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/tenancy-dev/tenancy/internal/testenv"
)

// leaseName is the manager's leader-election Lease (--leader-elect), in operatorNamespace.
const leaseName = "manager.tenancy.dev"

// manager is a manager process with its metrics endpoint.
type manager struct {
	*testenv.Process
	metricsURL string
}

// startManager runs bin (a cmd/manager) as the operator's service account, with leader election
// and its webhooks on webhookPort with a self-signed certificate, logging JSON so that the test
// can read what it says. It stops with the spec, and shows its log when the spec failed.
func (w *world) startManager(name, bin string, webhookPort int) *manager {
	GinkgoHelper()
	metricsPort := freePort()
	args := []string{
		"--kubeconfig=" + w.managerKubeconfig, "--database-url=" + w.suite.DatabaseURL,
		fmt.Sprintf("--metrics-bind-address=127.0.0.1:%d", metricsPort), "--health-probe-bind-address=127.0.0.1:0",
		"--webhook-self-signed", "--webhook-host=127.0.0.1", fmt.Sprintf("--webhook-port=%d", webhookPort),
		"--webhook-cert-dir=" + filepath.Join(w.dir, name+"-webhook-certs"),
		"--namespace=" + operatorNamespace, "--leader-elect", "--public-url=http://127.0.0.1:8090",
		"--zap-encoder=json",
	}
	p, err := testenv.StartProcess(name, filepath.Join(w.dir, name+".log"), bin, args...)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() {
		_ = p.Stop(30 * time.Second)
		if CurrentSpecReport().Failed() {
			GinkgoWriter.Printf("\n===== %s (last 150 lines of %s) =====\n%s\n", p.Name, p.LogPath, lastLines(p.Log(), 150))
		}
	})
	return &manager{Process: p, metricsURL: fmt.Sprintf("http://127.0.0.1:%d/metrics", metricsPort)}
}

// expectRunning fails when the process has ended.
func (m *manager) expectRunning(g Gomega) {
	exited, err := m.Exited()
	g.Expect(exited).To(BeFalse(), "%s exited (%v); the end of its log:\n%s", m.Name, err, lastLines(m.Log(), 30))
}

// logEntries are the JSON lines of the manager's log whose msg is msg.
func (m *manager) logEntries(msg string) []map[string]any {
	var entries []map[string]any
	for line := range strings.Lines(m.Log()) {
		entry := map[string]any{}
		if json.Unmarshal([]byte(line), &entry) == nil && entry["msg"] == msg {
			entries = append(entries, entry)
		}
	}
	return entries
}

// migrationsApplied is how many migrations the manager applied at its start, from its log line
// "Database schema migrated"; ok is false until it has logged it.
func (m *manager) migrationsApplied() (applied int, ok bool) {
	entries := m.logEntries("Database schema migrated")
	if len(entries) == 0 {
		return 0, false
	}
	n, _ := entries[0]["applied"].(float64)
	return int(n), true
}

// leads reports whether the manager holds the Lease, from controller-runtime's
// leader_election_master_status.
func (m *manager) leads(ctx context.Context) (bool, error) {
	samples, err := metrics(ctx, m.metricsURL)
	if err != nil {
		return false, err
	}
	return samples[fmt.Sprintf(`leader_election_master_status{name=%q}`, leaseName)] == 1, nil
}

// metrics reads a manager's Prometheus metrics: sample name with labels → value.
func metrics(ctx context.Context, url string) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	samples := map[string]float64{}
	scanner := bufio.NewScanner(resp.Body)
	scanner.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for scanner.Scan() {
		line := scanner.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			samples[line[:i]] = v
		}
	}
	return samples, scanner.Err()
}

// reconciles is how many reconciles a controller has finished, whatever their result.
func reconciles(samples map[string]float64, controller string) float64 {
	total := 0.0
	for _, result := range []string{"success", "error", "requeue", "requeue_after"} {
		total += samples[fmt.Sprintf(`controller_runtime_reconcile_total{controller=%q,result=%q}`, controller, result)]
	}
	return total
}

// expectPassDone checks that m has reconciled at least want[controller] objects of each
// controller, and that its queues are empty and its workers idle: it has been over every object.
func (m *manager) expectPassDone(g Gomega, ctx context.Context, want map[string]int) {
	samples, err := metrics(ctx, m.metricsURL)
	g.Expect(err).NotTo(HaveOccurred(), "reading the metrics of %s", m.Name)
	for controller, n := range want {
		g.Expect(reconciles(samples, controller)).To(BeNumerically(">=", n), "%s: reconciles of %s", m.Name, controller)
		g.Expect(samples[fmt.Sprintf(`workqueue_depth{controller=%q,name=%q}`, controller, controller)]).
			To(BeZero(), "%s: the queue of %s", m.Name, controller)
		g.Expect(samples[fmt.Sprintf(`controller_runtime_active_workers{controller=%q}`, controller)]).
			To(BeZero(), "%s: busy workers of %s", m.Name, controller)
	}
}

// writeFile writes a file into the world's directory and returns its path.
func (w *world) writeFile(name string, data []byte) string {
	GinkgoHelper()
	path := filepath.Join(w.dir, name)
	Expect(os.WriteFile(path, data, 0o600)).To(Succeed())
	return path
}

func lastLines(s string, n int) string {
	lines := strings.Split(s, "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
