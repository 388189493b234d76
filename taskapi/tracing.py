"""Optional OpenTelemetry traces, sent over OTLP/HTTP to ``TASKAPI_OTEL_ENDPOINT``.

``create_app`` imports this module only when the endpoint is set, so without it nothing of
OpenTelemetry is imported or installed. Each gunicorn worker builds its app after the fork,
so each sets up its own tracer provider and export thread here, never the master.

Instrumented: Flask (a span per request, with the request id as ``taskapi.request_id``),
SQLAlchemy (a span per statement of the app's engine) and Redis (the rate-limit counters'
client). The provider is passed to each instrumentation rather than installed globally.
"""

from __future__ import annotations

from flask import Flask, g
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.flask import FlaskInstrumentor
from opentelemetry.instrumentation.redis import RedisInstrumentor
from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from sqlalchemy import Engine

from taskapi.limits import Counters
from taskapi.settings import Settings

TRACES_PATH = "/v1/traces"
REQUEST_ID_ATTRIBUTE = "taskapi.request_id"


def traces_url(endpoint: str) -> str:
    """The collector's traces URL: the base URL plus ``/v1/traces`` (unless already there)."""
    endpoint = endpoint.rstrip("/")
    return endpoint if endpoint.endswith(TRACES_PATH) else endpoint + TRACES_PATH


def install_tracing(app: Flask, settings: Settings, *, engine: Engine, counters: Counters) -> None:
    """Trace this app's requests, its engine's statements and its Redis commands.

    The provider is kept in ``app.extensions["taskapi_tracing"]`` (tests flush it); it is
    shut down, flushing what is left, when the process exits.
    """
    assert settings.otel_endpoint is not None
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: settings.otel_service_name}))
    provider.add_span_processor(
        BatchSpanProcessor(OTLPSpanExporter(endpoint=traces_url(settings.otel_endpoint)))
    )
    app.extensions["taskapi_tracing"] = provider
    FlaskInstrumentor.instrument_app(app, tracer_provider=provider)  # type: ignore[no-untyped-call]
    # The instrumentation appends the hook that opens the request's span; run it first, so
    # that the body read, the caller's lookup and the rate limit (Redis) are inside the span.
    hooks = app.before_request_funcs[None]
    opener = app._before_request  # type: ignore[attr-defined]
    hooks.remove(opener)
    hooks.insert(0, opener)
    _instrument_engine(engine, provider)
    if counters.redis is not None:
        RedisInstrumentor.instrument_client(counters.redis, tracer_provider=provider)

    @app.before_request
    def tag_request_id() -> None:
        """Put the request id (assigned by an earlier hook) on the request's span."""
        request_id = g.get("request_id")
        if request_id:
            trace.get_current_span().set_attribute(REQUEST_ID_ATTRIBUTE, request_id)


def _instrument_engine(engine: Engine, provider: TracerProvider) -> None:
    """Trace ``engine``. The instrumentor is one per process: a second app in the same process
    (tests) takes it over from the first."""
    instrumentor = SQLAlchemyInstrumentor()
    if instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.uninstrument()
    # Its declared range stops below SQLAlchemy 2.1, whose engine events it uses unchanged.
    instrumentor.instrument(engine=engine, tracer_provider=provider, skip_dep_check=True)
