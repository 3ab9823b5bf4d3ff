"""Operations: Prometheus metrics (``monitoring.metrics``), the Grafana dashboard and alert rules."""

from monitoring.metrics import METRICS, TalkfarmMetrics, metrics, start_http_server

__all__ = ["METRICS", "TalkfarmMetrics", "metrics", "start_http_server"]
