# The gateway image: slim Python, the package without the ML extra, non-root.
# Workers (which need torch) are built from the same source with `--build-arg EXTRAS=ml,speedups`
# after installing the torch build that matches the host (CPU or CUDA).
FROM python:3.11-slim

ARG EXTRAS=speedups
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY switchgear ./switchgear
COPY config ./config
RUN pip install ".[${EXTRAS}]" \
 && useradd --create-home --uid 10001 switchgear

USER switchgear
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2).status == 200 else 1)"
ENTRYPOINT ["switchgear"]
CMD ["serve", "--config", "/app/config/gateway.yaml", "--host", "0.0.0.0", "--port", "8080"]
