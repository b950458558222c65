# Production image: slim Python 3.11, non-root, gunicorn. Static files are collected at build time
# and served by WhiteNoise.
FROM python:3.11-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PORTAL_DATA_DIR=/app/data
# Production unless told otherwise: it refuses default secrets and DEBUG, and gunicorn.conf.py
# refuses a non-loopback bind without it. (The build's collectstatic below runs as development.)
ENV PORTAL_ENV=production
WORKDIR /app
RUN useradd --create-home --uid 10001 portal
COPY pyproject.toml README.md ./
COPY portal ./portal
COPY runbooks ./runbooks
COPY deployments ./deployments
# No extras: the sandbox (moto) and the test plugin (tests/) are not part of the image.
RUN pip install --upgrade pip && pip install .
COPY . .
RUN PORTAL_ENV=development PORTAL_SANDBOX=false SECRET_KEY=build-only python manage.py collectstatic --noinput \
    && mkdir -p /app/data && chown -R portal:portal /app/data
USER portal
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status == 200 else 1)"
CMD ["gunicorn", "portal.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "3", "--timeout", "30", "--no-control-socket", "--access-logfile", "-"]
