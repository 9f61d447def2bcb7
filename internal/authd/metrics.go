package authd

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tenancy-dev/tenancy/internal/version"
)

// metrics are authd's Prometheus metrics.
type metrics struct {
	registry      *prometheus.Registry
	requests      *prometheus.CounterVec
	latency       *prometheus.HistogramVec
	logins        *prometheus.CounterVec
	tokens        *prometheus.CounterVec
	reuseDetected prometheus.Counter
	auditDropped  prometheus.Counter
}

func newMetrics() *metrics {
	m := &metrics{
		registry: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tenancy_authd_requests_total", Help: "HTTP requests by route and status code.",
		}, []string{"route", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "tenancy_authd_request_duration_seconds", Help: "HTTP request latency by route.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"route"}),
		logins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tenancy_authd_logins_total", Help: "Password logins by result (ok, failed, throttled).",
		}, []string{"result"}),
		tokens: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tenancy_authd_tokens_issued_total", Help: "Access tokens issued by grant.",
		}, []string{"grant"}),
		reuseDetected: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tenancy_authd_refresh_reuse_detected_total", Help: "Rotated refresh tokens presented again; each revoked its family.",
		}),
		auditDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tenancy_authd_audit_rows_dropped_total", Help: "Audit rows dropped because the queue to the database was full.",
		}),
	}
	m.registry.MustRegister(m.requests, m.latency, m.logins, m.tokens, m.reuseDetected, m.auditDropped,
		version.Collector("authd"), collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// MetricsHandler serves the Prometheus metrics, on a listener of their own: authd's main port
// faces browsers and the Internet.
func (s *Server) MetricsHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.metrics.registry, promhttp.HandlerOpts{}))
	return mux
}
